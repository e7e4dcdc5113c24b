"""SumTree and PrioritizedReplayBuffer: prefix sums, sampling frequencies, IS weights and pinned
demonstrations, on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_replay import TINY, targets_by_x, tiny_episode

from robot_rl.agents import AgentConfig
from robot_rl.data import FeatureSpec, ReplayBuffer
from robot_rl.data.prioritized import PrioritizedReplayBuffer, SumTree


def assert_consistent(tree: SumTree) -> None:
    """Every internal node is the sum of its children."""
    nodes, half = tree._nodes, len(tree._nodes) // 2
    parents = np.arange(1, half)
    np.testing.assert_allclose(nodes[parents], nodes[2 * parents] + nodes[2 * parents + 1])


def test_sum_tree_total_and_prefix_search():
    tree = SumTree(5)  # 8 leaves, 3 levels below the root
    tree.update(np.arange(5), [1.0, 2.0, 3.0, 4.0, 0.0])
    assert tree.total == 10.0 and tree.depth == 3
    np.testing.assert_array_equal(tree[np.arange(5)], [1, 2, 3, 4, 0])
    # cumulative sums 1, 3, 6, 10: u in [1, 3) is leaf 1, etc.
    np.testing.assert_array_equal(tree.find([0.0, 0.999, 1.0, 2.999, 3.0, 5.999, 6.0, 9.999]), [0, 0, 1, 1, 2, 2, 3, 3])
    assert tree.find([10.0]).tolist() == [3]  # u on the upper boundary: never the empty leaf 4
    assert_consistent(tree)
    assert SumTree(1).find([0.0]).tolist() == [0]
    with pytest.raises(IndexError):
        tree.update([5], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        tree.update([0], [-1.0])


def test_sum_tree_duplicate_leaves_take_the_last_value():
    tree = SumTree(4)
    tree.update([0, 1, 2, 3], 1.0)
    tree.update([1, 1, 2, 1], [5.0, 7.0, 9.0, 3.0])
    np.testing.assert_array_equal(tree[[0, 1, 2, 3]], [1.0, 3.0, 9.0, 1.0])
    assert tree.total == 14.0
    assert_consistent(tree)


def test_sum_tree_batch_updates_match_sequential_ones():
    rng = np.random.default_rng(0)
    batched, reference = SumTree(100), np.zeros(100)
    for _ in range(20):
        leaves, values = rng.integers(0, 100, 64), rng.random(64)  # with duplicates
        batched.update(leaves, values)
        for leaf, value in zip(leaves, values):
            reference[leaf] = value
    np.testing.assert_array_equal(batched[np.arange(100)], reference)
    assert batched.total == pytest.approx(reference.sum(), rel=1e-12)
    assert_consistent(batched)


def test_sum_tree_sampling_frequencies_match_priorities():
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 5.0, 1.0])
    tree = SumTree(8)
    tree.update(np.arange(8), priorities)
    rng = np.random.default_rng(0)
    draws = [tree.sample(256, rng) for _ in range(400)]
    assert all(np.all(np.diff(leaves) >= 0) for leaves in draws)  # stratified: ascending
    frequency = np.bincount(np.concatenate(draws), minlength=8) / (256 * 400)
    np.testing.assert_allclose(frequency, priorities / priorities.sum(), atol=2e-3)
    assert frequency[4] == frequency[5] == 0
    with pytest.raises(ValueError, match="total is 0"):
        SumTree(4).sample(1, rng)


def per(online_capacity: int = 8, demo_capacity: int | None = 4, **kwargs) -> PrioritizedReplayBuffer:
    demos = None if demo_capacity is None else ReplayBuffer(TINY, ["x"], demo_capacity)
    return PrioritizedReplayBuffer(ReplayBuffer(TINY, ["x"], online_capacity), demos, **kwargs)


def ids_by_x(buffer: PrioritizedReplayBuffer, rng: np.random.Generator) -> dict[float, int]:
    """x → transition id, from a large sample (every stored step appears)."""
    batch = buffer.sample(512, rng)
    return dict(zip(batch.obs["x"][:, 0].tolist(), batch.indices.tolist()))


def x_frequencies(buffer: PrioritizedReplayBuffer, rng: np.random.Generator, calls: int = 40) -> dict[float, float]:
    xs = np.concatenate([buffer.sample(250, rng).obs["x"][:, 0].numpy() for _ in range(calls)])
    values, counts = np.unique(xs, return_counts=True)
    return dict(zip(values.tolist(), (counts / len(xs)).tolist()))


def test_priority_updates_change_sampling():
    """α = 1, ε = 1: δ = 9 on x = 1 gives priorities 10, 1, 1 → P = 10/12, 1/12, 1/12."""
    buffer = per(alpha=1.0, eps=1.0, demo_eps=2.0)
    buffer.add_episode(*tiny_episode(0.0, [1, 2, 3], terminated=True))
    rng = np.random.default_rng(0)
    assert x_frequencies(buffer, rng) == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 1 / 3}, abs=0.01)
    ids = ids_by_x(buffer, rng)
    buffer.update_priorities(torch.tensor([ids[1], ids[0], ids[2]]), torch.tensor([-9.0, 0.0, 0.0]))
    np.testing.assert_allclose(buffer.priorities([ids[0], ids[1], ids[2]]), [1.0, 10.0, 1.0])
    assert x_frequencies(buffer, rng) == pytest.approx({0: 1 / 12, 1: 10 / 12, 2: 1 / 12}, abs=0.01)
    buffer.add_episode(*tiny_episode(10.0, [1], terminated=True))  # new: the maximal priority so far
    assert buffer.priorities([ids_by_x(buffer, rng)[10]]).tolist() == [10.0]


def test_importance_weights_by_hand_and_beta_annealing():
    """N = 3, P = (10, 1, 1)/12: w = (N P)^−β / max w = (2.5^−β, 0.25^−β, 0.25^−β) / 0.25^−β."""
    buffer = per(alpha=1.0, eps=1.0, beta0=0.5, beta_steps=4)
    buffer.add_episode(*tiny_episode(0.0, [1, 2, 3], terminated=True))
    rng = np.random.default_rng(0)
    ids = ids_by_x(buffer, rng)  # sample call 1 (β = 0.5)
    buffer.update_priorities([ids[1]], [9.0])
    for beta, expected in ((0.625, 10 ** -0.625), (0.75, 10 ** -0.75), (0.875, 10 ** -0.875),
                           (1.0, 0.1), (1.0, 0.1)):
        assert buffer.beta == pytest.approx(beta)
        batch = buffer.sample(64, rng)
        x = batch.obs["x"][:, 0]
        torch.testing.assert_close(batch.weights, torch.where(x == 1, expected, 1.0).float())
    assert buffer.sample_calls == 6


def test_demo_bonus_and_flags():
    """p = (|δ| + ε + ε_demo · is_demo)^α with α = 0.5, ε = 1, ε_demo = 2."""
    buffer = per(alpha=0.5, eps=1.0, demo_eps=2.0)
    buffer.add_episode(*tiny_episode(100.0, [1, 1], terminated=True), is_demo=True)
    buffer.add_episode(*tiny_episode(0.0, [1, 1], terminated=True))
    batch = buffer.sample(64, np.random.default_rng(0))
    x = batch.obs["x"][:, 0]
    assert torch.equal(batch.is_demo, x >= 100) and batch.is_demo.any() and not batch.is_demo.all()
    assert torch.all(batch.is_demo[:-1] >= batch.is_demo[1:])  # demo rows first
    assert torch.all((batch.indices < buffer.demo_capacity) == batch.is_demo)
    buffer.update_priorities(batch.indices, torch.full((64,), 6.0))
    np.testing.assert_allclose(buffer.priorities(batch.indices), np.where(batch.is_demo, 3.0, 7 ** 0.5))


def test_demonstrations_are_never_evicted_while_online_data_wraps():
    buffer = per(online_capacity=5, demo_capacity=4)
    buffer.add_episode(*tiny_episode(100.0, [1, 2, 3], terminated=True), is_demo=True)
    for i in range(20):
        buffer.add_episode(*tiny_episode(10.0 * i, [1, 2], terminated=False))
    assert len(buffer) == 3 + 4  # 3 demo steps + the two newest 2-step online episodes
    assert buffer.tree.total == 7.0  # evicted slots hold priority 0
    batch = buffer.sample(512, np.random.default_rng(0), n_step=2, gamma=0.5)
    assert targets_by_x(batch) == {100: (2.0, 102, 0.25), 101: (3.5, 103, 0.0), 102: (3, 103, 0.0),
                                   180: (2.0, 182, 0.25), 181: (2, 182, 0.5), 190: (2.0, 192, 0.25), 191: (2, 192, 0.5)}
    # 1-step fields of the same rows
    assert set(zip(batch.obs["x"][:, 0].tolist(), batch.reward_1.tolist(), batch.discount_1.tolist())) == {
        (100, 1, 0.5), (101, 2, 0.5), (102, 3, 0.0), (180, 1, 0.5), (181, 2, 0.5), (190, 1, 0.5), (191, 2, 0.5)}
    with pytest.raises(ValueError, match="never evicted"):
        buffer.add_episode(*tiny_episode(200.0, [1, 1], terminated=True), is_demo=True)


def test_stale_ids_of_evicted_steps_are_ignored():
    buffer = per(online_capacity=4, demo_capacity=None, alpha=1.0)
    buffer.add_episode(*tiny_episode(0.0, [1, 1, 1], terminated=False))
    stale = buffer.sample(32, np.random.default_rng(0)).indices
    buffer.add_episode(*tiny_episode(10.0, [1, 1], terminated=False))  # evicts x = 0, 1, 2
    buffer.update_priorities(stale, torch.full((32,), 100.0))
    assert buffer.tree.total == 2.0 and buffer.max_priority == 1.0  # the two live steps, at the initial priority
    assert set(x_frequencies(buffer, np.random.default_rng(1), calls=4)) == {10, 11}


def test_demo_only_buffer_and_existing_contents():
    online, demos = ReplayBuffer(TINY, ["x"], 8), ReplayBuffer(TINY, ["x"], 8)
    demos.add_episode(*tiny_episode(100.0, [1, 1, 1], terminated=True))
    buffer = PrioritizedReplayBuffer.from_config(online, demos, AgentConfig(per_alpha=1.0, per_beta0=0.2))
    assert (buffer.alpha, buffer.beta0, len(buffer)) == (1.0, 0.2, 3)
    batch = buffer.sample(16, np.random.default_rng(0), n_step=3, gamma=0.5)
    assert batch.is_demo.all() and torch.equal(batch.weights, torch.ones(16))
    assert set(targets_by_x(batch)) == {100, 101, 102}
    filled = ReplayBuffer(TINY, ["x"], 4)
    for first_x in (0.0, 10.0, 20.0):  # wraps the ring: the steps stored enter with priority 1
        filled.add_episode(*tiny_episode(first_x, [1, 1], terminated=True))
    buffer = PrioritizedReplayBuffer(filled, demos)
    assert buffer.tree.total == 7.0
    assert x_frequencies(buffer, np.random.default_rng(0), calls=4).keys() == {10, 11, 20, 21, 100, 101, 102}


def test_construction_errors():
    online = ReplayBuffer(TINY, ["x"], 8)
    with pytest.raises(ValueError, match="share features"):
        PrioritizedReplayBuffer(online, ReplayBuffer({**TINY, "x": FeatureSpec("float32", (2,))}, ["x"], 4))
    evicted = ReplayBuffer(TINY, ["x"], 2)
    for first_x in (0.0, 10.0):
        evicted.add_episode(*tiny_episode(first_x, [1, 1], terminated=True))
    with pytest.raises(ValueError, match="evicted"):
        PrioritizedReplayBuffer(online, evicted)
    with pytest.raises(ValueError, match="without a demo buffer"):
        PrioritizedReplayBuffer(online).add_episode(*tiny_episode(0.0, [1], terminated=True), is_demo=True)
    with pytest.raises(ValueError, match="empty"):
        PrioritizedReplayBuffer(online).sample(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="eps"):
        PrioritizedReplayBuffer(online, eps=0.0)


def test_state_dict_restores_priorities_max_and_beta_into_the_same_contents():
    """A checkpointed buffer's priorities, largest priority and β position come back in a buffer
    refilled with the same transitions; other contents are refused."""
    def filled():
        buffer = per(alpha=1.0, eps=1.0, beta0=0.5, beta_steps=10)
        buffer.add_episode(*tiny_episode(0.0, [1, 2, 3], terminated=True))
        return buffer

    rng = np.random.default_rng(0)
    original = filled()
    ids = ids_by_x(original, rng)
    original.update_priorities([ids[1], ids[2]], [9.0, 4.0])
    original.sample(8, rng)
    state = original.state_dict()
    restored = filled()
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.priorities(list(ids.values())), original.priorities(list(ids.values())))
    assert (restored.max_priority, restored.sample_calls, restored.beta) == (
        original.max_priority, original.sample_calls, original.beta)
    assert restored.sample(16, np.random.default_rng(3)).indices.tolist() == \
        original.sample(16, np.random.default_rng(3)).indices.tolist()
    other = filled()
    other.add_episode(*tiny_episode(10.0, [1], terminated=True))
    with pytest.raises(ValueError, match="online_step_range"):
        other.load_state_dict(state)
