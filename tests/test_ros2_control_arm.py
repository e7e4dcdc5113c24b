"""``Ros2ControlArm``'s last check before the real controller: what it publishes is always finite
and within the joint limits, whatever it is asked; non-finite joint states never become a hold
target; the arm's safety maxima bound the limits it is given.

A unit test of one class with an in-memory transport (the real generated ROS 2 message classes,
no DDS participant): the shipped Franka (trajectory controller) and UR5e (forward position
controller) configs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from robot_rl.config import ConfigError
from robot_rl.hardware import conversions as conv
from robot_rl.hardware.arm_config import load_arm_config
from robot_rl.hardware.ros2_control_arm import Ros2ControlArm, UnsafeCommandError
from robot_rl.hardware.safety import SafetyConfig
from robot_rl.robot import EndEffectorCommand, JointCommand
from test_bridge_control import MemoryTransport

CONFIGS = resources.files("robot_rl.hardware") / "configs"
NAN, INF = float("nan"), float("inf")


def make_arm(name: str) -> tuple[Ros2ControlArm, MemoryTransport]:
    config = load_arm_config(Path(str(CONFIGS / f"{name}.yaml")))
    transport = MemoryTransport()
    arm = Ros2ControlArm(config, transport)
    feed(arm, transport, np.array(config.home), stamp=1.0)
    return arm, transport


def feed(arm: Ros2ControlArm, transport: MemoryTransport, q: np.ndarray, stamp: float) -> None:
    """Deliver one joint state from "the driver"."""
    topic = arm.config.state.joint_states_topic
    transport.callbacks[topic](conv.joint_state(transport, stamp, arm.spec.joint_names, q, np.zeros(len(q))))


def published(arm: Ros2ControlArm, transport: MemoryTransport) -> list[np.ndarray]:
    """Joint positions of every command the arm sent its controller, in order."""
    messages = transport.sent[arm.config.command.topic]
    if arm.config.command.mode == "position":
        return [np.asarray(m.data, float) for m in messages]
    return [np.asarray(m.points[0].positions, float) for m in messages]


@pytest.mark.parametrize("name", ["franka", "ur5e"])
def test_non_finite_targets_are_never_published_the_last_target_is_held(name):
    arm, transport = make_arm(name)
    home = np.array(arm.config.home)
    with pytest.raises(UnsafeCommandError, match="non-finite"):  # before anything was sent: nothing is
        arm.command(JointCommand(np.full(arm.spec.n_joints, NAN), 0.0))
        arm.advance(0.01)
    assert published(arm, transport) == []
    good = home + 0.01
    arm.command(JointCommand(good, 0.0))
    feed(arm, transport, home, stamp=1.01)
    arm.advance(0.01)
    for bad in (np.where(np.arange(arm.spec.n_joints) == 2, INF, good), np.full(arm.spec.n_joints, NAN)):
        arm.command(JointCommand(bad, 0.0))
        with pytest.raises(UnsafeCommandError):
            arm.advance(0.01)
    arm.command(JointCommand(good, NAN))  # a non-finite gripper width counts too
    with pytest.raises(UnsafeCommandError):
        arm.advance(0.01)
    sent = published(arm, transport)
    assert len(sent) == 4 and all(np.all(np.isfinite(q)) for q in sent)
    assert all(np.allclose(q, good) for q in sent)  # the good target, then held three times


def test_a_tool_target_whose_ik_is_not_finite_is_held():
    arm, transport = make_arm("ur5e")
    state = arm.read_state()
    arm.command(EndEffectorCommand(np.array([NAN, 0.0, 0.3]), state.ee_quat, 0.0))
    with pytest.raises(UnsafeCommandError):
        arm.advance(0.002)
    assert all(np.all(np.isfinite(q)) for q in published(arm, transport))


def test_targets_are_clipped_into_the_joint_limits_before_publishing():
    arm, transport = make_arm("franka")
    beyond = arm.spec.joint_upper + 0.3
    arm.command(JointCommand(beyond, 0.0))
    arm.advance(0.01)
    (sent,) = published(arm, transport)
    np.testing.assert_array_equal(sent, arm.spec.joint_upper)


def test_non_finite_joint_states_are_ignored():
    arm, transport = make_arm("ur5e")
    home = np.array(arm.config.home)
    feed(arm, transport, np.full(arm.spec.n_joints, NAN), stamp=2.0)
    state = arm.read_state()
    assert state.timestamp == 1.0 and np.allclose(state.joint_pos, home)


def test_the_arms_maxima_bound_the_limits_it_is_given():
    config = load_arm_config(Path(str(CONFIGS / "franka.yaml")))
    loose = SafetyConfig(workspace_low=config.safety.workspace_low, workspace_high=config.safety.workspace_high,
                         max_tool_speed=0.8)  # valid on its own (absolute maximum 1 m/s), not on a Franka
    with pytest.raises(ConfigError, match=r"safety\.max_tool_speed: must be finite and <= 0\.5 \(franka_fr3 maximum\)"):
        Ros2ControlArm(config, MemoryTransport(), loose)
