"""Typed YAML configs: layering, ``--set`` parsing and error messages that name key and file."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest

from robot_rl.config import ConfigError, from_dict, parse_overrides, read_yaml, to_dict
from robot_rl.envs import ENV_IDS, make_arm_env
from robot_rl.envs.config import EnvConfig, load_env_config, task_config_path


def write(tmp_path, text: str, name: str = "user.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- task defaults
@pytest.mark.parametrize("task", list(ENV_IDS))
def test_every_task_yaml_loads_and_names_its_task(task):
    config = load_env_config(task)
    assert config.task.name == task
    assert task_config_path(task).is_file()
    # The task YAML is a real layer: what it sets differs from the dataclass defaults.
    raw = read_yaml(task_config_path(task))
    assert config.task.max_episode_steps == raw["task"]["max_episode_steps"]
    assert config.task.success_threshold == pytest.approx(raw["task"]["success_threshold"])


def test_defaults_give_ten_hertz_control():
    config = load_env_config("reach")
    assert config.control.control_hz == 10.0
    assert config.control.action_mode == "ee_delta"
    assert config.observation.images is False


# --------------------------------------------------------------------------- layering
def test_layering_task_yaml_then_user_yaml_then_overrides(tmp_path):
    # peg.yaml sets control.position_scale 0.02 and task.max_episode_steps 80.
    user = write(tmp_path, "task:\n  max_episode_steps: 60\ncontrol:\n  yaw_scale: 0.5\n  use_yaw: true\n")
    config = load_env_config("peg", user, {"control": {"yaw_scale": 0.1}})
    assert config.task.name == "peg"
    assert config.control.position_scale == pytest.approx(0.02)  # from tasks/peg.yaml
    assert config.task.max_episode_steps == 60  # user file beats the task yaml (80)
    assert config.control.use_yaw is True  # user file
    assert config.control.yaw_scale == pytest.approx(0.1)  # override beats the user file (0.5)
    assert config.control.control_hz == 10.0  # untouched default
    assert config.task.success_threshold == pytest.approx(0.02)  # task yaml value kept


def test_task_name_can_come_from_user_file_or_overrides(tmp_path):
    user = write(tmp_path, "task:\n  name: push\n")
    from_file = load_env_config(None, user)
    assert from_file.task.name == "push"
    assert from_file.task.max_episode_steps == 100  # push.yaml was layered in, not reach.yaml
    from_overrides = load_env_config(None, None, {"task": {"name": "pick"}})
    assert from_overrides.task.name == "pick"
    assert from_overrides.task.max_episode_steps == 80


def test_overrides_reach_the_environment():
    env = gym.make(ENV_IDS["reach"], reward_type="sparse",
                   overrides={"control": {"control_hz": 20.0}, "task": {"max_episode_steps": 7}})
    try:
        assert env.unwrapped.config.task.reward_type == "sparse"
        assert env.unwrapped.dt == pytest.approx(0.05)
        env.reset(seed=0)
        env.action_space.seed(0)
        steps = 0
        truncated = terminated = False
        while not (truncated or terminated):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
        assert steps == 7 and truncated
    finally:
        env.close()


def test_make_arm_env_accepts_an_envconfig_object():
    base = load_env_config("reach")
    config = dataclasses.replace(base, task=dataclasses.replace(base.task, max_episode_steps=5))
    env = make_arm_env("reach", config, images=False, reward_type="sparse")
    try:
        assert env.unwrapped.config.task.max_episode_steps == 5
        assert env.unwrapped.config.task.reward_type == "sparse"
    finally:
        env.close()


def test_to_dict_from_dict_round_trip():
    config = load_env_config("pick", None, {"control": {"use_yaw": True, "workspace_low": [0.3, -0.3, 0.01]}})
    data = to_dict(config)
    assert data["control"]["workspace_low"] == [0.3, -0.3, 0.01]  # tuples become YAML lists
    assert from_dict(EnvConfig, data) == config


# --------------------------------------------------------------------------- errors
def test_unknown_key_names_key_and_file(tmp_path):
    user = write(tmp_path, "control:\n  pos_scale: 0.05\n")
    with pytest.raises(ConfigError) as info:
        load_env_config("reach", user)
    message = str(info.value)
    assert str(user) in message
    assert "control.pos_scale" in message
    assert "unknown key" in message
    assert "position_scale" in message  # lists the valid keys


def test_unknown_top_level_section_names_it(tmp_path):
    user = write(tmp_path, "controller:\n  position_scale: 0.05\n")
    with pytest.raises(ConfigError, match=r"controller: unknown key") as info:
        load_env_config("reach", user)
    assert str(user) in str(info.value)


@pytest.mark.parametrize(
    "yaml_text, key, expected",
    [
        ("control:\n  position_scale: fast\n", "control.position_scale", "expected float, got str ('fast')"),
        ("control:\n  position_scale: true\n", "control.position_scale", "expected float, got bool"),
        ("task:\n  max_episode_steps: 1.5\n", "task.max_episode_steps", "expected int, got float"),
        ("observation:\n  images: 'yes'\n", "observation.images", "expected bool, got str"),
        ("task:\n  reward_type: shaped\n", "task.reward_type", "expected one of 'dense', 'sparse'"),
        ("control:\n  workspace_low: [0.1, 0.2]\n", "control.workspace_low", "expected 3 items, got 2"),
        ("control:\n  workspace_low: [0.1, x, 0.3]\n", "control.workspace_low[1]", "expected float"),
        ("control: 3\n", "control", "expected a mapping, got int"),
        ("task: pick\n", "task", "expected a mapping, got str ('pick')"),
    ],
)
def test_wrong_type_names_key_expected_type_and_file(tmp_path, yaml_text, key, expected):
    user = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_env_config("reach", user)
    message = str(info.value)
    assert message.startswith(f"{user}: ")
    assert f"{key}: " in message
    assert expected in message


def test_ints_widen_to_floats_but_not_the_reverse(tmp_path):
    user = write(tmp_path, "control:\n  control_hz: 20\n")
    config = load_env_config("reach", user)
    assert config.control.control_hz == 20.0 and isinstance(config.control.control_hz, float)


def test_value_checks_name_the_file(tmp_path):
    user = write(tmp_path, "control:\n  control_hz: 0\n")
    with pytest.raises(ConfigError, match=r"control\.control_hz: must be > 0, got 0\.0") as info:
        load_env_config("reach", user)
    assert str(user) in str(info.value)
    with pytest.raises(ConfigError, match=r"workspace_low must be below workspace_high"):
        load_env_config("reach", None, {"control": {"workspace_low": [0.8, 0.0, 0.0]}})


def test_bad_override_is_attributed_to_overrides():
    with pytest.raises(ConfigError) as info:
        load_env_config("reach", None, {"control": {"bogus": 1}})
    assert str(info.value).startswith("overrides: control.bogus: unknown key")


def test_gym_make_reports_config_errors():
    with pytest.raises(ConfigError, match=r"overrides: .*control\.bogus: unknown key"):
        gym.make(ENV_IDS["push"], overrides={"control": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"task\.reward_type: expected one of"):
        gym.make(ENV_IDS["push"], reward_type="shaped")


def test_bad_yaml_syntax_names_the_file(tmp_path):
    user = write(tmp_path, "control:\n  position_scale: [0.1,\n")
    with pytest.raises(ConfigError) as info:
        load_env_config("reach", user)
    assert str(info.value).startswith(f"{user}: invalid YAML")


def test_non_mapping_document_and_missing_file_name_the_file(tmp_path):
    user = write(tmp_path, "- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"top level must be a mapping, got list") as info:
        read_yaml(user)
    assert str(user) in str(info.value)
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"cannot read config") as info:
        load_env_config("reach", missing)
    assert str(missing) in str(info.value)
    assert read_yaml(write(tmp_path, "", "empty.yaml")) == {}


def test_unknown_task_name_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown task 'fly'; choose one of reach, push, pick, peg"):
        load_env_config("fly")
    with pytest.raises(ConfigError, match=r"unknown task 'fly'"):
        load_env_config(None, write(tmp_path, "task:\n  name: fly\n"))
    with pytest.raises(ConfigError, match=r"unknown task"):
        make_arm_env("fly")


# --------------------------------------------------------------------------- --set parsing
def test_parse_overrides_uses_yaml_scalars_and_nests_keys():
    tree = parse_overrides([
        "task.reward_type=sparse",
        "control.position_scale=0.05",
        "control.use_yaw=true",
        "task.max_episode_steps=20",
        "control.workspace_low=[0.3, -0.3, 0.01]",
        "observation.cameras=[scene]",
        "task.name=pick",
    ])
    assert tree == {
        "task": {"reward_type": "sparse", "max_episode_steps": 20, "name": "pick"},
        "control": {"position_scale": 0.05, "use_yaw": True, "workspace_low": [0.3, -0.3, 0.01]},
        "observation": {"cameras": ["scene"]},
    }
    config = load_env_config(None, None, tree)
    assert config.task.name == "pick"
    assert config.control.workspace_low == (0.3, -0.3, 0.01)
    assert config.observation.cameras == ("scene",)


def test_parse_overrides_value_may_contain_equals_and_later_wins():
    assert parse_overrides(["a.b=x=y"]) == {"a": {"b": "x=y"}}
    assert parse_overrides(["a.b=1", "a.b=2"]) == {"a": {"b": 2}}
    assert parse_overrides([]) == {}


@pytest.mark.parametrize(
    "assignment, match",
    [
        (["task.reward_type"], r"--set 'task.reward_type': expected KEY=VALUE"),
        (["=3"], r"--set '=3': expected KEY=VALUE"),
        (["control.workspace_low=[0.3,"], r"--set 'control.workspace_low=\[0.3,': invalid value"),
        (["control=1", "control.use_yaw=true"], r"--set 'control.use_yaw=true': control is set both as a value and a section"),
    ],
)
def test_parse_overrides_errors(assignment, match):
    with pytest.raises(ConfigError, match=match):
        parse_overrides(assignment)


def test_parsed_override_with_wrong_type_is_reported():
    with pytest.raises(ConfigError, match=r"overrides: control.position_scale: expected float, got str \('fast'\)"):
        load_env_config("reach", None, parse_overrides(["control.position_scale=fast"]))


# --------------------------------------------------------------------------- ranges (bounded fields)
@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("task:\n  max_episode_steps: 0\n", "task.max_episode_steps: must be >= 1, got 0"),
        ("control:\n  position_scale: .nan\n", "control.position_scale: expected a finite number, got nan"),
        ("control:\n  workspace_high: [0.7, .inf, 0.4]\n", "control.workspace_high[1]: expected a finite number"),
        ("observation:\n  image_width: -3\n", "observation.image_width: must be >= 1, got -3"),
        ("robot:\n  ros2:\n    state_timeout: 0\n", "robot.ros2.state_timeout: must be > 0, got 0.0"),
        ("robot:\n  sim:\n    timestep: -0.002\n", "robot.sim.timestep: must be > 0, got -0.002"),
    ],
)
def test_out_of_range_values_name_the_full_key_and_the_file(tmp_path, yaml_text, message):
    user = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_env_config("reach", user)
    assert str(info.value).startswith(f"{user}: {message}")


def test_configs_built_in_python_are_checked_too():
    from robot_rl.agents.config import AgentConfig
    from robot_rl.config import FieldError
    from robot_rl.envs.config import ControlConfig
    from robot_rl.training.config import LoopConfig

    with pytest.raises(FieldError, match=r"^actor_lr: must be > 0, got -1$"):
        AgentConfig(actor_lr=-1)
    with pytest.raises(FieldError, match=r"^hidden_sizes\[1\]: must be >= 1, got 0$"):
        AgentConfig(hidden_sizes=(64, 0))
    with pytest.raises(FieldError, match=r"^gamma: must be > 0 and <= 1, got 1.5$"):
        AgentConfig(gamma=1.5)
    with pytest.raises(FieldError, match=r"^critic_lr: must be a finite number, got nan$"):
        AgentConfig(critic_lr=float("nan"))
    with pytest.raises(FieldError, match=r"^torch_threads: must be >= 0, got -3$"):
        LoopConfig(torch_threads=-3)
    with pytest.raises(FieldError, match=r"^workspace_low\[0\]: must be a finite number, got inf$"):
        ControlConfig(workspace_low=(float("inf"), 0.0, 0.0))


def test_every_numeric_setting_declares_its_range():
    """Completeness guard: a new int/float setting must say what values it takes (``bounded``)
    or be listed here with the reason it is free."""
    import typing

    from robot_rl.training.config import TrainConfig

    free = {
        "ControlConfig.workspace_low", "ControlConfig.workspace_high",  # any box, checked low < high
        "AgentConfig.target_entropy",  # any finite number (None: -|A|)
        "TransportConfig.domain_id",  # checked by TransportConfig against ROS's limit
    }
    unchecked = []

    def visit(cls: type) -> None:
        for spec in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[spec.name]
            if dataclasses.is_dataclass(hint):
                visit(hint)
            elif {int, float} & {hint, *typing.get_args(hint)} and "range" not in spec.metadata:
                unchecked.append(f"{cls.__name__}.{spec.name}")

    visit(TrainConfig)
    assert sorted(set(unchecked) - free) == []
