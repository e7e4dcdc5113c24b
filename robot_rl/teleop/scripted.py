"""A device whose input is set in code: for tests and for a scripted (virtual) operator.

:class:`ScriptedDevice` reports whatever was last given to :meth:`ScriptedDevice.set`, stamped
with the time of that call, so a script that stops calling ``set`` looks like a silent device to
the safety filter, and :meth:`ScriptedDevice.unplug` looks like a disconnected one. It is not a
registered device kind: code builds it directly and hands it to
:class:`~robot_rl.teleop.source.TeleopActionSource` like any other device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from robot_rl.teleop.device import LABELS, TeleopCommand


class ScriptedDevice:
    """A :class:`~robot_rl.teleop.device.TeleopDevice` driven by :meth:`set` (see the module docstring)."""

    help = "scripted device (input set in code)"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._command = TeleopCommand.idle(clock())
        self.closed = False

    def set(self, twist: Any = None, gripper: float | None = None, deadman: bool = True,
            fault: str | None = None) -> None:
        """New input now: ``twist`` (6 values, m/s and rad/s; default zero; not checked, so a
        test can inject NaN), gripper target, deadman, an optional fault. Labels are cleared."""
        values = np.zeros(6) if twist is None else np.asarray(twist, dtype=np.float64)
        self._command = TeleopCommand(values, gripper, deadman, timestamp=self._clock(),
                                      connected=self._command.connected, fault=fault)

    def press(self, label: str) -> None:
        """Press ``success``, ``failure`` or ``reset`` (reported by the next poll only)."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}; labels are {', '.join(LABELS)}")
        self._command = replace(self._command, **{label: True}, timestamp=self._clock())

    def unplug(self) -> None:
        self._command = replace(self._command, connected=False)

    def plug(self) -> None:
        """Connected again, input as before the unplug, stamped now."""
        self._command = replace(self._command, connected=True, timestamp=self._clock())

    def poll(self) -> TeleopCommand:
        command = self._command
        self._command = replace(command, success=False, failure=False, reset=False)  # labels are edges
        return command

    def close(self) -> None:
        self.closed = True
