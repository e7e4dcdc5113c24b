"""``robot-rl data``: inspect and convert episode stores (replay and demonstrations share one format).

The conversions (merge, split, filter, diffusion_policy import/export) live in
:mod:`robot_rl.data.tools`; each writes a new output, refuses to overwrite one, and prints a
JSON summary on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from robot_rl.cli.common import positive_float, print_json, progress_bar
from robot_rl.data.store import SOURCES


def data_info(args: argparse.Namespace) -> int:
    from robot_rl.data import store_info

    info = store_info(args.path)
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
    print(f"chunk contents not checked (this reads the commit record and episode tables only); "
          f"`robot-rl data verify {info['path']}` reads every chunk")
    return 0


def data_verify(args: argparse.Namespace) -> int:
    """Read every chunk; list the damaged ones on stdout and fail (exit 1) if there are any."""
    from robot_rl.data.schema import CorruptDataError
    from robot_rl.data.verify import problem_line, verify_store

    with tool_progress("verify") as progress:
        report = verify_store(args.path, progress=progress)
    if args.json:
        print_json(report, indent=2)
    else:
        print(f"{report['path']}: read {report['chunks']} chunks of {report['arrays']} arrays, "
              f"{len(report['problems'])} problem(s)")
        for problem in report["problems"]:
            print(f"  {problem_line(problem)}")
    if not report["ok"]:
        raise CorruptDataError(f"{report['path']}: {len(report['problems'])} damaged or missing chunk(s) "
                               f"(listed on stdout); committed episodes that use them cannot be trusted")
    return 0


@contextmanager
def tool_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback for :mod:`robot_rl.data.tools` drawing a progress bar
    on stderr (closed however the tool ends)."""
    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress_bar(total, description)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def data_merge(args: argparse.Namespace) -> int:
    from robot_rl.data.tools import merge_stores

    with tool_progress("merge") as progress:
        print_json(merge_stores(args.out, args.inputs, progress=progress), indent=2)
    return 0


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def data_split(args: argparse.Namespace) -> int:
    from robot_rl.data.tools import split_store

    with tool_progress("split") as progress:
        print_json(split_store(args.input, args.train, args.valid, args.valid_fraction, args.seed, progress), indent=2)
    return 0


def data_filter(args: argparse.Namespace) -> int:
    from robot_rl.data.tools import filter_store

    with tool_progress("filter") as progress:
        print_json(filter_store(args.input, args.out, args.successful_only, args.sources, args.tasks, progress),
                   indent=2)
    return 0


def data_import_diffusion_policy(args: argparse.Namespace) -> int:
    from robot_rl.data.tools import import_diffusion_policy

    with tool_progress("import") as progress:
        print_json(import_diffusion_policy(args.path, args.out, source=args.source, success=args.success or None,
                                           control_hz=args.control_hz, task=args.task,
                                           allow_nonfinite=args.allow_nonfinite, progress=progress), indent=2)
    return 0


def data_export_diffusion_policy(args: argparse.Namespace) -> int:
    from robot_rl.data.tools import export_diffusion_policy

    with tool_progress("export") as progress:
        print_json(export_diffusion_policy(args.input, args.out, progress=progress), indent=2)
    return 0


def add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("data", help="inspect and convert episode stores (*.zarr)",
                                  description="Commands on Zarr episode stores. Conversions write a new output "
                                              "(never an existing path) and appear there only when complete.")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    info = commands.add_parser("info", help="summarise a store",
                               description="Episodes, steps, features, sources and success rate of a store.")
    info.add_argument("path", type=Path, metavar="PATH")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=data_info)

    verify = commands.add_parser(
        "verify", help="read every chunk of a store and report damaged ones",
        description="Read back every chunk holding committed rows, in every array, and list each one that is "
                    "missing or cannot be decoded (array, chunk index, rows, file, error). Exit code 1 if any. "
                    "Changes nothing on disk.")
    verify.add_argument("path", type=Path, metavar="PATH")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=data_verify)

    merge = commands.add_parser("merge", help="concatenate stores into a new one",
                                description="Write the episodes of every input, in order, to OUT. Inputs must "
                                            "share features, observation keys and control rate; episode tables "
                                            "(success, source, seed, task) are kept.")
    merge.add_argument("out", type=Path, metavar="OUT")
    merge.add_argument("inputs", type=Path, nargs="+", metavar="IN")
    merge.set_defaults(handler=data_merge)

    split = commands.add_parser("split", help="split a store by episode into training and validation stores",
                                description="Send a random VALID_FRACTION of the episodes (at least one) to "
                                            "--valid and the rest to --train, keeping their order.")
    split.add_argument("input", type=Path, metavar="IN")
    split.add_argument("--train", type=Path, required=True, metavar="OUT1")
    split.add_argument("--valid", type=Path, required=True, metavar="OUT2")
    split.add_argument("--valid-fraction", type=fraction, default=0.1, help="(default: 0.1)")
    split.add_argument("--seed", type=int, default=0, help="seed of the random split (default: 0)")
    split.set_defaults(handler=data_split)

    filtered = commands.add_parser("filter", help="copy the episodes that pass filters into a new store",
                                   description="Copy the episodes of IN that pass every given filter to OUT.")
    filtered.add_argument("input", type=Path, metavar="IN")
    filtered.add_argument("out", type=Path, metavar="OUT")
    filtered.add_argument("--successful-only", action="store_true", help="keep successful episodes only")
    filtered.add_argument("--source", dest="sources", nargs="+", choices=list(SOURCES), default=[], metavar="SOURCE",
                          help=f"keep episodes from any of these sources ({', '.join(SOURCES)})")
    filtered.add_argument("--task", dest="tasks", nargs="+", default=[], metavar="TASK",
                          help="keep episodes of any of these task names")
    filtered.set_defaults(handler=data_filter)

    importer = commands.add_parser(
        "import-diffusion-policy", help="convert a diffusion_policy Zarr store into an episode store",
        description="Read a diffusion_policy ReplayBuffer store (data/<key> arrays, meta/episode_ends; Zarr v2 "
                    "directory or .zip) into a new episode store: every data/<key> becomes a feature of that "
                    "name, action becomes float32 (not rescaled), reward/terminated default to 0/False, the "
                    "final observation is the last step's. See datasets/README.md.")
    importer.add_argument("path", type=Path, metavar="PATH")
    importer.add_argument("out", type=Path, metavar="OUT")
    importer.add_argument("--source", choices=list(SOURCES),
                          help="source of every episode (default: human, or the tables of a robot_rl export)")
    importer.add_argument("--success", action="store_true",
                          help="mark every episode successful (default: False, or the tables of a robot_rl export)")
    importer.add_argument("--control-hz", type=positive_float, metavar="HZ",
                          help="control rate the data was recorded at (required unless a robot_rl export)")
    importer.add_argument("--task", metavar="NAME", help="task name of every episode")
    importer.add_argument("--allow-nonfinite", action="store_true",
                          help="import NaN/inf values in float arrays instead of refusing the store")
    importer.set_defaults(handler=data_import_diffusion_policy)

    exporter = commands.add_parser(
        "export-diffusion-policy", help="write an episode store as a diffusion_policy Zarr v2 store",
        description="Write IN as a Zarr v2 store that diffusion_policy's ReplayBuffer opens: data/<feature> "
                    "per step feature, meta/episode_ends (int64), plus robot_rl's episode tables for the way back.")
    exporter.add_argument("input", type=Path, metavar="IN")
    exporter.add_argument("out", type=Path, metavar="OUT")
    exporter.set_defaults(handler=data_export_diffusion_policy)
