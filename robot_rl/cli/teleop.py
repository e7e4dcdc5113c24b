"""``robot-rl teleop``: drive an arm from a teleoperation device, and the options every command
that takes a device shares (``record --source teleop`` and ``train --teleop`` can reuse
:func:`add_teleop_options`, :func:`teleop_config` and :func:`teleop_source`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from robot_rl.cli.common import (
    add_env_options,
    env_kwargs,
    non_negative_int,
    simulator_errors_reported,
    task_name,
)
from robot_rl.config import parse_overrides
from robot_rl.envs.config import ENV_IDS, TASKS


def add_teleop_options(parser: argparse.ArgumentParser, device_flag: str = "--device") -> None:
    """``--device NAME``, ``--mapping FILE``, ``--teleop-config FILE`` and ``--teleop-set K=V ...``."""
    parser.add_argument(device_flag, dest="device", metavar="DEVICE",
                        help="keyboard | gamepad | spacemouse | joy | twist | twist_stamped | virtual (a scripted "
                             "operator), or any registered device (default: teleop.device, keyboard)")
    parser.add_argument("--mapping", metavar="FILE",
                        help="axis/button mapping: a YAML file or a built-in name (gamepad, spacemouse, joy, spacenav)")
    parser.add_argument("--teleop-config", metavar="FILE", type=Path,
                        help="YAML teleop settings (robot_rl.teleop.TeleopConfig: speeds, deadband, invert, frame, ...)")
    parser.add_argument("--teleop-set", dest="teleop_overrides", metavar="KEY=VALUE", nargs="+", action="extend",
                        default=[], help="override teleop settings, e.g. --teleop-set linear_speed=0.05 frame=tool")


def teleop_config(args: argparse.Namespace, env: Any) -> Any:
    """The :class:`~robot_rl.teleop.TeleopConfig` the options ask for. ROS 2 topic devices use the
    env's ROS 2 transport settings (domain, network, namespace) unless ``transport`` is set."""
    from dataclasses import replace

    from robot_rl.config import deep_merge
    from robot_rl.envs.config import TransportConfig
    from robot_rl.teleop import load_teleop_config

    shortcuts = {key: value for key, value in (("device", args.device), ("mapping", args.mapping)) if value}
    config = load_teleop_config(args.teleop_config, deep_merge(shortcuts, parse_overrides(args.teleop_overrides)))
    if config.transport == TransportConfig():  # not set: reach the topics the way the env reaches the arm
        config = replace(config, transport=env.unwrapped.config.robot.ros2.transport)
    return config


def teleop_source(args: argparse.Namespace, env: Any) -> tuple[Any, Any]:
    """(device, :class:`~robot_rl.teleop.TeleopActionSource`) for ``env``; the device's controls
    are printed on stderr. The caller closes the device."""
    from robot_rl.teleop import TeleopActionSource, make_teleop_device

    config = teleop_config(args, env)
    device = make_teleop_device(config)
    try:
        source = TeleopActionSource(device, config, env)
    except BaseException:
        device.close()
        raise
    print(device.help, file=sys.stderr, flush=True)
    return device, source


def teleop(args: argparse.Namespace) -> int:
    """Run episodes driven by the device until Ctrl-C: one line per episode on stderr."""
    from robot_rl.envs import make_arm_env
    from robot_rl.training.rollout import run_episode

    task = task_name(args.task)
    kwargs = env_kwargs(args)
    with simulator_errors_reported():
        env = make_arm_env(task, config=kwargs["config"], overrides=kwargs["overrides"])
        try:
            device, source = teleop_source(args, env)
            try:
                episode = 0
                while args.episodes == 0 or episode < args.episodes:
                    rollout = run_episode(env, source, args.seed + episode)
                    print(f"episode {episode}: {rollout.steps} steps, success={rollout.success}, "
                          f"label={source.outcome or '-'}", file=sys.stderr, flush=True)
                    episode += 1
            finally:
                device.close()  # restores the terminal before anything else is printed
        finally:
            env.close()
    return 0


def add_teleop_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teleop", help="drive the arm from a keyboard, gamepad, SpaceMouse or ROS 2 Joy/Twist topic",
        description="Drive the simulated arm (or, with --set robot.kind=ros2, a bridge: the sim twin or a real arm) "
                    "from a teleoperation device. Hold the device's deadman to move; releasing it, or a device "
                    "that goes silent, disconnects or sends NaN, makes the arm hold. Every action passes the env's "
                    "limits and, over ROS 2, the bridge's safety supervisor. The success / failure / reset "
                    "buttons end an episode. Nothing is recorded (see robot-rl record).")
    parser.add_argument("--task", default="pick", metavar="TASK",
                        help=f"{' | '.join(TASKS)} or a full env id such as {ENV_IDS['pick']} (default: pick)")
    parser.add_argument("--episodes", type=non_negative_int, default=0, help="episodes to run (0: until Ctrl-C)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="episode i is reset with seed SEED + i")
    add_teleop_options(parser)
    add_env_options(parser)
    parser.set_defaults(handler=teleop)
