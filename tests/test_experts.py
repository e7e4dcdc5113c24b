"""Scripted experts solve every task on the real simulation (CI subset: 10 held-out episodes per
task; the 100-episode evaluation is ``robot-rl sim experts``)."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.envs.experts import EXPERTS, evaluate_expert, make_expert

from conftest import TASKS

EPISODES = 10
SEED = 1000  # held out: away from the seeds 0-99 of the 100-episode evaluation


def test_there_is_an_expert_per_task():
    assert set(EXPERTS) == set(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_expert_success_rate(task):
    result = evaluate_expert(task, episodes=EPISODES, seed=SEED)
    assert result["task"] == task
    assert result["episodes"] == EPISODES
    assert result["success_rate"] == pytest.approx(result["successes"] / EPISODES)
    assert result["success_rate"] >= 0.9, result


@pytest.mark.parametrize("object_start", ["random", "fixed"])
def test_lift_expert_succeeds_95_percent_over_50_seeds(object_start):
    result = evaluate_expert("lift", episodes=50, seed=0, overrides={"task": {"object_start": object_start}})
    assert result["success_rate"] >= 0.95, result


def test_expert_with_yaw_actions():
    result = evaluate_expert("pick", episodes=5, seed=SEED + 50, overrides={"control": {"use_yaw": True}})
    assert result["success_rate"] >= 0.8, result


def test_expert_actions_are_valid_and_solve_reach(make_env):
    env = make_env("reach", reward_type="sparse")
    expert = make_expert(env)
    obs, _ = env.reset(seed=SEED)
    expert.reset()
    rewards = []
    for _ in range(env.unwrapped.config.task.max_episode_steps):
        action = expert.act(obs)
        assert action.shape == env.action_space.shape
        assert np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1.0)
        obs, reward, _, _, info = env.step(action)
        rewards.append(reward)
    assert info["is_success"] and rewards[-1] == 1.0
    assert rewards[0] == 0.0  # it had to move to get there
    assert np.linalg.norm(obs["ee_pos"] - obs["goal_pos"]) < env.unwrapped.config.task.success_threshold


def test_expert_refuses_joint_actions(make_env):
    with pytest.raises(ValueError, match=r"ee_delta"):
        make_expert(make_env("reach", action_mode="joint_delta"))
