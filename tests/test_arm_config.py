"""Real-arm configs: the shipped Franka and UR5e files load and convert to a RobotSpec, and every
malformed config is refused with an error naming the file and the offending key."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from robot_rl.config import ConfigError
from robot_rl.hardware.arm_config import arm_kinematics, load_arm_config, to_robot_spec
from robot_rl.hardware.safety import ABSOLUTE_MAXIMA
from robot_rl.robot import RobotSpec

CONFIGS = resources.files("robot_rl.hardware") / "configs"
SHIPPED = {"franka": 7, "ur5e": 6}


@pytest.mark.parametrize("arm", sorted(SHIPPED))
def test_shipped_configs_load_and_convert(arm):
    config = load_arm_config(Path(str(CONFIGS / f"{arm}.yaml")))
    spec = to_robot_spec(config)
    assert isinstance(spec, RobotSpec)
    assert spec.n_joints == SHIPPED[arm]
    for array in (spec.joint_lower, spec.joint_upper, spec.joint_velocity_limit, spec.home):
        assert array.shape == (spec.n_joints,)
    assert np.all(spec.joint_lower < spec.home) and np.all(spec.home < spec.joint_upper)
    assert np.all(spec.joint_velocity_limit > 0)
    assert spec.gripper_max_width == 0.0  # neither ships a topic-driven gripper
    chain = arm_kinematics(config)
    assert chain.n_joints == spec.n_joints
    np.testing.assert_array_equal(chain.lower, spec.joint_lower)
    tcp, quat = chain.forward(spec.home)
    assert np.all(tcp >= config.safety.workspace_low) and np.all(tcp <= config.safety.workspace_high)
    assert abs(quat[0]) < 0.01  # home points the tool straight down (a half turn about a horizontal axis)
    assert config.command.message_type in ("std_msgs/msg/Float64MultiArray", "trajectory_msgs/msg/JointTrajectory")


def test_shipped_controller_topics():
    franka = load_arm_config(Path(str(CONFIGS / "franka.yaml")))
    assert (franka.command.mode, franka.command.topic) == ("trajectory", "/fr3_arm_controller/joint_trajectory")
    assert franka.command.message_type == "trajectory_msgs/msg/JointTrajectory"
    assert franka.state.joint_states_topic == "/franka/joint_states"
    ur5e = load_arm_config(Path(str(CONFIGS / "ur5e.yaml")))
    assert (ur5e.command.mode, ur5e.command.topic) == ("position", "/forward_position_controller/commands")
    assert ur5e.command.message_type == "std_msgs/msg/Float64MultiArray"


def test_tcp_override_moves_the_tool_point(tmp_path):
    base = yaml.safe_load((CONFIGS / "ur5e.yaml").read_text())
    path = tmp_path / "ur5e_gripper.yaml"
    path.write_text(yaml.safe_dump({**base, "tcp": {"position": [0.0, 0.0, 0.15], "quat": [1, 0, 0, 0]}}))
    config = load_arm_config(path)
    home = np.array(config.home)
    flange, _ = arm_kinematics(load_arm_config(Path(str(CONFIGS / "ur5e.yaml")))).forward(home)
    tool, _ = arm_kinematics(config).forward(home)
    np.testing.assert_allclose(tool, flange + [0.0, 0.0, -0.15], atol=1e-6)  # home points the tool down


def _franka() -> dict:
    return yaml.safe_load((CONFIGS / "franka.yaml").read_text())


def _set(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def _swap_limit(data: dict) -> dict:
    data = copy.deepcopy(data)
    data["joint_lower"][3], data["joint_upper"][3] = data["joint_upper"][3], data["joint_lower"][3]
    return data


def _drop(key: str) -> dict:
    data = _franka()
    del data[key]
    return data


BAD = [
    # (id, config, words the error must contain besides the file name)
    ("unknown top-level key", _set(_franka(), "joint_limits", [1.0]), ["joint_limits", "unknown key"]),
    ("unknown nested key", _set(_franka(), "command.topc", "/x"), ["command.topc", "unknown key"]),
    ("wrong type", _set(_franka(), "command.rate_hz", "fast"), ["command.rate_hz", "expected float"]),
    ("wrong item type", _set(_franka(), "joint_names", ["a", 2, "c", "d", "e", "f", "g"]), ["joint_names[1]", "expected str"]),
    ("bad literal", _set(_franka(), "command.mode", "velocity"), ["command.mode", "'position'"]),
    ("mismatched lengths", _set(_franka(), "joint_upper", [1.0] * 6), ["joint_upper", "expected 7 values"]),
    ("inverted limits", _swap_limit(_franka()), ["joint_lower[3]", "joint_upper[3]", "fr3_joint4"]),
    ("non-positive velocity", _set(_franka(), "joint_velocity_limit", [2.62] * 6 + [0.0]), ["joint_velocity_limit[6]", "positive"]),
    ("home outside limits", _set(_franka(), "home", [0.0, -0.3, 0.0, 0.5, 0.0, 1.9, 0.785]), ["home[3]", "outside the joint limits"]),
    ("unknown chain", _set(_franka(), "kinematics", "kuka_iiwa"), ["kinematics", "kuka_iiwa", "franka_panda"]),
    ("chain size", _set(_franka(), "kinematics", "ur5e"), ["kinematics", "6 joints"]),
    ("inverted workspace", _set(_franka(), "safety.workspace_low", [0.8, -0.35, 0.02]), ["workspace_low"]),
    ("home outside workspace", _set(_franka(), "safety.workspace_high", [0.75, 0.35, 0.3]), ["home", "workspace box"]),
    ("non-positive rate", _set(_franka(), "command.rate_hz", 0), ["command", "rate_hz", "positive"]),
    ("gripper without topics", _set(_franka(), "gripper.kind", "topic"), ["gripper", "command_topic", "required"]),
    ("non-unit tcp quaternion", _set(_franka(), "tcp", {"position": [0, 0, 0.2], "quat": [1.0, 1.0, 0.0, 0.0]}),
     ["tcp", "quat", "unit"]),
    ("tcp half given", _set(_franka(), "tcp", {"position": [0, 0, 0.2]}), ["tcp", "give both"]),
    ("unknown tcp key", _set(_franka(), "tcp", {"offset": [0, 0, 0.2]}), ["tcp.offset", "unknown key"]),
    ("missing required key", _drop("joint_names"), ["joint_names", "required key missing"]),
    ("section not a mapping", _set(_franka(), "state", "/joint_states"), ["state", "expected a mapping"]),
    # Safety limits: finite, positive, no looser than the arm's maxima, which lie within the absolute ones.
    ("safety looser than maxima", _set(_franka(), "safety.max_tool_speed", 0.8),
     ["safety.max_tool_speed", "<= 0.5", "franka_fr3 maximum", "0.8"]),
    ("NaN safety limit", _set(_franka(), "safety.command_timeout", float("nan")), ["safety.command_timeout", "nan"]),
    ("inf safety limit", _set(_franka(), "safety.max_tool_speed", float("inf")), ["safety.max_tool_speed", "inf"]),
    ("negative safety limit", _set(_franka(), "safety.state_timeout", -0.05), ["safety.state_timeout", "positive"]),
    ("joint speed fraction above 1", _set(_franka(), "safety.max_joint_speed_fraction", 1.5),
     ["safety.max_joint_speed_fraction", "at most 1"]),
    ("watchdog slower than maximum", _set(_franka(), "safety.command_timeout", 3.0),
     ["safety.command_timeout", "<= 1", "franka_fr3 maximum"]),
    ("workspace beyond the maximum box", _set(_franka(), "safety.workspace_high", [0.75, 0.35, 1.5]),
     ["safety.workspace_high[2]", "<= 1.19"]),
    ("maxima above the absolute ones", _set(_franka(), "safety_maxima.max_tool_speed", 3.0),
     ["safety_maxima.max_tool_speed", "absolute maximum"]),
    ("NaN maximum", _set(_franka(), "safety_maxima.state_timeout", float("nan")), ["safety_maxima.state_timeout"]),
    ("infinite joint velocity", _set(_franka(), "joint_velocity_limit", [2.62] * 6 + [float("inf")]),
     ["joint_velocity_limit[6]", "finite"]),
]


@pytest.mark.parametrize("data, words", [pytest.param(d, w, id=i) for i, d, w in BAD])
def test_malformed_configs_name_file_and_key(tmp_path, data, words):
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_arm_config(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, message


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_arm_config(tmp_path / "missing.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_arm_config(path)


@pytest.mark.parametrize("arm", sorted(SHIPPED))
def test_shipped_configs_declare_maxima_that_bound_their_limits(arm):
    config = load_arm_config(Path(str(CONFIGS / f"{arm}.yaml")))
    assert "safety_maxima" in yaml.safe_load((CONFIGS / f"{arm}.yaml").read_text())  # explicit, not the defaults
    maxima = config.safety_maxima
    assert maxima.max_joint_speed_fraction <= 1.0 and maxima.max_tool_speed <= ABSOLUTE_MAXIMA.max_tool_speed
    config.safety.check_within(maxima, config.name)


@pytest.mark.parametrize("key, tight, loose", [
    ("max_tool_speed", 0.1, 0.8), ("command_timeout", 0.2, 2.0), ("state_timeout", 0.02, 0.2),
    ("max_joint_speed_fraction", 0.2, 1.5), ("max_tool_rotation_speed", 0.5, 2.5),
])
def test_bridge_layers_tighten_an_arms_limits_but_never_loosen_them(key, tight, loose):
    from robot_rl.hardware.node import load_bridge_config

    franka = str(CONFIGS / "franka.yaml")
    assert getattr(load_bridge_config(None, {"safety": {key: tight}}, franka).safety, key) == tight
    with pytest.raises(ConfigError) as info:
        load_bridge_config(None, {"safety": {key: loose}}, franka)
    assert f"safety.{key}" in str(info.value) and repr(loose) in str(info.value)
    for removed in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match=rf"safety\.{key}"):
            load_bridge_config(None, {"safety": {key: removed}}, franka)


def test_bridge_config_file_cannot_move_the_workspace_past_the_arm(tmp_path):
    from robot_rl.hardware.node import load_bridge_config

    bridge_yaml = tmp_path / "bridge.yaml"
    bridge_yaml.write_text("safety:\n  workspace_low: [-0.9, -0.35, 0.05]\n")
    with pytest.raises(ConfigError, match=r"safety\.workspace_low\[0\]: must be >= -0\.85 \(the ur5e maximum"):
        load_bridge_config(bridge_yaml, None, str(CONFIGS / "ur5e.yaml"))
