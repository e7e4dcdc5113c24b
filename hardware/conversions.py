"""Between robot_rl's types (``robot_rl.robot``) and standard ROS 2 messages.

Used by both ends of a ROS 2 link (the arm bridge node and the ``Ros2Arm`` client), so both
read and write the same fields the same way. Messages are built with ``transport.message`` and
read by attribute only, so these functions work with either transport backend.

Frames and units: poses are in the robot base frame, metres; ROS quaternions are ``(x, y, z, w)``
on the wire and ``(w, x, y, z)`` everywhere in robot_rl.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from robot_rl.hardware.transport import Transport, seconds_of, split_seconds
from robot_rl.robot import ResetRequest, RobotSpec

BASE_FRAME = "base"
GRIPPER_JOINT = "gripper"  # the one "joint" of robot_rl/gripper_state: finger opening, m


def time_message(transport: Transport, seconds: float, type_name: str = "builtin_interfaces/msg/Time") -> Any:
    """A ``builtin_interfaces`` Time (or Duration) of this transport's backend."""
    sec, nanosec = split_seconds(seconds)
    return transport.message(type_name, sec=sec, nanosec=nanosec)


def header(transport: Transport, time: float, frame_id: str = BASE_FRAME) -> Any:
    return transport.message("std_msgs/msg/Header", stamp=time_message(transport, time), frame_id=frame_id)


def pose_message(transport: Transport, pose: np.ndarray) -> Any:
    """``geometry_msgs/Pose`` of a 7-vector ``(x, y, z, qw, qx, qy, qz)``."""
    x, y, z, qw, qx, qy, qz = (float(v) for v in pose)
    return transport.message(
        "geometry_msgs/msg/Pose",
        position=transport.message("geometry_msgs/msg/Point", x=x, y=y, z=z),
        orientation=transport.message("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw),
    )


def pose_of(message: Any) -> np.ndarray:
    """``(x, y, z, qw, qx, qy, qz)`` of a ``geometry_msgs/Pose``."""
    p, q = message.position, message.orientation
    return np.array([p.x, p.y, p.z, q.w, q.x, q.y, q.z], dtype=float)


def pose_stamped(transport: Transport, time: float, pose: np.ndarray) -> Any:
    return transport.message("geometry_msgs/msg/PoseStamped", header=header(transport, time),
                             pose=pose_message(transport, pose))


def pose_array(transport: Transport, time: float, poses: Sequence[np.ndarray]) -> Any:
    return transport.message("geometry_msgs/msg/PoseArray", header=header(transport, time),
                             poses=[pose_message(transport, pose) for pose in poses])


def joint_state(transport: Transport, time: float, names: Sequence[str], position: np.ndarray,
                velocity: np.ndarray | None = None) -> Any:
    return transport.message(
        "sensor_msgs/msg/JointState", header=header(transport, time), name=list(names),
        position=[float(v) for v in position],
        velocity=[] if velocity is None else [float(v) for v in velocity], effort=[],
    )


def joint_values(message: Any, names: Sequence[str], field: str = "position") -> np.ndarray:
    """Values of ``names`` (in that order) from a ``JointState``-like message with ``name`` and
    ``field`` arrays; KeyError naming the missing joints."""
    index = {name: i for i, name in enumerate(message.name)}
    missing = [name for name in names if name not in index]
    if missing:
        raise KeyError(f"joint state has no {', '.join(missing)} (it has {', '.join(message.name) or 'no joints'})")
    values = np.asarray(getattr(message, field), dtype=float)
    if values.size == 0:
        return np.zeros(len(names))
    return values[[index[name] for name in names]]


def float_array(transport: Transport, values: Sequence[float]) -> Any:
    """``std_msgs/Float64MultiArray`` with an empty layout, as ros2_control forward controllers take."""
    return transport.message("std_msgs/msg/Float64MultiArray", data=[float(v) for v in values])


def time_of(message: Any) -> float:
    """Header stamp of a stamped message, s."""
    return seconds_of(message.header.stamp)


def spec_to_json(spec: RobotSpec, objects: Sequence[str], control: Mapping[str, Any]) -> str:
    """What a client must know about the arm behind a bridge (published latched on
    ``robot_rl/spec``)."""
    return json.dumps({
        "name": spec.name, "joint_names": list(spec.joint_names),
        "joint_lower": spec.joint_lower.tolist(), "joint_upper": spec.joint_upper.tolist(),
        "joint_velocity_limit": spec.joint_velocity_limit.tolist(), "home": spec.home.tolist(),
        "gripper_max_width": spec.gripper_max_width, "cameras": list(spec.cameras),
        "objects": list(objects), "control": dict(control),
    })


def spec_from_json(text: str) -> tuple[RobotSpec, list[str], dict[str, Any]]:
    data = json.loads(text)
    spec = RobotSpec(
        name=data["name"], joint_names=tuple(data["joint_names"]),
        joint_lower=np.array(data["joint_lower"]), joint_upper=np.array(data["joint_upper"]),
        joint_velocity_limit=np.array(data["joint_velocity_limit"]), home=np.array(data["home"]),
        gripper_max_width=float(data["gripper_max_width"]), cameras=tuple(data["cameras"]),
    )
    return spec, list(data["objects"]), dict(data["control"])


def reset_to_json(request_id: int, request: ResetRequest) -> str:
    return json.dumps({
        "id": request_id, "joint_positions": np.asarray(request.joint_positions, float).tolist(),
        "gripper_width": float(request.gripper_width),
        "objects": {name: np.asarray(pose, float).tolist() for name, pose in request.objects.items()},
        "grasped_object": request.grasped_object,
    })


class MalformedResetError(ValueError):
    """A reset request that cannot be carried out as sent. ``request_id`` is its id when that
    could be read (so the sender can be answered), else None."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def reset_from_json(text: str, n_joints: int | None = None) -> tuple[int, ResetRequest]:
    """Parse and check a reset request; :class:`MalformedResetError` (a ``ValueError``) naming
    what is wrong: unreadable JSON or fields, a non-finite value, an object pose that is not 7
    numbers, and (given ``n_joints``) a joint vector of another length."""
    try:
        data = json.loads(text)
        request_id = int(data["id"])
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:  # RecursionError: [[[[...]]]]
        raise MalformedResetError(f"malformed reset request {str(text)[:200]!r}: {exc!r}"[:500]) from exc
    try:
        request = ResetRequest(
            joint_positions=np.asarray(data["joint_positions"], dtype=float),
            gripper_width=float(data["gripper_width"]),
            objects={str(name): np.asarray(pose, dtype=float) for name, pose in dict(data.get("objects") or {}).items()},
            grasped_object=data.get("grasped_object"),
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        raise MalformedResetError(f"malformed reset request {request_id}: {exc!r}"[:500], request_id) from exc
    problem = _reset_problem(request, n_joints)
    if problem is not None:
        raise MalformedResetError(f"reset request {request_id}: {problem}", request_id)
    return request_id, request


def _reset_problem(request: ResetRequest, n_joints: int | None) -> str | None:
    q = request.joint_positions
    if q.ndim != 1 or (n_joints is not None and q.size != n_joints):
        return f"needs {n_joints or 'a vector of'} joint positions, got shape {q.shape}"
    if not np.all(np.isfinite(q)):
        return f"non-finite joint positions {q.tolist()}"
    if not np.isfinite(request.gripper_width):
        return f"non-finite gripper width {request.gripper_width}"
    for name, pose in request.objects.items():
        if pose.shape != (7,) or not np.all(np.isfinite(pose)):
            return f"pose of {name!r} must be 7 finite numbers (x, y, z, qw, qx, qy, qz), got {pose.tolist()}"
    if request.grasped_object is not None and not isinstance(request.grasped_object, str):
        return f"grasped_object must be an object name or null, got {request.grasped_object!r}"
    return None
