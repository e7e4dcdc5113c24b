"""Hindsight relabelling (HindsightSampler): goals come from the same episode (later steps for
``future``), rewards and terminations are the task's compute_reward / compute_terminated, the
ratio is respected, episode boundaries are never crossed (ring wrap-around and eviction
included), n-step and 1-step targets, mixtures with demonstrations, real Zarr stores left
untouched, the train-config wiring, and a short learning run on sparse reach."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.agents import AGENTS, DataNeeds
from robot_rl.config import ConfigError
from robot_rl.data import EpisodeStore, FeatureSpec, HindsightSampler, MixtureSampler, ReplayBuffer
from robot_rl.data.recorder import open_recording_store
from robot_rl.envs import make_arm_env
from robot_rl.envs.config import TaskConfig
from robot_rl.envs.tasks import make_task
from robot_rl.training import Trainer, load_train_config
from robot_rl.training.recorder import EpisodeRecorder
from robot_rl.training.sampling import make_replay_setup

# Synthetic reach episodes: the tool of episode e is at (e, t, 0) at step t (the final
# observation is t = T), its goal (e, −1, 5) is never reached. A relabelled goal (e', j, 0) so
# names the episode and the observation it came from; reach succeeds only at distance 0.
FEATURES = {"ee_pos": FeatureSpec("float32", (3,)), "goal_pos": FeatureSpec("float32", (3,)),
            "goal_offset": FeatureSpec("float32", (3,)), "action": FeatureSpec("float32", (1,)),
            "reward": FeatureSpec("float32", ()), "terminated": FeatureSpec("bool", ())}
OBS_KEYS = ["ee_pos", "goal_pos", "goal_offset"]
GAMMA = 0.5


def reach_task(**config) -> object:
    return make_task(TaskConfig(name="reach", reward_type="sparse", **config))


def episode(e: int, length: int):
    t = np.arange(length + 1, dtype=np.float32)
    ee = np.stack([np.full_like(t, e), t, np.zeros_like(t)], axis=1)
    goal = np.tile(np.array([e, -1.0, 5.0], np.float32), (length + 1, 1))
    obs = {"ee_pos": ee, "goal_pos": goal, "goal_offset": goal - ee}
    steps = {key: value[:length] for key, value in obs.items()}
    steps.update(action=np.full((length, 1), e, np.float32), reward=np.zeros(length, np.float32),
                 terminated=np.zeros(length, bool))
    return steps, {key: value[length] for key, value in obs.items()}


def length_of(e: int) -> int:
    return 3 + (e * 7) % 9  # 3 … 11 steps


def synthetic_buffer(episodes: range = range(40), capacity: int = 100) -> ReplayBuffer:
    """Wraps around the ring and evicts: 40 episodes of ~7 steps into 100 slots."""
    buffer = ReplayBuffer(FEATURES, OBS_KEYS, capacity)
    for e in episodes:
        buffer.add_episode(*episode(e, length_of(e)))
    return buffer


def expected_targets(e: int, t: int, goal: np.ndarray, n_step: int, terminate: bool):
    """By hand: (reward, discount, next tool position) of the window from step t of episode e
    for ``goal`` (reach: reward 1 exactly where the tool is at the goal)."""
    length, reward = length_of(e), 0.0
    for k in range(n_step):
        if t + k >= length:
            return reward, GAMMA ** k, np.array([e, length, 0.0])
        reached = np.array_equal(np.array([e, t + k + 1, 0.0]), goal)
        reward += GAMMA ** k * reached
        if reached and terminate:
            return reward, 0.0, np.array([e, t + k + 1, 0.0])
    return reward, GAMMA ** n_step, np.array([e, t + n_step, 0.0])


def rows_of(batch):
    return (batch.obs["ee_pos"].numpy(), batch.obs["goal_pos"].numpy(), batch.reward.numpy(),
            batch.discount.numpy(), batch.next_obs["ee_pos"].numpy(), batch.next_obs["goal_pos"].numpy())


# --------------------------------------------------------------------------- goals and targets
@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_goals_come_from_the_same_episode(strategy):
    buffer = synthetic_buffer()
    sampler = HindsightSampler(buffer, reach_task(), strategy, ratio=1.0)
    ee, goal, reward, _, next_ee, next_goal = rows_of(sampler.sample(512, np.random.default_rng(0)))
    stored = set(range(buffer._first_episode, 40))  # only episodes still in the ring
    assert set(ee[:, 0].astype(int)) <= stored
    np.testing.assert_array_equal(goal[:, 0], ee[:, 0])  # never another episode's goal
    assert np.all(goal[:, 2] == 0.0) and np.all(next_goal == goal)
    lengths = np.array([length_of(int(e)) for e in ee[:, 0]])
    index = goal[:, 1]  # the goal is the tool position of observation `index` (1 … T) of the episode
    if strategy == "future":
        assert np.all((index > ee[:, 1]) & (index <= lengths))
        assert 0.0 < reward.mean() < 1.0  # the very next observation is a possible goal
    elif strategy == "final":
        np.testing.assert_array_equal(index, lengths)
    else:
        assert np.all((index >= 1) & (index <= lengths))
        assert (index <= ee[:, 1]).any()  # earlier goals too
    assert np.all(next_ee[:, 0] == ee[:, 0])


@pytest.mark.parametrize("n_step, terminate", [(1, False), (3, False), (3, True)])
def test_rewards_and_discounts_are_recomputed_for_the_new_goal(n_step, terminate):
    sampler = HindsightSampler(synthetic_buffer(), reach_task(terminate_on_success=terminate), "future",
                               ratio=1.0, n_step=n_step, gamma=GAMMA)
    batch = sampler.sample(256, np.random.default_rng(1))
    ee, goal, reward, discount, next_ee, _ = rows_of(batch)
    for row in range(len(ee)):
        want = expected_targets(int(ee[row, 0]), int(ee[row, 1]), goal[row], n_step, terminate)
        assert (reward[row], discount[row]) == pytest.approx(want[:2]), row
        np.testing.assert_array_equal(next_ee[row], want[2])
    # The goal-derived entries follow the goal, on both sides of the transition.
    np.testing.assert_array_equal(batch.obs["goal_offset"].numpy(), goal - ee)
    np.testing.assert_array_equal(batch.next_obs["goal_offset"].numpy(), goal - next_ee)
    if terminate:
        assert (discount == 0).any() and (discount > 0).any()


def test_one_step_fields_are_relabelled_too():
    buffer = synthetic_buffer()
    sampler = HindsightSampler(buffer, reach_task(), "future", ratio=1.0, n_step=3, gamma=GAMMA)
    batch = buffer.empty_batch(128, one_step=True)
    sampler.fill(batch, 0, 128, np.random.default_rng(2))
    ee, goal = batch.obs["ee_pos"].numpy(), batch.obs["goal_pos"].numpy()
    np.testing.assert_array_equal(batch.next_obs_1["goal_pos"].numpy(), goal)
    for row in range(128):
        want = expected_targets(int(ee[row, 0]), int(ee[row, 1]), goal[row], 1, False)
        assert (batch.reward_1[row].item(), batch.discount_1[row].item()) == pytest.approx(want[:2])
        np.testing.assert_array_equal(batch.next_obs_1["ee_pos"][row].numpy(), want[2])


def test_ratio_is_respected_and_rows_keep_their_order():
    buffer = synthetic_buffer()
    relabelled = lambda batch: batch.obs["goal_pos"][:, 2].numpy() == 0.0  # noqa: E731 (stored goals have z = 5)
    rng = np.random.default_rng(3)
    for ratio, count in [(0.0, 0), (0.25, 16), (0.5, 32), (1.0, 64)]:
        batch = HindsightSampler(buffer, reach_task(), ratio=ratio).sample(64, rng)
        flags = relabelled(batch)
        assert flags.sum() == count and np.all(flags[64 - count:])  # the last rows
        untouched = ~flags
        np.testing.assert_array_equal(batch.obs["goal_pos"][untouched, 1].numpy(), -1.0)
        assert np.all(batch.reward.numpy()[untouched] == 0.0)  # stored rewards
    sampler = HindsightSampler(buffer, reach_task(), ratio=0.33)
    counts = [relabelled(sampler.sample(10, rng)).sum() for _ in range(400)]
    assert set(counts) == {3, 4} and np.mean(counts) == pytest.approx(3.3, abs=0.1)


def test_relabelling_uses_no_python_loop_over_rows_and_leaves_the_buffer_alone():
    buffer = synthetic_buffer()
    before = {name: value.copy() for name, value in vars(buffer).items() if isinstance(value, np.ndarray)}
    HindsightSampler(buffer, reach_task(), ratio=1.0, n_step=2).sample(4096, np.random.default_rng(4))
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(buffer, name), value, err_msg=name)


def test_bad_settings_are_refused():
    buffer = synthetic_buffer()
    with pytest.raises(ValueError, match="strategy"):
        HindsightSampler(buffer, reach_task(), "past")
    with pytest.raises(ValueError, match=r"k / \(k \+ 1\)"):
        HindsightSampler(buffer, reach_task(), ratio=4)
    with pytest.raises(ValueError, match="'lift' has no goal"):
        HindsightSampler(buffer, make_task(TaskConfig(name="lift")))
    with pytest.raises(ValueError, match=r"lack \['cube_pos', 'gripper_width'\]"):
        HindsightSampler(buffer, make_task(TaskConfig(name="pick")))


def test_mixture_of_relabelled_online_replay_and_demonstrations():
    online, demos = synthetic_buffer(range(40)), synthetic_buffer(range(100, 140))
    task = reach_task()
    mixture = MixtureSampler([(HindsightSampler(online, task, ratio=0.5), 0.75),
                              (HindsightSampler(demos, task, ratio=1.0), 0.25)])
    batch = mixture.sample(64, np.random.default_rng(5))
    ee, goal = batch.obs["ee_pos"].numpy(), batch.obs["goal_pos"].numpy()
    assert np.all(ee[:48, 0] < 100) and np.all(ee[48:, 0] >= 100)  # 48 online rows, then 16 demo rows
    assert (goal[:48, 2] == 0).sum() == 24 and np.all(goal[48:, 2] == 0)  # each source's own ratio
    np.testing.assert_array_equal(goal[:, 0][goal[:, 2] == 0], ee[:, 0][goal[:, 2] == 0])


# --------------------------------------------------------------------------- real episodes and stores
class RandomSource:
    source = "policy"

    def __init__(self, env, seed: int) -> None:
        self.space = env.action_space
        self.space.seed(seed)

    def reset(self) -> None:
        pass

    def act(self, observation):
        return self.space.sample()


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
        digest.update(str(file.stat().st_mtime_ns).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("task", ["pick", "peg"])
def test_relabelled_rewards_on_a_real_store_are_compute_reward_and_the_store_is_untouched(tmp_path, task):
    """Episodes of the real simulation recorded into a Zarr store, loaded into the RAM tier:
    every row of a half-relabelled batch (dense reward, n_step 1) has reward = the task's
    compute_reward of its next observation, stored rows included (the env's reward is that
    function); nothing on disk changes."""
    env = make_arm_env(task, overrides={"task": {"max_episode_steps": 20}})
    path = tmp_path / "episodes.zarr"
    try:
        with open_recording_store(path, env) as store:
            EpisodeRecorder(env, store, RandomSource(env, 0)).record(6)
    finally:
        env.close()
    digest = tree_digest(path)
    with EpisodeStore.open(path, "r") as store:
        buffer = ReplayBuffer.from_store(store)
    goal_task = make_task(env.unwrapped.config.task)
    batch = HindsightSampler(buffer, goal_task, "future", ratio=0.5).sample(200, np.random.default_rng(6))
    obs = {key: value.numpy() for key, value in batch.obs.items()}
    after = {key: value.numpy() for key, value in batch.next_obs.items()}
    want = goal_task.compute_reward(goal_task.achieved_goal(after), goal_task.desired_goal(obs),
                                    goal_task.reward_info(after))
    np.testing.assert_allclose(batch.reward.numpy(), want.astype(np.float32), rtol=0, atol=0)
    np.testing.assert_array_equal(goal_task.desired_goal(after), goal_task.desired_goal(obs))
    relabelled = slice(100, 200)
    assert not np.array_equal(goal_task.desired_goal(obs)[relabelled], goal_task.desired_goal(obs)[:100])
    assert tree_digest(path) == digest


# --------------------------------------------------------------------------- training wiring
def test_train_config_builds_relabelled_samplers():
    config = load_train_config(overrides={"her": {"strategy": "final", "ratio": 0.6},
                                          "agent": {"n_step": 2, "gamma": 0.9}})
    online, demos = synthetic_buffer(), synthetic_buffer(range(100, 110))
    plain = make_replay_setup(DataNeeds(), online, None, config)
    assert isinstance(plain.sampler, HindsightSampler) and plain.online is online
    assert (plain.sampler.strategy, plain.sampler.ratio, plain.sampler.n_step, plain.sampler.gamma) == ("final", 0.6, 2, 0.9)
    mixed = make_replay_setup(DataNeeds(), online, demos, config)
    assert all(isinstance(source, HindsightSampler) for source in mixed.sampler.samplers)
    assert isinstance(mixed.offline_sampler, HindsightSampler) and mixed.offline_sampler.buffer is demos
    assert load_train_config().her.strategy == "none"  # off unless asked for
    with pytest.raises(ConfigError, match="her.strategy.*'lift' has no goal"):
        make_replay_setup(DataNeeds(), online, None, load_train_config(
            overrides={"env": {"task": {"name": "lift"}}, "her": {"strategy": "future"}}))
    with pytest.raises(ConfigError, match="her.strategy.*by priority"):
        make_replay_setup(AGENTS["ddpgfd"].data_needs, online, demos, config)


@pytest.mark.slow
def test_her_learns_sparse_reach_where_plain_replay_does_not(tmp_path):
    """2000 env steps of sparse reach (25-step episodes, 2 updates per step): with HER the greedy
    policy ends much nearer its goals than it started; without it, no reward was ever seen."""
    def final_distance(strategy: str) -> float:
        config = load_train_config(overrides={
            "env": {"task": {"name": "reach", "reward_type": "sparse", "max_episode_steps": 25}},
            "agent": {"hidden_sizes": [64, 64], "batch_size": 64, "utd_ratio": 2},
            "train": {"total_steps": 2000, "warmup_steps": 250, "eval_every": 10_000, "eval_episodes": 1,
                      "checkpoint_every": 10_000, "progress": False, "torch_threads": 1},
            "her": {"strategy": strategy}})
        trainer = Trainer(config, tmp_path / strategy, seed=0)
        trainer.run()
        env = make_arm_env("reach", config=config.env)
        try:
            ratios = []
            for episode in range(10):
                obs, _ = env.reset(seed=10**6 + episode)
                start = np.linalg.norm(obs["goal_offset"])
                for _ in range(25):
                    obs, *_ = env.step(trainer.agent.act(obs, deterministic=True))
                ratios.append(np.linalg.norm(obs["goal_offset"]) / start)
        finally:
            env.close()
        return float(np.median(ratios))

    torch.set_num_threads(1)
    with_her, without = final_distance("future"), final_distance("none")
    assert with_her < 0.6 and with_her < without - 0.3, (with_her, without)
