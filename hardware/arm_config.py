"""Description of a real ros2_control arm as the arm bridge reaches it: through topics only.

One YAML file per arm (``hardware/configs/<arm>.yaml``) says which joints the arm has and their
limits, which kinematic chain computes its tool centre point (TCP), where its joint states are
published, which controller topic takes its joint targets, how the gripper (if any) is reached,
and the safety supervisor's limits (``safety``) with the loosest values they may ever take on this
arm (``safety_maxima``). :func:`load_arm_config` reads it into a frozen :class:`HardwareArmConfig`;
an unknown key, a wrong type, a non-finite number or an inconsistent value (e.g. a safety limit
looser than its maximum) is a :class:`~robot_rl.config.ConfigError` naming the key and the file.

Units: metres, radians, seconds, hertz; quaternions ``(w, x, y, z)``; positions and the
workspace box are in the base frame of the arm's kinematic chain (see
:mod:`robot_rl.hardware.kinematics`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from robot_rl.config import ConfigError, from_dict, read_yaml
from robot_rl.hardware.kinematics import CHAINS, DHChain
from robot_rl.hardware.safety import SafetyConfig, SafetyMaxima
from robot_rl.robot import RobotSpec

# ROS 2 message types the bridge publishes for each command mode.
COMMAND_TYPES = {
    "position": "std_msgs/msg/Float64MultiArray",  # ros2_control forward (position) command controller
    "trajectory": "trajectory_msgs/msg/JointTrajectory",  # joint_trajectory_controller's ~/joint_trajectory
}


def _positive(section: str, **values: float) -> None:
    for key, value in values.items():
        if not (math.isfinite(value) and value > 0):  # NaN fails both, inf the first
            raise ConfigError(f"{section}{key}: must be finite and positive, got {value}")


@dataclass(frozen=True)
class StateConfig:
    """Where the arm's ``sensor_msgs/msg/JointState`` messages arrive. The message's ``name``
    field is matched against ``joint_names``, so its joint order does not matter; how old a
    state may get before the arm holds is ``safety.state_timeout``."""

    joint_states_topic: str = "/joint_states"

    def __post_init__(self) -> None:
        if not self.joint_states_topic:
            raise ConfigError("joint_states_topic: must not be empty")


@dataclass(frozen=True)
class CommandConfig:
    """How joint position targets reach the arm's controller.

    ``position``: a ``std_msgs/msg/Float64MultiArray`` of joint positions (rad, in
    ``joint_names`` order) per tick, for a ros2_control forward position controller.
    ``trajectory``: a one-point ``trajectory_msgs/msg/JointTrajectory`` per tick, reached
    ``trajectory_time_from_start`` seconds later, for a joint_trajectory_controller's topic.
    """

    mode: Literal["position", "trajectory"] = "position"
    topic: str = "/forward_position_controller/commands"
    rate_hz: float = 100.0  # how often the bridge publishes a target
    trajectory_time_from_start: float = 0.1  # s; trajectory mode only

    def __post_init__(self) -> None:
        if not self.topic:
            raise ConfigError("topic: must not be empty")
        _positive("", rate_hz=self.rate_hz, trajectory_time_from_start=self.trajectory_time_from_start)

    @property
    def message_type(self) -> str:
        return COMMAND_TYPES[self.mode]


@dataclass(frozen=True)
class GripperConfig:
    """The gripper, reached through topics.

    ``none``: no gripper the bridge can drive; the reported width is 0. ``topic``: the bridge
    publishes the finger-opening target (m) as ``std_msgs/msg/Float64`` on ``command_topic`` and
    reads the opening from the ``sensor_msgs/msg/JointState`` on ``state_topic`` as the sum of the
    positions of ``state_joints`` (m; e.g. the two finger joints of a Franka Hand).
    """

    kind: Literal["none", "topic"] = "none"
    command_topic: str = ""
    state_topic: str = ""
    state_joints: tuple[str, ...] = ()
    max_width: float = 0.08  # m, fully open

    def __post_init__(self) -> None:
        if self.kind == "topic":
            for key in ("command_topic", "state_topic"):
                if not getattr(self, key):
                    raise ConfigError(f"{key}: required when kind is 'topic'")
            if not self.state_joints:
                raise ConfigError("state_joints: required when kind is 'topic' (the finger joints to sum)")
            _positive("", max_width=self.max_width)


@dataclass(frozen=True)
class TcpConfig:
    """Flange→TCP transform of the mounted tool; both unset keeps the named chain's own TCP.

    (A section with optional keys rather than an optional section: robot_rl.config reports
    errors inside an optional section only as "expected TcpConfig | None".)
    """

    position: tuple[float, float, float] | None = None  # m, flange frame
    quat: tuple[float, float, float, float] | None = None  # w, x, y, z

    def __post_init__(self) -> None:
        if (self.position is None) != (self.quat is None):
            raise ConfigError("position and quat: give both (the tool's flange→TCP transform) or neither")
        if self.quat is not None:
            norm = float(np.linalg.norm(self.quat))
            if abs(norm - 1.0) > 1e-3:
                raise ConfigError(f"quat: must be a unit quaternion (w, x, y, z), got norm {norm:.4f}")


@dataclass(frozen=True)
class HardwareArmConfig:
    """A real arm behind ros2_control, as the arm bridge sees it.

    Joint lists are in ``joint_names`` order (the order of the chain's joints and of the
    command arrays). ``kinematics`` names a chain in :data:`robot_rl.hardware.kinematics.CHAINS`;
    the chain used is that one with this config's joint limits and, if set, ``tcp``.
    """

    name: str
    joint_names: tuple[str, ...]
    joint_lower: tuple[float, ...]  # rad
    joint_upper: tuple[float, ...]  # rad
    joint_velocity_limit: tuple[float, ...]  # rad/s
    home: tuple[float, ...]  # rad; start/reset posture, its TCP must lie in the workspace box
    kinematics: str
    tcp: TcpConfig = field(default_factory=TcpConfig)
    state: StateConfig = field(default_factory=StateConfig)
    command: CommandConfig = field(default_factory=CommandConfig)
    gripper: GripperConfig = field(default_factory=GripperConfig)
    control_hz: float = 10.0  # policy rate the arm is set up for
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    # The loosest limits `safety` (and anything layered over it: bridge --config, --set) may set.
    safety_maxima: SafetyMaxima = field(default_factory=SafetyMaxima)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if n == 0:
            raise ConfigError("joint_names: must list at least one joint")
        if len(set(self.joint_names)) != n:
            raise ConfigError(f"joint_names: duplicate names in {list(self.joint_names)}")
        for key in ("joint_lower", "joint_upper", "joint_velocity_limit", "home"):
            if len(getattr(self, key)) != n:
                raise ConfigError(f"{key}: expected {n} values (one per joint_names entry), got {len(getattr(self, key))}")
        for key in ("joint_lower", "joint_upper", "home"):
            for i, value in enumerate(getattr(self, key)):
                if not math.isfinite(value):
                    raise ConfigError(f"{key}[{i}]: must be finite, got {value} ({self.joint_names[i]})")
        for i, (lo, hi) in enumerate(zip(self.joint_lower, self.joint_upper)):
            if not lo < hi:
                raise ConfigError(f"joint_lower[{i}]: {lo} must be below joint_upper[{i}] = {hi} ({self.joint_names[i]})")
        for i, limit in enumerate(self.joint_velocity_limit):
            if not (math.isfinite(limit) and limit > 0):
                raise ConfigError(f"joint_velocity_limit[{i}]: must be finite and positive, got {limit} "
                                  f"({self.joint_names[i]})")
        for i, (lo, q, hi) in enumerate(zip(self.joint_lower, self.home, self.joint_upper)):
            if not lo <= q <= hi:
                raise ConfigError(f"home[{i}]: {q} is outside the joint limits [{lo}, {hi}] ({self.joint_names[i]})")
        if self.kinematics not in CHAINS:
            raise ConfigError(f"kinematics: unknown chain {self.kinematics!r} (known: {', '.join(sorted(CHAINS))})")
        chain_joints = CHAINS[self.kinematics].n_joints
        if chain_joints != n:
            raise ConfigError(f"kinematics: chain {self.kinematics!r} has {chain_joints} joints, joint_names lists {n}")
        _positive("", control_hz=self.control_hz)
        # A limit can be tightened in the safety section but never loosened past the maxima.
        self.safety.check_within(self.safety_maxima, self.name)
        # The arm starts every episode at home; a home outside the box would be held by the
        # supervisor from the first tick on.
        tcp, _ = arm_kinematics(self).forward(np.asarray(self.home))
        low, high = np.asarray(self.safety.workspace_low), np.asarray(self.safety.workspace_high)
        if np.any(tcp < low) or np.any(tcp > high):
            raise ConfigError(f"home: its tool centre point {np.round(tcp, 4).tolist()} m is outside the safety "
                              f"workspace box {list(low)} .. {list(high)}")


def arm_kinematics(config: HardwareArmConfig) -> DHChain:
    """The config's named chain with its joint limits and (if set) its tool's TCP."""
    chain = CHAINS[config.kinematics].with_limits(config.joint_lower, config.joint_upper)
    if config.tcp.position is not None and config.tcp.quat is not None:
        chain = chain.with_tcp(config.tcp.position, config.tcp.quat)
    return chain


def to_robot_spec(config: HardwareArmConfig) -> RobotSpec:
    """The :class:`RobotSpec` the learner and the safety supervisor use for this arm."""
    return RobotSpec(
        name=config.name,
        joint_names=tuple(config.joint_names),
        joint_lower=np.array(config.joint_lower, dtype=float),
        joint_upper=np.array(config.joint_upper, dtype=float),
        joint_velocity_limit=np.array(config.joint_velocity_limit, dtype=float),
        home=np.array(config.home, dtype=float),
        gripper_max_width=config.gripper.max_width if config.gripper.kind != "none" else 0.0,
    )


def load_arm_config(path: str | Path) -> HardwareArmConfig:
    """Read and validate an arm config YAML file.

    Raises:
        ConfigError: the file is unreadable or not a mapping, or a key is missing, unknown, of
            the wrong type or inconsistent; the message names the file and the key.
    """
    data = read_yaml(path)
    required = [f.name for f in dataclasses.fields(HardwareArmConfig)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [key for key in required if key not in data]
    if missing:
        raise ConfigError(f"{path}: {missing[0]}: required key missing (required: {', '.join(required)})")
    return from_dict(HardwareArmConfig, data, str(path))
