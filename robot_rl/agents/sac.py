"""Soft Actor-Critic with the knobs that make it sample-efficient on robots.

Classic SAC (N = M = 2), REDQ (N = 10, M = 2, high UTD), DroQ (dropout + LayerNorm critics,
high UTD) and RLPD's critics (LayerNorm, ensembles) are all this one class with different
:class:`AgentConfig` values (see ``robot_rl/configs/agents``).

Update, for a batch (s, a, R, s', d) where R is the n-step reward sum and d = γⁿ(1 − done):

    a' ~ π(·|s')
    y = R + d · ( min_{i ∈ M} Q̄_i(s', a') − α log π(a'|s') )          M: random subset of the N targets
    L_Q = Σ_i E[(Q_i(s, a) − y)²]
    L_π = E[ α log π(ã|s) − reduce_i Q_i(s, ã) ],   ã ~ π(·|s)        reduce: min (N ≤ 2) or mean
    L_α = E[ −log α · (log π(ã|s) + H_target) ]
    Q̄ ← (1 − τ) Q̄ + τ Q
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from gymnasium import spaces

from robot_rl.agents.base import OffPolicyAgent, TransitionBatch, UpdateResult, adam, polyak_update, subset_min_q
from robot_rl.agents.config import AgentConfig
from robot_rl.agents.networks import SquashedGaussianActor


class SAC(OffPolicyAgent):
    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, config: AgentConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.actor = SquashedGaussianActor(self.obs_dim, self.action_dim, config.hidden_sizes).to(self.device)
        self.actor_optimizer = adam(self.actor.parameters(), config.actor_lr, config.weight_decay)
        self.log_alpha = torch.tensor(np.log(config.init_temperature), dtype=torch.float32,
                                      device=self.device, requires_grad=True)
        self.alpha_optimizer = adam([self.log_alpha], config.alpha_lr)
        self.target_entropy = (config.target_entropy if config.target_entropy is not None
                               else -float(self.action_dim))
        self._actor_objective = self.actor_objective
        if config.compile:
            from robot_rl.agents.compiled import compile_objective  # imports inductor: only when asked

            self._critic_objective = compile_objective(self.critic_objective)
            self._actor_objective = compile_objective(self.actor_objective)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray] | np.ndarray, deterministic: bool = False) -> np.ndarray:
        action, _ = self.actor(self.encoder.batch_from_numpy(obs, self.device), deterministic=deterministic)
        return action[0].cpu().numpy()

    @torch.no_grad()
    def td_target(self, batch: TransitionBatch) -> torch.Tensor:
        next_obs = self.encoder(batch.next_obs)
        next_action, next_log_prob = self.actor(next_obs)
        next_q = subset_min_q(self.critic_target, next_obs, next_action, self.config.subset_size)
        return batch.reward + batch.discount * (next_q - self.alpha * next_log_prob)

    def update(self, batch: TransitionBatch) -> UpdateResult:
        result = self.update_critic(batch)
        polyak_update(self.critic_target, self.critic, self.config.tau)
        if self.updates % self.config.actor_update_interval == 0:
            result.metrics.update(self.update_actor_and_temperature(batch))
        return result

    def actor_objective(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L_π, L_α and the entropy estimate −E[log π(ã|s)]."""
        obs = self.actor_features(batch.obs)
        action, log_prob = self.actor(obs)
        q = self.actor_q(self.critic(obs, action))
        actor_loss = (self.alpha * log_prob - q).mean()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        return actor_loss, alpha_loss, -log_prob.detach().mean()

    def update_actor_and_temperature(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        self.critic.requires_grad_(False)  # the actor step must not leave gradients on the critics
        actor_loss, alpha_loss, entropy = self._actor_objective(batch)
        self.critic.requires_grad_(True)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        (actor_loss + alpha_loss).backward()  # disjoint graphs (α and log π detached): one pass serves both
        self.actor_optimizer.step()
        self.alpha_optimizer.step()
        return {"actor_loss": actor_loss.detach(), "alpha": self.alpha, "entropy": entropy}

    def _modules(self) -> dict[str, Any]:
        return {**super()._modules(), "actor": self.actor, "actor_optimizer": self.actor_optimizer,
                "alpha_optimizer": self.alpha_optimizer}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "log_alpha": self.log_alpha.detach().clone()}

    def state_parts(self) -> dict[str, tuple[str, ...]]:
        return {**super().state_parts(), "actor": ("actor", "actor_optimizer", *self._encoder_entries()),
                "temperature": ("log_alpha", "alpha_optimizer")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
