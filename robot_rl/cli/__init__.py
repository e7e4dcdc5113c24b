"""Command-line interface: ``robot-rl <group> <command> [options]``.

Every command group is a module here with one ``add_<group>_parser(subparsers)`` function that
registers its commands; every command is one ``<group>_<command>(args) -> int`` function bound
with ``set_defaults(handler=...)``. Adding a group means writing such a module and listing its
adder in :data:`GROUPS`. Problems with the user's request (bad config, unknown task, no OpenGL for
rendering, no ROS 2 bridge to connect to) end as one line on stderr and exit code 2; tracebacks are
for bugs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from robot_rl import __version__
from robot_rl.cli.bench import add_bench_parser
from robot_rl.cli.bridge import add_bridge_parser
from robot_rl.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, CommandError
from robot_rl.cli.data import add_data_parser
from robot_rl.cli.record import add_record_parser
from robot_rl.cli.sim import add_sim_parser
from robot_rl.cli.train import add_train_parser
from robot_rl.config import ConfigError

GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_train_parser, add_record_parser, add_data_parser, add_sim_parser, add_bridge_parser, add_bench_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl",
        description="Off-policy RL for robot arms: MuJoCo simulation, demonstrations, ROS 2 hardware.")
    parser.add_argument("--version", action="version", version=f"robot-rl {__version__}")
    subparsers = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for add_group in GROUPS:
        add_group(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console script ``robot-rl``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CommandError, ConfigError, ConnectionError) as exc:  # ConnectionError: no ROS 2 bridge answered
        message = " ".join(str(exc).split())  # one line, whatever the exception text
        print(f"robot-rl: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("robot-rl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
