"""``robot-rl bench``: benchmarks that print JSON, side by side with a peer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robot_rl.cli.common import (
    CommandError,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    progress_bar,
    simulator_errors_reported,
)


def bench_env(args: argparse.Namespace) -> int:
    """Env throughput side by side with gymnasium's Pusher-v5 (see robot_rl.bench.env_bench)."""
    with simulator_errors_reported():
        from robot_rl.bench.env_bench import CASES, run_env_bench

        with progress_bar(len(CASES) * args.repeats, "bench env") as bar:
            def advance(case: str) -> None:
                bar.set_postfix_str(f"{case} done")
                bar.update()

            result = run_env_bench(seconds=args.seconds, repeats=args.repeats, seed=args.seed,
                                   image_size=args.image_size, progress=advance)
    _emit(result, args.json)
    return 0


def bench_learner(args: argparse.Namespace) -> int:
    """Gradient updates/s, FLOPs and roofline fraction of our learners vs Stable-Baselines3."""
    from robot_rl.agents.config import device_problem
    from robot_rl.bench.learner_bench import run_learner_benchmark

    problem = device_problem(args.device)
    if problem:
        raise CommandError(f"--device: {problem}")
    result = run_learner_benchmark(repeats=args.repeats, seconds=args.seconds, device=args.device, threads=args.threads,
                                   utd=tuple(args.utd or ()), widths=tuple(args.widths or ()))
    _emit(result, args.json)
    return 0


def bench_replay(args: argparse.Namespace) -> int:
    """Replay store append/commit costs and RAM-tier sampling rates."""
    from robot_rl.bench.replay_bench import run_replay_benchmark

    result = run_replay_benchmark(repeats=args.repeats)
    _emit(result, args.json)
    return 0


def bench_bridge(args: argparse.Namespace) -> int:
    """env.step over ROS 2 (sim bridge in another process) vs in process."""
    from robot_rl.bench.bridge_bench import run_bridge_benchmark

    result = run_bridge_benchmark(rates=tuple(args.rates), seconds=args.seconds, learner=not args.no_learner,
                                  domain_id=args.domain_id)
    _emit(result, args.json)
    return 0


def _emit(result: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    print_json(result, indent=2)


def add_bench_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("bench", help="benchmarks that print JSON, side by side with a peer",
                                  description="Benchmarks; each prints JSON to stdout (see benchmarks/README.md).")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)

    env = commands.add_parser(
        "env", help="env and physics steps/s vs gymnasium's Pusher-v5, and the cost of images",
        description="Measure RobotRL/ArmPickCube-v0 (state observations) and gymnasium's Pusher-v5 in one "
                    "run with random actions: env steps/s, physics substeps/s and their ratio (target >= 0.5), "
                    "plus the extra cost per step of 128x128 scene+wrist images. Reports medians over the "
                    "repeats and every raw value.")
    env.add_argument("--seconds", type=positive_float, default=2.0,
                     help="timed wall-clock seconds per case and repeat (default: 2)")
    env.add_argument("--repeats", type=positive_int, default=5, help="repeats of every case (default: 5)")
    env.add_argument("--seed", type=non_negative_int, default=0, help="seed of resets and random actions (default: 0)")
    env.add_argument("--image-size", type=positive_int, default=128,
                     help="side of the square camera images in the image case (default: 128)")
    env.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    env.set_defaults(handler=bench_env)

    learner = commands.add_parser(
        "learner", help="gradient updates/s, FLOPs and roofline fraction: SAC, REDQ, DroQ, TD3 vs Stable-Baselines3",
        description="256x256 MLPs, batch 256, replay sampling included on both sides; cases alternate within "
                    "each repeat and ratios are medians of per-repeat ratios. Every repeat also measures the "
                    "GFLOP/s of 256x256x256 float32 matrix products and of each update's own products (the "
                    "roofline); FLOPs per update are counted analytically. SB3 is measured when installed "
                    "(pip install -e '.[bench]').")
    learner.add_argument("--repeats", type=positive_int, default=5)
    learner.add_argument("--seconds", type=positive_float, default=3.0, help="timed seconds per case and repeat")
    learner.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    learner.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's choice)")
    learner.add_argument("--utd", type=positive_int, nargs="+", metavar="U",
                         help="also measure SAC N=2, REDQ N=10 and DroQ with one actor step per U critic steps")
    learner.add_argument("--widths", type=positive_int, nargs="+", metavar="W",
                         help="also measure SAC N=2 and REDQ's schedule with W x W hidden layers")
    learner.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    learner.set_defaults(handler=bench_learner)

    replay = commands.add_parser(
        "replay", help="store append/commit cost and replay sampling rate",
        description="Per-step append cost on the control loop (with a 128x128 image), episode commit time, "
                    "and batches/s of 256 from the RAM tier with and without images.")
    replay.add_argument("--repeats", type=positive_int, default=5)
    replay.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    replay.set_defaults(handler=bench_replay)

    bridge = commands.add_parser(
        "bridge", help="env.step overhead over ROS 2 (sim bridge in another process) vs in process",
        description="Starts `robot-rl bridge --robot sim` as a separate process on the loopback-only DDS "
                    "configuration and steps RobotRL/ArmReach-v0 through it (robot=ros2) at each policy rate "
                    "while a SAC learner trains in a thread of the client: env.step overhead beyond the control "
                    "period (p50/p99/max), joint states and commands lost; plus the same loop in process. "
                    "Goal: p99 overhead <= 2 ms and zero losses at 100 Hz.")
    bridge.add_argument("--rates", type=positive_float, nargs="+", default=[10.0, 100.0], help="policy rates, Hz")
    bridge.add_argument("--seconds", type=positive_float, default=20.0, help="timed seconds per rate")
    bridge.add_argument("--no-learner", action="store_true", help="do not train a learner concurrently")
    bridge.add_argument("--domain-id", type=non_negative_int, default=42, help="DDS domain of the run")
    bridge.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    bridge.set_defaults(handler=bench_bridge)
