"""The robot-kind registry (``robot_rl.envs.robots``): new kinds plug into ``gym.make`` and
``make_arm_env`` without editing ``ArmEnv``; unknown kinds are a clear error; ``sim`` and ``ros2``
come from entry points. Also the optional camera capability of the Robot contract."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.config import ConfigError
from robot_rl.envs import (
    EnvConfig,
    RenderingNotSupportedError,
    make_arm_env,
    register_robot_kind,
    robot_kinds,
    unregister_robot_kind,
)
from robot_rl.envs import robots
from robot_rl.robot import CameraRobot, Robot, RobotSpec, StaleStateError


class CountingArm:
    """A Robot (not a CameraRobot) around a real SimArm: counts the steps it was asked for."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.spec: RobotSpec = inner.spec
        self.advances = 0

    def reset(self, request):
        return self.inner.reset(request)

    def command(self, command):
        self.inner.command(command)

    def advance(self, duration):
        self.advances += 1
        return self.inner.advance(duration)

    def read_state(self):
        return self.inner.read_state()

    def stop(self):
        self.inner.stop()

    def close(self):
        self.inner.close()


@pytest.fixture
def counting_kind():
    """Registers kind ``counting_sim`` (a CountingArm over the task's SimArm) for one test."""
    from robot_rl.sim.sim_arm import make_sim_arm

    built: list[CountingArm] = []

    def factory(config: EnvConfig) -> CountingArm:
        built.append(CountingArm(make_sim_arm(config)))
        return built[-1]

    register_robot_kind("counting_sim", factory)
    yield built
    unregister_robot_kind("counting_sim")


def test_registered_kind_is_used_by_gym_make(counting_kind):
    env = gym.make("RobotRL/ArmPush-v0", robot="counting_sim")
    try:
        arm = env.unwrapped.robot
        assert isinstance(arm, CountingArm) and counting_kind == [arm]
        assert isinstance(arm, Robot) and not isinstance(arm, CameraRobot)
        obs, _ = env.reset(seed=0)
        assert "cube_pos" in obs  # the push scene: the factory saw the task
        for _ in range(3):
            env.step(env.action_space.sample())
        assert arm.advances == 3
    finally:
        env.close()


def test_registered_kind_via_config_and_make_arm_env(counting_kind):
    env = make_arm_env("reach", overrides={"robot": {"kind": "counting_sim"}})
    try:
        assert env.unwrapped.config.robot.kind == "counting_sim"
        assert isinstance(env.unwrapped.robot, CountingArm)
    finally:
        env.close()


def test_unknown_kind_lists_the_available_ones(counting_kind):
    with pytest.raises(ConfigError) as caught:
        gym.make("RobotRL/ArmReach-v0", robot="warp_drive")
    message = str(caught.value)
    assert "unknown robot kind 'warp_drive'" in message
    for kind in ("counting_sim", "ros2", "sim"):
        assert kind in message
    assert set(robot_kinds()) >= {"counting_sim", "ros2", "sim"}


def test_registering_twice_needs_replace():
    def first(config):
        raise AssertionError("not built")

    def second(config):
        raise AssertionError("not built")

    register_robot_kind("twice", first)
    try:
        register_robot_kind("twice", first)  # the same factory again: fine
        with pytest.raises(ValueError, match="already registered"):
            register_robot_kind("twice", second)
        register_robot_kind("twice", second, replace=True)
        assert robots.robot_factory("twice") is second
    finally:
        unregister_robot_kind("twice")
    with pytest.raises(ValueError, match="non-empty string"):
        register_robot_kind("", first)
    with pytest.raises(ValueError, match="callable"):
        register_robot_kind("not_callable", "robot_rl.sim:SimArm")


def test_sim_and_ros2_resolve_through_entry_points():
    advertised = {ep.name: ep.value for ep in metadata.entry_points(group=robots.ENTRY_POINT_GROUP)}
    assert advertised["sim"] == "robot_rl.sim.sim_arm:make_sim_arm"
    assert advertised["ros2"] == "robot_rl.hardware.ros2_arm:make_ros2_arm"
    for kind in ("sim", "ros2"):
        unregister_robot_kind(kind)  # force the entry-point path
        factory = robots.robot_factory(kind)
        assert f"{factory.__module__}:{factory.__name__}" == advertised[kind]
    # Only resolved: no Ros2Arm (hence no DDS participant) is created here.


def test_broken_entry_point_is_a_clear_error(monkeypatch):
    broken = metadata.EntryPoint(name="broken", value="robot_rl.no_such_module:factory",
                                 group=robots.ENTRY_POINT_GROUP)
    monkeypatch.setattr(robots, "_entry_points", lambda: (broken,))
    with pytest.raises(ConfigError, match=r"robot kind 'broken' \(robot_rl.no_such_module:factory\) could not be loaded"):
        robots.robot_factory("broken")


def test_fresh_interpreter_gym_make_loads_sim_only_when_asked():
    """``import robot_rl`` alone makes ``gym.make`` work; MuJoCo arrives with the first sim env,
    ROS 2 / DDS never."""
    script = r"""
import json, os, sys
os.environ.setdefault("MUJOCO_GL", "egl")
import gymnasium as gym
import robot_rl
before = sorted(m for m in ("mujoco", "robot_rl.sim", "robot_rl.hardware", "cyclonedds") if m in sys.modules)
env = gym.make("RobotRL/ArmReach-v0")
env.reset(seed=0)
after = sorted(m for m in ("mujoco", "robot_rl.sim", "robot_rl.hardware", "cyclonedds") if m in sys.modules)
print(json.dumps({"before": before, "after": after, "robot": type(env.unwrapped.robot).__module__}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"before": [], "after": ["mujoco", "robot_rl.sim"], "robot": "robot_rl.sim.sim_arm"}


# --------------------------------------------------------------------------- cameras
def test_render_without_cameras_is_a_clear_error(counting_kind):
    env = gym.make("RobotRL/ArmReach-v0", robot="counting_sim", render_mode="rgb_array")
    try:
        env.reset(seed=0)
        with pytest.raises(RenderingNotSupportedError, match=r"has no cameras.*CameraRobot.*render_mode=None"):
            env.render()
    finally:
        env.close()


def test_sim_arm_is_a_camera_robot(make_arm):
    arm = make_arm("reach")
    assert isinstance(arm, CameraRobot) and {"scene", "wrist"} <= set(arm.spec.cameras)
    image = arm.render("wrist", 32, 48)
    assert image.shape == (32, 48, 3) and image.dtype == np.uint8


def test_images_need_cameras_the_robot_has(make_arm):
    from robot_rl.envs import ArmEnv, load_env_config

    config = load_env_config("reach", overrides={"observation": {"images": True, "cameras": ["scene", "top"]}})
    with pytest.raises(ValueError, match=r"observation.cameras: the robot .* has no camera 'top'"):
        ArmEnv(config, robot=CountingArm(make_arm("reach")))


def test_robot_errors_are_in_the_contract():
    from robot_rl.robot import RobotError, SafetyStopError

    assert issubclass(StaleStateError, RobotError) and issubclass(SafetyStopError, RobotError)
    import robot_rl.hardware.bridge as bridge
    import robot_rl.hardware.ros2_arm as ros2_arm

    assert bridge.StaleStateError is StaleStateError and ros2_arm.SafetyStopError is SafetyStopError
