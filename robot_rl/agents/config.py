"""Learner configuration shared by every off-policy agent (YAML section ``agent``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from robot_rl.config import ConfigError


@dataclass(frozen=True)
class AgentConfig:
    algo: Literal["sac", "td3", "ddpg", "awac", "ddpgfd"] = "sac"
    hidden_sizes: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics (and target actor for TD3/DDPG)
    batch_size: int = 256
    n_step: int = 1
    # Critic ensemble: N critics, target = min over a random subset of M (REDQ). N=M=2 is
    # SAC/TD3 clipped double-Q; DDPG uses N=M=1.
    ensemble_size: int = 2
    subset_size: int = 2
    utd_ratio: int = 1  # gradient updates per environment step
    actor_update_interval: int = 1  # critic updates per actor (and temperature) update
    actor_q: Literal["auto", "min", "mean"] = "auto"  # auto: min for N ≤ 2, mean for REDQ ensembles
    layer_norm: bool = False  # critics (RLPD, DroQ)
    dropout: float = 0.0  # critics (DroQ)
    # SAC
    alpha_lr: float = 3e-4
    init_temperature: float = 0.1
    target_entropy: float | None = None  # default −|A|
    # TD3 / DDPG
    policy_noise: float = 0.2  # target policy smoothing σ
    noise_clip: float = 0.5
    exploration_noise: float = 0.1
    # AWAC: actor weights w = min(B · softmax_batch(A/λ), w_max) on log π(a|s) of the batch's actions
    awac_lambda: float = 1.0  # temperature λ (the reference's default β; smaller → greedier, ∞ → behaviour cloning)
    awac_max_weight: float = 20.0  # w_max: cap on one sample's normalised weight (mean weight is 1; AWR's 20)
    awac_entropy: bool = False  # add −α log π terms to AWAC's target and actor, α = init_temperature fixed
    # L2 regularisation of actor and critic weights (Adam's weight_decay: λ·θ added to the gradient)
    weight_decay: float = 0.0
    # DDPGfD (Vecerik et al. 2017): L_Q = L_1step + λ_n L_nstep; L_μ = L_DDPG + λ_bc L_BC
    lambda_nstep: float = 1.0  # weight of the n-step TD loss next to the 1-step one
    lambda_bc: float = 1.0  # weight of the behaviour-cloning loss on demonstration transitions
    q_filter: bool = True  # clone a demo action only where the critic prefers it: Q(s, a_demo) > Q(s, μ(s))
    # Prioritised replay (DDPGfD): p = (|δ| + per_eps + per_demo_eps · is_demo)^per_alpha; DQfD's values
    per_alpha: float = 0.4  # prioritisation exponent α (0: uniform)
    per_beta0: float = 0.6  # importance-sampling exponent β at the start, annealed linearly to 1 ...
    per_beta_steps: int = 100_000  # ... over this many sampled minibatches
    per_eps: float = 1e-3  # ε: keeps every transition sampleable
    per_demo_eps: float = 1.0  # ε_demo: priority bonus of demonstration transitions
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not 1 <= self.subset_size <= self.ensemble_size:
            raise ConfigError(f"subset_size must be in 1..ensemble_size ({self.ensemble_size}), got {self.subset_size}")
        for name in ("batch_size", "n_step", "utd_ratio", "actor_update_interval", "ensemble_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"gamma and tau must be in (0, 1], got gamma={self.gamma}, tau={self.tau}")
        for name in ("weight_decay", "lambda_nstep", "lambda_bc", "per_alpha", "per_demo_eps"):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.per_beta0 <= 1.0:
            raise ConfigError(f"per_beta0 must be in [0, 1], got {self.per_beta0}")
        if self.per_beta_steps < 1 or not self.per_eps > 0.0:
            raise ConfigError(f"per_beta_steps must be >= 1 and per_eps > 0, got {self.per_beta_steps}, {self.per_eps}")
        if not self.awac_lambda > 0.0:
            raise ConfigError(f"awac_lambda must be > 0, got {self.awac_lambda}")
        if not self.awac_max_weight >= 1.0:
            raise ConfigError(f"awac_max_weight must be >= 1 (the mean normalised weight), got {self.awac_max_weight}")
