"""AWAC: advantage-weighted actor-critic (Nair et al. 2020, "Accelerating Online Reinforcement
Learning with Offline Datasets").

An off-policy critic of the current policy, and an actor that only imitates the batch's own
actions, each weighted by how much better it is than what the policy would do. The batch may
hold demonstrations, online replay or a mix: :meth:`AWAC.update` is the same step for offline
pre-training and online fine-tuning, and the agent keeps no phase-specific state, so a run
moves from one to the other with the same networks and optimiser moments.

Update, for a batch (s_b, a_b, R_b, s'_b, d_b), b = 1..B (R the n-step reward sum, d = γⁿ(1 − done)):

    a' ~ π(·|s')
    y   = R + d · min_{i ∈ M} Q̄_i(s', a')                       M: random subset of the N targets
    L_Q = Σ_i E[(Q_i(s, a) − y)²]
    ã ~ π(·|s),   A(s, a) = Q(s, a) − Q(s, ã)                    Q = reduce_i Q_i (min for N ≤ 2, else mean)
    w_b = min(B · exp(A_b/λ) / Σ_c exp(A_c/λ), w_max)            = min(B · softmax_b(A/λ), w_max)
    L_π = −(1/B) Σ_b w_b · log π(a_b|s_b)                         w held constant
    Q̄ ← (1 − τ) Q̄ + τ Q

Choices:

* V(s) = E_{ã~π} Q(s, ã) is estimated from one sample per state, as in the reference
  implementation (rlkit's ``AWACTrainer``); the batch normalisation and the cap below bound what
  its noise can do to the weights.
* The paper's per-state normaliser Z(s) is replaced by the batch estimate mean_b exp(A_b/λ)
  (the reference's ``normalize_over_batch``): the weights have mean 1 whatever the scale of Q,
  adding a constant to every advantage changes nothing, and softmax cannot overflow. Each
  weight is then capped at ``awac_max_weight`` (AWR's ω_max = 20) so that at a small λ or with
  an early, noisy critic a single sample cannot carry the whole batch.
* λ (``awac_lambda``) defaults to 1, the reference's default β (its sweeps used 0.5 on sparse
  manipulation rewards and 2 on MuJoCo locomotion). With rewards in [0, 1] the advantages
  between actions at one state are a few units at most, so λ = 1 ranks them without collapsing
  onto one sample; a smaller λ is greedier, λ → ∞ is behaviour cloning of every batch action.
* No entropy terms by default (α = 0, as in the paper). ``awac_entropy`` adds them with a fixed
  α = ``init_temperature``: y gains −α log π(a'|s') and L_π gains α E[log π(ã|s)], so the actor
  maximises the entropy-regularised return the soft critic evaluates. SAC's temperature
  optimiser is inherited but never stepped.
"""

from __future__ import annotations

import torch

from robot_rl.agents.base import TransitionBatch
from robot_rl.agents.sac import SAC


def advantage_weights(advantage: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """w_b = min(B · softmax_b(A_b / λ), w_max): exp(A/λ) normalised to mean 1 over the batch, capped."""
    return (len(advantage) * torch.softmax(advantage / temperature, dim=0)).clamp(max=max_weight)


class AWAC(SAC):
    """SAC's actor, critics, target and act(); the actor step is advantage-weighted regression."""

    @property
    def alpha(self) -> torch.Tensor:
        """Fixed temperature: ``init_temperature`` with ``awac_entropy``, else 0 (no entropy terms)."""
        return super().alpha if self.config.awac_entropy else torch.zeros((), device=self.device)

    @torch.no_grad()
    def advantage(self, obs: torch.Tensor, action: torch.Tensor, policy_action: torch.Tensor) -> torch.Tensor:
        """A(s, a) = Q(s, a) − V(s) with V(s) ≈ Q(s, ã), ã ~ π(·|s) given as ``policy_action`` → ``(B,)``."""
        return self.actor_q(self.critic(obs, action)) - self.actor_q(self.critic(obs, policy_action))

    def update_actor_and_temperature(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """One step on L_π = E[α log π(ã|s)] − (1/B) Σ_b w_b log π(a_b|s_b); α is fixed (see module doc)."""
        obs = self.actor_features(batch.obs)
        policy_action, policy_log_prob = self.actor(obs)
        advantage = self.advantage(obs, batch.action, policy_action)
        weights = advantage_weights(advantage, self.config.awac_lambda, self.config.awac_max_weight)
        actor_loss = (self.alpha * policy_log_prob - weights * self.actor.log_prob(obs, batch.action)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return {"actor_loss": actor_loss.detach(), "entropy": -policy_log_prob.detach().mean(),
                "advantage": advantage.mean(), "max_weight": weights.max()}
