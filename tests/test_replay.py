"""ReplayBuffer / MixtureSampler: n-step targets by hand, exact mixture counts, eviction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.data import EpisodeStore, FeatureSpec, MixtureSampler, ReplayBuffer

TINY = {
    "x": FeatureSpec("float32", (1,)),
    "action": FeatureSpec("float32", (1,)),
    "reward": FeatureSpec("float32", ()),
    "terminated": FeatureSpec("bool", ()),
}


def tiny_episode(first_x: float, rewards, terminated: bool):
    """x = first_x, first_x+1, ...; the final observation is x after the last step."""
    length = len(rewards)
    steps = {
        "x": (first_x + np.arange(length, dtype=np.float32))[:, None],
        "action": np.full((length, 1), first_x, np.float32),
        "reward": np.asarray(rewards, np.float32),
        "terminated": np.zeros(length, bool),
    }
    steps["terminated"][-1] = terminated
    return steps, {"x": np.array([first_x + length], np.float32)}


def targets_by_x(batch):
    """x → (reward, next x, discount), checking that equal x always gives equal targets."""
    table = {}
    for x, reward, next_x, discount in zip(batch.obs["x"][:, 0].tolist(), batch.reward.tolist(),
                                           batch.next_obs["x"][:, 0].tolist(), batch.discount.tolist()):
        assert table.setdefault(x, (reward, next_x, discount)) == (reward, next_x, discount)
    return table


@pytest.fixture
def hand_buffer():
    buffer = ReplayBuffer(TINY, ["x"], capacity=16)
    buffer.add_episode(*tiny_episode(0.0, [1, 2, 3], terminated=True))  # x 0,1,2 → final 3
    buffer.add_episode(*tiny_episode(10.0, [1, 2, 3], terminated=False))  # x 10,11,12 → final 13 (truncated)
    return buffer


@pytest.mark.parametrize("n_step, expected", [
    (1, {0: (1, 1, 0.5), 1: (2, 2, 0.5), 2: (3, 3, 0.0),
         10: (1, 11, 0.5), 11: (2, 12, 0.5), 12: (3, 13, 0.5)}),
    (2, {0: (1 + 0.5 * 2, 2, 0.25), 1: (2 + 0.5 * 3, 3, 0.0), 2: (3, 3, 0.0),
         10: (2.0, 12, 0.25), 11: (3.5, 13, 0.25), 12: (3, 13, 0.5)}),
    (3, {0: (1 + 0.5 * 2 + 0.25 * 3, 3, 0.0), 1: (3.5, 3, 0.0), 2: (3, 3, 0.0),
         10: (2.75, 13, 0.125), 11: (3.5, 13, 0.25), 12: (3, 13, 0.5)}),
    (5, {0: (2.75, 3, 0.0), 10: (2.75, 13, 0.125), 12: (3, 13, 0.5)}),
])
def test_n_step_targets_by_hand(hand_buffer, n_step, expected):
    """rewards 1, 2, 3 and γ = 0.5; episode A terminates, episode B is truncated (bootstraps)."""
    batch = hand_buffer.sample(512, np.random.default_rng(0), n_step=n_step, gamma=0.5)
    table = targets_by_x(batch)
    assert set(table) == {0, 1, 2, 10, 11, 12}
    for x, target in expected.items():
        assert table[x] == pytest.approx(target), x
    assert torch.equal(batch.action[:, 0], torch.where(batch.obs["x"][:, 0] >= 10, 10.0, 0.0))


def test_sample_shapes_and_dtypes():
    features = {
        "joint_pos": FeatureSpec("float32", (7,)),
        "image_scene": FeatureSpec("uint8", (12, 10, 3)),
        "action": FeatureSpec("float32", (4,)),
        "reward": FeatureSpec("float32", ()),
        "terminated": FeatureSpec("bool", ()),
    }
    buffer = ReplayBuffer(features, ["joint_pos", "image_scene"], capacity=100)
    rng = np.random.default_rng(1)
    for length in (20, 30):
        steps = {
            "joint_pos": rng.standard_normal((length, 7)).astype(np.float32),
            "image_scene": rng.integers(0, 256, (length, 12, 10, 3), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (length, 4)).astype(np.float32),
            "reward": rng.standard_normal(length).astype(np.float32),
            "terminated": np.zeros(length, bool),
            "ignored_extra_feature": np.zeros(length),
        }
        buffer.add_episode(steps, {"joint_pos": steps["joint_pos"][-1], "image_scene": steps["image_scene"][-1]})
    batch = buffer.sample(32, rng, n_step=3)
    assert len(batch) == 32
    assert batch.obs["image_scene"].shape == batch.next_obs["image_scene"].shape == (32, 12, 10, 3)
    assert batch.obs["image_scene"].dtype == torch.uint8
    assert batch.obs["joint_pos"].shape == (32, 7) and batch.obs["joint_pos"].dtype == torch.float32
    assert batch.action.shape == (32, 4) and batch.action.dtype == torch.float32
    assert batch.reward.shape == batch.discount.shape == (32,)
    assert batch.reward.dtype == batch.discount.dtype == torch.float32
    reused = buffer.sample(32, rng, out=batch)
    assert reused is batch
    with pytest.raises(ValueError, match="out holds 32"):
        buffer.sample(16, rng, out=batch)


def test_capacity_evicts_whole_oldest_episodes_and_wraps():
    buffer = ReplayBuffer(TINY, ["x"], capacity=5)
    buffer.add_episode(*tiny_episode(0.0, [1, 2, 3], terminated=False))
    buffer.add_episode(*tiny_episode(10.0, [1, 2, 3], terminated=False))  # evicts the first, wraps the ring
    assert (len(buffer), buffer.n_episodes) == (3, 1)
    table = targets_by_x(buffer.sample(256, np.random.default_rng(0), n_step=2, gamma=0.5))
    assert table == {10: (2.0, 12, 0.25), 11: (3.5, 13, 0.25), 12: (3, 13, 0.5)}
    buffer.add_episode(*tiny_episode(20.0, [1], terminated=True))
    buffer.add_episode(*tiny_episode(30.0, [1], terminated=True))
    assert (len(buffer), buffer.n_episodes) == (5, 3)
    buffer.add_episode(*tiny_episode(40.0, [1, 1], terminated=False))  # evicts only the 3-step episode
    assert (len(buffer), buffer.n_episodes) == (4, 3)
    assert set(targets_by_x(buffer.sample(256, np.random.default_rng(0)))) == {20, 30, 40, 41}
    with pytest.raises(ValueError, match="does not fit"):
        buffer.add_episode(*tiny_episode(0.0, [1] * 6, terminated=False))


def test_many_short_episodes_grow_the_episode_table():
    buffer = ReplayBuffer(TINY, ["x"], capacity=300)
    for i in range(1000):
        buffer.add_episode(*tiny_episode(float(i), [1.0], terminated=False))
    assert (len(buffer), buffer.n_episodes) == (300, 300)
    batch = buffer.sample(2048, np.random.default_rng(0))
    x = batch.obs["x"][:, 0]
    assert x.min() >= 700 and torch.equal(batch.next_obs["x"][:, 0], x + 1)


def test_add_episode_errors():
    buffer = ReplayBuffer(TINY, ["x"], capacity=10)
    steps, final = tiny_episode(0.0, [1, 2], terminated=False)
    with pytest.raises(ValueError, match="missing.*'reward'"):
        buffer.add_episode({k: v for k, v in steps.items() if k != "reward"}, final)
    with pytest.raises(ValueError, match=r"final_obs\['x'\]"):
        buffer.add_episode(steps, {})
    with pytest.raises(ValueError, match="'x' has shape"):
        buffer.add_episode({**steps, "x": steps["x"][:1]}, final)
    with pytest.raises(ValueError, match="empty ReplayBuffer"):
        buffer.sample(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="'reward' must be float32"):
        ReplayBuffer({**TINY, "reward": FeatureSpec("float32", (1,))}, ["x"], capacity=10)


def constant_buffer(value: float, length: int = 10) -> ReplayBuffer:
    buffer = ReplayBuffer(TINY, ["x"], capacity=100)
    buffer.add_episode(*tiny_episode(value, [0.0] * length, terminated=False))
    return buffer


def rows_per_source(batch, values=(0.0, 100.0, 200.0)) -> list[int]:
    return [int((batch.action[:, 0] == v).sum()) for v in values]


def test_mixture_counts_are_exact():
    online, demos = constant_buffer(0.0), constant_buffer(100.0)
    sampler = MixtureSampler([(online, 0.5), (demos, 0.5)])
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = sampler.sample(256, rng)
        assert len(batch) == 256 and rows_per_source(batch)[:2] == [128, 128]
        assert torch.all(batch.action[:128, 0] == 0) and torch.all(batch.action[128:, 0] == 100)
    assert [rows_per_source(sampler.sample(255, rng))[:2] for _ in range(4)] == [[128, 127], [127, 128]] * 2

    thirds = MixtureSampler([(constant_buffer(0.0), 1), (constant_buffer(100.0), 1), (constant_buffer(200.0), 1)])
    assert [rows_per_source(thirds.sample(256, rng)) for _ in range(3)] == [[86, 85, 85], [85, 86, 85], [85, 85, 86]]

    skewed = MixtureSampler([(online, 0.25), (demos, 0.75)])
    assert [skewed.counts(64).tolist() for _ in range(3)] == [[16, 48]] * 3
    assert [skewed.counts(10).tolist() for _ in range(2)] == [[3, 7], [2, 8]]


def test_mixture_empty_sources():
    online, empty = constant_buffer(0.0), ReplayBuffer(TINY, ["x"], capacity=10)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="demos is empty"):
        MixtureSampler([(online, 0.5), (empty, 0.5)], names=["online", "demos"]).sample(8, rng)
    batch = MixtureSampler([(online, 0.5), (empty, 0.5)], skip_empty=True).sample(8, rng)
    assert rows_per_source(batch)[0] == 8
    with pytest.raises(ValueError, match="positive"):
        MixtureSampler([(online, 0.0)])
    other = ReplayBuffer({**TINY, "x": FeatureSpec("float32", (2,))}, ["x"], capacity=10)
    with pytest.raises(ValueError, match="features differ"):
        MixtureSampler([(online, 1), (other, 1)])


def test_from_store_loads_the_most_recent_episodes(tmp_path):
    with EpisodeStore.create(tmp_path / "r.zarr", TINY, ["x"], {"control_hz": 10}) as store:
        for i, length in enumerate([4, 3, 2, 5]):
            steps, final = tiny_episode(10.0 * i, [float(i)] * length, terminated=i == 3)
            for t in range(length):
                store.append_step({k: v[t] for k, v in steps.items()})
            store.end_episode(final, success=True)
    store = EpisodeStore.open(tmp_path / "r.zarr")
    everything = ReplayBuffer.from_store(store)
    assert (len(everything), everything.n_episodes, everything.capacity) == (14, 4, 14)
    recent = ReplayBuffer.from_store(store, capacity=9, block_steps=3)
    assert (len(recent), recent.n_episodes) == (7, 2)
    table = targets_by_x(recent.sample(512, np.random.default_rng(0), n_step=1, gamma=0.5))
    assert table == {20: (2, 21, 0.5), 21: (2, 22, 0.5),
                     30: (3, 31, 0.5), 31: (3, 32, 0.5), 32: (3, 33, 0.5), 33: (3, 34, 0.5), 34: (3, 35, 0.0)}


def test_one_step_fields_next_to_n_step(hand_buffer):
    """one_step=True: the same rows carry both the 3-step and the 1-step targets (γ = 0.5)."""
    batch = hand_buffer.sample(512, np.random.default_rng(0), n_step=3, gamma=0.5, one_step=True)
    one_step = {x: (r, nx, d) for x, r, nx, d in zip(batch.obs["x"][:, 0].tolist(), batch.reward_1.tolist(),
                                                      batch.next_obs_1["x"][:, 0].tolist(), batch.discount_1.tolist())}
    assert one_step == {0: (1, 1, 0.5), 1: (2, 2, 0.5), 2: (3, 3, 0.0),
                        10: (1, 11, 0.5), 11: (2, 12, 0.5), 12: (3, 13, 0.5)}
    assert targets_by_x(batch)[10] == (2.75, 13, 0.125)
    assert hand_buffer.sample(8, np.random.default_rng(0)).reward_1 is None
    with pytest.raises(ValueError, match="no 1-step fields"):
        hand_buffer.sample(8, np.random.default_rng(0), out=hand_buffer.empty_batch(8), one_step=True)


def test_one_step_fields_of_images():
    """Separately stored (image) observations get their 1-step next observation too."""
    features = {**TINY, "image_cam": FeatureSpec("uint8", (2, 2, 1))}
    buffer = ReplayBuffer(features, ["x", "image_cam"], capacity=8)
    steps, final = tiny_episode(0.0, [0.0] * 5, terminated=False)  # x = 0..4, final x = 5
    steps["image_cam"] = np.broadcast_to(np.arange(5, dtype=np.uint8)[:, None, None, None], (5, 2, 2, 1)).copy()
    buffer.add_episode(steps, {**final, "image_cam": np.full((2, 2, 1), 5, np.uint8)})
    batch = buffer.sample(64, np.random.default_rng(0), n_step=3, one_step=True)
    x = batch.obs["x"][:, 0].to(torch.uint8)
    assert torch.equal(batch.obs["image_cam"][:, 0, 0, 0], x)
    assert torch.equal(batch.next_obs_1["image_cam"][:, 0, 0, 0], x + 1)
    assert torch.equal(batch.next_obs["image_cam"][:, 0, 0, 0], torch.clamp(x + 3, max=5))
