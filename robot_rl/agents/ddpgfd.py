"""DDPGfD (Vecerik et al. 2017): DDPG/TD3 learning from demonstrations in a prioritised replay.

Batches come from :class:`~robot_rl.data.prioritized.PrioritizedReplayBuffer`: importance
weights w, demonstration flags D, and both the n-step fields (R_n, s_{t+n'}, d_n = γ^{n'}(1 − done))
and the 1-step ones (r, s_{t+1}, d_1 = γ(1 − done)) of every transition. With ã' = μ̄(s') (plus
TD3's clipped smoothing noise if ``policy_noise`` > 0) and M the target subset:

    y_1 = r   + d_1 · min_{i ∈ M} Q̄_i(s_{t+1}, ã')                     1-step target
    y_n = R_n + d_n · min_{i ∈ M} Q̄_i(s_{t+n'}, ã')                    n-step target
    L_Q = Σ_i (1/B) Σ_b w_b [ (Q_i(s_b, a_b) − y_1,b)² + λ_n (Q_i(s_b, a_b) − y_n,b)² ]
    δ_b = (1/N) Σ_i |Q_i(s_b, a_b) − y_1,b|        (before the step) → ``UpdateResult.td_errors``

    every k-th critic step:
    F_b  = 1[Q_1(s_b, a_b) > Q_1(s_b, μ(s_b))]     (Q-filter; F_b = 1 without it)
    L_BC = Σ_b D_b F_b ‖μ(s_b) − a_b‖² / max(1, Σ_b D_b)
    L_μ  = −(1/B) Σ_b Q_1(s_b, μ(s_b)) + λ_bc · L_BC,   then Polyak on critics and actor

plus L2 regularisation of actor and critic weights (``weight_decay``, Adam's L2 term). The
training loop hands ``td_errors`` back to its sampler: ``p_b = (δ_b + ε + ε_D · D_b)^α``.

Choices: the priority uses the 1-step TD error (the paper's main loss; its n-step term only
adds to the regression), averaged over the critic ensemble, in Schaul et al.'s ``|δ|`` form
rather than the paper's ``δ² + λ|∇_a Q|²``. The BC loss is normalised by the number of
demonstrations in the batch (not by how many pass the filter), so λ_bc does not depend on the
batch's demo share. The Q-filter compares with the critic the actor follows (Q_1, as in TD3).
The importance weights correct only the critic's regression, as in prioritised replay.
"""

from __future__ import annotations

import torch
from gymnasium import spaces

from robot_rl.agents.base import DataNeeds, TransitionBatch, UpdateResult
from robot_rl.agents.config import AgentConfig
from robot_rl.agents.networks import Q1
from robot_rl.agents.td3 import TD3

DEMO_FIELDS = ("reward_1", "next_obs_1", "discount_1", "weights", "is_demo")


def q_filtered_bc_loss(policy_action: torch.Tensor, demo_action: torch.Tensor, is_demo: torch.Tensor,
                       keep: torch.Tensor) -> torch.Tensor:
    """L_BC = Σ_b D_b F_b ‖μ(s_b) − a_b‖² / max(1, Σ_b D_b) for ``(B, A)`` actions and ``(B,)``
    boolean demo flags D and filter F."""
    squared_error = (policy_action - demo_action).pow(2).sum(-1)
    return (squared_error * (is_demo & keep)).sum() / is_demo.sum().clamp(min=1)


class DDPGfD(TD3):
    """TD3/DDPG with 1-step + n-step prioritised TD losses and Q-filtered behaviour cloning.

    :meth:`update` returns the batch's ``(B,)`` |δ| as ``UpdateResult.td_errors``, for
    ``sampler.feedback(batch, result.td_errors)`` (the new priorities).
    """

    data_needs = DataNeeds(prioritized=True, demos_in_online_buffer=True)

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, config: AgentConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self._target_weights = torch.tensor([1.0, config.lambda_nstep], device=self.device)  # (1-step, n-step)

    def update(self, batch: TransitionBatch) -> UpdateResult:
        missing = [name for name in DEMO_FIELDS if getattr(batch, name, None) is None]
        if missing:
            raise ValueError(f"DDPGfD needs batches from a PrioritizedReplayBuffer; this one lacks {missing}")
        return super().update(batch)

    @torch.no_grad()
    def td_target(self, batch: TransitionBatch) -> torch.Tensor:
        """``(2, B)``: rows y_1 and y_n, from one target pass over both next observations."""
        next_obs = torch.cat([self.encoder(batch.next_obs_1), self.encoder(batch.next_obs)])
        reward = torch.cat([batch.reward_1, batch.reward])
        discount = torch.cat([batch.discount_1, batch.discount])
        return self.bootstrap(reward, next_obs, discount).view(2, -1)

    def critic_loss(self, batch: TransitionBatch, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ_i mean_b w_b [(Q_i − y_1)² + λ_n (Q_i − y_n)²], and the TD errors (1-step |δ|, mean
        over the critics) from the same forward pass."""
        q_values = self.critic(self.encode(batch.obs), batch.action)  # (N, B)
        td = q_values.unsqueeze(1) - target  # (N, 2, B)
        squared = (td.pow(2) * self._target_weights[:, None]).sum(dim=1)  # (N, B)
        return (squared * batch.weights).mean(dim=1).sum(), td[:, 0].detach().abs().mean(dim=0)

    def actor_loss(self, batch: TransitionBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """−mean_b Q_1(s, μ(s)) + λ_bc · L_BC; Q_1 of μ(s) and of the batch action in one pass."""
        obs = self.actor_features(batch.obs)
        policy_action = self.actor(obs)
        q_policy, q_data = self.critic(obs.repeat(2, 1), torch.cat([policy_action, batch.action]), Q1)[0].chunk(2)
        keep = q_data > q_policy if self.config.q_filter else torch.ones_like(batch.is_demo)
        bc_loss = q_filtered_bc_loss(policy_action, batch.action, batch.is_demo, keep)
        demos = batch.is_demo.sum().clamp(min=1)
        return -q_policy.mean() + self.config.lambda_bc * bc_loss, {
            "bc_loss": bc_loss.detach(), "q_filter_pass": (keep & batch.is_demo).sum() / demos}
