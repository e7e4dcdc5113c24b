"""``robot-rl record``: record demonstration episodes into a Zarr episode store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robot_rl.cli.common import (
    CommandError,
    add_env_options,
    env_kwargs,
    non_negative_int,
    positive_int,
    print_json,
    progress_bar,
    simulator_errors_reported,
    task_name,
)
from robot_rl.cli.errors import Terminated
from robot_rl.cli.teleop import add_teleop_options
from robot_rl.envs.config import ENV_IDS, TASKS


def scripted_source(env: Any) -> Any:
    from robot_rl.data.recorder import ScriptedSource

    try:
        return ScriptedSource(env)
    except ValueError as exc:  # e.g. joint_delta actions, which the experts cannot produce
        raise CommandError(f"--source scripted: {exc}") from exc


def random_source(env: Any) -> Any:
    from robot_rl.data.recorder import RandomSource

    return RandomSource(env)


# Action sources by --source name (besides "teleop": a device, see robot_rl.cli.teleop): the task's
# scripted expert, or uniformly random actions (stored as source policy; e.g. failures as the
# negatives of a success classifier, robot-rl reward train).
ACTION_SOURCES: dict[str, Callable[[Any], Any]] = {"scripted": scripted_source, "random": random_source}
TELEOP = "teleop"


def record(args: argparse.Namespace) -> int:
    """Run ``args.episodes`` episodes of the chosen action source and append them to the store;
    progress on stderr, a JSON summary on stdout.

    What the progress bar and the summary call *recorded* is what the store has committed, so a
    kill never loses an episode the user was shown as recorded. On Ctrl-C or SIGTERM the episode
    in flight is dropped, the queued ones are committed (closing the store), the summary says
    ``"interrupted"`` and the exit code is 130 / 143 (:mod:`robot_rl.cli.errors`)."""
    from robot_rl.data import store_info
    from robot_rl.data.recorder import open_recording_store
    from robot_rl.training.recorder import EpisodeOutcome, EpisodeRecorder
    from robot_rl.envs import make_arm_env

    task = task_name(args.task)
    kwargs = env_kwargs(args)
    teleop = args.source == TELEOP
    if not teleop and (args.device or args.mapping or args.teleop_config or args.teleop_overrides
                       or args.reward_source != "auto"):
        raise CommandError("--teleop, --mapping, --teleop-config, --teleop-set and --reward-source apply to "
                           "--source teleop")
    interrupted: BaseException | None = None
    labels = {"success": 0, "failure": 0, "none": 0, "reset": 0}
    with simulator_errors_reported():
        env = make_arm_env(task, config=kwargs["config"], overrides=kwargs["overrides"])
        device = None
        try:
            if teleop:
                from robot_rl.cli.teleop import teleop_source

                device, source = teleop_source(args, env)
            else:
                source = ACTION_SOURCES[args.source](env)
            store = open_recording_store(args.out, env)  # errors name the store and every difference
            # The store closes first (committing what is queued, which the bar then counts), then the bar.
            with progress_bar(args.episodes, f"record {task} ({args.source})") as bar, store:
                recorder = EpisodeRecorder(env, store, source, successful_only=args.successful_only,
                                           human_reward=teleop and _human_reward(args, env))
                store.add_commit_listener(lambda commit: bar.update(1))  # on the writer thread

                def advance(outcome: EpisodeOutcome) -> None:
                    summary = recorder.summary()
                    bar.set_postfix(run=summary.episodes_run, successes=summary.successes, refresh=False)
                    if teleop:
                        labels[outcome.label or "none"] += 1
                        bar.write(_episode_line(outcome), file=sys.stderr)

                try:
                    recorder.record(args.episodes, first_seed=args.seed, progress=advance)
                except (KeyboardInterrupt, Terminated) as exc:
                    interrupted = exc  # leaving the block commits the queued episodes
        finally:
            if device is not None:
                device.close()  # first: a keyboard gives the terminal back before anything else is printed
            env.close()
    info = store_info(args.out)
    print_json({"path": str(args.out), "task": task, "source": args.source, **recorder.summary().to_json(),
                **({"labels": labels} if teleop else {}),
                **({"interrupted": True} if interrupted else {}),
                "store": {key: info[key] for key in ("episodes", "steps", "sources", "success_rate", "labels", "tasks")}})
    if interrupted is not None:
        raise interrupted
    return 0


def _human_reward(args: argparse.Namespace, env: Any) -> bool:
    """Whether rewards come from the label buttons (``--reward-source``; auto: on robot kind ros2)."""
    if args.reward_source == "auto":
        return env.unwrapped.config.robot.kind == "ros2"
    return args.reward_source == "human"


def _episode_line(outcome: Any) -> str:
    """One line per teleoperated episode: its label, or that it was not labelled."""
    head = f"seed {outcome.seed}: {outcome.steps} steps"
    if outcome.label == "reset":
        return f"{head}, reset: dropped, the same scene again"
    kept = "" if outcome.kept else " (dropped: --successful-only)"
    if outcome.label is None:
        return (f"{head}, NOT LABELLED (ended without success / failure): stored with the env's success = "
                f"{outcome.success} and label none{kept}")
    return f"{head}, labelled {outcome.label}{kept}"


def add_record_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record", help="record demonstrations into an episode store (*.zarr)",
        description="Run an action source (the task's scripted expert, uniformly random actions, or a person on a "
                    "teleop device: "
                    "--source teleop --teleop DEVICE) in the simulated arm (or, with --set robot.kind=ros2, a "
                    "bridge) and append every episode to a Zarr episode store, created if missing. Teleoperated "
                    "episodes are stored with source human; the device's success / failure button ends an episode "
                    "and labels it (success, and the table column label), its reset button drops it and runs "
                    "the scene again; an episode that times out unlabelled keeps the env's success with label "
                    "none. "
                    "Each episode is committed as it ends and counted as recorded once committed, so a killed "
                    "recording keeps every episode shown as recorded; Ctrl-C or SIGTERM also commits the "
                    "finished episodes still queued (exit code 130 / 143). Progress on stderr, a JSON summary "
                    "on stdout.")
    parser.add_argument("--task", required=True, metavar="TASK",
                        help=f"{' | '.join(TASKS)} or a full env id such as {ENV_IDS['pick']}")
    parser.add_argument("--source", choices=sorted([*ACTION_SOURCES, TELEOP]), default="scripted",
                        help="where the actions come from (default: scripted)")
    parser.add_argument("--episodes", type=positive_int, required=True, help="episodes to run")
    parser.add_argument("--out", type=Path, required=True, metavar="STORE",
                        help="episode store to append to (created if missing; its features must match the env)")
    parser.add_argument("--seed", type=non_negative_int,
                        help="episode i is reset with seed SEED + i "
                             "(default: one past the largest seed in the store, 0 for a new store)")
    parser.add_argument("--successful-only", action="store_true",
                        help="drop failed episodes (default: keep all, each with its success flag)")
    parser.add_argument("--reward-source", choices=("auto", "env", "human"), default="auto",
                        help="--source teleop: env keeps the env's rewards; human: 0 on every step, 1 on the last step "
                             "of an episode labelled success, terminal on either label (auto: human on robot kind "
                             "ros2, where nothing else says success, else env)")
    add_teleop_options(parser, device_flag="--teleop")
    add_env_options(parser)
    parser.set_defaults(handler=record)
