"""``robot-rl bench``: benchmarks that print JSON, side by side with a peer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robot_rl.cli.common import (
    CommandError,
    add_set_option,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    progress_bar,
    simulator_errors_reported,
    task_name,
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
    pixels = list(dict.fromkeys(args.pixels or ()))
    if args.only_pixels and not pixels:
        raise CommandError("--only-pixels: give the image sizes with --pixels SIZE [SIZE ...]")
    words = ["bench", "learner", "--repeats", str(args.repeats), "--seconds", f"{args.seconds:g}",
             "--device", args.device]
    for flag, values in (("--threads", [args.threads] if args.threads else []), ("--utd", args.utd or []),
                         ("--widths", args.widths or []), ("--pixels", pixels)):
        if values:
            words += [flag, *map(str, values)]
    if args.only_pixels:
        words.append("--only-pixels")
    result = run_learner_benchmark(repeats=args.repeats, seconds=args.seconds, device=args.device, threads=args.threads,
                                   utd=tuple(args.utd or ()), widths=tuple(args.widths or ()), pixels=tuple(pixels),
                                   only_pixels=args.only_pixels)
    _emit({"command": _command(words, args.json), **result}, args.json)
    return 0


def bench_replay(args: argparse.Namespace) -> int:
    """Replay store append/commit costs, RAM-tier sampling rates and bytes per transition."""
    from robot_rl.bench.replay_bench import run_replay_benchmark

    result = run_replay_benchmark(repeats=args.repeats)
    _emit({"command": _command(["bench", "replay", "--repeats", str(args.repeats)], args.json), **result},
          args.json)
    return 0


def bench_render(args: argparse.Namespace) -> int:
    """Camera frames per second and their share of an env step (see robot_rl.bench.render_bench)."""
    with simulator_errors_reported():
        from robot_rl.bench.render_bench import run_render_benchmark

        sizes = list(dict.fromkeys(args.sizes))
        with progress_bar(args.repeats * (1 + len(sizes)), "bench render") as bar:
            def advance(case: str) -> None:
                bar.set_postfix_str(f"{case} done")
                bar.update()

            result = run_render_benchmark(sizes=sizes, seconds=args.seconds, repeats=args.repeats, seed=args.seed,
                                          progress=advance)
    words = ["bench", "render", "--sizes", *map(str, sizes), "--seconds", f"{args.seconds:g}",
             "--repeats", str(args.repeats), "--seed", str(args.seed)]
    _emit({"command": _command(words, args.json), **result}, args.json)
    return 0


def _command(words: list[str], json_path: Path | None) -> str:
    """The ``robot-rl`` command line that reproduces a run, every option spelled out, prefixed with
    ``nice -n N`` when this process runs at a lower priority."""
    import os
    import shlex

    niceness = os.nice(0) if hasattr(os, "nice") else 0
    prefix = ["nice", "-n", str(niceness)] if niceness > 0 else []
    suffix = ["--json", str(json_path)] if json_path is not None else []
    return shlex.join([*prefix, "robot-rl", *words, *suffix])


def bench_bridge(args: argparse.Namespace) -> int:
    """env.step over ROS 2 (sim bridge in another process) vs in process."""
    from robot_rl.bench.bridge_bench import run_bridge_benchmark

    result = run_bridge_benchmark(rates=tuple(args.rates), seconds=args.seconds, learner=not args.no_learner,
                                  domain_id=args.domain_id, twin=args.twin)
    _emit(result, args.json)
    return 0


def bench_learn(args: argparse.Namespace) -> int:
    """Learning curves of several learners x seeds on one task, in parallel processes (see
    robot_rl.bench.learn); writes <out>/<name>.json and .png, prints the summary as JSON."""
    import shlex
    import sys

    from robot_rl.bench import learn
    from robot_rl.cli.train import gym_overrides
    from robot_rl.config import deep_merge, parse_overrides

    overrides = parse_overrides(args.overrides)
    fixed = [key for key in ("total_steps", "eval_every", "eval_episodes", "seeds", "checkpoint_every", "progress")
             if key in overrides.get("train", {})]
    if fixed:
        raise CommandError(f"--set train.{fixed[0]}: the benchmark sets it (--steps, --eval-every, --eval-episodes, "
                           f"--seeds)")
    if "her" in overrides or "paths" in overrides.get("demos", {}):
        raise CommandError("--set her.* / demos.paths: use --her STRATEGY [--her-ratio R] and --demos K")
    if args.task is not None and args.env is not None:
        raise CommandError("--task names one of this project's arm tasks, --env any gymnasium env: give one of them")
    env_section = deep_merge(overrides.pop("env", {}), gym_overrides(args).get("env", {}))
    protocol = learn.Protocol(steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                              seeds=tuple(dict.fromkeys(args.seeds)), task=task_name(args.task or "reach"),
                              reward_type=None if args.env else args.reward, env=env_section,
                              torch_threads=args.torch_threads)
    metric, goal_env = "success", None
    with simulator_errors_reported():
        if args.env:
            reports_success, goal_env = learn.probe_gym_env(protocol)
            metric = "success" if reports_success else "return"
        try:
            learners = learn.plan_learners(args.learners, protocol, utd=args.utd, her=args.her,
                                           her_ratio=args.her_ratio, demos=args.demos,
                                           demos_for_all=args.demos_for_all, overrides=overrides, goal_env=goal_env)
            learn.check_learners(protocol, learners)
        except learn.BenchSetupError as exc:
            raise CommandError(str(exc)) from None
        jobs = args.jobs or learn.default_jobs(args.torch_threads)
        demos_path = learn.record_demos(protocol, args.demos, args.work) if any(l.demos for l in learners) else None
        outcomes = learn.run_benchmark(protocol, learners, args.work, jobs=jobs, nice=args.nice,
                                       demos_path=demos_path, demo_episodes=args.demos, metric=metric)
    argv = sys.argv[1:]
    command = shlex.join(["robot-rl", *argv]) if argv[:2] == ["bench", "learn"] else _learn_command(args)
    stem = args.name or "_".join(part for part in (
        "learn", protocol.env_tag(), str(args.steps), f"her-{args.her}" if args.her else "",
        f"demos{args.demos}" if args.demos else "", f"utd{args.utd}" if args.utd else "") if part)
    header = {"command": command, "machine": learn.machine_info(args.torch_threads, jobs, args.nice),
              "task": None if args.env else protocol.task, "env": protocol.env_label(),
              "env_section": protocol.env_section(), "budget_env_steps": args.steps, "eval_every": args.eval_every,
              "eval_episodes": args.eval_episodes, "seeds": list(protocol.seeds),
              "demos": {"episodes": args.demos, "path": str(demos_path) if demos_path else None,
                        "given_to": [l.label for l in learners if l.demos]},
              "her": {"strategy": args.her, "ratio": args.her_ratio} if args.her else None,
              "utd": args.utd if args.utd is not None else "presets' own",
              "overrides": overrides, "work": str(args.work)}
    title = f"{protocol.env_label()}" + (f", {args.demos} demos" if args.demos else "") + \
        (f", HER {args.her}" if args.her else "") + f": {len(protocol.seeds)} seeds, unsmoothed"
    report = learn.benchmark_report(protocol, learners, outcomes, header, args.out, stem, title, metric)
    print(f"report: {(args.out / f'{stem}.json').resolve()} and .png", file=sys.stderr)
    print_json({"metric": report["metric"], "summary": {name: learner["summary"]
                                                         for name, learner in report["learners"].items()},
                "failed": report["failed"]}, indent=2)
    return 1 if report["failed"] else 0


def _learn_command(args: argparse.Namespace) -> str:
    """``robot-rl bench learn`` with every option spelled out (when not started from the shell)."""
    import shlex

    words = ["robot-rl", "bench", "learn"]
    words += ["--env", args.env] if args.env else ["--task", args.task or "reach", "--reward", args.reward]
    for flag, value in (("--env-kwargs", args.env_kwargs), ("--utd", args.utd), ("--her", args.her),
                        ("--jobs", args.jobs), ("--nice", args.nice), ("--name", args.name)):
        if value is not None:
            words += [flag, str(value)]
    for module in args.env_imports or []:
        words += ["--env-import", module]
    for wrapper in args.wrappers or []:
        words += ["--wrapper", wrapper]
    words += ["--learners", *args.learners, "--seeds", *map(str, args.seeds), "--steps", str(args.steps),
              "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
              "--demos", str(args.demos), "--her-ratio", f"{args.her_ratio:g}",
              "--torch-threads", str(args.torch_threads), "--out", str(args.out), "--work", str(args.work)]
    if args.demos_for_all:
        words.append("--demos-for-all")
    if args.overrides:
        words += ["--set", *args.overrides]
    return shlex.join(words)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


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
                    "(pip install -e '.[bench]'). --pixels SIZE adds learning from two camera images "
                    "(pixel_study; --only-pixels: that alone).")
    learner.add_argument("--repeats", type=positive_int, default=5)
    learner.add_argument("--seconds", type=positive_float, default=3.0, help="timed seconds per case and repeat")
    learner.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    learner.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's choice)")
    learner.add_argument("--utd", type=positive_int, nargs="+", metavar="U",
                         help="also measure SAC N=2, REDQ N=10 and DroQ with one actor step per U critic steps")
    learner.add_argument("--widths", type=positive_int, nargs="+", metavar="W",
                         help="also measure SAC N=2 and REDQ's schedule with W x W hidden layers")
    learner.add_argument("--pixels", type=positive_int, nargs="+", metavar="SIZE",
                         help="also measure learning from two SIZE x SIZE x 3 uint8 cameras + 22-d proprio "
                              "(pixel_study): our SAC on frozen camera features (agent.encoder.mode frozen), our SAC "
                              "fine-tuning its conv encoder (mode finetune, DrQ shift) and SB3 SAC's "
                              "MultiInputPolicy (NatureCNN per camera); updates/s and seconds per 10k updates")
    learner.add_argument("--only-pixels", action="store_true",
                         help="measure only the --pixels study, not the state cases and their roofline")
    learner.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    learner.set_defaults(handler=bench_learner)

    replay = commands.add_parser(
        "replay", help="store append/commit cost, replay sampling rate and bytes per transition",
        description="Per-step append cost on the control loop (with 128x128 scene and wrist images), episode "
                    "commit time, batches/s of 256 from the RAM tier with and without images, and the RAM "
                    "tier's bytes per transition with the two cameras next to SB3's DictReplayBuffer (measured) "
                    "and a float32 obs + next-obs layout like LeRobot's (computed); goal <= 55 % of SB3's.")
    replay.add_argument("--repeats", type=positive_int, default=5, help="repeats of every case (default: 5)")
    replay.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    replay.set_defaults(handler=bench_replay)

    render = commands.add_parser(
        "render", help="camera frames/s (scene, wrist) and env steps/s with and without images",
        description="On RobotRL/ArmLift-v0, per image size: env steps/s with the scene and wrist cameras in the "
                    "observation, frames/s of each camera rendered alone (SimArm.render, no shadows, as the "
                    "observations are), and per repeat env steps/s without images; reports which part of an "
                    "image step dominates (physics or rendering) and the slower camera, the MUJOCO_GL backend "
                    "and the OpenGL renderer. Medians over the repeats and every raw value.")
    render.add_argument("--sizes", type=positive_int, nargs="+", default=[64, 128], metavar="PX",
                        help="square image sides in pixels (default: 64 128)")
    render.add_argument("--seconds", type=positive_float, default=2.0,
                        help="timed wall-clock seconds per case and repeat (default: 2)")
    render.add_argument("--repeats", type=positive_int, default=5, help="repeats of every case (default: 5)")
    render.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of resets and random actions (default: 0)")
    render.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    render.set_defaults(handler=bench_render)

    learn = commands.add_parser(
        "learn", help="learning curves: N seeds of our learners and SB3 SAC (+HER) on a task, in parallel processes",
        description="Train every learner (our agent presets: sac redq droq td3 ddpg rlpd ddpgfd awac; sb3: "
                    "Stable-Baselines3 SAC at its defaults; sb3_her: SB3 SAC + HerReplayBuffer, goal tasks) for "
                    "--steps env steps on every seed, each run in its own process (--jobs at a time, default "
                    "cores / --torch-threads), evaluating --eval-episodes deterministic episodes every "
                    "--eval-every steps. Finished runs are cached under --work, so the same command again only "
                    "runs what is missing and continues interrupted runs of ours from their checkpoints. Writes "
                    "<out>/<name>.json (per seed: success at every evaluation, steps to 90 %%, wall time, env "
                    "steps/s, gradient updates/s; per learner: medians and ranges) and <out>/<name>.png (median, "
                    "min-max band and every seed, unsmoothed); see benchmarks/README.md.")
    learn.add_argument("--task", metavar="TASK", help="reach | push | pick | peg | lift or a RobotRL/* env id "
                                                      "(default: reach)")
    learn.add_argument("--env", metavar="ID", help="a gymnasium env id instead of an arm task (env.gym.id); without "
                                                   "info['is_success'] the benchmark reports mean eval returns")
    learn.add_argument("--env-kwargs", metavar="MAPPING", help="keyword arguments of gymnasium.make (JSON or YAML)")
    learn.add_argument("--env-import", dest="env_imports", action="append", metavar="MODULE",
                       help="module imported before gymnasium.make, e.g. gymnasium_robotics (repeatable)")
    learn.add_argument("--wrapper", dest="wrappers", action="append", metavar="MODULE:CALLABLE",
                       help="callable(env) -> env applied after gymnasium.make (repeatable)")
    learn.add_argument("--learners", nargs="+", metavar="NAME", default=["sac", "sb3"],
                       help="agent presets and/or sb3, sb3_her (default: sac sb3)")
    learn.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2], metavar="S",
                       help="default: 0 1 2")
    learn.add_argument("--steps", type=positive_int, default=10000, help="env-step budget per run (default: 10000)")
    learn.add_argument("--eval-every", type=positive_int, default=1000, metavar="N",
                       help="env steps between evaluations (default: 1000)")
    learn.add_argument("--eval-episodes", type=positive_int, default=10, metavar="N",
                       help="deterministic episodes per evaluation, on fixed seeds (default: 10)")
    learn.add_argument("--reward", choices=("sparse", "dense"), default="sparse",
                       help="arm tasks' reward (default: sparse)")
    learn.add_argument("--demos", type=non_negative_int, default=0, metavar="K",
                       help="record K scripted demonstrations once (under --work) and give them to rlpd, ddpgfd, awac")
    learn.add_argument("--demos-for-all", action="store_true",
                       help="give the demonstrations to every learner of ours, not only rlpd, ddpgfd, awac")
    learn.add_argument("--utd", type=positive_int, metavar="N",
                       help="gradient steps per env step for the presets that use more than one (redq, droq 20, "
                            "rlpd 10, ddpgfd 4, awac 2; default: their own); sac, td3, ddpg and SB3 keep 1")
    learn.add_argument("--her", choices=("future", "final", "episode"), metavar="STRATEGY",
                       help="hindsight relabelling for our learners (her.strategy: future | final | episode; goal "
                            "tasks) and SB3-HER's goal selection (default for sb3_her: future)")
    learn.add_argument("--her-ratio", type=_fraction, default=0.8, metavar="R",
                       help="share of each minibatch relabelled (her.ratio; default: 0.8)")
    learn.add_argument("--jobs", type=positive_int, metavar="J",
                       help="runs at a time (default: usable cores // --torch-threads)")
    learn.add_argument("--torch-threads", type=positive_int, default=1, metavar="N",
                       help="torch threads per run (default: 1)")
    learn.add_argument("--nice", type=non_negative_int, nargs="?", const=19, metavar="N",
                       help="run the training processes at lower priority (default N when given: 19)")
    add_set_option(learn, "agent.hidden_sizes=[64,64] env.task.object_start=fixed")
    learn.add_argument("--out", type=Path, default=Path("benchmarks/results"), metavar="DIR",
                       help="where the report JSON and PNG go (default: benchmarks/results)")
    learn.add_argument("--work", type=Path, default=Path("runs/benchmarks"), metavar="DIR",
                       help="run directories and demonstrations, the cache (default: runs/benchmarks)")
    learn.add_argument("--name", metavar="STEM", help="report file name without extension "
                                                      "(default: learn_<task>_<steps>[_her-S][_demosK][_utdN])")
    learn.set_defaults(handler=bench_learn)

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
    bridge.add_argument("--twin", metavar="PROFILE",
                        help="serve the reality-gap twin (robot-rl bridge --twin PROFILE, real time) instead of the "
                             "plain sim arm: the loop's overhead with the twin's latency, jitter and noise")
    bridge.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON to PATH")
    bridge.set_defaults(handler=bench_bridge)
