"""The one narrow interface between learning code and an arm.

``ArmEnv`` talks only to :class:`Robot`. ``SimArm`` (MuJoCo, in process) and ``Ros2Arm``
(a ROS 2 client) implement it, so the same environment, learners and experts run on the
simulated arm, its ROS 2 twin and a physical arm.

Units: metres, radians, seconds; quaternions are ``(w, x, y, z)``; poses are 7-vectors
``(x, y, z, qw, qx, qy, qz)`` in the robot base frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Union, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class RobotSpec:
    """Static description of an arm: what the learner and the safety layer need to know."""

    name: str
    joint_names: tuple[str, ...]
    joint_lower: np.ndarray
    joint_upper: np.ndarray
    joint_velocity_limit: np.ndarray
    home: np.ndarray
    gripper_max_width: float
    cameras: tuple[str, ...] = ()

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)


@dataclass
class RobotState:
    """One snapshot of the arm (and, where observed, objects in the scene)."""

    timestamp: float  # seconds (sim time, or the sensor stamp on hardware)
    joint_pos: np.ndarray  # (n_joints,) rad
    joint_vel: np.ndarray  # (n_joints,) rad/s
    ee_pos: np.ndarray  # (3,) tool centre point, m
    ee_quat: np.ndarray  # (4,) w, x, y, z
    gripper_width: float  # distance between the finger pads, m
    objects: dict[str, np.ndarray] = field(default_factory=dict)  # name -> pose (7,)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (H, W, 3) uint8


@dataclass(frozen=True)
class JointCommand:
    """Joint position targets (rad) and a gripper width target (m)."""

    positions: np.ndarray
    gripper_width: float


@dataclass(frozen=True)
class EndEffectorCommand:
    """Tool-centre-point pose target and a gripper width target (m)."""

    position: np.ndarray  # (3,)
    quat: np.ndarray  # (4,) w, x, y, z
    gripper_width: float


Command = Union[JointCommand, EndEffectorCommand]


@dataclass(frozen=True)
class ResetRequest:
    """What a task asks of the arm at the start of an episode.

    ``objects`` maps scene object names to world poses (simulation places them; a physical
    setup may ask an operator or a reset routine). ``grasped_object`` names an object to be
    placed between the closed fingers (e.g. a peg held for insertion).
    """

    joint_positions: np.ndarray
    gripper_width: float
    objects: Mapping[str, np.ndarray] = field(default_factory=dict)
    grasped_object: str | None = None


@runtime_checkable
class Robot(Protocol):
    """What ``ArmEnv`` needs from an arm, simulated or physical."""

    spec: RobotSpec

    def reset(self, request: ResetRequest) -> RobotState:
        """Move to the requested start configuration and return the first state."""

    def command(self, command: Command) -> None:
        """Set the target the inner controller tracks from now on (non-blocking)."""

    def advance(self, duration: float) -> RobotState:
        """Let ``duration`` seconds of control pass and return a state newer than the last
        command (simulation integrates physics; hardware waits for fresh sensor data)."""

    def read_state(self) -> RobotState:
        """Latest state without advancing time."""

    def stop(self) -> None:
        """Hold the current position (used by the safety layer)."""

    def close(self) -> None:
        """Release resources (renderers, connections)."""
