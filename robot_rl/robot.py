"""The one narrow interface between learning code and an arm.

``ArmEnv`` talks only to :class:`Robot`. ``SimArm`` (MuJoCo, in process) and ``Ros2Arm``
(a ROS 2 client) implement it, so the same environment, learners and experts run on the
simulated arm, its ROS 2 twin and a physical arm. Both also implement the optional
:class:`CameraRobot` capability. The errors a robot may raise (:class:`RobotError` and its
subclasses) are defined here with what the caller must do about them. Robot kinds are made
by name through :mod:`robot_rl.envs.robots`.

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
    cameras: tuple[str, ...] = ()  # cameras a CameraRobot can render; () without images

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


class RobotError(RuntimeError):
    """Base of the errors a :class:`Robot` may raise while an episode runs.

    Each one means the arm is (or has been told to be) holding still and the step in flight did
    not happen as commanded. The caller must not store a transition for that step, should end the
    episode, and may retry with :meth:`Robot.reset` once the arm is back (the training loop does
    so with a bounded wait).
    """


class StaleStateError(RobotError):
    """No fresh state arrived within the deadline (sensor stream stalled, network hiccup, the
    bridge restarting). The arm was told to hold; a later ``reset`` may succeed."""


class SafetyStopError(RobotError):
    """The safety layer stopped the arm (e-stop engaged, a limit or watchdog tripped). The arm
    holds until the stop is released; ``reset`` raises this again while it is engaged."""


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
    """What ``ArmEnv`` needs from an arm, simulated or physical.

    Errors, and what the caller must do:

    * :class:`StaleStateError` (``advance``, ``reset``): no fresh state in time; the robot has
      already asked the arm to hold. Do not store a transition for the step, end the episode,
      then call ``reset`` again after a pause, giving up after a bounded wait with a message.
    * :class:`SafetyStopError` (``advance``, ``reset``): the safety layer holds the arm (e.g. the
      e-stop is engaged) until a person releases it. Same as above: no transition, end the
      episode, retry ``reset`` with a bounded wait; never try to command the arm out of it.
    * ``ValueError`` / ``TypeError`` (``command``, ``reset``): a malformed command or request (wrong
      shape, non-finite values, unknown object): a bug in the caller, not worth retrying.

    A simulated arm raises neither :class:`RobotError`. Images are an optional capability: see
    :class:`CameraRobot`.
    """

    spec: RobotSpec

    def reset(self, request: ResetRequest) -> RobotState:
        """Move to the requested start configuration and return the first state.

        Raises :class:`StaleStateError` or :class:`SafetyStopError` when the arm cannot start
        an episode now (see the class docstring)."""

    def command(self, command: Command) -> None:
        """Set the target the inner controller tracks from now on (non-blocking)."""

    def advance(self, duration: float) -> RobotState:
        """Let ``duration`` seconds of control pass and return a state newer than the last
        command (simulation integrates physics; hardware waits for fresh sensor data).

        Raises :class:`StaleStateError` or :class:`SafetyStopError` if the step did not happen
        as commanded; the arm holds (see the class docstring)."""

    def read_state(self) -> RobotState:
        """Latest state without advancing time."""

    def stop(self) -> None:
        """Hold the current position (used by the safety layer)."""

    def close(self) -> None:
        """Release resources (renderers, connections)."""


@runtime_checkable
class CameraRobot(Robot, Protocol):
    """A :class:`Robot` that can also show camera images (optional capability).

    ``spec.cameras`` lists the cameras it has. ``ArmEnv.render`` needs this capability (check
    with ``isinstance(robot, CameraRobot)``); observation images come through
    ``RobotState.images`` for the cameras the robot was built with.
    """

    def render(self, camera: str, height: int, width: int) -> np.ndarray:
        """RGB image ``(height, width, 3)`` uint8 of ``camera`` (one of ``spec.cameras``).

        Raises ``ValueError`` for a camera (or, where the robot cannot resample, a size) it does
        not provide."""


@runtime_checkable
class RandomizableRobot(Robot, Protocol):
    """A :class:`Robot` whose physics (and, for pixel runs, looks) can be changed per episode
    (optional capability, used by :class:`robot_rl.envs.randomization.DomainRandomization`).

    Parameters are named floats: *scale factors* of the nominal model (1.0 = nominal), or
    *offsets* (0.0 = nominal). :meth:`dynamics_defaults` lists every name the robot accepts with
    its nominal value. A simulated arm implements it; a physical arm does not (its physics are
    what they are), so physics randomisation on it is a configuration error.
    """

    def dynamics_defaults(self) -> dict[str, float]:
        """Every parameter name this robot accepts → its nominal value (1.0 scales, 0.0 offsets)."""

    def set_dynamics(self, params: Mapping[str, float]) -> None:
        """Restore the nominal model, then apply ``params`` (names from :meth:`dynamics_defaults`;
        a name left out stays nominal), so successive calls never compound. Call it before
        :meth:`Robot.reset` so the new physics hold from the first step of the episode.

        Raises ``ValueError`` for an unknown name, a non-finite value or a scale <= 0."""
