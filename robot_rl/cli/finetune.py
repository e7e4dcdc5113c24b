"""``robot-rl finetune``: continue a trained agent on another robot (the twin, a real arm)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from robot_rl.cli.common import CommandError, add_set_option, non_negative_int, positive_int
from robot_rl.cli.train import resumed_config, run_name, run_training
from robot_rl.config import deep_merge, parse_overrides

PARTS = ("actor", "critic", "temperature")


def finetune_command(args: argparse.Namespace) -> int:
    """Fine-tune from ``--from`` (or resume a fine-tuning run) and report like ``train``."""
    overrides = parse_overrides(args.overrides)
    if args.resume:
        if args.source is not None:
            raise CommandError("--resume continues the run in --run-dir from its own checkpoint; leave out --from")
        return run_training(resumed_config(args.run_dir, args.config, overrides), args.run_dir, resume=True)
    if args.source is None:
        raise CommandError("--from RUN_OR_CHECKPOINT is required (or --resume --run-dir DIR)")
    from robot_rl.training.checkpoint import load_checkpoint
    from robot_rl.training.config import load_finetune_config
    from robot_rl.training.finetune import resolve_checkpoint

    checkpoint = resolve_checkpoint(args.source, args.seed)
    payload = load_checkpoint(checkpoint)
    init: dict = {"checkpoint": str(checkpoint), "load": [part for part in PARTS if part not in (args.skip or [])]}
    if args.sim_replay:
        replay = checkpoint.parent.parent / "replay.zarr"
        if not replay.is_dir():
            raise CommandError(f"--sim-replay: {checkpoint} has no replay store beside it ({replay})")
        init["replay"] = str(replay)
    shortcuts: dict = {"init": init, "train": {"seeds": args.seeds or [int(payload.get("seed", 0))]},
                       "env": {"robot": {"kind": args.robot}}}
    if args.steps is not None:
        shortcuts["train"]["total_steps"] = args.steps
    if args.demos:
        shortcuts["demos"] = {"paths": [str(path) for path in args.demos]}
    if args.offline_steps is not None:
        shortcuts = deep_merge(shortcuts, {"demos": {"offline_steps": args.offline_steps}})
    if args.teleop is not None:
        shortcuts["teleop"] = {"device": args.teleop}
    config = load_finetune_config(payload["config"], args.config, deep_merge(shortcuts, overrides))
    run_dir = args.run_dir or Path("runs") / f"finetune_{run_name(config)}_{args.robot}_{time.strftime('%Y%m%d-%H%M%S')}"
    return run_training(config, run_dir, resume=False)


def add_finetune_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="continue a trained agent on another robot (twin or real arm over ROS 2)",
        description="Fine-tune a trained run on another robot. The checkpoint's env interface (observation keys "
                    "and shapes, action mode and space, control rate, workspace, cameras, arm) is compared with "
                    "the new robot's before anything moves; every difference is listed. Actor, critics and "
                    "temperature are loaded (--skip to start one fresh), the loaded policy collects a warm-up "
                    "before updates start (WSRL; train.warmup_steps), motions ramp from half to full scale over "
                    "the first episodes (init.action_scale_start, init.action_ramp_episodes), and the run writes "
                    "its own run directory and store and resumes after a kill (--resume --run-dir DIR). Settings: "
                    "the trained run's config <- robot_rl/configs/train/finetune.yaml <- --config <- --set. "
                    "Start the robot first: `robot-rl bridge --twin default --task TASK` (the twin) or a real "
                    "arm's bridge.")
    parser.add_argument("--from", dest="source", type=Path, metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint file, a seed directory or a run directory (with --seed if it has several)")
    parser.add_argument("--seed", type=non_negative_int, help="which seed of a run directory to start from")
    parser.add_argument("--robot", default="ros2", metavar="KIND",
                        help="robot kind to fine-tune on (env.robot.kind): ros2 (a bridge: the twin or a real arm) "
                             "or sim (default: ros2)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML layered over the fine-tuning defaults")
    add_set_option(parser, "init.replay_ratio=0.5 train.warmup_steps=1000 env.robot.ros2.transport.domain_id=7")
    parser.add_argument("--steps", type=positive_int, help="env steps on the new robot (train.total_steps; default 5000)")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+",
                        help="seeds of the fine-tuning runs (default: the checkpoint's seed)")
    parser.add_argument("--skip", nargs="+", choices=PARTS, metavar="PART",
                        help=f"parts not loaded from the checkpoint ({', '.join(PARTS)}); they start fresh")
    parser.add_argument("--sim-replay", action="store_true",
                        help="mix the trained run's replay store into every minibatch (init.replay_ratio)")
    parser.add_argument("--demos", type=Path, action="append", metavar="D.zarr",
                        help="demonstrations mixed into minibatches at demos.ratio (repeatable)")
    parser.add_argument("--offline-steps", type=non_negative_int, metavar="K",
                        help="gradient steps on --demos alone before the first step on the robot (e.g. a store "
                             "of the robot's own earlier episodes)")
    parser.add_argument("--teleop", metavar="DEVICE", help="interventions during fine-tuning (as robot-rl train)")
    parser.add_argument("--run-dir", type=Path, metavar="DIR",
                        help="default: runs/finetune_<task>_<robot>_<time>")
    parser.add_argument("--resume", action="store_true",
                        help="continue the fine-tuning run in --run-dir from its own last checkpoint and store")
    parser.set_defaults(handler=finetune_command)
