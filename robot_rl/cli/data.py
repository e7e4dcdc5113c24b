"""``robot-rl data``: inspect episode stores (replay and demonstrations share one format)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robot_rl.cli.common import CommandError, print_json


def data_info(args: argparse.Namespace) -> int:
    from robot_rl.data import StoreError, store_info

    try:
        info = store_info(args.path)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        print_json(info, indent=2)
        return 0
    print(f"{info['path']}: {info['episodes']} episodes, {info['steps']} steps "
          f"({info['duration_s']:.0f} s at {info['control_hz']} Hz), generation {info['generation']}")
    rate = "n/a" if info["success_rate"] is None else f"{info['success_rate']:.1%}"
    print(f"success rate: {rate}; sources: {json.dumps(info['sources'])}; tasks: {json.dumps(info['tasks'])}")
    print("features:")
    for name, spec in info["features"].items():
        print(f"  {name:<16} {spec['dtype']:<8} {tuple(spec['shape'])}")
    return 0


def add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("data", help="inspect episode stores (*.zarr)",
                                  description="Commands on Zarr episode stores.")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    info = commands.add_parser("info", help="summarise a store",
                               description="Episodes, steps, features, sources and success rate of a store.")
    info.add_argument("path", type=Path, metavar="PATH")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=data_info)
