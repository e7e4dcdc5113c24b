"""Checks of every message the arm bridge accepts: one validator per message type.

The bridge (:mod:`robot_rl.hardware.bridge`) receives its command topics as serialised bytes and
checks each message here before anything of it reaches the inbox, the supervisor or the arm:

1. **size**, on the bytes, before anything is deserialised (:meth:`MessageCheck.screen`): at most
   :data:`SMALL_MESSAGE_BYTES`, or for trajectories a bound derived from
   :data:`MAX_TRAJECTORY_POINTS`, whose point count is also read straight from the CDR bytes, so a
   200k-point trajectory costs microseconds, not the seconds it takes to deserialise;
2. **type**: the bytes deserialise as the topic's type, the fields the bridge reads exist, poses
   and twists are in the robot base frame;
3. **length**: exactly as many values as the arm has joints (more are refused, never truncated);
4. **finite**: no NaN or infinity anywhere the bridge reads;
5. **range** (see below), and for quaternions a non-zero norm (they are normalised).

A refused message raises :class:`RejectedMessage` whose text says why; the bridge counts it,
publishes it as a ``rejected`` safety event and carries on.

**Ranges.** Commands *near* the limits are not refused: joint targets beyond the joint limits and
tool targets outside the workspace box are clipped by the
:class:`~robot_rl.hardware.safety.SafetySupervisor` and reported as ``clipped`` (as ros2_control
clamps to joint limits), gripper openings are clipped to the gripper's range. Values *far*
beyond -- more than :data:`JOINT_SLACK` past a joint limit, :data:`POSITION_SLACK` outside the
box, :data:`GRIPPER_SLACK` outside the gripper's range, twists faster than
:data:`TWIST_SPEED_FACTOR` times the supervisor's speed limits -- are refused here: they are a
wrong unit (degrees, millimetres) or a corrupted message, not a target to approach, and bounding
them keeps every later interpolation and integration finite. Resets are not approached but
carried out as sent (the arm is placed, or driven, there), so their joint positions must lie
inside the joint limits and put the tool inside the workspace box; nothing is clipped.

Units: metres, radians, seconds; quaternions ``(w, x, y, z)`` (``x, y, z, w`` on the wire).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from robot_rl.hardware import conversions as conv
from robot_rl.robot import ResetRequest, RobotSpec

ToolPosition = Callable[[np.ndarray], np.ndarray]  # joint positions -> tool centre point (3,), m

#: Largest serialised size (bytes) of every command message but trajectories: a joint command,
#: pose, twist or reset request is a few hundred bytes; the rest is room for long frame ids,
#: Float64MultiArray layouts and reset requests naming many objects.
SMALL_MESSAGE_BYTES = 64 * 1024
#: Longest trajectory accepted, in points (its interpolation runs on every tick).
MAX_TRAJECTORY_POINTS = 10_000
#: How far (rad) past a joint limit a joint target may be and still be clipped rather than refused.
JOINT_SLACK = math.pi
#: How far (m) outside the workspace box a tool target (or an object of a reset) may be.
POSITION_SLACK = 1.0
#: How far (m) outside ``[0, gripper_max_width]`` a gripper opening may be and still be clipped.
GRIPPER_SLACK = 0.1
#: Twists faster than this multiple of the supervisor's tool speed limits are refused.
TWIST_SPEED_FACTOR = 10.0
#: Frames a pose or twist may be given in (the bridge does not transform): the base frame, or
#: unnamed (``""``, what most command-line publishers send).
BASE_FRAMES = ("", conv.BASE_FRAME)


class RejectedMessage(ValueError):
    """A message refused before it reached the arm; the text says why. ``request_id`` is the id of
    a refused reset request when it could be read (so the sender can be answered), else None."""

    def __init__(self, detail: str, request_id: int | None = None) -> None:
        super().__init__(detail)
        self.request_id = request_id


@dataclass(frozen=True, eq=False)
class ArmLimits:
    """What incoming messages are checked against: the arm behind the bridge, its scene and the
    safety limits in force.

    ``objects`` names the objects a reset may place (simulation); ``None`` when the bridge cannot
    place objects (a real arm, ``reset_mode: move``) and ignores the ones a reset names.
    ``tool_position`` is the arm's forward kinematics; without it a reset's tool position cannot
    be checked (the bridge warns at start-up).
    """

    spec: RobotSpec
    workspace_low: np.ndarray
    workspace_high: np.ndarray
    max_tool_speed: float  # m/s
    max_tool_rotation_speed: float  # rad/s
    objects: tuple[str, ...] | None = ()
    tool_position: ToolPosition | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "workspace_low", np.asarray(self.workspace_low, dtype=float))
        object.__setattr__(self, "workspace_high", np.asarray(self.workspace_high, dtype=float))

    @property
    def max_trajectory_bytes(self) -> int:
        """Serialised size of a :data:`MAX_TRAJECTORY_POINTS`-point trajectory whose points carry
        positions, velocities, accelerations and efforts of every joint, plus header room."""
        point = 4 * (4 + 8 * self.spec.n_joints) + 8  # four float64 sequences and a Duration
        return SMALL_MESSAGE_BYTES + MAX_TRAJECTORY_POINTS * point

    def in_workspace(self, position: np.ndarray) -> bool:
        return bool(np.all(position >= self.workspace_low) and np.all(position <= self.workspace_high))


# ---------------------------------------------------------------------------- shared checks
def finite_vector(values: Sequence[float], size: int, what: str) -> np.ndarray:
    """``values`` as a float vector of exactly ``size`` finite numbers (the length is checked
    before anything is converted), else :class:`RejectedMessage`."""
    count = len(values)
    if count != size:
        raise RejectedMessage(f"{what} needs {size} values, got {count}")
    array = np.asarray(values, dtype=float)
    if array.shape != (size,):
        raise RejectedMessage(f"{what} needs {size} numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise RejectedMessage(f"{what} has non-finite values {array.tolist()}")
    return array


def unit_quaternion(wxyz: Sequence[float], what: str) -> np.ndarray:
    """A finite quaternion of non-zero norm, normalised (scaled first, so 1e300 does not
    overflow the norm and 1e-300 does not underflow it)."""
    quat = finite_vector(wxyz, 4, f"{what} quaternion")
    if not np.any(quat):
        raise RejectedMessage(f"{what} quaternion is zero (no orientation)")
    scaled = quat / np.max(np.abs(quat))
    return scaled / np.linalg.norm(scaled)


def _norm(vector: np.ndarray) -> float:
    """Euclidean norm of a finite vector, finite wherever it can be (``np.linalg.norm([1e200] * 3)`` is inf)."""
    scale = float(np.max(np.abs(vector)))
    return 0.0 if scale == 0.0 else scale * float(np.linalg.norm(vector / scale))


def _check_frame(header: Any, what: str) -> None:
    frame = header.frame_id
    if frame not in BASE_FRAMES:
        raise RejectedMessage(f"{what} is in frame {str(frame)[:80]!r}; the bridge takes only the robot base "
                              f"frame {conv.BASE_FRAME!r} (or an empty frame id)")


def _joint_targets(values: Sequence[float], limits: ArmLimits, what: str) -> np.ndarray:
    """Joint targets: the arm's number of finite values, none far past a joint limit."""
    spec = limits.spec
    q = finite_vector(values, spec.n_joints, what)
    far = (q < spec.joint_lower - JOINT_SLACK) | (q > spec.joint_upper + JOINT_SLACK)
    if np.any(far):
        names = [name for name, bad in zip(spec.joint_names, far) if bad]
        raise RejectedMessage(f"{what} is more than {JOINT_SLACK:.2f} rad beyond the limits of {', '.join(names)} "
                              f"({np.round(q[far], 3).tolist()}; radians expected)")
    return q


def _near_workspace(position: np.ndarray, limits: ArmLimits, what: str) -> None:
    if np.any(position < limits.workspace_low - POSITION_SLACK) or np.any(position > limits.workspace_high + POSITION_SLACK):
        raise RejectedMessage(f"{what} {np.round(position, 3).tolist()} is more than {POSITION_SLACK} m outside the "
                              f"workspace box (metres expected)")


def _gripper_opening(width: float, limits: ArmLimits, what: str) -> float:
    if not -GRIPPER_SLACK <= width <= limits.spec.gripper_max_width + GRIPPER_SLACK:
        raise RejectedMessage(f"{what} opening {width} m is far outside the gripper's range "
                              f"[0, {limits.spec.gripper_max_width}] m (metres expected)")
    return float(width)


# ---------------------------------------------------------------------------- one per message type
def joint_command(message: Any, limits: ArmLimits) -> np.ndarray:
    """``std_msgs/Float64MultiArray`` on ``forward_position_controller/commands``: joint targets
    in spec order (the layout is ignored, as ros2_control's forward controllers do)."""
    return _joint_targets(message.data, limits, "joint command")


def trajectory_size(data: bytes, limits: ArmLimits) -> None:
    """Size checks of a serialised ``trajectory_msgs/JointTrajectory``, before it is deserialised:
    the byte count, the number of joint names and the number of points (read from the CDR)."""
    names, points = _trajectory_counts(data, limits.spec.n_joints)
    if names != limits.spec.n_joints:
        raise RejectedMessage(f"trajectory names {names} joints; this arm has {limits.spec.n_joints}")
    if not 0 < points <= MAX_TRAJECTORY_POINTS:
        raise RejectedMessage(f"trajectory has {points} points; 1 to {MAX_TRAJECTORY_POINTS} are accepted")


def trajectory(message: Any, limits: ArmLimits) -> tuple[np.ndarray, np.ndarray]:
    """``trajectory_msgs/JointTrajectory``: every arm joint named once (any order), 1 to
    :data:`MAX_TRAJECTORY_POINTS` points, each with one position per joint (velocities,
    accelerations and efforts, which the bridge does not follow, empty or one per joint), all
    finite, times from start strictly increasing from above 0. Returns (times (N,) s, positions
    (N, n_joints) in spec order). The header stamp is ignored: the trajectory starts on arrival."""
    spec, n = limits.spec, limits.spec.n_joints
    names = [str(name) for name in message.joint_names]
    if len(names) != n or sorted(names) != sorted(spec.joint_names):
        raise RejectedMessage(f"trajectory joints {names[:20]} are not this arm's {list(spec.joint_names)}")
    points = message.points
    if not 0 < len(points) <= MAX_TRAJECTORY_POINTS:
        raise RejectedMessage(f"trajectory has {len(points)} points; 1 to {MAX_TRAJECTORY_POINTS} are accepted")
    for field in ("positions", "velocities", "accelerations", "effort"):
        allowed = (n,) if field == "positions" else (0, n)
        bad = next((i for i, point in enumerate(points) if len(getattr(point, field)) not in allowed), None)
        if bad is not None:
            raise RejectedMessage(f"trajectory point {bad} has {len(getattr(points[bad], field))} {field} for {n} joints")
        values = [getattr(point, field) for point in points if len(getattr(point, field))]
        if values and not np.all(np.isfinite(np.asarray(values, dtype=float))):
            raise RejectedMessage(f"trajectory has non-finite {field}")
    order = [names.index(name) for name in spec.joint_names]
    positions = np.asarray([point.positions for point in points], dtype=float)[:, order]
    stamps = np.asarray([(p.time_from_start.sec, p.time_from_start.nanosec) for p in points], dtype=float)
    times = stamps[:, 0] + stamps[:, 1] * 1e-9
    if times[0] <= 0 or np.any(np.diff(times) <= 0):
        raise RejectedMessage(f"trajectory times must increase from above 0 s, got {np.round(times[:10], 6).tolist()}"
                              f"{' ...' if times.size > 10 else ''}")
    far = (positions < spec.joint_lower - JOINT_SLACK) | (positions > spec.joint_upper + JOINT_SLACK)
    if np.any(far):
        point, joint = np.argwhere(far)[0]
        raise RejectedMessage(f"trajectory point {point} is more than {JOINT_SLACK:.2f} rad beyond the limits of "
                              f"{spec.joint_names[joint]} ({positions[point, joint]:.3f}; radians expected)")
    return times, positions


def tool_target(message: Any, limits: ArmLimits) -> np.ndarray:
    """``geometry_msgs/PoseStamped`` on ``robot_rl/tool_target``, in the base frame: a finite
    position near the workspace box and a finite, non-zero quaternion. Returns
    ``(x, y, z, qw, qx, qy, qz)`` with the quaternion normalised."""
    _check_frame(message.header, "tool target")
    p, q = message.pose.position, message.pose.orientation
    position = finite_vector([p.x, p.y, p.z], 3, "tool target position")
    _near_workspace(position, limits, "tool target")
    return np.concatenate([position, unit_quaternion([q.w, q.x, q.y, q.z], "tool target")])


def tool_twist(message: Any, limits: ArmLimits) -> np.ndarray:
    """``geometry_msgs/TwistStamped`` on ``robot_rl/tool_twist``, in the base frame: six finite
    values (m/s, rad/s) within :data:`TWIST_SPEED_FACTOR` times the speed limits."""
    _check_frame(message.header, "tool twist")
    lin, ang = message.twist.linear, message.twist.angular
    twist = finite_vector([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], 6, "tool twist")
    for values, limit, unit in ((twist[:3], limits.max_tool_speed, "m/s"),
                                (twist[3:], limits.max_tool_rotation_speed, "rad/s")):
        speed = _norm(values)
        if speed > TWIST_SPEED_FACTOR * limit:
            raise RejectedMessage(f"tool twist of {speed:.3g} {unit} is more than {TWIST_SPEED_FACTOR:g} times the "
                                  f"{limit} {unit} limit")
    return twist


def gripper_command(message: Any, limits: ArmLimits) -> float:
    """``std_msgs/Float64MultiArray`` on ``robot_rl/gripper_command``: ``[opening]``, m."""
    (width,) = finite_vector(message.data, 1, "gripper command")
    return _gripper_opening(float(width), limits, "gripper command")


def reset(message: Any, limits: ArmLimits) -> tuple[int, ResetRequest]:
    """``std_msgs/String`` (JSON) on ``robot_rl/reset``: :func:`~.conversions.reset_from_json`'s
    format checks, then the arm's: joint positions inside the joint limits, the tool inside the
    workspace box, a finite gripper opening near its range, and (when the bridge places objects)
    only known objects at finite poses near the box, their quaternions normalised. Returns
    ``(request id, request)``; refusals carry the request id when it could be read."""
    try:
        request_id, request = conv.reset_from_json(message.data, limits.spec.n_joints)
    except conv.MalformedResetError as exc:
        raise RejectedMessage(str(exc), exc.request_id) from exc
    try:
        return request_id, _checked_reset(request, limits)
    except RejectedMessage as exc:  # the reason first: clients show the start of the answer
        raise RejectedMessage(f"{exc} (reset request {request_id})", request_id) from exc


def _checked_reset(request: ResetRequest, limits: ArmLimits) -> ResetRequest:
    spec, q = limits.spec, request.joint_positions
    outside = (q < spec.joint_lower) | (q > spec.joint_upper)
    if np.any(outside):
        names = [name for name, bad in zip(spec.joint_names, outside) if bad]
        raise RejectedMessage(f"joint positions {np.round(q[outside], 4).tolist()} of {', '.join(names)} are outside "
                              f"the joint limits")
    if limits.tool_position is not None:
        tool = np.asarray(limits.tool_position(q), dtype=float)
        if not limits.in_workspace(tool):
            raise RejectedMessage(f"the start pose puts the tool outside the safety workspace box (at "
                                  f"{np.round(tool, 3).tolist()}; box {limits.workspace_low.tolist()} to "
                                  f"{limits.workspace_high.tolist()})")
    _gripper_opening(request.gripper_width, limits, "reset gripper")
    if limits.objects is None:  # this bridge does not place objects: leave them to the caller
        return request
    objects = {}
    for name, pose in request.objects.items():
        if name not in limits.objects:
            raise RejectedMessage(f"the scene has no object {name[:80]!r} (objects: {', '.join(limits.objects) or 'none'})")
        _near_workspace(pose[:3], limits, f"object {name!r}")
        objects[name] = np.concatenate([pose[:3], unit_quaternion(pose[3:], f"object {name!r}")])
    if request.grasped_object is not None and request.grasped_object not in limits.objects:
        raise RejectedMessage(f"cannot grasp {request.grasped_object[:80]!r}: the scene has no such object")
    return dataclasses.replace(request, objects=objects)


# ---------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class MessageCheck:
    """How one kind of incoming message is checked: its ROS 2 type, the validator of the
    deserialised message, and the size checks on its bytes."""

    type_name: str
    validate: Callable[[Any, ArmLimits], Any]
    size: Callable[[bytes, ArmLimits], None] | None = None  # extra checks on the serialised bytes
    large: bool = False  # up to ArmLimits.max_trajectory_bytes instead of SMALL_MESSAGE_BYTES

    def screen(self, data: bytes, limits: ArmLimits) -> None:
        """Checks on the serialised bytes (microseconds, whatever their size)."""
        limit = limits.max_trajectory_bytes if self.large else SMALL_MESSAGE_BYTES
        if len(data) > limit:
            raise RejectedMessage(f"{self.type_name} message of {len(data)} bytes is larger than the {limit} accepted")
        if self.size is not None:
            try:
                self.size(data, limits)
            except RejectedMessage:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the bytes are, refused, not raised
                raise RejectedMessage(f"unreadable {self.type_name} message ({type(exc).__name__}: {exc})"[:300]) from exc

    def parse(self, data: bytes, limits: ArmLimits, deserialize: Callable[[str, bytes], Any]) -> Any:
        """Deserialise and validate (after :meth:`screen`); :class:`RejectedMessage` if refused."""
        try:
            message = deserialize(self.type_name, data)
        except Exception as exc:  # noqa: BLE001 - bytes a conforming writer would not send
            raise RejectedMessage(f"unreadable {self.type_name} message ({type(exc).__name__}: {exc})"[:300]) from exc
        try:
            return self.validate(message, limits)
        except RejectedMessage:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a field of an unexpected type: refused, not raised
            raise RejectedMessage(f"malformed {self.type_name} message ({type(exc).__name__}: {exc})"[:300]) from exc


#: Every command the bridge subscribes to, by inbox kind (the e-stop ``Bool`` has no content to
#: check: any message is an engage or a release).
COMMANDS: dict[str, MessageCheck] = {
    "joint_positions": MessageCheck("std_msgs/msg/Float64MultiArray", joint_command),
    "trajectory": MessageCheck("trajectory_msgs/msg/JointTrajectory", trajectory, trajectory_size, large=True),
    "tool_target": MessageCheck("geometry_msgs/msg/PoseStamped", tool_target),
    "tool_twist": MessageCheck("geometry_msgs/msg/TwistStamped", tool_twist),
    "gripper_width": MessageCheck("std_msgs/msg/Float64MultiArray", gripper_command),
    "reset": MessageCheck("std_msgs/msg/String", reset),
}


# ---------------------------------------------------------------------------- CDR peeking
def _trajectory_counts(data: bytes, max_names: int) -> tuple[int, int]:
    """(joint names, points) of a serialised JointTrajectory, read from its plain-CDR bytes
    without deserialising: ``header`` (stamp, frame_id), ``joint_names``, then the point count.
    Any other number of names than ``max_names`` is returned at once, with 0 points: the caller
    refuses it anyway, and skipping a million names one by one is the cost this avoids."""
    if len(data) < 8 or data[0] != 0 or data[1] not in (0, 1):  # encapsulation: CDR_BE / CDR_LE
        raise RejectedMessage(f"trajectory message is not plain CDR (starts {bytes(data[:4]).hex()})")
    uint32 = struct.Struct("<I" if data[1] == 1 else ">I")
    body, offset = memoryview(data)[4:], 8  # alignment counts from the end of the encapsulation header

    def read() -> int:
        nonlocal offset
        offset = (offset + 3) & ~3
        try:
            (value,) = uint32.unpack_from(body, offset)
        except struct.error as exc:
            raise RejectedMessage(f"trajectory message ends early ({len(data)} bytes)") from exc
        offset += 4
        return value

    def skip_string() -> None:
        nonlocal offset
        length = read()  # (not `offset += read()`: that would add to the offset from before the read)
        offset += length  # the characters and their NUL

    skip_string()  # header.frame_id
    names = read()
    if names != max_names:
        return names, 0
    for _ in range(names):
        skip_string()
    return names, read()


class RateLimitedLog:
    """Warnings about refused input that cannot flood the log: the first ``burst`` lines, then at
    most one per ``period`` seconds, saying how many were not logged in between."""

    def __init__(self, logger: logging.Logger, burst: int = 10, period: float = 10.0) -> None:
        self._log, self._burst, self._period = logger, burst, period
        self._lock = threading.Lock()  # called from transport threads and the bridge's parser thread
        self._count = self._suppressed = 0
        self._next = 0.0

    def warning(self, message: str) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if self._count > self._burst and now < self._next:
                self._suppressed += 1
                return
            if self._suppressed:
                message = f"{message} ({self._suppressed} more not logged in the last {self._period:g} s)"
            self._suppressed = 0
            if self._count >= self._burst:
                self._next = now + self._period
        self._log.warning(message, stacklevel=2)  # the caller's line, not this one
