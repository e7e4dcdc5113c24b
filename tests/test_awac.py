"""AWAC: log-probabilities of given actions, advantage weights and the actor loss on hand-checkable
cases, and offline learning that prefers high-advantage actions over cloning all of them."""

from __future__ import annotations

import io
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from test_agents import ConstantQ
from torch import nn

import robot_rl
from robot_rl.agents import AWAC, SAC, AgentConfig, make_agent
from robot_rl.agents.awac import advantage_weights
from robot_rl.agents.networks import SquashedGaussianActor
from robot_rl.config import ConfigError, from_dict, read_yaml

OBS = spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)
LN2, LN3 = math.log(2.0), math.log(3.0)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny networks: one intra-op thread is the fastest and unaffected by a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def awac(**overrides) -> AWAC:
    return AWAC(OBS, ACT, AgentConfig(algo="awac", hidden_sizes=(16,), **overrides))


class FirstCoordinateQ(ConstantQ):
    """Critic stand-in: Q_i(s, a) = a₀ + c_i, so min_i Q_i(s, a) = a₀ + min_i c_i."""

    def forward(self, obs, action, members=None):
        return super().forward(obs, action, members) + action[:, 0]


class KnownActor(nn.Module):
    """Actor stand-in: samples ã = 0 with log π(ã|s) = −1; log π(a_b|s_b) = ``log_probs`` (+ a zero
    parameter, so the loss has something to differentiate)."""

    def __init__(self, log_probs: list[float]) -> None:
        super().__init__()
        self.log_probs = torch.tensor(log_probs)
        self.shift = nn.Parameter(torch.zeros(()))

    def forward(self, obs, deterministic=False):
        return torch.zeros(obs.shape[0], 2), torch.full((obs.shape[0],), -1.0) + self.shift

    def log_prob(self, obs, action):
        return self.log_probs + self.shift


def test_log_prob_of_given_actions_matches_torch_distributions():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(5, 2, (16,))
    obs = torch.randn(256, 5)
    action = (torch.rand(256, 2) * 2 - 1) * 0.999
    mean, log_std = actor.gaussian(obs)
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()])
    torch.testing.assert_close(actor.log_prob(obs, action), reference.log_prob(action).sum(-1), rtol=1e-4, atol=1e-4)
    # The density of the actor's own samples is the one forward() reports.
    torch.manual_seed(1)
    sampled, sampled_log_prob = actor(obs)
    torch.testing.assert_close(actor.log_prob(obs, sampled), sampled_log_prob, rtol=1e-3, atol=1e-3)


def test_log_prob_of_boundary_actions_is_finite_with_finite_gradients():
    """Clipped demonstrations (|a| = 1) are clamped to 1 − 1e-6 before atanh, not sent to ±∞."""
    torch.manual_seed(0)
    actor = SquashedGaussianActor(5, 2, (16,))
    action = torch.tensor([[1.0, -1.0], [1.0, 0.0], [-1.0, 0.5]])
    log_prob = actor.log_prob(torch.randn(3, 5), action)
    log_prob.sum().backward()
    assert torch.isfinite(log_prob).all()
    assert all(torch.isfinite(p.grad).all() for p in actor.parameters())


def test_advantage_weights_hand_case():
    """exp(A) ∝ 1 : 2 : 3 → B · softmax = 3 · (1, 2, 3)/6 = (0.5, 1, 1.5); capped at 1.2."""
    advantage = torch.tensor([0.0, LN2, LN3])
    torch.testing.assert_close(advantage_weights(advantage, 1.0, 20.0), torch.tensor([0.5, 1.0, 1.5]))
    torch.testing.assert_close(advantage_weights(advantage, 1.0, 1.2), torch.tensor([0.5, 1.0, 1.2]))
    torch.testing.assert_close(advantage_weights(2 * advantage, 2.0, 20.0), torch.tensor([0.5, 1.0, 1.5]))  # A/λ
    torch.testing.assert_close(advantage_weights(advantage + 7.0, 1.0, 20.0), torch.tensor([0.5, 1.0, 1.5]))  # shift
    uniform = advantage_weights(advantage, 1e9, 20.0)  # λ → ∞: behaviour cloning
    torch.testing.assert_close(uniform, torch.ones(3))


@pytest.mark.parametrize("entropy,expected", [(False, 6.1 / 3), (True, 6.1 / 3 - 0.5)])
def test_actor_loss_hand_case(entropy, expected):
    """Q(s, a) = a₀ (min over offsets 0, 1), ã = 0 so V = 0 and A = a₀ = (0, ln 2, ln 3):
    w = (0.5, 1, 1.2) at w_max = 1.2, log π(a|s) = (−1, −2, −3)
    → L_π = −(0.5·(−1) + 1·(−2) + 1.2·(−3))/3 = 6.1/3, plus α E[log π(ã|s)] = 0.5·(−1) with entropy."""
    agent = awac(awac_lambda=1.0, awac_max_weight=1.2, awac_entropy=entropy, init_temperature=0.5)
    agent.critic = FirstCoordinateQ([1.0, 0.0])
    agent.actor = KnownActor([-1.0, -2.0, -3.0])
    batch = SimpleNamespace(obs=torch.zeros(3, 5), action=torch.tensor([[0.0, 0.9], [LN2, -0.9], [LN3, 0.0]]))
    metrics = agent.update_actor_and_temperature(batch)
    assert float(metrics["actor_loss"]) == pytest.approx(expected, rel=1e-6)
    assert float(metrics["advantage"]) == pytest.approx((LN2 + LN3) / 3, rel=1e-6)
    assert float(metrics["max_weight"]) == pytest.approx(1.2)
    assert agent.actor.shift.grad.item() == pytest.approx(-2.7 / 3 + (0.5 if entropy else 0.0), rel=1e-6)


def test_td_target_has_no_entropy_term_by_default():
    """y = r + d · min_i Q̄_i(s', a'), whatever log π(a'|s'); with ``awac_entropy``, − α log π(a'|s')."""
    b = SimpleNamespace(next_obs=torch.zeros(2, 5), reward=torch.tensor([1.0, 0.0]), discount=torch.tensor([0.9, 0.0]))
    for entropy, expected in ((False, [1.0 + 0.9 * 2.0, 0.0]), (True, [1.0 + 0.9 * (2.0 + 0.5), 0.0])):
        agent = awac(awac_entropy=entropy, init_temperature=0.5)
        agent.critic_target = FirstCoordinateQ([2.0, 3.0])
        agent.actor = KnownActor([])  # ã' = 0, log π(ã'|s') = −1
        torch.testing.assert_close(agent.td_target(b), torch.tensor(expected))


def best_action(obs: torch.Tensor) -> torch.Tensor:
    return 0.7 * torch.tanh(obs[:, :2])


def train_offline(awac_lambda: float, steps: int = 400) -> AWAC:
    """A contextual bandit (d = 0) logged by a uniform behaviour policy; r = −‖a − a*(s)‖²."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2048, 5, generator=g)
    action = torch.rand(2048, 2, generator=g) * 2 - 1
    reward = -((action - best_action(obs)) ** 2).sum(-1)
    torch.manual_seed(0)
    agent = AWAC(OBS, ACT, AgentConfig(algo="awac", hidden_sizes=(32, 32), actor_lr=1e-3, critic_lr=1e-3,
                                       awac_lambda=awac_lambda))
    for _ in range(steps):
        i = torch.randint(2048, (128,), generator=g)
        agent.update(SimpleNamespace(obs=obs[i], action=action[i], reward=reward[i], next_obs=obs[i],
                                     discount=torch.zeros(128)))
    return agent


def test_offline_awac_prefers_high_advantage_actions_over_cloning_them_all():
    test_obs = torch.randn(512, 5, generator=torch.Generator().manual_seed(1))

    def greedy(agent: AWAC) -> torch.Tensor:
        with torch.no_grad():
            return agent.actor(test_obs, deterministic=True)[0]

    weighted, cloned = greedy(train_offline(0.3)), greedy(train_offline(1e9))  # λ → ∞: plain behaviour cloning
    assert cloned.mean(0).abs().max() < 0.15  # cloning uniform actions → the behaviour mean, 0
    weighted_error = (weighted - best_action(test_obs)).norm(dim=-1).mean()
    cloned_error = (cloned - best_action(test_obs)).norm(dim=-1).mean()
    assert weighted_error < 0.5 * cloned_error


def test_state_dict_round_trip_weights_only():
    """Same state as SAC (nothing phase-specific), restored bit-exactly including optimiser moments."""
    batch = SimpleNamespace(obs=torch.randn(8, 5), action=torch.rand(8, 2) * 2 - 1, reward=torch.randn(8),
                            next_obs=torch.randn(8, 5), discount=torch.full((8,), 0.9))
    agent = awac(layer_norm=True)
    for _ in range(3):
        agent.update(batch)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    restored = awac(layer_norm=True)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert set(agent.state_dict()) == set(SAC(OBS, ACT, AgentConfig(hidden_sizes=(16,))).state_dict())
    obs = np.ones(5, np.float32)
    assert np.array_equal(agent.act(obs, deterministic=True), restored.act(obs, deterministic=True))
    assert restored.updates == 3
    torch.manual_seed(5)
    first = agent.update(batch).scalars()
    torch.manual_seed(5)
    assert restored.update(batch).scalars() == first


def test_config_validation_registry_and_preset():
    with pytest.raises(ConfigError, match="awac_lambda"):
        AgentConfig(awac_lambda=0.0)
    with pytest.raises(ConfigError, match="awac_max_weight"):
        AgentConfig(awac_max_weight=0.5)
    preset = from_dict(AgentConfig, read_yaml(Path(robot_rl.__file__).parent / "configs" / "agents" / "awac.yaml")["agent"])
    assert preset.algo == "awac" and preset.awac_lambda == 1.0 and not preset.awac_entropy
    assert isinstance(make_agent(OBS, ACT, preset), AWAC)
