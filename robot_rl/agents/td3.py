"""TD3 and DDPG: deterministic actors with (ensemble) critics.

    ã' = clip(μ̄(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ²)         target policy smoothing
    y  = R + d · min_{i ∈ M} Q̄_i(s', ã')                              clipped double-Q (M of N)
    L_Q = Σ_i E[(Q_i(s, a) − y)²]
    every k-th critic step:  L_μ = −E[Q_1(s, μ(s))],  then Polyak on critics and actor

DDPG is the special case N = M = 1, σ = 0, k = 1 (``configs/agents/ddpg.yaml``).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import torch
from gymnasium import spaces

from robot_rl.agents.base import OffPolicyAgent, TransitionBatch, UpdateResult, adam, polyak_update, subset_min_q
from robot_rl.agents.config import AgentConfig
from robot_rl.agents.networks import Q1, DeterministicActor


class TD3(OffPolicyAgent):
    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, config: AgentConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.actor = DeterministicActor(self.obs_dim, self.action_dim, config.hidden_sizes).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), config.actor_lr, config.weight_decay)

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray] | np.ndarray, deterministic: bool = False) -> np.ndarray:
        action = self.actor(self.encoder.batch_from_numpy(obs, self.device))[0]
        if not deterministic and self.config.exploration_noise > 0:
            # torch's global generator, so seeding and checkpointed RNG state cover exploration.
            action = action + self.config.exploration_noise * torch.randn_like(action)
        return action.clamp(-1.0, 1.0).cpu().numpy()

    @torch.no_grad()
    def td_target(self, batch: TransitionBatch) -> torch.Tensor:
        return self.bootstrap(batch.reward, self.encoder(batch.next_obs), batch.discount)

    @torch.no_grad()
    def bootstrap(self, reward: torch.Tensor, next_obs: torch.Tensor, discount: torch.Tensor) -> torch.Tensor:
        """y = R + d · min_{i ∈ M} Q̄_i(s', ã') for encoded next observations ``(B, obs_dim)``."""
        next_action = self.actor_target(next_obs)
        if self.config.policy_noise > 0:
            noise = (torch.randn_like(next_action) * self.config.policy_noise).clamp(-self.config.noise_clip,
                                                                                   self.config.noise_clip)
            next_action = (next_action + noise).clamp(-1.0, 1.0)
        next_q = subset_min_q(self.critic_target, next_obs, next_action, self.config.subset_size)
        return reward + discount * next_q

    def update(self, batch: TransitionBatch) -> UpdateResult:
        result = self.update_critic(batch)
        if self.updates % self.config.actor_update_interval == 0:
            result.metrics.update(self.update_actor(batch))
            polyak_update(self.critic_target, self.critic, self.config.tau)
            polyak_update(self.actor_target, self.actor, self.config.tau)
        return result

    def update_actor(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """One gradient step on :meth:`actor_loss`, with the critics frozen."""
        self.critic.requires_grad_(False)
        actor_loss, metrics = self.actor_loss(batch)
        self.critic.requires_grad_(True)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return {"actor_loss": actor_loss.detach(), **metrics}

    def actor_loss(self, batch: TransitionBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_μ = −E[Q_1(s, μ(s))] and extra metrics (none here)."""
        obs = self.actor_features(batch.obs)
        return -self.critic(obs, self.actor(obs), Q1)[0].mean(), {}  # only Q_1 is evaluated

    def _modules(self) -> dict[str, Any]:
        return {**super()._modules(), "actor": self.actor, "actor_target": self.actor_target,
                "actor_optimizer": self.actor_optimizer}

    def state_parts(self) -> dict[str, tuple[str, ...]]:
        return {**super().state_parts(),
                "actor": ("actor", "actor_target", "actor_optimizer", *self._encoder_entries())}


class DDPG(TD3):
    """DDPG: TD3 without smoothing, delay or a second critic (enforced by the config preset)."""
