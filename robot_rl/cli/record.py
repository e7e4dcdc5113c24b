"""``robot-rl record``: record demonstration episodes into a Zarr episode store."""

from __future__ import annotations

import argparse
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
from robot_rl.envs.config import ENV_IDS, TASKS


def scripted_source(env: Any) -> Any:
    from robot_rl.data.recorder import ScriptedSource

    try:
        return ScriptedSource(env)
    except ValueError as exc:  # e.g. joint_delta actions, which the experts cannot produce
        raise CommandError(f"--source scripted: {exc}") from exc


# Action sources by --source name; teleoperation devices register here as they arrive.
ACTION_SOURCES: dict[str, Callable[[Any], Any]] = {"scripted": scripted_source}


def record(args: argparse.Namespace) -> int:
    """Run ``args.episodes`` episodes of the chosen action source and append them to the store;
    progress on stderr, a JSON summary on stdout."""
    from robot_rl.data import SpecMismatchError, StoreError, store_info
    from robot_rl.data.recorder import open_recording_store
    from robot_rl.training.recorder import EpisodeOutcome, EpisodeRecorder
    from robot_rl.envs import make_arm_env

    task = task_name(args.task)
    kwargs = env_kwargs(args)
    with simulator_errors_reported():
        env = make_arm_env(task, config=kwargs["config"], overrides=kwargs["overrides"])
        try:
            source = ACTION_SOURCES[args.source](env)
            try:
                store = open_recording_store(args.out, env)
            except (SpecMismatchError, StoreError) as exc:
                raise CommandError(str(exc)) from exc  # names the store and every difference
            with store, progress_bar(args.episodes, f"record {task} ({args.source})") as bar:
                successes = 0

                def advance(outcome: EpisodeOutcome) -> None:
                    nonlocal successes
                    successes += outcome.success
                    bar.set_postfix(successes=successes, refresh=False)
                    bar.update(1)

                recorder = EpisodeRecorder(env, store, source, successful_only=args.successful_only)
                summary = recorder.record(args.episodes, first_seed=args.seed, progress=advance)
        finally:
            env.close()
    info = store_info(args.out)
    print_json({"path": str(args.out), "task": task, "source": args.source, **summary.to_json(),
                "store": {key: info[key] for key in ("episodes", "steps", "sources", "success_rate", "tasks")}})
    return 0


def add_record_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record", help="record demonstrations into an episode store (*.zarr)",
        description="Run an action source (the task's scripted expert; teleoperation devices later) in the "
                    "simulated arm and append every episode to a Zarr episode store, created if missing. "
                    "Each episode is committed as it ends, so an interrupted recording keeps every finished "
                    "episode. Progress on stderr, a JSON summary on stdout.")
    parser.add_argument("--task", required=True, metavar="TASK",
                        help=f"{' | '.join(TASKS)} or a full env id such as {ENV_IDS['pick']}")
    parser.add_argument("--source", choices=sorted(ACTION_SOURCES), default="scripted",
                        help="where the actions come from (default: scripted)")
    parser.add_argument("--episodes", type=positive_int, required=True, help="episodes to run")
    parser.add_argument("--out", type=Path, required=True, metavar="STORE",
                        help="episode store to append to (created if missing; its features must match the env)")
    parser.add_argument("--seed", type=non_negative_int,
                        help="episode i is reset with seed SEED + i "
                             "(default: one past the largest seed in the store, 0 for a new store)")
    parser.add_argument("--successful-only", action="store_true",
                        help="drop failed episodes (default: keep all, each with its success flag)")
    add_env_options(parser)
    parser.set_defaults(handler=record)
