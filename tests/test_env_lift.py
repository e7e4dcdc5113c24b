"""The lift task (``RobotRL/ArmLift-v0``): reset distribution (random or fixed start), success
(cube held more than 0.1 m above its rest height), rewards, termination and the scene."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.config import ConfigError
from robot_rl.envs import ENV_IDS, load_env_config
from robot_rl.envs.experts import make_expert
from robot_rl.envs.tasks import LiftTask


def run_expert(env, seed: int, steps: int | None = None):
    """Reset with ``seed`` and run the scripted expert; yields (obs, reward, terminated, info)."""
    obs, _ = env.reset(seed=seed)
    expert = make_expert(env)
    expert.reset()
    for _ in range(steps or env.unwrapped.config.task.max_episode_steps):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        yield obs, reward, terminated, info
        if terminated or truncated:
            return


def test_registered_with_its_config_and_scene(make_env):
    assert ENV_IDS["lift"] == "RobotRL/ArmLift-v0"
    config = load_env_config("lift")
    assert (config.task.success_threshold, config.task.max_episode_steps, config.task.object_start) == (0.1, 50, "random")
    env = make_env("lift")
    obs, info = env.reset(seed=0)
    assert set(obs) == {"joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper_width", "cube_pos", "cube_quat",
                        "cube_offset"}
    assert env.observation_space.contains(obs) and info == {"is_success": False}
    # The pick scene's cube; the goal marker sits at the height to clear above the cube's start.
    state = env.unwrapped.robot.read_state()
    np.testing.assert_allclose(state.objects["goal"][:2], obs["cube_pos"][:2], atol=1e-3)
    assert state.objects["goal"][2] == pytest.approx(LiftTask.cube_half + 0.1)
    assert obs["cube_pos"][2] == pytest.approx(LiftTask.cube_half, abs=2e-3)  # at rest on the table


def test_random_and_fixed_starts(make_env):
    random_env = make_env("lift")
    cubes = [random_env.reset(seed=seed)[0]["cube_pos"] for seed in range(3)]
    assert np.linalg.norm(cubes[0][:2] - cubes[1][:2]) > 1e-3
    fixed_env = make_env("lift", overrides={"task": {"object_start": "fixed"}})
    fixed = [fixed_env.reset(seed=seed)[0] for seed in range(3)]
    for obs in fixed:
        np.testing.assert_allclose(obs["cube_pos"][:2], [0.5, 0.0], atol=1e-3)
        np.testing.assert_allclose(obs["cube_quat"], [1.0, 0.0, 0.0, 0.0], atol=1e-3)
    assert not np.array_equal(fixed[0]["joint_pos"], fixed[1]["joint_pos"])  # the arm's start still varies
    with pytest.raises(ConfigError, match=r"object_start.*'reach'"):
        make_env("reach", overrides={"task": {"object_start": "fixed"}})


def test_success_needs_the_cube_held_above_the_height(make_env):
    env = make_env("lift", reward_type="sparse")
    rows = list(run_expert(env, seed=3))
    heights = np.array([obs["cube_pos"][2] - LiftTask.cube_half for obs, *_ in rows])
    success = np.array([info["is_success"] for *_, info in rows])
    rewards = np.array([reward for _, reward, _, _ in rows])
    assert success[-1] and np.array_equal(rewards, success.astype(float))
    assert np.all(heights[success] > 0.1)
    assert not success[heights <= 0.1].any()
    # Let go: the cube falls, success ends even though it was lifted.
    env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))
    for _ in range(5):
        obs, reward, _, _, info = env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))
    assert not info["is_success"] and reward == 0.0 and obs["cube_pos"][2] < 0.05


def test_dense_reward_is_in_unit_interval_and_one_only_at_success(make_env):
    env = make_env("lift")
    rows = list(run_expert(env, seed=5))
    rewards = np.array([reward for _, reward, _, _ in rows])
    success = np.array([info["is_success"] for *_, info in rows])
    assert np.all((rewards >= 0.0) & (rewards <= 1.0))
    assert np.array_equal(rewards == 1.0, success) and success[-1]
    first = int(np.argmax(success))
    assert np.all(np.diff(rewards[:first][-8:]) >= -0.05)  # climbing while grasping and lifting


def test_terminate_on_success_ends_the_episode(make_env):
    env = make_env("lift", overrides={"task": {"terminate_on_success": True}})
    rows = list(run_expert(env, seed=7))
    _, reward, terminated, info = rows[-1]
    assert terminated and info["is_success"] and reward == 1.0
    assert len(rows) < env.unwrapped.config.task.max_episode_steps
    assert not any(terminated for _, _, terminated, _ in rows[:-1])


def test_robot_rl_record_task_lift(tmp_path, capsys):
    """``robot-rl record --task lift`` records the lift expert's successful episodes."""
    import json

    from robot_rl.cli import main
    from robot_rl.data import EpisodeStore

    path = tmp_path / "lift.zarr"
    assert main(["record", "--task", "lift", "--episodes", "3", "--out", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "lift" and summary["successes"] == 3
    with EpisodeStore.open(path) as store:
        assert store.n_episodes == 3 and store.episodes["success"].all()
        assert "cube_pos" in store.obs_keys and "goal_pos" not in store.obs_keys
