"""``Ros2ControlArm``: a real ros2_control arm as a :class:`~robot_rl.robot.Robot`, reached only
through its standard topics (joint states in; forward-controller or trajectory commands out).

The arm bridge wraps it exactly like the simulated arm, so the same safety supervisor sits
between every client and the hardware. End-effector targets become joint targets through the
arm's DH kinematics (one bounded damped-least-squares step per tick); the tool pose in the state
is forward kinematics of the measured joints. ``advance`` waits for the arm's next joint state,
so a real arm paces the bridge; none within the deadline raises
:class:`~robot_rl.robot.StaleStateError`, which the bridge turns into a hold.
"""

from __future__ import annotations

import dataclasses
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
from robot_rl.robot import Command, EndEffectorCommand, JointCommand, ResetRequest, RobotState, StaleStateError


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
        self.spec = to_robot_spec(config)
        self.kinematics = arm_kinematics(config)
        self._max_joint_speed = self.safety.max_joint_speed_fraction * self.spec.joint_velocity_limit
        self._cond = threading.Condition()
        self._joints: tuple[float, np.ndarray, np.ndarray] | None = None  # stamp, positions, velocities
        self._gripper_width = 0.0
        self._returned_stamp = -np.inf
        self._target: Command | None = None
        self._joint_target: np.ndarray | None = None
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
        if self._target is None:
            return
        if isinstance(self._target, JointCommand):
            q = np.asarray(self._target.positions, dtype=float)
        else:
            start = self._joint_target if self._joint_target is not None else self.read_state().joint_pos
            target: EndEffectorCommand = self._target
            q = self.kinematics.ik_step(start, target.position, target.quat, self._max_joint_speed * duration)
        self._joint_target = q
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
            self._gripper_command.publish(t.message("std_msgs/msg/Float64", data=float(self._target.gripper_width)))

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
