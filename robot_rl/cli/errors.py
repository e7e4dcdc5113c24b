"""How ``robot-rl`` ends when something goes wrong: one line, an exit code, no traceback.

Every command runs inside :func:`run_reported`. An exception of a kind listed in :data:`EXIT_CODES`
(matched along the exception's class hierarchy, so the most specific entry wins) becomes one
line on stderr, ``robot-rl <command>: error: <message>``, and its exit code:

- ``2`` (:data:`EXIT_USAGE`): the request cannot be done as given. Bad arguments or config, an
  input that is missing, not a store, of the wrong features, holding non-numeric or non-finite
  data, a damaged checkpoint, an output that already exists, no ROS 2 bridge to talk to.
- ``1`` (:data:`EXIT_RUNTIME`): the request was fine but failed while running. Damaged chunks on
  disk, a store write that failed, an I/O error, a diverged learner, an arm that did not come back.
- ``130`` / ``143``: interrupted by SIGINT (Ctrl-C) / SIGTERM after the clean-up ran (stores
  commit the episodes already queued; see :func:`terminate_gracefully`).

Anything else is a bug and keeps its traceback. ``--debug`` (or ``ROBOT_RL_DEBUG=1``) prints the
traceback of reported errors too, for developers.

The table names classes by their qualified name instead of importing them: being ready to report
a checkpoint error must not cost a torch import (``robot-rl data info`` stays fast). A test
checks that every name resolves to a class.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, the shell's convention
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
DEBUG_ENV = "ROBOT_RL_DEBUG"

EXIT_CODES: dict[str, int] = {
    # Problems with the request.
    "robot_rl.cli.common.CommandError": EXIT_USAGE,
    "robot_rl.config.ConfigError": EXIT_USAGE,
    "robot_rl.data.schema.StoreError": EXIT_USAGE,  # not a store, another env's store, output exists, bad input data
    "robot_rl.training.checkpoint.CheckpointError": EXIT_USAGE,
    "robot_rl.training.loop.RunDirError": EXIT_USAGE,
    "robot_rl.sim.sim_arm.RenderingUnavailableError": EXIT_USAGE,
    "robot_rl.teleop.device.DeviceUnavailableError": EXIT_USAGE,  # no such device, or it cannot be opened
    "builtins.ValueError": EXIT_USAGE,  # argument and data validation (ConfigError is one too)
    "builtins.FileNotFoundError": EXIT_USAGE,
    "builtins.NotADirectoryError": EXIT_USAGE,
    "builtins.IsADirectoryError": EXIT_USAGE,
    "builtins.ConnectionError": EXIT_USAGE,  # no ROS 2 bridge answered: start one first
    # Failures while running.
    "robot_rl.data.schema.CorruptDataError": EXIT_RUNTIME,
    "robot_rl.data.schema.StoreWriteError": EXIT_RUNTIME,
    "robot_rl.training.loop.TrainingDiverged": EXIT_RUNTIME,
    "robot_rl.training.rollout.RobotUnavailableError": EXIT_RUNTIME,
    "robot_rl.robot.RobotError": EXIT_RUNTIME,
    "robot_rl.envs.arm_env.NonFiniteStateError": EXIT_RUNTIME,
    "builtins.OSError": EXIT_RUNTIME,  # disk full, permissions, I/O errors
}


class Terminated(BaseException):
    """SIGTERM as an exception of the main thread (a BaseException, like KeyboardInterrupt, so
    that ``except Exception`` does not swallow it): ``finally`` blocks and context managers run,
    so stores commit their queued episodes and staged outputs are removed before the exit."""


def exit_code(exc: BaseException) -> int | None:
    """The exit code :data:`EXIT_CODES` gives ``exc`` (its most specific listed class), or None
    for an exception that is a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, Terminated):
        return EXIT_TERMINATED
    for cls in type(exc).__mro__:
        code = EXIT_CODES.get(f"{cls.__module__}.{cls.__qualname__}")
        if code is not None:
            return code
    return None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace collapsed), or its class name if empty."""
    return " ".join(str(exc).split()) or type(exc).__name__


def debug_requested(flag: bool = False) -> bool:
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextmanager
def terminate_gracefully() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` in the main thread. Further SIGTERMs are
    ignored from then on, so a second one cannot break off the clean-up that commits the queued
    episodes; SIGKILL remains the way to stop at once. A no-op outside the main thread (signal
    handlers can only be installed there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(f"terminated by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_reported(command: str, run: Callable[[], int], debug: bool = False) -> int:
    """``run()`` under :func:`terminate_gracefully`; a reported exception becomes one line on
    stderr and its exit code (with its traceback first when debugging), anything else propagates."""
    try:
        with terminate_gracefully():
            return run()
    except BaseException as exc:
        code = exit_code(exc)
        if code is None:
            raise
        if debug_requested(debug):
            traceback.print_exception(exc, file=sys.stderr)
        if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            reason = "interrupted" if code == EXIT_INTERRUPTED else one_line(exc)
            print(f"robot-rl {command}: {reason}", file=sys.stderr)
        else:
            print(f"robot-rl {command}: error: {one_line(exc)}", file=sys.stderr)
        return code
