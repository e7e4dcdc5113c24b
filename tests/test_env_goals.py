"""The goal-conditioned interface of the goal tasks (reach, push, pick, peg): gymnasium-robotics'
observation dicts (``GoalObservation``), ``compute_reward`` / ``compute_terminated`` equal to the
env's own reward over real simulated states (random and expert actions, sparse and dense), goal
relabelling of observations, and Stable-Baselines3's ``HerReplayBuffer`` training on it."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.envs import GoalObservation
from robot_rl.envs.experts import make_expert

GOAL_TASKS = ("reach", "push", "pick", "peg")


def visit_states(env, episodes: int = 4, seed: int = 0):
    """Steps of a goal env (``GoalObservation``) driven by the scripted expert, every other
    episode after 10 random actions, so that random states, successes and failures are all
    visited: (obs, reward, terminated, info)."""
    rng = np.random.default_rng(seed)
    expert = make_expert(env)
    rows = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        raw = env.unwrapped._observe(env.unwrapped._state)  # the expert reads the plain observation
        expert.reset()
        for step in range(env.unwrapped.config.task.max_episode_steps):
            explore = episode % 2 == 1 and step < 10
            action = rng.uniform(-1, 1, env.action_space.shape) if explore else expert.act(raw)
            obs, reward, terminated, truncated, info = env.step(np.asarray(action, np.float32))
            raw = env.unwrapped._observe(env.unwrapped._state)
            rows.append((obs, reward, terminated, info))
            if terminated or truncated:
                break
    return rows


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
@pytest.mark.parametrize("task", GOAL_TASKS)
def test_compute_reward_equals_the_env_reward(make_env, task, reward_type):
    env = make_env(task, reward_type=reward_type, goal_observation=True,
                   overrides={"task": {"terminate_on_success": task == "reach"}})
    rows = visit_states(env)
    compute_reward = env.get_wrapper_attr("compute_reward")
    compute_terminated = env.get_wrapper_attr("compute_terminated")
    rewards = np.array([reward for _, reward, _, _ in rows])
    assert 0 < np.mean([info["is_success"] for *_, info in rows]) < 1  # both outcomes are tested
    for obs, reward, terminated, info in rows:  # one sample at a time: exactly the env's numbers
        assert compute_reward(obs["achieved_goal"], obs["desired_goal"], info) == reward
        assert compute_terminated(obs["achieved_goal"], obs["desired_goal"], info) == terminated
    achieved = np.stack([obs["achieved_goal"] for obs, *_ in rows])
    desired = np.stack([obs["desired_goal"] for obs, *_ in rows])
    infos = [info for *_, info in rows]
    batched = compute_reward(achieved, desired, infos)  # (B, g) → (B,), per-row info dicts (SB3)
    assert batched.shape == (len(rows),)
    np.testing.assert_array_equal(batched, rewards)
    if "reward_context" in infos[0]:  # one info dict of (B, …) arrays (what our replay passes)
        stacked = {"reward_context": {key: np.stack([info["reward_context"][key] for info in infos])
                                      for key in infos[0]["reward_context"]}}
        np.testing.assert_array_equal(compute_reward(achieved, desired, stacked), rewards)
    assert not env.get_wrapper_attr("compute_truncated")(achieved, desired, infos).any()


@pytest.mark.parametrize("task", GOAL_TASKS)
def test_relabelled_observation_is_what_the_env_shows_for_that_goal(make_env, task):
    """Moving the task's goal and observing again gives the entries relabel_observation computes,
    and their desired goal is the one asked for."""
    env = make_env(task)
    base = env.unwrapped
    env.reset(seed=4)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    rng = np.random.default_rng(0)
    for _ in range(5):
        goal = base.task.achieved_goal(obs) + rng.uniform(-0.05, 0.05, base.task.goal_dim).astype(np.float32)
        relabelled = base.task.relabel_observation(obs, goal)
        assert set(relabelled) == set(base.task.goal_keys)
        np.testing.assert_allclose(base.task.desired_goal({**obs, **relabelled}), goal, atol=1e-6)
        # The env asked for that goal: its task goal moved (the peg hole is its rim, above the target).
        base.task.goal = np.asarray(relabelled["hole_pos" if task == "peg" else "goal_pos"], float)
        observed = base._observe(base._state)
        for key, value in relabelled.items():
            np.testing.assert_allclose(value, observed[key], atol=1e-6, err_msg=key)


def test_goal_observation_layout(make_env):
    env = make_env("pick", goal_observation=True)
    plain = make_env("pick")
    obs, info = env.reset(seed=0)
    raw, _ = plain.reset(seed=0)
    space = env.observation_space
    assert set(space.spaces) == {"observation", "achieved_goal", "desired_goal"} and space.contains(obs)
    # Everything but the goal-dependent entries, in FlattenState's sorted order.
    keys = sorted(k for k in raw if k not in ("goal_pos", "goal_offset"))
    np.testing.assert_array_equal(obs["observation"], np.concatenate([raw[k].ravel() for k in keys]))
    np.testing.assert_array_equal(obs["achieved_goal"], raw["cube_pos"])
    np.testing.assert_array_equal(obs["desired_goal"], raw["goal_pos"])
    assert set(info["reward_context"]) == {"ee_pos", "gripper_width"}
    push = make_env("push", goal_observation=True)
    assert push.observation_space["desired_goal"].shape == (2,)  # the table plane
    with_images = make_env("reach", goal_observation=True, images=True)
    assert with_images.observation_space["image_scene"].shape == (128, 128, 3)
    assert with_images.reset(seed=0)[0]["image_wrist"].dtype == np.uint8


def test_goal_observation_needs_a_goal_task_and_dense_context(make_env):
    with pytest.raises(ValueError, match="'lift' has no goal"):
        GoalObservation(make_env("lift"))
    env = make_env("push", goal_observation=True)
    obs, _ = env.reset(seed=0)
    compute_reward = env.get_wrapper_attr("compute_reward")
    with pytest.raises(ValueError, match="copy_info_dict=True"):  # SB3's default passes empty infos
        compute_reward(obs["achieved_goal"][None], obs["desired_goal"][None], [{}])
    sparse = make_env("push", goal_observation=True, reward_type="sparse")
    obs, _ = sparse.reset(seed=0)
    assert sparse.get_wrapper_attr("compute_reward")(obs["achieved_goal"][None], obs["desired_goal"][None], [{}]) == [0.0]
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        compute_reward(np.zeros((4, 3)), np.zeros((4, 3)), {})


@pytest.mark.parametrize("task, reward_type", [("reach", "sparse"), ("pick", "dense")])
def test_stable_baselines3_sac_with_her_replay_buffer(make_env, task, reward_type):
    """SB3's HerReplayBuffer relabels through our compute_reward; a short SAC run must go through
    its virtual-sample path (learning_starts < steps) without error."""
    import torch
    from stable_baselines3 import SAC, HerReplayBuffer

    torch.set_num_threads(1)
    env = make_env(task, reward_type=reward_type, goal_observation=True,
                   overrides={"task": {"max_episode_steps": 25}})
    model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer, learning_starts=100, batch_size=64,
                replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future",
                                      "copy_info_dict": reward_type == "dense"},
                policy_kwargs={"net_arch": [32, 32]}, seed=0, device="cpu")
    model.learn(total_timesteps=300)
    assert model.num_timesteps == 300
    buffer = model.replay_buffer
    samples = buffer.sample(64, env=None)
    rewards = samples.rewards.numpy().ravel()
    assert rewards.shape == (64,) and np.all((rewards >= 0) & (rewards <= 1))
