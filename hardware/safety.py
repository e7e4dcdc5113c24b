"""The safety supervisor: the one gate between every action source and the arm.

Whatever sends commands (a learner through ``Ros2Arm``, a teleop device, a script publishing on
the bridge's topics) reaches the robot only through :meth:`SafetySupervisor.command_for_tick`,
called once per control tick of the bridge node. Per tick it decides what the arm tracks:

* **e-stop** engaged → hold the pose the arm had when the stop arrived (latched until released);
* **stale state** (no fresh robot state within ``state_timeout``) → hold the last measured pose;
* **stale command** (no command within ``command_timeout``: the learner or teleop died or
  stalled) → hold the current pose, resume on the next command;
* otherwise the latest command, **clipped** to the joint limits and the end-effector workspace
  box and **rate-limited** (joint speed, tool speed and rotation rate, gripper speed) relative to
  the previous tick's output, so no source can make the arm jump.

Non-finite or malformed commands are rejected when they arrive and the previous command stays in
force. Every intervention becomes a :class:`SafetyEvent`; clipping is reported when it starts
(with a count when it ends), not at every tick, so a 500 Hz loop cannot flood the event log. Rate
limiting is the normal way a 10 Hz policy's step targets become smooth ramps, so it is reported
only when it lasts ``rate_limit_report_after`` seconds (a source asking persistently for more
speed than allowed).

The limits themselves are validated as a whole when a :class:`SafetyConfig` is built (every value
finite, positive, within :data:`ABSOLUTE_MAXIMA`) and, for a real arm, against the maxima of its
config file (:class:`SafetyMaxima`), so a limit can be tightened but never removed or loosened.

Units: metres, radians, seconds; quaternions ``(w, x, y, z)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np

from robot_rl.config import ConfigError, FieldError
from robot_rl.geometry import quat_conjugate, quat_from_axis_angle, quat_multiply, quat_to_rotvec
from robot_rl.robot import Command, EndEffectorCommand, JointCommand, RobotSpec, RobotState

log = logging.getLogger(__name__)

ToolPosition = Callable[[np.ndarray], np.ndarray]  # joint positions -> tool centre point (3,)


#: The limit fields of :class:`SafetyConfig` and :class:`SafetyMaxima` that are single numbers
#: (the workspace box is checked per axis).
SCALAR_LIMITS = ("max_tool_speed", "max_tool_rotation_speed", "max_joint_speed_fraction", "max_gripper_speed",
                 "state_timeout", "command_timeout")
#: Longest ``rate_limit_report_after`` (s): it only decides when rate limiting becomes an event.
MAX_RATE_LIMIT_REPORT_AFTER = 60.0
#: Least robot time (s) between two ``estop_release_refused`` events.
REFUSAL_REPORT_INTERVAL = 1.0


@dataclass(frozen=True)
class SafetyMaxima:
    """The loosest safety limits allowed for one arm (its config file's ``safety_maxima``).

    A :class:`SafetyConfig` may tighten every limit, never loosen it past these: speeds and
    timeouts at most these values, the workspace box inside this box
    (:meth:`SafetyConfig.check_within`). The defaults are the absolute maxima, which hold for
    every arm, the simulated one included; an arm's own maxima must lie within them.
    Units: m/s, rad/s, s, m (base frame); ``max_joint_speed_fraction`` is of each joint's
    velocity limit.
    """

    max_tool_speed: float = 1.0
    max_tool_rotation_speed: float = 3.0
    max_joint_speed_fraction: float = 1.0  # never more than the joints' rated velocity
    max_gripper_speed: float = 0.5
    state_timeout: float = 0.5  # a stale-state watchdog slower than this watches nothing useful
    command_timeout: float = 5.0  # a learner or teleop silent this long is gone
    # Beyond the reach of any arm this is for, in any mounting (a ceiling arm reaches below its base).
    workspace_low: tuple[float, float, float] = (-2.0, -2.0, -2.0)
    workspace_high: tuple[float, float, float] = (2.0, 2.0, 2.0)

    def __post_init__(self) -> None:
        _check_limits(self)
        _check_within(self, _defaults(SafetyMaxima), "absolute")


def _defaults(cls: type) -> SimpleNamespace:
    """The field defaults of dataclass ``cls`` as attributes."""
    return SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class SafetyConfig:
    """Limits the supervisor enforces on top of the robot's own joint limits.

    Validated as a whole when built: every value finite, positive (``max_joint_speed_fraction``
    at most 1) and within :data:`ABSOLUTE_MAXIMA`; the workspace box non-empty. A real arm's
    config additionally bounds it by its own :class:`SafetyMaxima` (:meth:`check_within`), so a
    user can tighten a limit but never remove it (NaN, inf) or loosen it past the arm's maxima.
    """

    workspace_low: tuple[float, float, float] = (0.25, -0.35, 0.005)  # m, tool box in the base frame
    workspace_high: tuple[float, float, float] = (0.75, 0.35, 0.45)
    max_tool_speed: float = 0.5  # m/s of the tool target
    max_tool_rotation_speed: float = 2.0  # rad/s of the tool target
    max_joint_speed_fraction: float = 0.5  # of each joint's velocity limit
    max_gripper_speed: float = 0.2  # m/s of the finger-opening target
    rate_limit_report_after: float = 0.25  # s of continuous rate limiting before it is an event
    state_timeout: float = 0.1  # s without a fresh robot state before holding
    command_timeout: float = 0.5  # s without a command (heartbeat) before holding

    def __post_init__(self) -> None:
        _check_limits(self)
        value = self.rate_limit_report_after
        if not 0 < value <= MAX_RATE_LIMIT_REPORT_AFTER:  # also false for NaN
            raise FieldError("rate_limit_report_after",
                             f"must be finite and in (0, {MAX_RATE_LIMIT_REPORT_AFTER:g}] s, got {value!r}")
        _check_within(self, _defaults(SafetyMaxima), "absolute")

    def check_within(self, maxima: SafetyMaxima, arm: str) -> None:
        """Raise :class:`ConfigError` naming the first limit looser than ``maxima`` (the maxima of
        the arm called ``arm``): a speed or timeout above its maximum, or a workspace bound
        outside the maximum box. The message starts with the key, e.g.
        ``safety.max_tool_speed: must be finite and <= 0.5 (franka_fr3 maximum), got inf``."""
        try:
            _check_within(self, maxima, arm)
        except FieldError as exc:
            raise ConfigError(f"safety.{exc}") from None


# The checks below raise FieldError (key relative to the section); robot_rl.config's loader
# prefixes the section's path, so a loaded file's error reads "safety.max_tool_speed: ...".
def _check_limits(limits: SafetyConfig | SafetyMaxima) -> None:
    """Every scalar limit finite and positive (the joint speed fraction at most 1); the workspace
    box finite and non-empty. Comparisons are written so that NaN fails them."""
    for name in SCALAR_LIMITS:
        value = getattr(limits, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise FieldError(name, f"must be finite and positive, got {value!r}")
    if not limits.max_joint_speed_fraction <= 1.0:
        raise FieldError("max_joint_speed_fraction", f"must be at most 1 (of each joint's velocity limit), "
                                                     f"got {limits.max_joint_speed_fraction!r}")
    for name in ("workspace_low", "workspace_high"):
        for axis, value in enumerate(getattr(limits, name)):
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise FieldError(f"{name}[{axis}]", f"must be finite, got {value!r}")
    if any(not lo < hi for lo, hi in zip(limits.workspace_low, limits.workspace_high)):
        raise FieldError("workspace_low", f"must be below workspace_high on every axis, got "
                                          f"{limits.workspace_low} and {limits.workspace_high}")


def _check_within(limits: SafetyConfig | SafetyMaxima, maxima: SafetyMaxima | SimpleNamespace, arm: str) -> None:
    """``limits`` (already finite) no looser than ``maxima``; the error names the key, the value
    and whose maximum it exceeds."""
    for name in SCALAR_LIMITS:
        value, most = getattr(limits, name), getattr(maxima, name)
        if not value <= most:
            raise FieldError(name, f"must be finite and <= {most:g} ({arm} maximum), got {value!r}")
    for axis, (lo, most_lo) in enumerate(zip(limits.workspace_low, maxima.workspace_low)):
        if not lo >= most_lo:
            raise FieldError(f"workspace_low[{axis}]", f"must be >= {most_lo:g} (the {arm} maximum workspace box), "
                                                       f"got {lo!r}")
    for axis, (hi, most_hi) in enumerate(zip(limits.workspace_high, maxima.workspace_high)):
        if not hi <= most_hi:
            raise FieldError(f"workspace_high[{axis}]", f"must be <= {most_hi:g} (the {arm} maximum workspace box), "
                                                        f"got {hi!r}")


#: The loosest limits any arm may have (the defaults of :class:`SafetyMaxima`).
ABSOLUTE_MAXIMA = SafetyMaxima()


@dataclass(frozen=True)
class SafetyEvent:
    """One intervention or state change of the supervisor (``time`` is the robot's clock, s)."""

    time: float
    kind: str  # see EVENT_KINDS
    detail: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


EVENT_KINDS = (
    "rejected",  # malformed or non-finite command dropped
    "clipped",  # command outside joint limits or the workspace box (start of a clipped run)
    "clipped_end",
    "rate_limited",  # command asked for a faster change than the rate limits allow
    "rate_limited_end",
    "estop_engaged",
    "estop_released",
    "estop_release_refused",  # a release from an untrusted source (the public topic) was ignored
    "state_stale",
    "state_fresh",
    "command_stale",
    "command_fresh",
    "step_error",  # a bridge tick raised; the arm was told to hold (published by the bridge)
    "deadline_missed",  # bridge ticks started too late; slots skipped, the arm held (bridge; rate-limited)
)


class SafetySupervisor:
    """Turns the latest requested command into the command the arm may track this tick.

    Args:
        spec: joint names, position and velocity limits, gripper range of the arm.
        config: workspace box, rate limits and watchdog deadlines.
        tool_position: forward kinematics of the tool centre point; with it, joint targets whose
            tool position leaves the workspace box are refused (held at the last safe target).
        log_events: also log every event as a warning (the bridge); off where the limits are
            part of a simulation rather than incidents (robot_rl.sim.supervised).
    """

    def __init__(self, spec: RobotSpec, config: SafetyConfig = SafetyConfig(),
                 tool_position: ToolPosition | None = None, log_events: bool = True) -> None:
        self.spec = spec
        self.log_events = log_events
        self.config = config
        self.tool_position = tool_position
        self._low = np.asarray(config.workspace_low, dtype=float)
        self._high = np.asarray(config.workspace_high, dtype=float)
        self._requested: Command | None = None
        self._requested_at = -np.inf
        self._output: Command | None = None  # what the arm tracked at the previous tick
        self._hold: JointCommand | None = None  # pose held while a stop condition lasts
        self._estop = False
        self._refused_unreported, self._next_refusal_report = 0, -np.inf  # refused releases, see refuse_release
        self._state_stale = False
        self._command_stale = True  # until the first command arrives the arm holds where it is
        self._limiting: dict[str, int] = {"clipped": 0, "rate_limited": 0}
        self._events: list[SafetyEvent] = []

    # ------------------------------------------------------------------ inputs
    @property
    def estop_engaged(self) -> bool:
        return self._estop

    def set_estop(self, engaged: bool, now: float, source: str = "") -> None:
        """Engage (latched) or release the e-stop; takes effect at the next tick. Who may release
        is the caller's business (the bridge: hardware/estop.py); ``source`` names the requester
        in the event."""
        if engaged != self._estop:
            self._estop = engaged
            detail = "holding position" if engaged else "commands accepted again"
            kind = "estop_engaged" if engaged else "estop_released"
            self._emit(now, kind, f"{detail} ({source})" if source else detail)

    def refuse_release(self, count: int, now: float, where: str) -> None:
        """Report ``count`` release requests from ``where`` that were not honoured: one
        ``estop_release_refused`` event per second at most (robot clock), with the count since
        the last one, so a publisher repeating "release" cannot flood the event log."""
        self._refused_unreported += count
        if now < self._next_refusal_report:
            return
        state = "engaged, the arm keeps holding" if self._estop else "not engaged"
        self._emit(now, "estop_release_refused",
                   f"{self._refused_unreported} release request(s) on {where} ignored (e-stop {state}): release "
                   f"only with `robot-rl bridge estop --release` on the bridge's host (or estop.release_from_topic)")
        self._refused_unreported, self._next_refusal_report = 0, now + REFUSAL_REPORT_INTERVAL

    def submit(self, command: Command, now: float) -> bool:
        """Offer a new command from an action source; False (and a ``rejected`` event) if it is
        malformed or not finite, in which case the previous command stays in force."""
        problem = self._malformed(command)
        if problem:
            self._emit(now, "rejected", problem)
            return False
        self._requested, self._requested_at = command, now
        return True

    def record_rejection(self, problem: str, now: float) -> None:
        """Report a command an input stage could not even parse into a :data:`Command`."""
        self._emit(now, "rejected", problem)

    def reset(self, state: RobotState) -> None:
        """Forget commands and holds after the arm was moved to a new start pose (episode reset);
        the arm holds that pose until the next command."""
        self._requested, self._requested_at = None, -np.inf
        self._output = self._hold_at(state, state.gripper_width)
        self._hold = None
        self._command_stale = True

    # ------------------------------------------------------------------ per tick
    def command_for_tick(self, state: RobotState, now: float, state_age: float, dt: float) -> Command:
        """The command for the tick starting at ``now`` (robot clock, s), given the latest state,
        its age (s) and the tick length (s)."""
        self._watch("state", state_age > self.config.state_timeout, now, f"no fresh robot state for {state_age:.3f} s")
        self._watch("command", now - self._requested_at > self.config.command_timeout, now,
                    f"no command for {now - self._requested_at:.3f} s" if self._requested else "no command yet")
        if self._estop or self._state_stale or self._command_stale or self._requested is None:
            if self._hold is None:
                gripper = self._output.gripper_width if self._output is not None else state.gripper_width
                self._hold = self._hold_at(state, gripper)
            self._output = self._hold
            return self._hold
        self._hold = None
        output, clipped, rate_limited = self._limited(self._requested, state, dt)
        self._track("clipped", clipped, now, report_after=1)
        self._track("rate_limited", rate_limited, now,
                    report_after=max(1, round(self.config.rate_limit_report_after / dt)))
        self._output = output
        return output

    def drain_events(self) -> list[SafetyEvent]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ internals
    def _malformed(self, command: Command) -> str | None:
        if isinstance(command, JointCommand):
            values = np.asarray(command.positions, dtype=float)
            if values.shape != (self.spec.n_joints,):
                return f"joint command needs {self.spec.n_joints} positions, got shape {values.shape}"
        elif isinstance(command, EndEffectorCommand):
            values = np.concatenate([np.ravel(command.position), np.ravel(command.quat)]).astype(float)
            if values.shape != (7,):
                return f"end-effector command needs a 3-vector and a quaternion, got {values.size} values"
            if abs(np.linalg.norm(values[3:]) - 1.0) > 0.01:
                return f"end-effector quaternion is not unit length (norm {np.linalg.norm(values[3:]):.4f})"
        else:
            return f"unsupported command type {type(command).__name__}"
        if not (np.all(np.isfinite(values)) and np.isfinite(command.gripper_width)):
            return f"non-finite command: {command}"
        return None

    def _hold_at(self, state: RobotState, gripper_width: float) -> JointCommand:
        return JointCommand(state.joint_pos.copy(), float(gripper_width))

    def _limited(self, requested: Command, state: RobotState, dt: float) -> tuple[Command, bool, bool]:
        """``requested`` clipped to the limits and rate-limited from the previous output, and
        whether clipping and rate limiting changed it."""
        gripper = float(np.clip(requested.gripper_width, 0.0, self.spec.gripper_max_width))
        previous_gripper = self._output.gripper_width if self._output is not None else state.gripper_width
        step = self.config.max_gripper_speed * dt
        limited_gripper = float(np.clip(gripper, previous_gripper - step, previous_gripper + step))
        gripper_limited = limited_gripper != gripper
        if isinstance(requested, JointCommand):
            requested_positions = np.asarray(requested.positions, dtype=float)
            target = np.clip(requested_positions, self.spec.joint_lower, self.spec.joint_upper)
            clipped = not np.array_equal(target, requested_positions)
            previous = self._output.positions if isinstance(self._output, JointCommand) else state.joint_pos
            if self.tool_position is not None and not self.in_workspace(self.tool_position(target)):
                target, clipped = previous, True  # refuse to enter a pose whose tool is outside the box
            max_step = self.config.max_joint_speed_fraction * self.spec.joint_velocity_limit * dt
            limited = np.clip(target, previous - max_step, previous + max_step)
            rate_limited = gripper_limited or not np.array_equal(limited, target)
            return JointCommand(limited, limited_gripper), clipped, rate_limited
        requested_position = np.asarray(requested.position, dtype=float)
        position = np.clip(requested_position, self._low, self._high)
        clipped = not np.array_equal(position, requested_position)
        quat = np.asarray(requested.quat, dtype=float) / np.linalg.norm(requested.quat)
        if isinstance(self._output, EndEffectorCommand):
            previous_position, previous_quat = self._output.position, self._output.quat
        else:
            previous_position, previous_quat = state.ee_pos, state.ee_quat
        limited_position = previous_position + _norm_limited(position - previous_position, self.config.max_tool_speed * dt)
        rotation = quat_to_rotvec(quat_multiply(quat, quat_conjugate(previous_quat)))
        rotation = _norm_limited(rotation, self.config.max_tool_rotation_speed * dt)
        angle = float(np.linalg.norm(rotation))
        limited_quat = (quat_multiply(quat_from_axis_angle(rotation / angle, angle), previous_quat)
                        if angle > 0 else previous_quat)
        rate_limited = (gripper_limited or not np.allclose(limited_position, position, atol=1e-12)
                        or angle >= self.config.max_tool_rotation_speed * dt * (1 - 1e-9))
        return EndEffectorCommand(limited_position, limited_quat, limited_gripper), clipped, rate_limited

    def in_workspace(self, position: np.ndarray) -> bool:
        return bool(np.all(position >= self._low) and np.all(position <= self._high))

    def _watch(self, what: str, stale: bool, now: float, detail: str) -> None:
        attribute = f"_{what}_stale"
        if stale != getattr(self, attribute):
            setattr(self, attribute, stale)
            self._emit(now, f"{what}_stale" if stale else f"{what}_fresh", detail if stale else "resuming")

    def _track(self, kind: str, active: bool, now: float, report_after: int) -> None:
        """Report a limiting condition once it has lasted ``report_after`` ticks and, with its
        length in ticks, when it ends."""
        count = self._limiting[kind]
        if active:
            if count + 1 == report_after:
                self._emit(now, kind, self._describe_limit(kind))
            self._limiting[kind] = count + 1
        else:
            if count >= report_after:
                self._emit(now, f"{kind}_end", f"after {count} ticks")
            self._limiting[kind] = 0

    def _describe_limit(self, kind: str) -> str:
        requested = self._requested
        if kind == "rate_limited":
            return (f"command has asked for more speed than the rate limits allow for "
                    f"{self.config.rate_limit_report_after} s; approaching it gradually")
        if isinstance(requested, JointCommand):
            positions = np.asarray(requested.positions, dtype=float)
            outside = [name for name, q, lo, hi in zip(self.spec.joint_names, positions, self.spec.joint_lower,
                                                        self.spec.joint_upper) if not lo <= q <= hi]
            if outside:
                return f"joint target outside limits on {', '.join(outside)}"
            return "joint target would take the tool outside the workspace box; held"
        return f"tool target {np.round(requested.position, 4).tolist()} clipped to the workspace box"

    def _emit(self, now: float, kind: str, detail: str) -> None:
        event = SafetyEvent(float(now), kind, detail)
        if self.log_events:
            log.warning("safety: %s at t=%.3f s: %s", kind, now, detail)
        self._events.append(event)


def _norm_limited(vector: np.ndarray, max_norm: float) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector if norm <= max_norm else vector * (max_norm / norm)
