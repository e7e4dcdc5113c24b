"""``Ros2ControlArm``: a real ros2_control arm as a :class:`~robot_rl.robot.Robot`, reached only
through its standard topics (joint states in; forward-controller or trajectory commands out).

The arm bridge wraps it exactly like the simulated arm, so the same safety supervisor sits
between every client and the hardware. End-effector targets become joint targets through the
arm's DH kinematics (one bounded damped-least-squares step per tick); the tool pose in the state
is forward kinematics of the measured joints. ``advance`` waits for the arm's next joint state,
so a real arm paces the bridge; none within the deadline raises
:class:`~robot_rl.robot.StaleStateError`, which the bridge turns into a hold.

What leaves for the controller is checked once more right before publishing, whatever the
supervisor did: never a non-finite value (:class:`UnsafeCommandError`, the last target is sent
again), always within the joint limits and the gripper range. Joint states with non-finite values
are ignored, so they can never become a hold target.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.hardware import conversions as conv
from robot_rl.hardware.arm_config import HardwareArmConfig, arm_kinematics, load_arm_config, to_robot_spec
from robot_rl.hardware.bridge import ArmBridge, BridgeConfig
from robot_rl.hardware.safety import SafetyConfig
from robot_rl.hardware.transport import Transport, make_transport
from robot_rl.robot import (
    Command,
    EndEffectorCommand,
    JointCommand,
    ResetRequest,
    RobotError,
    RobotState,
    StaleStateError,
)

log = logging.getLogger(__name__)

#: How far (rad) a target may lie outside the joint limits before its clipping is logged (IK and
#: measured holds land on or a hair past a limit routinely).
LIMIT_TOLERANCE = 1e-6


class UnsafeCommandError(RobotError):
    """A target the controller must not get (non-finite) reached the last check before
    publishing; the last good target was sent again instead."""


class Ros2ControlArm:
    """The ``Robot`` protocol over a ros2_control arm's topics.

    Args:
        config: the arm's hardware config (joint names, limits, topics, kinematics).
        transport: the ROS 2 transport shared with the bridge node.
        safety: the limits in force (default: the config's ``safety`` section); its joint speed
            bounds the IK steps and its ``state_timeout`` is the joint-state deadline.
    """

    def __init__(self, config: HardwareArmConfig, transport: Transport, safety: SafetyConfig | None = None) -> None:
        self.config = config
        self.transport = transport
        self.safety = safety or config.safety
        # Whoever built the limits (bridge config layers, a test), the arm's maxima bound them.
        self.safety.check_within(config.safety_maxima, config.name)
        self.spec = to_robot_spec(config)
        self.kinematics = arm_kinematics(config)
        self._max_joint_speed = self.safety.max_joint_speed_fraction * self.spec.joint_velocity_limit
        self._cond = threading.Condition()
        self._joints: tuple[float, np.ndarray, np.ndarray] | None = None  # stamp, positions, velocities
        self._gripper_width = 0.0
        self._returned_stamp = -np.inf
        self._target: Command | None = None
        self._joint_target: np.ndarray | None = None
        self._last_sent: tuple[np.ndarray, float] | None = None  # joint positions and gripper last published
        self._clipped = 0  # targets clipped into the joint limits right before publishing
        self._bad_states = 0  # joint states ignored for non-finite values
        self._subscriptions = [transport.subscribe(config.state.joint_states_topic, "sensor_msgs/msg/JointState",
                                                   self._on_joint_states)]
        self._command = transport.publisher(config.command.topic, config.command.message_type)
        self._gripper_command = None
        if config.gripper.kind == "topic":
            self._subscriptions.append(transport.subscribe(config.gripper.state_topic, "sensor_msgs/msg/JointState",
                                                           self._on_gripper_state))
            self._gripper_command = transport.publisher(config.gripper.command_topic, "std_msgs/msg/Float64")

    # ------------------------------------------------------------------ Robot protocol
    def reset(self, request: ResetRequest) -> RobotState:
        raise ValueError("a real arm cannot be placed; the bridge drives it to the start pose (reset_mode: move)")

    def command(self, command: Command) -> None:
        self._target = command

    def advance(self, duration: float) -> RobotState:
        """Send the current target, then wait for a joint state at least ~``duration`` newer than
        the last one returned (the arm's own rate paces the caller)."""
        self._send(duration)
        due = self._returned_stamp + 0.5 * duration
        timeout = duration + self.safety.state_timeout
        with self._cond:
            if not self._cond.wait_for(lambda: self._joints is not None and self._joints[0] >= due, timeout):
                raise StaleStateError(f"no joint state on {self.config.state.joint_states_topic} within {timeout:.3f} s")
            state = self._assemble()
        self._returned_stamp = state.timestamp
        return state

    def read_state(self) -> RobotState:
        with self._cond:
            if not self._cond.wait_for(lambda: self._joints is not None, self.safety.state_timeout * 20):
                raise StaleStateError(f"no joint state on {self.config.state.joint_states_topic} yet; is the "
                                      f"arm's driver running with its joint_state_broadcaster?")
            return self._assemble()

    def stop(self) -> None:
        state = self.read_state()
        self._target = JointCommand(state.joint_pos, state.gripper_width)

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()

    # ------------------------------------------------------------------ internals
    def _send(self, duration: float) -> None:
        """Publish the current target to the arm's controller, checked right before it leaves
        (defence in depth behind the supervisor): a non-finite target is never published, the
        last published one is sent again instead and :class:`UnsafeCommandError` raised (the
        bridge reports it as a ``step_error`` event and holds); a finite one is clipped into the
        joint limits and the gripper range."""
        if self._target is None:
            return
        q = self._joint_target_for(self._target, duration)
        gripper = float(self._target.gripper_width)
        if q.shape != (self.spec.n_joints,) or not (np.all(np.isfinite(q)) and np.isfinite(gripper)):
            self._hold()
            raise UnsafeCommandError(f"refused to send the non-finite target {np.round(q, 4).tolist()} (gripper "
                                     f"{gripper}) to {self.config.command.topic}; re-sent the last target instead")
        limited = np.clip(q, self.spec.joint_lower, self.spec.joint_upper)
        if np.any(np.abs(limited - q) > LIMIT_TOLERANCE):
            self._clipped += 1
            if self._clipped <= 10 or self._clipped % 1000 == 0:
                log.warning("joint target %s outside the joint limits, clipped before publishing (%d so far)",
                            np.round(q, 4).tolist(), self._clipped)
        self._joint_target = limited
        self._publish(limited, float(np.clip(gripper, 0.0, self.spec.gripper_max_width)))

    def _joint_target_for(self, target: Command, duration: float) -> np.ndarray:
        """Joint positions (rad) for ``target``: as given, or one IK step toward a tool pose."""
        if isinstance(target, JointCommand):
            return np.asarray(target.positions, dtype=float)
        start = self._joint_target if self._joint_target is not None else self.read_state().joint_pos
        step = self._max_joint_speed * duration
        return np.asarray(self.kinematics.ik_step(start, target.position, target.quat, step), dtype=float)

    def _hold(self) -> None:
        """Send the last published target again (the arm stays where it was going); before
        anything was published, nothing is sent and the controller keeps its own hold."""
        if self._last_sent is not None:
            self._publish(*self._last_sent)

    def _publish(self, q: np.ndarray, gripper: float) -> None:
        """The controller command for joint positions ``q`` (rad, finite, within the limits) and
        the gripper opening ``gripper`` (m)."""
        t = self.transport
        if self.config.command.mode == "position":
            self._command.publish(conv.float_array(t, q))
        else:
            point = t.message("trajectory_msgs/msg/JointTrajectoryPoint", positions=[float(v) for v in q],
                              time_from_start=conv.time_message(t, self.config.command.trajectory_time_from_start,
                                                                "builtin_interfaces/msg/Duration"))
            self._command.publish(t.message("trajectory_msgs/msg/JointTrajectory",
                                            joint_names=list(self.spec.joint_names), points=[point]))
        if self._gripper_command is not None:
            self._gripper_command.publish(t.message("std_msgs/msg/Float64", data=gripper))
        self._last_sent = (q.copy(), gripper)

    def _assemble(self) -> RobotState:
        stamp_s, q, qd = self._joints
        position, quat = self.kinematics.forward(q)
        return RobotState(timestamp=stamp_s, joint_pos=q, joint_vel=qd, ee_pos=position, ee_quat=quat,
                          gripper_width=self._gripper_width)

    def _on_joint_states(self, message: Any) -> None:
        try:
            q = conv.joint_values(message, self.spec.joint_names)
            qd = conv.joint_values(message, self.spec.joint_names, "velocity")
        except KeyError:  # a joint_states message of another device on the same topic
            return
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
            # A faulty driver's state must not become a hold target; without fresh states the
            # stale-state watchdog holds the arm at the last good one.
            self._bad_states += 1
            if self._bad_states <= 10 or self._bad_states % 1000 == 0:
                log.warning("ignored a joint state with non-finite values on %s (%d so far)",
                            self.config.state.joint_states_topic, self._bad_states)
            return
        with self._cond:
            self._joints = (conv.time_of(message), q, qd)
            self._cond.notify_all()

    def _on_gripper_state(self, message: Any) -> None:
        width = float(np.sum(conv.joint_values(message, self.config.gripper.state_joints)))
        with self._cond:
            self._gripper_width = width


def open_hardware_bridge(path: Path, config: BridgeConfig, stack: ExitStack) -> ArmBridge:
    """A bridge node for the real arm described by the YAML at ``path``: ticks at the arm's command
    rate, paced by its joint states, and resets by driving to the start pose. ``config.safety``
    should be layered over the arm file's ``safety`` section (``load_bridge_config(robot=path)``)."""
    arm_config = load_arm_config(path)
    config = dataclasses.replace(config, state_hz=arm_config.command.rate_hz, real_time=False, reset_mode="move")
    transport = make_transport(config.transport)
    stack.callback(transport.close)
    arm = Ros2ControlArm(arm_config, transport, config.safety)
    stack.callback(arm.close)
    return ArmBridge(arm, transport, config, tool_position=lambda q: arm.kinematics.forward(q)[0])
