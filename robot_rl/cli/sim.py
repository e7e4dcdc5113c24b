"""``robot-rl sim``: watch the simulated arm, evaluate the scripted experts."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.cli.common import (
    DEFAULT_OUT_DIR,
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
from robot_rl.envs.config import ENV_IDS, TASKS, load_env_config
from robot_rl.viz import (
    Policy,
    RandomPolicy,
    annotate,
    frame_strip,
    open_video,
    run_episode,
)


def make_policy(env: Any, kind: str, seed: int) -> Policy:
    """``expert``: the task's scripted expert; ``random``: seeded uniform random actions."""
    if kind == "random":
        return RandomPolicy(env.action_space, seed)
    from robot_rl.envs.experts import make_expert

    try:
        return make_expert(env)
    except ValueError as exc:  # e.g. joint_delta actions, which the experts cannot produce
        raise CommandError(f"--policy expert: {exc}") from exc


def view_episodes(env: Any, policy: Policy, args: argparse.Namespace, out_dir: Path, stem: str,
                  video: Any) -> list[dict[str, Any]]:
    """Run ``args.episodes`` episodes; append their frames to ``video`` (if any), save a PNG strip
    per episode and print its path; return one JSON-ready summary per episode."""
    base = env.unwrapped
    env_id, max_steps = base.spec.id, base.config.task.max_episode_steps
    height, width = base.config.observation.render_height, base.config.observation.render_width

    def render() -> np.ndarray:
        return base.robot.render(args.camera, height, width)

    summaries = []
    with progress_bar(args.episodes * max_steps, f"{env_id} {args.policy}") as bar:
        for episode in range(args.episodes):
            record = run_episode(env, policy, episode, args.seed + episode, render, bar.update)
            bar.update(max_steps - record.steps)  # episodes that terminate early
            if video is not None:
                for frame in record.frames:
                    label = f"episode {episode}  step {frame.step}/{max_steps}" + ("  success" if frame.success else "")
                    video.append_data(annotate(frame.image, label, frame.success))
            outcome = "success" if record.success else "no success"
            title = (f"{env_id}  policy={args.policy}  camera={args.camera}  episode {episode} "
                     f"(seed {record.seed}): {outcome} after {record.steps} steps")
            strip_path = out_dir / f"{stem}_ep{episode}.png"
            frame_strip(record, title, max_steps).save(strip_path)
            print(f"strip: {strip_path}", flush=True)
            summaries.append({"episode": episode, "seed": record.seed, "steps": record.steps,
                              "return": round(record.episode_return, 4), "success": record.success,
                              "first_success_step": record.first_success_step, "strip": str(strip_path)})
    return summaries


def sim_view(args: argparse.Namespace) -> int:
    """Run episodes, write an MP4 of them (when imageio-ffmpeg is installed) and a PNG strip per
    episode, print the paths and a JSON line with every episode's outcome."""
    import gymnasium as gym

    task = task_name(args.task)
    env_id = ENV_IDS[task]
    kwargs = env_kwargs(args)
    out_dir: Path = args.out
    stem = f"{task}_{args.policy}_{args.camera}_seed{args.seed}"
    video_path: Path | None = out_dir / f"{stem}.mp4"
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        print("robot-rl: imageio-ffmpeg is not installed (pip install imageio-ffmpeg): "
              "writing PNG strips only, no MP4", file=sys.stderr)
        video_path = None
    with simulator_errors_reported():
        env = gym.make(env_id, **kwargs)
        try:
            policy = make_policy(env, args.policy, args.seed)
            out_dir.mkdir(parents=True, exist_ok=True)
            video = open_video(video_path, env.unwrapped.metadata["render_fps"]) if video_path else None
            try:
                episodes = view_episodes(env, policy, args, out_dir, stem, video)
            finally:
                if video is not None:
                    video.close()
        finally:
            env.close()
    if video_path is not None:
        print(f"video: {video_path}")
    print_json({"env_id": env_id, "policy": args.policy, "camera": args.camera,
                "video": str(video_path) if video_path else None,
                "success_rate": sum(e["success"] for e in episodes) / len(episodes), "episodes": episodes})
    return 0


# --------------------------------------------------------------------------- sim experts
EXPERT_CHUNK = 10  # episodes per evaluate_expert call, so the progress bar moves


def sim_experts(args: argparse.Namespace) -> int:
    """Success rates of the scripted experts, as JSON on stdout."""
    with simulator_errors_reported():
        from robot_rl.envs.experts import evaluate_expert

    tasks = list(dict.fromkeys(task_name(t) for t in args.tasks))
    kwargs = env_kwargs(args)
    for task in tasks:  # report config problems before any episode runs
        config = load_env_config(task, kwargs["config"], kwargs["overrides"])
        if config.control.action_mode != "ee_delta":
            raise CommandError(f"{task}: the scripted experts act in tool space and need "
                               f"control.action_mode=ee_delta, got {config.control.action_mode}")
    results: dict[str, dict[str, Any]] = {}
    with progress_bar(len(tasks) * args.episodes, "experts") as bar:
        for task in tasks:
            bar.set_postfix_str(task)
            successes = 0
            for start in range(0, args.episodes, EXPERT_CHUNK):
                count = min(EXPERT_CHUNK, args.episodes - start)
                successes += evaluate_expert(task, count, seed=args.seed + start, **kwargs)["successes"]
                bar.update(count)
            results[task] = {"task": task, "episodes": args.episodes, "successes": successes,
                             "success_rate": successes / args.episodes}
    print_json({"seed": args.seed, "results": results})
    return 0


def add_sim_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("sim", help="the simulated arm: watch episodes, check the scripted experts",
                                  description="Commands on the MuJoCo arm.")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)

    view = commands.add_parser(
        "view", help="run episodes and write an MP4 and a PNG strip of frames",
        description="Run episodes on the simulated arm and write what the camera saw: an MP4 of all "
                    "episodes and, per episode, a PNG grid of 8 frames annotated with step and success. "
                    "Prints the paths, then one JSON line with the outcome of every episode.")
    view.add_argument("--task", default="pick", metavar="TASK",
                      help=f"{' | '.join(TASKS)} or a full env id such as {ENV_IDS['pick']} (default: pick)")
    view.add_argument("--policy", choices=("expert", "random"), default="expert",
                      help="scripted expert or uniform random actions (default: expert)")
    view.add_argument("--episodes", type=positive_int, default=1, help="number of episodes (default: 1)")
    view.add_argument("--seed", type=non_negative_int, default=0,
                      help="episode i is reset with seed SEED + i (default: 0)")
    view.add_argument("--camera", choices=("scene", "wrist"), default="scene", help="camera to film (default: scene)")
    view.add_argument("--out", type=Path, default=Path(DEFAULT_OUT_DIR), metavar="DIR",
                      help=f"output directory (default: ./{DEFAULT_OUT_DIR})")
    add_env_options(view)
    view.set_defaults(handler=sim_view)

    experts = commands.add_parser(
        "experts", help="success rates of the scripted experts (JSON)",
        description="Evaluate the scripted experts; episode i uses seed SEED + i and counts as a success "
                    "when the task reports success at its last step. Prints JSON; progress on stderr.")
    experts.add_argument("--tasks", nargs="+", default=list(TASKS), metavar="TASK",
                         help=f"tasks or env ids (default: {' '.join(TASKS)})")
    experts.add_argument("--episodes", type=positive_int, default=100, help="episodes per task (default: 100)")
    experts.add_argument("--seed", type=non_negative_int, default=0, help="seed of the first episode (default: 0)")
    add_env_options(experts)
    experts.set_defaults(handler=sim_experts)
