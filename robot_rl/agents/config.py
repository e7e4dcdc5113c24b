"""Learner configuration shared by every off-policy agent (YAML section ``agent``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from robot_rl.config import ConfigError


@dataclass(frozen=True)
class AgentConfig:
    algo: Literal["sac", "td3", "ddpg"] = "sac"
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
