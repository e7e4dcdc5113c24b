"""The teleoperation safety filter between any device and the arm's command.

:class:`TeleopSafety` decides, once per control step, from the device's latest
:class:`~robot_rl.teleop.device.TeleopCommand` alone, whether the operator's twist and gripper
target may go to the arm. The rules are the same for every device:

* **deadman**: the twist passes only while the deadman is held; released, the twist is zero and
  the gripper stays where it is (the arm holds position). Not a fault, no event.
* **disconnect**: a device reporting ``connected=False`` (unplugged pad, closed terminal, a poll
  that raised) → hold, and a ``disconnected`` event; ``reconnected`` when it is back.
* **silence**: input older than ``config.silence_timeout`` (a topic publisher that died, a
  frozen driver) → hold, and a ``silent`` event; ``resumed`` when fresh input arrives. Checked
  at every step, so the hold starts at the first control step after the timeout, i.e. within
  one control period of it.
* **bad input**: a command with a ``fault`` (NaN or out-of-range axis, missing axis), a twist
  that is not 6 finite numbers or a gripper target outside ``[-1, 1]`` → hold (zero twist,
  gripper unchanged), a ``bad_input`` event; never a clipped or partial motion.
* **gripper**: the gripper command moves towards the operator's target by at most
  ``config.gripper_rate · control_period`` per step (no slamming shut), and after the start of
  an episode and after any fault (e.g. a reconnect) the operator's gripper control is ignored
  until it moves: a trigger left squeezed, or a pad that comes back reporting "open" while the
  gripper holds an object, changes nothing until the person actually works the control
  (pick-up, as with motorised faders). Before the first command of an episode the gripper
  command starts from the measured opening; after that from the last command sent, so a
  reconnect never loosens a grasp.

Holding means: zero twist and the previous gripper command. The env turns a zero action into
"stay at the current target" (:class:`~robot_rl.envs.arm_env.ArmEnv`), and on a real arm the
action then still passes the bridge's safety supervisor (workspace, rate limits, e-stop,
watchdogs): this filter is an extra layer on the operator's side, not a replacement.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import TeleopCommand

log = logging.getLogger("robot_rl.teleop")

#: Hold reasons that are faults (logged as events); "deadman" is the normal idle state.
FAULTS = ("disconnected", "silent", "bad_input")
#: How far the gripper control must move from where it was when re-armed to take over again.
TAKEOVER_DELTA = 0.1
_EVENT_HISTORY = 1000


@dataclass(frozen=True)
class TeleopEvent:
    """A change of the teleop link: ``kind`` is a fault (:data:`FAULTS`) that made the arm hold,
    or ``reconnected`` / ``resumed`` when it ended; ``time`` is the filter's clock (s)."""

    time: float
    kind: str
    detail: str

    def row(self) -> dict[str, Any]:
        """A flat record for logs (CSV / JSON)."""
        return {"time": round(self.time, 6), "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class SafeCommand:
    """What may go to the arm this step.

    ``twist``: the operator's twist, or zeros when holding. ``gripper``: the gripper command
    (−1 open … +1 closed), rate-limited. ``engaged``: the operator is driving the arm (deadman
    held, input valid): the step is the human's. ``hold``: why the arm holds (``deadman`` or a
    fault), None when engaged. ``label``: ``success`` / ``failure`` / ``reset`` pressed, only
    ever taken from valid input.
    """

    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))
    gripper: float = -1.0
    engaged: bool = False
    hold: str | None = "deadman"
    label: str | None = None


class TeleopSafety:
    """The filter described in the module docstring. ``control_period``: seconds per step (the
    env's ``dt``); ``on_event``: called with every :class:`TeleopEvent` (also logged to logger
    ``robot_rl.teleop`` and kept in :attr:`events`)."""

    def __init__(self, config: TeleopConfig, control_period: float,
                 on_event: Callable[[TeleopEvent], None] | None = None) -> None:
        if not control_period > 0:
            raise ValueError(f"control_period must be > 0 s, got {control_period!r}")
        self.config = config
        self.control_period = control_period
        self.on_event = on_event
        self.events: deque[TeleopEvent] = deque(maxlen=_EVENT_HISTORY)
        self._fault: str | None = None  # the fault holding the arm now, if any
        self.reset()

    def reset(self) -> None:
        """A new episode: the gripper command restarts from the measured opening, and the
        operator's gripper control must move before it counts."""
        self._gripper: float | None = None
        self._rearm()

    def follow(self, gripper: float) -> None:
        """Another source (the policy, during training with interventions) drove this step and
        sent gripper command ``gripper``: when the operator takes over, the gripper starts from
        there (not from a stale command of this filter), and the operator's gripper control must
        move before it counts, as after a fault. Call it for every step the operator did not drive."""
        self._gripper = float(np.clip(gripper, -1.0, 1.0)) if math.isfinite(gripper) else self._gripper
        self._rearm()

    def filter(self, command: TeleopCommand, now: float, measured_gripper: float) -> SafeCommand:
        """This step's safe command from the device's ``command`` at time ``now`` (same clock as
        the command's timestamp). ``measured_gripper``: the gripper opening now, in command units
        (−1 open … +1 closed), used only before the first command of an episode."""
        if self._gripper is None:
            self._gripper = float(np.clip(measured_gripper, -1.0, 1.0))
        fault = self._check(command, now)
        if fault is not None:
            kind, detail = fault
            if self._fault != kind:
                self._report(now, kind, detail)
                self._fault = kind
            self._rearm()
            return SafeCommand(np.zeros(6), self._gripper, engaged=False, hold=kind)
        if self._fault is not None:
            self._report(now, "reconnected" if self._fault == "disconnected" else "resumed",
                         f"after {self._fault}")
            self._fault = None
        label = command.label()
        if not command.deadman:
            return SafeCommand(np.zeros(6), self._gripper, engaged=False, hold="deadman", label=label)
        self._gripper = self._next_gripper(command.gripper)
        return SafeCommand(np.array(command.twist, dtype=np.float64), self._gripper, engaged=True, hold=None,
                           label=label)

    # ------------------------------------------------------------------ internals
    def _check(self, command: TeleopCommand, now: float) -> tuple[str, str] | None:
        """(fault kind, detail) if ``command`` must not move the arm, else None."""
        if not command.connected:
            return "disconnected", command.fault or "the device is not connected"
        age = now - command.timestamp
        if not age <= self.config.silence_timeout:  # written so that a NaN timestamp is silence too
            return "silent", (f"no input for {age:.3f} s (silence_timeout = {self.config.silence_timeout:g} s)")
        if command.fault is not None:
            return "bad_input", command.fault
        twist = np.asarray(command.twist)
        if twist.shape != (6,) or twist.dtype.kind not in "iuf" or not np.all(np.isfinite(twist)):
            return "bad_input", f"twist must be 6 finite numbers, got {command.twist!r}"
        gripper = command.gripper
        if gripper is not None and (isinstance(gripper, bool) or not isinstance(gripper, numbers.Real)
                                    or not math.isfinite(gripper) or abs(gripper) > 1.0):
            return "bad_input", f"gripper target must be in [-1, 1], got {gripper!r}"
        return None

    def _next_gripper(self, target: float | None) -> float:
        """The gripper command one step towards ``target`` once the operator has taken over."""
        if target is None:
            self._armed_at = None  # neutral seen: any target from now on is a fresh intent
            return self._gripper
        if not self._taken_over:
            armed = self._armed_at
            if armed is _UNSEEN:
                self._armed_at = armed = target
            if armed is not None and abs(target - armed) <= TAKEOVER_DELTA:
                return self._gripper
            self._taken_over = True
        step = self.config.gripper_rate * self.control_period
        return float(self._gripper + np.clip(target - self._gripper, -step, step))

    def _rearm(self) -> None:
        self._taken_over = False
        self._armed_at: float | None | object = _UNSEEN

    def _report(self, now: float, kind: str, detail: str) -> None:
        event = TeleopEvent(now, kind, detail)
        self.events.append(event)
        if kind in FAULTS:
            log.warning("teleop: arm holds (%s: %s)", kind, detail)
        else:
            log.info("teleop: %s (%s)", kind, detail)
        if self.on_event is not None:
            self.on_event(event)


_UNSEEN = object()  # no gripper value seen since the filter was re-armed
