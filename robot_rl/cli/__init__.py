"""Command-line interface: ``robot-rl <group> <command> [options]``.

Every command group is a module here with one ``add_<group>_parser(subparsers)`` function that
registers its commands; every command is one ``<group>_<command>(args) -> int`` function bound
with ``set_defaults(handler=...)``. Adding a group means writing such a module and listing its
adder in :data:`GROUPS`. Errors are reported in one place (:mod:`robot_rl.cli.errors`): one line
``robot-rl <command>: error: ...`` on stderr and exit code 2 for a request that cannot be done as
given (bad config, unknown task, not a store, no OpenGL for rendering, no ROS 2 bridge), 1 for a
failure while running (damaged data, a diverged learner); 130/143 after Ctrl-C/SIGTERM, once the
clean-up has run. Tracebacks are for bugs, or for ``--debug``.
"""

from __future__ import annotations

import argparse
from typing import Callable

from robot_rl import __version__
from robot_rl.cli.bench import add_bench_parser
from robot_rl.cli.bridge import add_bridge_parser
from robot_rl.cli.data import add_data_parser
from robot_rl.cli.encoder import add_encoder_parser
from robot_rl.cli.errors import DEBUG_ENV, run_reported
from robot_rl.cli.finetune import add_finetune_parser
from robot_rl.cli.record import add_record_parser
from robot_rl.cli.reward import add_reward_parser
from robot_rl.cli.sim import add_sim_parser
from robot_rl.cli.teleop import add_teleop_parser
from robot_rl.cli.train import add_train_parser

GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_train_parser, add_finetune_parser, add_record_parser, add_data_parser, add_sim_parser, add_bridge_parser, add_bench_parser,
    add_teleop_parser, add_encoder_parser, add_reward_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl",
        description="Off-policy RL for robot arms: MuJoCo simulation, demonstrations, ROS 2 hardware.")
    parser.add_argument("--version", action="version", version=f"robot-rl {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"print the traceback of reported errors too (or set {DEBUG_ENV}=1)")
    subparsers = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for add_group in GROUPS:
        add_group(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console script ``robot-rl``; returns the exit code."""
    args = build_parser().parse_args(argv)
    command = " ".join(name for name in (args.group, getattr(args, "command", None)) if name)
    return run_reported(command, lambda: args.handler(args), debug=args.debug)
