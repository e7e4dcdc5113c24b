"""The simulated arm behind the bridge's safety supervisor, in process (``robot.sim.supervised``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import robot_rl  # noqa: F401  (registers the RobotRL/* ids)
from robot_rl.hardware.safety import SafetyConfig
from robot_rl.robot import CameraRobot, JointCommand, RandomizableRobot


def lift_env(supervised: bool) -> gym.Env:
    return gym.make("RobotRL/ArmLift-v0", overrides={"robot": {"sim": {"supervised": supervised}}})


def closing_width(env: gym.Env, steps: int) -> float:
    """Finger opening after ``steps`` steps of "close" from fully open, arm still."""
    obs, _ = env.reset(seed=0)
    for _ in range(steps):
        obs, *_ = env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    return float(obs["gripper_width"][0])


def test_the_gripper_closes_no_faster_than_the_bridge_allows():
    bare, supervised = lift_env(False), lift_env(True)
    assert type(supervised.unwrapped.robot).__name__ == "SupervisedArm"
    open_width = float(supervised.reset(seed=0)[0]["gripper_width"][0])
    limit = SafetyConfig().max_gripper_speed * supervised.unwrapped.dt  # per 0.1 s step
    after_one = closing_width(supervised, 1)
    assert open_width - after_one <= limit + 2e-3  # the opening target moves 2 cm per step at most
    assert closing_width(bare, 1) < after_one - 0.01  # the bare sim's target jumps: much further closed
    assert closing_width(supervised, 8) < 0.01  # and it does close, in 0.4 s
    bare.close(), supervised.close()


def test_capabilities_and_resets_pass_through(make_arm):
    env = lift_env(True)
    robot = env.unwrapped.robot
    assert isinstance(robot, CameraRobot) and isinstance(robot, RandomizableRobot)
    robot.set_dynamics({"friction": 0.8})
    env.reset(seed=1)
    state = robot.read_state()
    robot.command(JointCommand(state.joint_pos + 0.5, state.gripper_width))  # a big joint jump ...
    after = robot.advance(0.1)
    limit = SafetyConfig().max_joint_speed_fraction * robot.spec.joint_velocity_limit * 0.1
    assert np.all(np.abs(after.joint_pos - state.joint_pos) <= limit + 0.02)  # ... is rate-limited
    assert after.timestamp - state.timestamp == pytest.approx(0.1, abs=1e-6)  # ten 10 ms supervisor ticks
    env.close()


def test_the_scripted_expert_still_solves_lift_behind_the_supervisor():
    from robot_rl.envs.experts import evaluate_expert

    result = evaluate_expert("RobotRL/ArmLift-v0", 5, overrides={"robot": {"sim": {"supervised": True}}})
    assert result["success_rate"] == 1.0
