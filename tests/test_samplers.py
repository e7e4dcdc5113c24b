"""The Sampler seam: uniform, prioritised and mixture samplers, feedback routing, state for
checkpoints, and the factory that builds a run's data path from the learner's declaration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.agents import AGENTS, AgentConfig, DataNeeds
from robot_rl.data import FeatureSpec, MixtureSampler, PrioritizedSampler, ReplayBuffer, UniformSampler
from robot_rl.data.prioritized import PrioritizedReplayBuffer
from robot_rl.data.samplers import NonFiniteFeedback
from robot_rl.training import load_train_config
from robot_rl.training.sampling import make_replay_setup

FEATURES = {"x": FeatureSpec("float32", (2,)), "action": FeatureSpec("float32", (1,)),
            "reward": FeatureSpec("float32", ()), "terminated": FeatureSpec("bool", ())}


def buffer(value: float, steps: int = 20, capacity: int = 100) -> ReplayBuffer:
    """One episode whose actions all equal ``value`` (so a row shows which buffer it came from)."""
    replay = ReplayBuffer(FEATURES, ["x"], capacity)
    replay.add_episode({"x": np.zeros((steps, 2), np.float32), "action": np.full((steps, 1), value, np.float32),
                        "reward": np.zeros(steps, np.float32), "terminated": np.zeros(steps, bool)},
                       {"x": np.zeros(2, np.float32)})
    return replay


class FeedbackProbe(UniformSampler):
    """A uniform sampler that records the feedback it is given."""

    takes_feedback = True

    def __init__(self, replay: ReplayBuffer) -> None:
        super().__init__(replay)
        self.received: list[tuple[torch.Tensor, torch.Tensor]] = []

    def feedback(self, batch, td_errors) -> None:
        self.received.append((batch.action[:, 0].clone(), td_errors.clone()))


def test_uniform_sampler_draws_like_its_buffer_and_ignores_feedback():
    replay = buffer(1.0)
    sampler = UniformSampler(replay, n_step=3, gamma=0.5)
    a = sampler.sample(16, np.random.default_rng(0))
    b = replay.sample(16, np.random.default_rng(0), n_step=3, gamma=0.5)
    assert torch.equal(a.reward, b.reward) and torch.equal(a.discount, b.discount)
    sampler.feedback(a, torch.ones(16))  # no-op
    assert not sampler.takes_feedback and sampler.state_dict() == {}
    assert sampler.ready(20) and not sampler.ready(21)


def test_mixture_routes_feedback_to_the_source_of_each_row():
    online, probe = UniformSampler(buffer(0.0)), FeedbackProbe(buffer(100.0))
    mixture = MixtureSampler([(online, 0.75), (probe, 0.25)])
    assert mixture.takes_feedback
    batch = mixture.sample(10, np.random.default_rng(0))  # 8 rows online (7.5 rounded up first), 2 probe rows
    counts = (batch.action[:, 0] == 0).sum().item(), (batch.action[:, 0] == 100).sum().item()
    td_errors = torch.arange(10, dtype=torch.float32)
    mixture.feedback(batch, td_errors)
    (actions, errors), = probe.received
    assert torch.all(actions == 100.0)  # only the rows the probe produced
    torch.testing.assert_close(errors, td_errors[counts[0]:])
    assert len(errors) == counts[1]


def test_mixture_state_dict_keeps_the_round_robin_turn():
    mixture = MixtureSampler([(buffer(0.0), 1), (buffer(1.0), 1), (buffer(2.0), 1)])
    mixture.counts(10)
    state = mixture.state_dict()
    restored = MixtureSampler([(buffer(0.0), 1), (buffer(1.0), 1), (buffer(2.0), 1)])
    restored.load_state_dict(state)
    assert [restored.counts(10).tolist() for _ in range(3)] == [mixture.counts(10).tolist() for _ in range(3)]
    with pytest.raises(ValueError, match="sources"):
        MixtureSampler([(buffer(0.0), 1)]).load_state_dict(state)


def test_prioritized_sampler_feedback_sets_priorities_and_rejects_nan():
    replay = PrioritizedReplayBuffer(buffer(0.0), buffer(1.0), alpha=1.0, eps=1e-3, demo_eps=0.0)
    sampler = PrioritizedSampler(replay, n_step=2)
    batch = sampler.sample(8, np.random.default_rng(0))
    assert batch.reward_1 is not None and batch.indices is not None
    sampler.feedback(batch, torch.full((8,), 4.0))
    np.testing.assert_allclose(replay.priorities(batch.indices), 4.0 + 1e-3)
    before = replay.priorities(np.arange(40)).copy()
    with pytest.raises(NonFiniteFeedback, match="1 of 8"):
        sampler.feedback(batch, torch.tensor([1.0] * 7 + [float("nan")]))
    np.testing.assert_array_equal(replay.priorities(np.arange(40)), before)  # untouched
    with pytest.raises(ValueError, match="no TD errors"):
        sampler.feedback(batch, None)
    restored = PrioritizedSampler(PrioritizedReplayBuffer(buffer(0.0), buffer(1.0), alpha=1.0, demo_eps=0.0))
    restored.load_state_dict(sampler.state_dict())
    np.testing.assert_array_equal(restored.buffer.priorities(np.arange(40)), before)
    assert restored.buffer.sample_calls == replay.sample_calls


def test_factory_builds_what_each_learner_declares():
    demos = buffer(1.0)
    needs = {name: cls.data_needs for name, cls in AGENTS.items()}
    assert needs["ddpgfd"] == DataNeeds(prioritized=True, demos_in_online_buffer=True)
    assert all(declared == DataNeeds() for name, declared in needs.items() if name != "ddpgfd")

    config = load_train_config(overrides={"agent": {"n_step": 3, "gamma": 0.9}, "demos": {"ratio": 0.25}})
    plain = make_replay_setup(DataNeeds(), buffer(0.0), None, config)
    assert isinstance(plain.sampler, UniformSampler) and plain.offline_sampler is None
    assert (plain.sampler.n_step, plain.sampler.gamma) == (3, 0.9)

    mixed = make_replay_setup(DataNeeds(), buffer(0.0), demos, config)
    assert isinstance(mixed.sampler, MixtureSampler) and mixed.sampler.weights.tolist() == [0.75, 0.25]
    assert isinstance(mixed.offline_sampler, UniformSampler) and mixed.offline_sampler.buffer is demos

    online = buffer(0.0)
    pinned = make_replay_setup(AGENTS["ddpgfd"].data_needs, online, demos, config)
    assert isinstance(pinned.sampler, PrioritizedSampler) and pinned.offline_sampler is pinned.sampler
    assert pinned.sampler.buffer.demos is demos and pinned.online is pinned.sampler.buffer
    assert pinned.sampler.buffer.alpha == AgentConfig().per_alpha
    with pytest.raises(ValueError, match="unsupported data needs"):
        make_replay_setup(DataNeeds(prioritized=True), buffer(0.0), demos, config)
