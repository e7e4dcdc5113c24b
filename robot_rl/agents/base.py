"""The common agent interface and pieces every off-policy learner shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol, Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from robot_rl.agents.config import AgentConfig, EncoderConfig
from robot_rl.agents.kernels import set_fp32_matmul
from robot_rl.agents.networks import EnsembleQ


class TransitionBatch(Protocol):
    """What learners consume (``robot_rl.data.replay.Batch`` satisfies it).

    ``reward`` is the (n-step) discounted reward sum and ``discount`` the factor that multiplies
    the bootstrap value: γ^n · (1 − terminated). Tensors are batch-first.
    """

    obs: Mapping[str, torch.Tensor]
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: Mapping[str, torch.Tensor]
    discount: torch.Tensor


@dataclass(frozen=True)
class DataNeeds:
    """What a learner asks of the data path; the training loop builds its sampler from this
    declaration and never asks which learner it runs.

    ``prioritized``: minibatches are drawn by priority and carry importance ``weights``,
    ``is_demo`` flags, ``indices`` and the 1-step target fields; :meth:`OffPolicyAgent.update`
    returns per-sample TD errors, which the sampler turns into new priorities.
    ``demos_in_online_buffer``: demonstrations are pinned inside the same buffer as the online
    data (and drawn by priority with it) instead of being mixed into every minibatch at
    ``demos.ratio``.
    """

    prioritized: bool = False
    demos_in_online_buffer: bool = False


@dataclass
class UpdateResult:
    """What one :meth:`OffPolicyAgent.update` returns.

    ``metrics``: name → detached 0-d tensor on the learner's device (reading them is left to the
    caller, so an update itself never waits for the device); ``td_errors``: ``(B,)`` per-sample
    |δ| for priority feedback, or ``None`` for a learner that gives none.
    """

    metrics: dict[str, torch.Tensor]
    td_errors: torch.Tensor | None = None

    def scalars(self) -> dict[str, float]:
        """The metrics as Python floats, in one device-to-host transfer."""
        if not self.metrics:
            return {}
        return dict(zip(self.metrics, torch.stack(list(self.metrics.values())).tolist()))


class ObservationEncoder(nn.Module):
    """Observation → the feature vector learners' networks read, ``(B, dim)``.

    The vector entries of a ``Dict`` observation are concatenated (sorted keys, the layout of
    :class:`robot_rl.envs.FlattenState`); ``image_<camera>`` entries are skipped unless
    ``config.mode`` is ``finetune``, in which case a trainable
    :class:`~robot_rl.vision.encoders.ImageEncoder` turns them into features appended after the
    vectors (with DrQ's random shift when ``augment``). :attr:`keys` lists every entry it reads.
    """

    def __init__(self, observation_space: spaces.Space, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.images: nn.Module | None = None
        if isinstance(observation_space, spaces.Dict):
            self.vector_keys = sorted(k for k in observation_space.spaces if not k.startswith("image_"))
            self.dim = int(sum(np.prod(observation_space[k].shape) for k in self.vector_keys))
            if config.mode == "finetune":
                from robot_rl.vision.encoders import trainable_encoder  # torch vision code only when asked

                self.images = trainable_encoder(observation_space, config)
                self.dim += self.images.spec.output_dim
        elif isinstance(observation_space, spaces.Box):
            if config.mode == "finetune":
                raise ValueError("encoder.mode finetune needs a Dict observation with image_<camera> entries")
            self.vector_keys = []
            self.dim = int(np.prod(observation_space.shape))
        else:
            raise TypeError(f"unsupported observation space {observation_space}")
        self.keys = [*self.vector_keys, *(self.images.spec.cameras if self.images is not None else ())]
        # (x − shift) / scale on the vector part; the identity until fit_statistics
        vector_dim = self.dim - (self.images.spec.output_dim if self.images is not None else 0)
        self.register_buffer("shift", torch.zeros(vector_dim))
        self.register_buffer("scale", torch.ones(vector_dim))
        self.register_buffer("fitted", torch.tensor(False))

    def vectors(self, obs: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """The vector entries, concatenated and normalised ``(B, vector_dim)``."""
        flat = obs.flatten(1) if not self.keys else torch.cat([obs[k].flatten(1) for k in self.vector_keys], dim=-1)
        return (flat - self.shift) / self.scale

    @torch.no_grad()
    def fit_statistics(self, obs: Mapping[str, torch.Tensor] | torch.Tensor, min_scale: float = 1e-2) -> None:
        """Normalise the vector entries by the mean and standard deviation (at least ``min_scale``,
        so a near-constant entry is not blown up into noise) of the batch ``obs``, from now on."""
        self.shift.zero_()
        self.scale.fill_(1.0)
        flat = self.vectors(obs)
        self.shift.copy_(flat.mean(dim=0))
        self.scale.copy_(flat.std(dim=0).clamp(min=min_scale))
        self.fitted.fill_(True)

    def forward(self, obs: Mapping[str, torch.Tensor] | torch.Tensor, augment: bool = True) -> torch.Tensor:
        if self.images is None:
            return self.vectors(obs)
        return torch.cat([self.vectors(obs), self.images(obs, augment=augment)], dim=-1)

    def batch_from_numpy(self, obs: Mapping[str, np.ndarray] | np.ndarray, device: torch.device) -> torch.Tensor:
        """Features ``(1, dim)`` of one unbatched observation (never augmented)."""
        if not self.keys:
            return self.vectors(torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device).reshape(1, -1))
        vectors = self.vectors({k: torch.as_tensor(np.asarray(obs[k], dtype=np.float32), device=device).reshape(1, -1)
                                for k in self.vector_keys})
        if self.images is None:
            return vectors
        from robot_rl.vision.encoders import check_images  # loaded already: the encoder is one

        arrays = {key: np.asarray(obs[key]) for key in self.images.spec.cameras if key in obs}
        check_images(self.images.spec, {key: array.shape for key, array in arrays.items()},
                     {key: str(array.dtype) for key, array in arrays.items()}, "this step's observation")
        frames = {key: torch.as_tensor(array, device=device).unsqueeze(0) for key, array in arrays.items()}
        return torch.cat([vectors, self.images(frames, augment=False)], dim=-1)


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel: one kernel per parameter tensor instead of a dozen small ops
    each, the largest cost of an update after the matmuls on CPU. The same update rule (to the
    last bits); where the fused kernel is unavailable (device or dtype), the foreach one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ_target ← (1 − τ) θ_target + τ θ_online, as one fused op over all parameters."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def random_subset(ensemble_size: int, subset_size: int, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor | None:
    """M distinct member indices drawn uniformly (REDQ's target subset); ``None`` means all members."""
    if subset_size == ensemble_size:
        return None
    return torch.randperm(ensemble_size, generator=generator)[:subset_size].to(device)


def subset_min_q(critic: nn.Module, obs: torch.Tensor, action: torch.Tensor, subset_size: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """min over a random subset of M ensemble members of Q_i(s, a) → ``(B,)``.

    Only the M drawn members are evaluated, so a 10-critic REDQ target costs what a 2-critic one does.
    """
    members = random_subset(critic.ensemble_size, subset_size, obs.device, generator)
    return critic(obs, action, members).min(dim=0).values


class OffPolicyAgent(ABC):
    """act / update / state_dict: all the training loop, evaluation and checkpoints rely on.

    ``data_needs`` declares the minibatches the learner wants (see :class:`DataNeeds`).
    """

    data_needs: ClassVar[DataNeeds] = DataNeeds()

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, config: AgentConfig) -> None:
        if not isinstance(action_space, spaces.Box) or not np.allclose(np.abs(action_space.low), 1) \
                or not np.allclose(action_space.high, 1):
            raise ValueError(f"agents expect a Box action space in [-1, 1], got {action_space}")
        self.config = config
        self.device = torch.device(config.device)
        if self.device.type == "cpu":
            set_fp32_matmul(config.fp32_matmul)  # process-wide; oneDNN only where it keeps float32 accuracy
        self.encoder = ObservationEncoder(observation_space, config.encoder).to(self.device)
        self.obs_dim = self.encoder.dim
        self.action_dim = int(np.prod(action_space.shape))
        def make_critic() -> EnsembleQ:
            return EnsembleQ(config.ensemble_size, self.obs_dim, self.action_dim, config.hidden_sizes,
                             config.layer_norm, config.dropout).to(self.device)

        # Two constructions, not a deepcopy: the target's init draws keep seeded runs as they were.
        self.critic, self.critic_target = make_critic(), make_critic()
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        # a trainable image encoder learns from the critic's loss only (DrQ, SERL)
        self.critic_optimizer = adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr,
                                     config.weight_decay)
        self._critic_objective = self.critic_objective  # compiled by learners that offer agent.compile
        self._encoded: tuple[Any, torch.Tensor] | None = None  # see encode()
        self.updates = 0  # critic gradient steps taken

    @abstractmethod
    def act(self, obs: Mapping[str, np.ndarray] | np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action in [-1, 1] for one observation (exploration unless ``deterministic``)."""

    @abstractmethod
    def update(self, batch: TransitionBatch) -> UpdateResult:
        """One gradient step on the critics (and, on schedule, the actor): metrics as detached
        0-d tensors (no host sync) and, for prioritised learners, the batch's TD errors."""

    @abstractmethod
    def td_target(self, batch: TransitionBatch) -> torch.Tensor:
        """Bootstrapped regression target y, shape ``(B,)`` (``(K, B)`` for a learner whose
        :meth:`critic_loss` regresses on K targets at once, e.g. DDPGfD's 1-step and n-step)."""

    def critic_objective(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`critic_loss` towards :meth:`td_target`, its per-sample |δ| (or None) and the target."""
        target = self.td_target(batch)
        critic_loss, td_errors = self.critic_loss(batch, target)
        return critic_loss, td_errors, target

    def encode(self, obs: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Encoded ``obs`` for the critic's loss (the gradient reaches a trainable image encoder).
        With one, the features are also kept, detached, for the actor step on the same batch."""
        features = self.encoder(obs)
        if self.encoder.images is not None:
            self._encoded = (obs, features.detach())
        return features

    def actor_features(self, obs: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Encoded ``obs`` for the actor's objective, without gradient into the encoder: only the
        critic trains a trainable image encoder (DrQ, SERL). For the batch the critic step just
        encoded, its features are reused (DrQ-v2: the costliest part of a pixel update)."""
        encoded = self._encoded
        if encoded is not None and encoded[0] is obs:
            return encoded[1]
        with torch.no_grad():
            return self.encoder(obs)

    @property
    def needs_observation_statistics(self) -> bool:
        """``agent.normalize_observations`` is on and :meth:`fit_observation_statistics` has not run."""
        return self.config.normalize_observations and not bool(self.encoder.fitted)

    def fit_observation_statistics(self, obs: Mapping[str, torch.Tensor]) -> None:
        """Fix the observation normalisation from a large sample of the training data (the
        training loop calls this once, before the first update)."""
        self.encoder.fit_statistics(obs)

    @property
    def input_keys(self) -> list[str]:
        """The observation entries the learner reads (a replay need keep no others)."""
        return list(self.encoder.keys)

    def update_critic(self, batch: TransitionBatch) -> UpdateResult:
        """One gradient step on Σ_i E[(Q_i(s, a) − y)²] towards :meth:`td_target`."""
        critic_loss, td_errors, target = self._critic_objective(batch)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self.updates += 1
        return UpdateResult({"critic_loss": critic_loss.detach(), "td_target": target.mean()}, td_errors)

    def actor_q(self, q_values: torch.Tensor) -> torch.Tensor:
        """Reduce ``(E, B)`` critic values for the actor objective: min (clipped double-Q) or
        mean (REDQ; the min of many critics is too pessimistic for the policy gradient)."""
        mode = self.config.actor_q
        if mode == "auto":
            mode = "min" if self.config.ensemble_size <= 2 else "mean"
        return q_values.min(dim=0).values if mode == "min" else q_values.mean(dim=0)

    def critic_loss(self, batch: TransitionBatch, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Σ_i mean_b (Q_i(s, a) − y)²: every member regresses on the same target. Also returns
        the per-sample |δ| for priority feedback (``None`` here: uniform learners give none)."""
        q_values = self.critic(self.encode(batch.obs), batch.action)
        return ((q_values - target.unsqueeze(0)) ** 2).mean(dim=1).sum(), None

    def _modules(self) -> dict[str, Any]:
        """Everything with a state_dict, by name (extended by subclasses)."""
        modules = {"critic": self.critic, "critic_target": self.critic_target, "critic_optimizer": self.critic_optimizer}
        if self.encoder.images is not None or self.config.normalize_observations:
            modules["encoder"] = self.encoder  # trained weights, or the normalisation statistics
        return modules

    def state_dict(self) -> dict[str, Any]:
        state = {name: module.state_dict() for name, module in self._modules().items()}
        state["updates"] = self.updates
        return state

    def state_parts(self) -> dict[str, tuple[str, ...]]:
        """:meth:`state_dict` entries grouped into the parts a fine-tuning run may take from a
        checkpoint one by one (extended by subclasses). The encoder (normalisation statistics or
        trained weights) belongs to every part whose networks read its features."""
        return {"critic": ("critic", "critic_target", "critic_optimizer", *self._encoder_entries())}

    def _encoder_entries(self) -> tuple[str, ...]:
        return ("encoder",) if "encoder" in self._modules() else ()

    def load_state_parts(self, state: Mapping[str, Any], parts: Sequence[str]) -> list[str]:
        """Load the entries of ``parts`` (names of :meth:`state_parts`) from ``state``, keep the
        rest as they are, and continue ``state``'s update count; returns the parts this learner
        does not have (skipped). A missing or misshapen entry raises like :meth:`load_state_dict`."""
        available = self.state_parts()
        merged = self.state_dict()
        for part in parts:
            for key in available.get(part, ()):
                merged[key] = state[key]
        merged["updates"] = state["updates"]
        self.load_state_dict(merged)
        return [part for part in parts if part not in available]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, module in self._modules().items():
            module.load_state_dict(state[name])
        self.updates = int(state["updates"])
