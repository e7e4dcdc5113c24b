"""Learner maths on small hand-checkable cases."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from robot_rl.agents import SAC, TD3, AgentConfig, make_agent
from robot_rl.agents.base import polyak_update, subset_min_q
from robot_rl.agents.networks import EnsembleLinear, EnsembleQ, SquashedGaussianActor

OBS = spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)


def batch(size: int = 8, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(obs=torch.randn(size, 5, generator=g), action=torch.rand(size, 2, generator=g) * 2 - 1,
                           reward=torch.randn(size, generator=g), next_obs=torch.randn(size, 5, generator=g),
                           discount=torch.full((size,), 0.9))


class ConstantQ(nn.Module):
    """Critic stand-in returning fixed per-member values (unit test of the target maths only)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = torch.tensor(values)
        self.ensemble_size = len(values)

    def forward(self, obs, action, members=None):
        values = self.values if members is None else self.values[members]
        return values[:, None].expand(len(values), obs.shape[0])


def test_ensemble_linear_matches_independent_linears():
    torch.manual_seed(0)
    layer = EnsembleLinear(4, 3, 5)
    x = torch.randn(7, 3)
    expected = torch.stack([x @ layer.weight[i] + layer.bias[i] for i in range(4)])
    torch.testing.assert_close(layer(x), expected)
    x3 = torch.randn(4, 7, 3)
    torch.testing.assert_close(layer(x3), torch.stack([x3[i] @ layer.weight[i] + layer.bias[i] for i in range(4)]))


def test_ensemble_members_are_independent():
    """Gradient of member 0's output touches only member 0's weights."""
    q = EnsembleQ(3, 5, 2, (16, 16), layer_norm=True)
    out = q(torch.randn(4, 5), torch.randn(4, 2))
    assert out.shape == (3, 4)
    out[0].sum().backward()
    first = q.net[0].weight.grad
    assert first[0].abs().sum() > 0 and first[1:].abs().sum() == 0
    assert not torch.allclose(q.net[0].weight[0], q.net[0].weight[1])


def test_subset_min_hand_case():
    critic = ConstantQ([3.0, 2.0, 4.0])
    obs, action = torch.zeros(2, 5), torch.zeros(2, 2)
    assert torch.equal(subset_min_q(critic, obs, action, 3), torch.tensor([2.0, 2.0]))
    seen = set()
    for seed in range(30):
        members = torch.randperm(3, generator=torch.Generator().manual_seed(seed))[:2]
        result = subset_min_q(critic, obs, action, 2, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(result, critic.values[members].min().expand(2))
        seen.add(tuple(sorted(members.tolist())))
    assert len(seen) == 3  # every pair gets drawn


def test_subset_evaluation_matches_full_ensemble():
    """Evaluating only members [3, 1] gives exactly rows 3 and 1 of the full ensemble's output."""
    torch.manual_seed(0)
    q = EnsembleQ(5, 5, 2, (16, 16), layer_norm=True, dropout=0.0)
    obs, action = torch.randn(7, 5), torch.randn(7, 2)
    members = torch.tensor([3, 1])
    torch.testing.assert_close(q(obs, action, members), q(obs, action)[members])


def test_sac_td_target_hand_case():
    """y = r + d (min over the subset of target Q − α log π(a'|s'))."""
    agent = SAC(OBS, ACT, AgentConfig(ensemble_size=2, subset_size=2, init_temperature=0.5, hidden_sizes=(8,)))
    agent.critic_target = ConstantQ([2.0, 3.0])
    agent.actor = lambda obs: (torch.zeros(obs.shape[0], 2), torch.full((obs.shape[0],), -1.0))
    b = SimpleNamespace(next_obs=torch.zeros(2, 5), reward=torch.tensor([1.0, 0.0]), discount=torch.tensor([0.9, 0.0]))
    # 1 + 0.9 * (2 − 0.5 · (−1)) = 3.25 ; terminal: 0 + 0 = 0
    torch.testing.assert_close(agent.td_target(b), torch.tensor([3.25, 0.0]))


def test_td3_target_smoothing_and_ddpg():
    cfg = AgentConfig(algo="td3", hidden_sizes=(8,), policy_noise=10.0, noise_clip=0.5)
    agent = TD3(OBS, ACT, cfg)
    agent.critic_target = ConstantQ([1.0, -1.0])
    b = SimpleNamespace(next_obs=torch.zeros(3, 5), reward=torch.ones(3), discount=torch.full((3,), 0.5))
    torch.testing.assert_close(agent.td_target(b), torch.full((3,), 0.5))  # 1 + 0.5 · min(1, −1)
    captured = {}

    class RecordingCritic(ConstantQ):
        def forward(self, obs, action, members=None):
            captured["a"] = action
            return super().forward(obs, action, members)

    agent.critic_target = RecordingCritic([0.0, 0.0])
    agent.actor_target = lambda obs: torch.zeros(obs.shape[0], 2)
    agent.td_target(b)
    assert captured["a"].abs().max() <= 0.5 + 1e-6  # smoothing noise clipped to ±noise_clip
    assert captured["a"].abs().max() > 0.3  # and actually applied
    ddpg = make_agent(OBS, ACT, AgentConfig(algo="ddpg", ensemble_size=1, subset_size=1, policy_noise=0.0, hidden_sizes=(8,)))
    assert ddpg.critic.ensemble_size == 1
    obs = np.zeros(5, np.float32)
    torch.manual_seed(0)
    assert np.array_equal(ddpg.act(obs, deterministic=True), ddpg.act(obs, deterministic=True))


def test_critic_loss_is_sum_of_member_mse():
    agent = SAC(OBS, ACT, AgentConfig(ensemble_size=3, subset_size=2, hidden_sizes=(8,)))
    b = batch()
    target = torch.randn(8)
    q = agent.critic(b.obs, b.action)
    expected = sum(((q[i] - target) ** 2).mean() for i in range(3))
    loss, td_errors = agent.critic_loss(b, target)
    torch.testing.assert_close(loss, expected)
    assert td_errors is None  # uniform learners give no priority feedback


def test_polyak_update_exact():
    online, target = nn.Linear(2, 2), nn.Linear(2, 2)
    before = [p.detach().clone() for p in target.parameters()]
    polyak_update(target, online, 0.25)
    for new, old, src in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * src)


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(5, 2, (16,))
    obs = torch.randn(64, 5)
    torch.manual_seed(1)
    action, log_prob = actor(obs)
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.clamp(-5, 2).exp()), [torch.distributions.TanhTransform(cache_size=1)])
    torch.manual_seed(1)
    reference = dist.rsample()
    torch.testing.assert_close(action, reference)
    torch.testing.assert_close(log_prob, dist.log_prob(reference).sum(-1), rtol=1e-4, atol=1e-4)
    assert torch.all(action.abs() < 1)


def test_temperature_moves_towards_target_entropy():
    """If the policy's entropy is below the target, α must grow; above it, α must shrink."""
    for target_entropy, grows in ((100.0, True), (-100.0, False)):
        agent = SAC(OBS, ACT, AgentConfig(hidden_sizes=(8,), target_entropy=target_entropy, alpha_lr=0.1))
        before = agent.alpha.item()
        for _ in range(5):
            agent.update_actor_and_temperature(batch())
        assert (agent.alpha.item() > before) == grows


def test_actor_step_leaves_critics_untouched():
    agent = SAC(OBS, ACT, AgentConfig(hidden_sizes=(8,)))
    critic_before = [p.detach().clone() for p in agent.critic.parameters()]
    agent.update_actor_and_temperature(batch())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in agent.critic.parameters())
    for p, q in zip(agent.critic.parameters(), critic_before):
        assert torch.equal(p, q)


@pytest.mark.parametrize("algo,n,m", [("sac", 2, 2), ("sac", 10, 2), ("td3", 2, 2)])
def test_update_reduces_critic_error_on_fixed_batch(algo, n, m):
    """Repeated updates on one batch drive the TD error down (the step really learns)."""
    torch.manual_seed(0)
    agent = make_agent(OBS, ACT, AgentConfig(algo=algo, ensemble_size=n, subset_size=m, hidden_sizes=(32, 32),
                                             critic_lr=3e-3, tau=1.0))
    b = batch(64)
    b.discount = torch.zeros(64)  # pure regression onto the rewards
    first = agent.update(b).metrics["critic_loss"]
    for _ in range(150):
        last = agent.update(b).metrics["critic_loss"]
    assert last < 0.1 * first
    assert agent.updates == 151


def test_checkpoint_round_trip_weights_only():
    cfg = AgentConfig(hidden_sizes=(16,), ensemble_size=4, subset_size=2, layer_norm=True, dropout=0.1)
    agent = SAC(OBS, ACT, cfg)
    for _ in range(3):
        agent.update(batch())
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    restored = SAC(OBS, ACT, cfg)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    obs = np.ones(5, np.float32)
    assert np.array_equal(agent.act(obs, deterministic=True), restored.act(obs, deterministic=True))
    assert restored.updates == 3 and math.isclose(restored.alpha.item(), agent.alpha.item())
    torch.manual_seed(5)
    m1 = agent.update(batch(seed=3)).scalars()
    torch.manual_seed(5)
    m2 = restored.update(batch(seed=3)).scalars()
    assert m1 == m2  # optimiser state restored too


def test_config_rejects_impossible_ensembles():
    from robot_rl.config import ConfigError

    with pytest.raises(ConfigError, match="subset_size"):
        AgentConfig(ensemble_size=2, subset_size=3)
    with pytest.raises(ConfigError, match="dropout"):
        AgentConfig(dropout=1.5)


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg", "awac"])
def test_update_returns_detached_scalar_tensors_and_no_td_errors(algo):
    """Metrics stay on the device as detached 0-d tensors (the loop reads them once per logging
    interval); uniform learners declare no data needs beyond uniform minibatches."""
    extra = {"ensemble_size": 1, "subset_size": 1} if algo == "ddpg" else {}
    agent = make_agent(OBS, ACT, AgentConfig(algo=algo, hidden_sizes=(8,), **extra))
    result = agent.update(batch())
    assert result.td_errors is None and not agent.data_needs.prioritized
    assert {"critic_loss", "td_target", "actor_loss"} <= set(result.metrics)
    for name, value in result.metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad, name
    assert result.scalars() == {name: value.item() for name, value in result.metrics.items()}


def test_value_head_and_member_views_match_the_plain_products():
    """The 1-wide Q head (computed as a reduction) and members given as a range (weight views)
    give what per-member matmuls give; the range selects the same rows as indices."""
    torch.manual_seed(0)
    head = EnsembleLinear(3, 6, 1)
    x = torch.randn(3, 5, 6)
    torch.testing.assert_close(head(x), torch.stack([x[i] @ head.weight[i] + head.bias[i] for i in range(3)]))
    q = EnsembleQ(4, 5, 2, (16, 16), layer_norm=True)
    obs, action = torch.randn(7, 5), torch.randn(7, 2)
    torch.testing.assert_close(q(obs, action, range(1, 3)), q(obs, action, torch.tensor([1, 2])))
    torch.testing.assert_close(q(obs, action, range(1)), q(obs, action)[:1])


def test_td3_actor_follows_q1_only():
    """L_μ = −E[Q_1(s, μ(s))]: the actor's gradient does not depend on the other critics."""
    torch.manual_seed(0)
    agent = TD3(OBS, ACT, AgentConfig(algo="td3", hidden_sizes=(8,)))
    b = batch()
    loss, _ = agent.actor_loss(b)
    obs = b.obs
    torch.testing.assert_close(loss, -agent.critic(obs, agent.actor(obs))[0].mean())
    with torch.no_grad():
        agent.critic.net[0].weight[1:].mul_(3.0)  # change every critic but Q_1
    torch.testing.assert_close(agent.actor_loss(b)[0], loss)


def test_fused_adam_and_fp32_matmul_setting():
    """Optimisers use the fused kernel where available; the oneDNN float32 setting is used only
    where it keeps float32 accuracy, and the context manager restores the previous setting."""
    from robot_rl.agents.kernels import fp32_matmul, onednn_keeps_fp32

    agent = SAC(OBS, ACT, AgentConfig(hidden_sizes=(8,)))
    for optimizer in (agent.critic_optimizer, agent.actor_optimizer, agent.alpha_optimizer):
        assert optimizer.defaults["fused"] or optimizer.defaults["foreach"]
    before = torch.backends.mkldnn.matmul.fp32_precision
    with fp32_matmul("onednn"):
        a, b = torch.randn(64, 300), torch.randn(300, 32)
        product = a @ b
    assert torch.backends.mkldnn.matmul.fp32_precision == before
    if onednn_keeps_fp32():
        exact = a.double() @ b.double()
        assert ((product.double() - exact).abs().max() / exact.abs().max()) < 1e-5


def test_dropout16_rate_scale_and_eval():
    """DroQ's dropout: drops p (rounded to 2⁻¹⁶) of the elements, scales the rest by 1/(1 − p),
    passes gradients through the same mask, and is the identity in eval mode."""
    from robot_rl.agents.networks import Dropout16

    torch.manual_seed(0)
    dropout = Dropout16(0.1)
    assert abs(dropout.p - 0.1) < 2 ** -16
    x = torch.ones(400, 1000, requires_grad=True)
    y = dropout(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - dropout.p) < 0.003  # 400k draws: σ ≈ 0.0005
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - dropout.p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x · mask)/dx = mask
    dropout.eval()
    assert torch.equal(dropout(x), x)


@pytest.mark.slow
@pytest.mark.parametrize("n,m", [(2, 2), (4, 2)])
def test_compiled_update_matches_eager(n, m):
    """agent.compile: the same losses and parameters as the eager update, step after step (float32
    rounding apart), with the same random draws (actions, REDQ's target subsets) from a seeded run."""
    def run(compile: bool) -> tuple[list[dict[str, float]], list[torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        agent = SAC(OBS, ACT, AgentConfig(hidden_sizes=(32, 32), ensemble_size=n, subset_size=m, compile=compile))
        metrics = [agent.update(batch(32, seed)).scalars() for seed in range(3)]
        params = [p.detach().clone() for module in (agent.critic, agent.critic_target, agent.actor)
                  for p in module.parameters()] + [agent.log_alpha.detach().clone()]
        return metrics, params, torch.randn(1)  # the last: where the generator stands afterwards

    (eager_metrics, eager_params, eager_next), (metrics, params, next_draw) = run(False), run(True)
    for eager_step, step in zip(eager_metrics, metrics):
        assert step == pytest.approx(eager_step, rel=1e-5, abs=1e-6)
    for eager_param, param in zip(eager_params, params):
        torch.testing.assert_close(param, eager_param, rtol=1e-5, atol=1e-6)
    assert torch.equal(next_draw, eager_next)


def test_compile_is_offered_for_sac_without_dropout_only():
    from robot_rl.config import ConfigError

    AgentConfig(compile=True, ensemble_size=10, layer_norm=True)
    with pytest.raises(ConfigError, match="compile"):
        AgentConfig(algo="td3", compile=True)
    with pytest.raises(ConfigError, match="compile"):
        AgentConfig(compile=True, dropout=0.01)


def test_observation_normalisation_is_fitted_once_and_checkpointed():
    from robot_rl.agents import AgentConfig, make_agent
    from gymnasium import spaces as gym_spaces

    space = gym_spaces.Dict({"a": gym_spaces.Box(-10, 10, (2,), np.float32), "b": gym_spaces.Box(-1, 1, (1,), np.float32)})
    config = AgentConfig(hidden_sizes=(16, 16), normalize_observations=True)
    agent = make_agent(space, gym_spaces.Box(-1, 1, (2,), np.float32), config)
    assert agent.needs_observation_statistics
    obs = {"a": torch.tensor([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]]), "b": torch.tensor([[0.01], [0.02], [0.03]])}
    agent.fit_observation_statistics(obs)
    assert not agent.needs_observation_statistics
    normalised = agent.encoder(obs)
    assert torch.allclose(normalised[:, 0], torch.tensor([-1.0, 0.0, 1.0]))  # mean 2, std 2
    assert torch.allclose(normalised[:, 1], torch.zeros(3))  # constant: scale floored, no blow-up
    assert torch.allclose(normalised[:, 2], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4)  # std 0.01 = the floor
    clone = make_agent(space, gym_spaces.Box(-1, 1, (2,), np.float32), config)
    clone.load_state_dict(agent.state_dict())
    assert not clone.needs_observation_statistics and torch.equal(clone.encoder(obs), normalised)
    one = agent.encoder.batch_from_numpy({"a": np.array([4.0, 5.0], np.float32), "b": np.array([0.03], np.float32)},
                                         torch.device("cpu"))
    assert torch.allclose(one, normalised[2:])
