"""Helpers shared by every ``robot-rl`` command group."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from robot_rl.config import parse_overrides
from robot_rl.envs.config import ENV_IDS, TASKS

DEFAULT_OUT_DIR = "robot_rl_output"
TASK_BY_ENV_ID = {env_id: task for task, env_id in ENV_IDS.items()}


class CommandError(Exception):
    """A problem with the user's request; reported as a one-line message, exit code 2
    (:mod:`robot_rl.cli.errors`)."""


# --------------------------------------------------------------------------- shared helpers
def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0 (e.g. a seed)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def task_name(task_or_env_id: str) -> str:
    """``pick`` or ``RobotRL/ArmPickCube-v0`` → ``pick``; anything else is a CommandError."""
    if task_or_env_id in ENV_IDS:
        return task_or_env_id
    if task_or_env_id in TASK_BY_ENV_ID:
        return TASK_BY_ENV_ID[task_or_env_id]
    choices = ", ".join([*TASKS, *ENV_IDS.values()])
    raise CommandError(f"unknown task {task_or_env_id!r}; choose one of {choices}")


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE ...`` (repeatable; values parsed as YAML) into ``args.overrides``."""
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
                        help=f"override config values, e.g. --set {example}")


def add_env_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set KEY=VALUE ...``, layered over the task's default config."""
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="YAML env config layered over the task's defaults (robot_rl/configs/tasks)")
    add_set_option(parser, "task.reward_type=sparse control.use_yaw=true")


def env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``gymnasium.make`` keyword arguments from :func:`add_env_options`'s options."""
    return {"config": args.config, "overrides": parse_overrides(args.overrides)}


@contextmanager
def simulator_errors_reported() -> Iterator[None]:
    """Turn "MuJoCo cannot be imported" and "no OpenGL backend" into one-line
    :class:`CommandError` s (their messages say what to install)."""
    try:
        from robot_rl.sim import RenderingUnavailableError
    except ImportError as exc:
        if exc.name != "mujoco":
            raise
        raise CommandError(str(exc)) from exc
    try:
        yield
    except RenderingUnavailableError as exc:
        raise CommandError(str(exc)) from exc


def progress_bar(total: int, description: str) -> Any:
    """A tqdm progress bar on stderr (stdout stays clean for JSON)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, dynamic_ncols=True)


def print_json(data: Any, indent: int | None = None) -> None:
    print(json.dumps(data, indent=indent), flush=True)
