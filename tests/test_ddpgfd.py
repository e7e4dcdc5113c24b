"""DDPGfD: 1-step/n-step targets, the weighted critic loss and the Q-filtered BC loss by hand,
and a short run in which the actor imitates a demonstrator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

import robot_rl
from robot_rl.agents import AgentConfig, DDPGfD, make_agent
from robot_rl.agents.ddpgfd import q_filtered_bc_loss
from robot_rl.config import ConfigError, from_dict, read_yaml
from robot_rl.data import FeatureSpec, PrioritizedSampler, ReplayBuffer
from robot_rl.data.prioritized import PrioritizedReplayBuffer
from robot_rl.data.replay import Batch

OBS = spaces.Dict({"x": spaces.Box(-np.inf, np.inf, (3,), np.float32)})
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)
FEATURES = {"x": FeatureSpec("float32", (3,)), "action": FeatureSpec("float32", (2,)),
            "reward": FeatureSpec("float32", ()), "terminated": FeatureSpec("bool", ())}


def agent(**overrides) -> DDPGfD:
    config = AgentConfig(**{"algo": "ddpgfd", "hidden_sizes": (8,), "policy_noise": 0.0, **overrides})
    return make_agent(OBS, ACT, config)


def hand_batch(**fields) -> Batch:
    """A batch of 2 with the given tensors (x observations as lists of rows)."""
    values = {"obs": [[0.0] * 3] * 2, "action": [[0.0] * 2] * 2, "reward": [0.0] * 2, "next_obs": [[0.0] * 3] * 2,
              "discount": [0.0] * 2, "reward_1": [0.0] * 2, "next_obs_1": [[0.0] * 3] * 2, "discount_1": [0.0] * 2,
              "weights": [1.0] * 2, "is_demo": [False] * 2, **fields}
    tensors = {k: torch.tensor(v) for k, v in values.items()}
    return Batch(**{k: {"x": v} if k.startswith(("obs", "next_obs")) else v for k, v in tensors.items()})


class StandInQ(nn.Module):
    """Critic stand-in: Q_i(s, a) = f(s, a) for every member i (unit tests of the loss maths)."""

    def __init__(self, fn, ensemble_size: int = 2) -> None:
        super().__init__()
        self.fn, self.ensemble_size = fn, ensemble_size

    def forward(self, obs, action, members=None):
        size = self.ensemble_size if members is None else len(members)
        return self.fn(obs, action).expand(size, obs.shape[0])


def test_one_step_and_n_step_targets_by_hand():
    """Q̄(s', ·) = Σ s' so each target shows which next observation it used:
    y_1 = r_1 + d_1 Σ s'_1, y_n = R_n + d_n Σ s'_n."""
    learner = agent()
    learner.critic_target = StandInQ(lambda obs, action: obs.sum(-1))
    batch = hand_batch(reward_1=[1.0, 0.5], discount_1=[0.5, 0.0], next_obs_1=[[1.0, 1.0, 0.0], [9.0, 9.0, 9.0]],
                       reward=[1.75, 0.5], discount=[0.25, 0.0], next_obs=[[2.0, 2.0, 4.0], [9.0, 9.0, 9.0]])
    # 1-step: 1 + 0.5 · 2 = 2, terminal 0.5; n-step: 1.75 + 0.25 · 8 = 3.75, terminal 0.5
    torch.testing.assert_close(learner.td_target(batch), torch.tensor([[2.0, 0.5], [3.75, 0.5]]))


def test_critic_loss_is_weighted_one_plus_n_step_and_returns_td_errors():
    """Q = [[1, 2], [3, 0]] (critic × sample), y_1 = [0, 1], y_n = [1, 1], w = [1, 0.5], λ_n = 0.5:
    critic 0: (1·(1 + 0) + 0.5·(1 + 0.5)) / 2 = 0.875; critic 1: (1·(9 + 2) + 0.5·(1 + 0.5)) / 2 = 5.875."""
    learner = agent(lambda_nstep=0.5)
    learner.critic = StandInQ(lambda obs, action: torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
    batch = hand_batch(weights=[1.0, 0.5])
    loss, td_errors = learner.critic_loss(batch, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    torch.testing.assert_close(loss, torch.tensor(6.75))
    torch.testing.assert_close(td_errors, torch.tensor([2.0, 1.0]))  # mean_i |Q_i − y_1|


def test_q_filtered_bc_loss_by_hand():
    """Q(s, a) = a_0. Rows: demo (filter passes), demo (fails), demo (passes), online.
    ‖μ − a‖² = 0.16, 0.16, 0.25, 1.62 → filtered BC = (0.16 + 0.25) / 3, unfiltered (0.16 + 0.16 + 0.25) / 3."""
    policy_action = nn.Parameter(torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.2, 0.0], [0.0, 0.0]]))
    demo_action = torch.tensor([[0.4, 0.0], [0.1, 0.5], [0.6, 0.3], [0.9, 0.9]])
    is_demo = torch.tensor([True, True, True, False])
    learner = agent(lambda_bc=2.0)
    learner.critic = StandInQ(lambda obs, action: action[:, 0])
    learner.actor = lambda obs: policy_action
    batch = Batch(obs={"x": torch.zeros(4, 3)}, action=demo_action, reward=torch.zeros(4), next_obs={},
                  discount=torch.zeros(4), is_demo=is_demo)
    loss, metrics = learner.actor_loss(batch)
    # −mean Q(s, μ(s)) = −(0 + 0.5 + 0.2 + 0) / 4 = −0.175
    torch.testing.assert_close(loss, torch.tensor(-0.175 + 2.0 * 0.41 / 3))
    assert float(metrics["bc_loss"]) == pytest.approx(0.41 / 3)
    assert float(metrics["q_filter_pass"]) == pytest.approx(2 / 3)
    loss.backward()
    # the second action component only enters through BC: 2 λ (μ − a) / 3 on demo rows that pass
    torch.testing.assert_close(policy_action.grad[:, 1], torch.tensor([0.0, 0.0, 2 * 2.0 * -0.3 / 3, 0.0]))
    unfiltered = agent(lambda_bc=2.0, q_filter=False)
    unfiltered.critic, unfiltered.actor = learner.critic, learner.actor
    assert unfiltered.actor_loss(batch)[1]["bc_loss"] == pytest.approx(0.57 / 3)
    assert q_filtered_bc_loss(policy_action, demo_action, torch.zeros(4, dtype=torch.bool),
                              torch.ones(4, dtype=torch.bool)).item() == 0.0  # no demos: no BC


def test_update_needs_prioritized_batches_and_uses_weight_decay():
    learner = agent(weight_decay=1e-4)
    assert learner.critic_optimizer.param_groups[0]["weight_decay"] == 1e-4
    assert learner.actor_optimizer.param_groups[0]["weight_decay"] == 1e-4
    plain = Batch(obs={"x": torch.zeros(2, 3)}, action=torch.zeros(2, 2), reward=torch.zeros(2),
                  next_obs={"x": torch.zeros(2, 3)}, discount=torch.zeros(2))
    with pytest.raises(ValueError, match="PrioritizedReplayBuffer.*reward_1"):
        learner.update(plain)


def test_config_fields_and_preset():
    with pytest.raises(ConfigError, match="lambda_bc"):
        AgentConfig(lambda_bc=-1.0)
    with pytest.raises(ConfigError, match="per_beta0"):
        AgentConfig(per_beta0=1.5)
    with pytest.raises(ConfigError, match="per_eps"):
        AgentConfig(per_eps=0.0)
    preset = read_yaml(Path(robot_rl.__file__).parent / "configs" / "agents" / "ddpgfd.yaml")["agent"]
    config = from_dict(AgentConfig, preset)
    assert (config.algo, config.q_filter, config.weight_decay) == ("ddpgfd", True, 1e-5)
    assert isinstance(make_agent(OBS, ACT, config), DDPGfD)


def demonstrator(x: np.ndarray) -> np.ndarray:
    return np.clip(0.5 * np.stack([x[:, 0] - x[:, 1], x[:, 2]], axis=-1), -1, 1).astype(np.float32)



def test_training_on_demonstrations_alone_imitates_the_demonstrator(one_thread):
    """Pre-training on a demo-only prioritised buffer: BC pulls μ onto the demonstrator's actions,
    and the TD errors flow back into the priorities through the sampler's feedback. Without the
    Q-filter: a critic that has seen only demonstrated actions cannot rank other actions, so the
    filter would be noise here (its gating is checked by hand above)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = AgentConfig(algo="ddpgfd", hidden_sizes=(64, 64), actor_lr=3e-3, critic_lr=1e-3, n_step=3,
                         batch_size=64, policy_noise=0.0, q_filter=False, lambda_bc=1.0, per_alpha=0.4)
    demos = ReplayBuffer(FEATURES, ["x"], capacity=200)
    states = rng.standard_normal((160, 3)).astype(np.float32)
    for episode in np.split(states, 8):
        demos.add_episode({"x": episode, "action": demonstrator(episode), "reward": np.zeros(20, np.float32),
                           "terminated": np.zeros(20, bool)}, {"x": rng.standard_normal(3).astype(np.float32)})
    replay = PrioritizedReplayBuffer.from_config(ReplayBuffer(FEATURES, ["x"], capacity=100), demos, config)
    sampler = PrioritizedSampler(replay, config.n_step, config.gamma)
    learner = make_agent(OBS, ACT, config)

    def imitation_error() -> float:
        with torch.no_grad():
            action = learner.actor(torch.from_numpy(states))
            return float((action - torch.from_numpy(demonstrator(states))).abs().mean())

    before = imitation_error()
    for _ in range(300):
        batch = sampler.sample(config.batch_size, rng)
        result = learner.update(batch)
        sampler.feedback(batch, result.td_errors)
    assert imitation_error() < 0.05 < 0.2 * before
    metrics = result.scalars()
    assert metrics["bc_loss"] < 0.01 and all(np.isfinite(list(metrics.values())))
    priorities = replay.priorities(np.arange(160))
    assert priorities.min() >= (1.0 + 1e-3) ** 0.4 and priorities.std() > 0  # demo bonus, TD errors differ
