"""The teleoperation device contract: what every backend's ``poll()`` returns.

A device turns whatever a person handles (keys, sticks, a 3D mouse, a ROS 2 topic) into one
:class:`TeleopCommand` per ``poll()``: an end-effector twist, a gripper target, a deadman and
three label buttons, a timestamp and whether the device is connected. Devices do not decide
what is safe to send to the arm; :class:`~robot_rl.teleop.safety.TeleopSafety` does, from the
command alone, so every backend gets the same deadman, silence, disconnect and bad-input rules.

Units: the twist is ``(vx, vy, vz, wx, wy, wz)`` in m/s and rad/s, in the frame the
:class:`~robot_rl.teleop.config.TeleopConfig` names (``base``: the robot base frame;
``tool``: the tool frame, rotated into the base frame with the tool's orientation by
:class:`~robot_rl.teleop.source.TeleopActionSource`). Gripper targets use the env's action
convention: −1 fully open, +1 fully closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from robot_rl.teleop.config import TeleopConfig

#: Names of the twist components, in order (also the keys of a mapping file's ``axes``).
AXES = ("x", "y", "z", "roll", "pitch", "yaw")
#: The label buttons a device may report.
LABELS = ("success", "failure", "reset")


class DeviceUnavailableError(RuntimeError):
    """A device backend cannot run here: its library is missing, no such device is plugged in,
    or it has no permission to open it. The message says what to install or check."""


@dataclass(frozen=True)
class TeleopCommand:
    """What a device reported at one ``poll()``.

    ``twist``: ``(vx, vy, vz, wx, wy, wz)``, m/s and rad/s, in the configured frame (zero when the
    operator does not move anything). ``gripper``: target opening in ``[-1 open, +1 closed]``, or
    None for "leave the gripper where it is". ``deadman``: the operator is holding the device's
    enable control (hold to move; also the "intervene" signal: the person is in control).
    ``success`` / ``failure`` / ``reset``: that button was pressed since the previous poll (an
    edge, so a held button counts once). ``timestamp``: ``time.monotonic()`` of the newest input
    this command reflects (the poll itself for devices read synchronously, the message arrival
    for topic devices), so the safety filter can tell a silent device from an idle one.
    ``connected``: the device is there. ``fault``: why the input was unusable (a NaN or
    out-of-range axis, a button index the device does not have); the safety filter then holds.
    """

    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))
    gripper: float | None = None
    deadman: bool = False
    success: bool = False
    failure: bool = False
    reset: bool = False
    timestamp: float = 0.0
    connected: bool = True
    fault: str | None = None

    @classmethod
    def idle(cls, timestamp: float, connected: bool = True, fault: str | None = None) -> TeleopCommand:
        """No motion, no gripper target, nothing pressed."""
        return cls(timestamp=timestamp, connected=connected, fault=fault)

    def label(self) -> str | None:
        """The label button pressed (``success``, ``failure`` or ``reset``), if any."""
        return next((name for name in LABELS if getattr(self, name)), None)


class TeleopDevice(Protocol):
    """A teleoperation input device (see the module docstring)."""

    #: Controls shown to the operator (the key map for the keyboard), one or more lines.
    help: str

    def poll(self) -> TeleopCommand:
        """The device's state now. Never blocks for longer than reading what is already there;
        a device that went away returns ``connected=False`` (backends do not raise for that)."""

    def close(self) -> None:
        """Release the device (restore the terminal, close the handle, leave the ROS graph).
        Idempotent."""


def shape_twist(normalized: Sequence[float], config: TeleopConfig, deadband: bool = True) -> np.ndarray:
    """Device axes in ``[-1, 1]`` (order :data:`AXES`) → twist in m/s and rad/s.

    Per axis: the deadband (``|v| <= config.deadband`` → 0, the rest rescaled so the output still
    starts at 0 and reaches 1; springs of sticks and pucks do not centre exactly), inversion
    (``config.invert``), then ``linear_speed`` / ``angular_speed`` times ``config.scale``.
    One place for every backend, so a setting means the same on every device.
    """
    values = np.asarray(normalized, dtype=np.float64).copy()
    if deadband and config.deadband > 0:
        magnitude = np.maximum(np.abs(values) - config.deadband, 0.0) / (1.0 - config.deadband)
        values = np.sign(values) * magnitude
    for name in config.invert:
        values[AXES.index(name)] *= -1.0
    speeds = np.array([config.linear_speed] * 3 + [config.angular_speed] * 3)
    return values * speeds * np.asarray(config.scale, dtype=np.float64)
