"""``robot-rl encoder``: pretrain a camera encoder in simulation (nothing is downloaded)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from robot_rl.cli.common import (
    add_env_options,
    env_kwargs,
    non_negative_int,
    positive_int,
    print_json,
    progress_bar,
    simulator_errors_reported,
    task_name,
)
from robot_rl.config import deep_merge
from robot_rl.envs.config import ENV_IDS, TASKS


def encoder_pretrain(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from robot_rl.vision.pretrain import PretrainSettings, pretrain_encoder

    settings = PretrainSettings(frames=args.frames, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                trunk=args.trunk, pool=args.pool, feature_dim=args.feature_dim)
    kwargs = env_kwargs(args)
    kwargs["overrides"] = deep_merge(kwargs["overrides"], {"observation": {"images": True}})
    bars: dict[str, Any] = {}

    def progress(stage: str, total: int, advance: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = progress_bar(total, f"{stage} frames" if stage == "render" else "train (samples)")
        bars[stage].update(advance)

    with simulator_errors_reported():
        env = gym.make(ENV_IDS[task_name(args.task)], **kwargs)
        try:
            report = pretrain_encoder(env, args.out, settings, progress)
        finally:
            env.close()
            for bar in bars.values():
                bar.close()
    print_json({"out": str(args.out), **report}, indent=1)
    return 0


def add_encoder_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("encoder", help="camera encoders for pixel learners",
                                   description="Camera encoders for learners that see images.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pretrain = commands.add_parser(
        "pretrain", help="pretrain an encoder on simulated renders (predict tool and object state)",
        description="Render frames of the task's cameras (env.observation.cameras, image size from "
                    "env.observation.image_height/width) while the scripted expert, with per-episode action noise, "
                    "and random actions drive the arm; train a per-camera encoder to predict the tool position, "
                    "finger opening and object positions from them; write the encoder file for "
                    "agent.encoder.mode=frozen (robot-rl train --set agent.encoder.mode=frozen agent.encoder.weights=FILE) "
                    "or as the "
                    "start of agent.encoder.mode=finetune. Prints a JSON report: R² and RMSE of every target on held-out "
                    "episodes.")
    pretrain.add_argument("--task", default="lift", metavar="TASK", help=f"{' | '.join(TASKS)} (default: lift)")
    pretrain.add_argument("--out", type=Path, required=True, metavar="FILE", help="encoder file to write (*.pt)")
    pretrain.add_argument("--frames", type=positive_int, default=20_000, help="frames to render (default: 20000)")
    pretrain.add_argument("--epochs", type=positive_int, default=8, help="passes over the frames (default: 8)")
    pretrain.add_argument("--batch-size", type=positive_int, default=128, help="default: 128")
    pretrain.add_argument("--trunk", choices=("conv", "resnet10", "resnet18"), default="conv",
                          help="per-camera trunk (default: conv, DrQ's 4-layer net)")
    pretrain.add_argument("--pool", choices=("spatial_softmax", "spatial_embedding", "flatten"),
                          default="spatial_softmax", help="spatial pooling (default: spatial_softmax)")
    pretrain.add_argument("--feature-dim", type=positive_int, default=64, help="features per camera (default: 64)")
    pretrain.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    add_env_options(pretrain)
    pretrain.set_defaults(handler=encoder_pretrain)
