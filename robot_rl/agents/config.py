"""Learner configuration shared by every off-policy agent (YAML section ``agent``).

Ranges are declared on the fields (:func:`~robot_rl.config.bounded`) and checked on
construction; rules relating several fields are in ``__post_init__``. Whether ``device`` exists
on this machine needs torch, so :func:`device_problem` is asked when a run's config is complete
(:meth:`robot_rl.training.config.TrainConfig.check_complete`), not on every construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from robot_rl.config import CheckedConfig, FieldError, bounded

# torch device strings a learner may run on
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps")
DEVICE_CHOICES = "cpu, cuda, cuda:<index> or mps"


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine (not a device name, no CUDA, no such GPU
    index, no MPS), or None."""
    if not DEVICE_PATTERN.fullmatch(device):
        return f"expected {DEVICE_CHOICES}, got {device!r}"
    if device == "cpu":
        return None
    import torch  # only here, for accelerators: loading a config does not otherwise need torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            return f"{device!r} is not available: this torch ({torch.__version__}) sees no CUDA device"
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            return f"{device!r} is not available: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
    if kind == "mps" and not torch.backends.mps.is_available():
        return f"{device!r} is not available on this machine"
    return None


@dataclass(frozen=True)
class EncoderConfig(CheckedConfig):
    """How a learner sees ``image_<camera>`` observations (robot_rl/vision).

    ``none``: it does not (images are recorded, not learned from). ``frozen``: the encoder file
    ``weights`` runs once per frame as the env produces it and the learner reads its features
    (``camera_features``) like state: updates cost what state updates cost, the affordable mode
    on a CPU. ``finetune``: the learner owns an encoder, trained by the critic's loss only
    (DrQ/SERL; the actor reads its features without gradient), with DrQ's random shift of
    ``augment_pad`` pixels; it starts from ``weights`` when given, or from a torchvision-layout
    ResNet state dict in ``resnet_weights`` (trunk resnet10/resnet18), else from scratch.
    """

    mode: Literal["none", "frozen", "finetune"] = "none"
    weights: str = ""  # encoder file (robot-rl encoder pretrain)
    resnet_weights: str = ""  # a local torchvision ResNet state dict (nothing is downloaded)
    # architecture of a finetune encoder made here (a weights file brings its own)
    trunk: Literal["conv", "resnet10", "resnet18"] = "conv"
    pool: Literal["spatial_softmax", "spatial_embedding", "flatten"] = "spatial_softmax"
    channels: int = bounded(32, ge=1)
    strided_layers: int = bounded(2, ge=0)
    feature_dim: int = bounded(64, ge=1)  # per camera
    augment_pad: int = bounded(4, ge=0)  # DrQ random shift in pixels (0: off)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode == "frozen" and not self.weights:
            raise FieldError("weights", "encoder.mode frozen needs an encoder file (robot-rl encoder pretrain --out FILE)")
        if self.resnet_weights and self.trunk == "conv":
            raise FieldError("resnet_weights", "needs trunk resnet10 or resnet18")


@dataclass(frozen=True)
class AgentConfig(CheckedConfig):
    algo: Literal["sac", "td3", "ddpg", "awac", "ddpgfd"] = "sac"
    hidden_sizes: tuple[int, ...] = bounded((256, 256), ge=1)
    actor_lr: float = bounded(3e-4, gt=0)
    critic_lr: float = bounded(3e-4, gt=0)
    gamma: float = bounded(0.99, gt=0, le=1)
    tau: float = bounded(0.005, gt=0, le=1)  # Polyak rate of the target critics (and target actor for TD3/DDPG)
    batch_size: int = bounded(256, ge=1)
    n_step: int = bounded(1, ge=1)
    # Critic ensemble: N critics, target = min over a random subset of M (REDQ). N=M=2 is
    # SAC/TD3 clipped double-Q; DDPG uses N=M=1.
    ensemble_size: int = bounded(2, ge=1)
    subset_size: int = bounded(2, ge=1)
    utd_ratio: int = bounded(1, ge=1)  # gradient updates per environment step
    actor_update_interval: int = bounded(1, ge=1)  # critic updates per actor (and temperature) update
    actor_q: Literal["auto", "min", "mean"] = "auto"  # auto: min for N ≤ 2, mean for REDQ ensembles
    layer_norm: bool = False  # critics (RLPD, DroQ)
    dropout: float = bounded(0.0, ge=0, lt=1)  # critics (DroQ)
    # SAC
    alpha_lr: float = bounded(3e-4, gt=0)
    init_temperature: float = bounded(0.1, gt=0)  # α at the start (its log is learned)
    target_entropy: float | None = None  # default −|A|
    # TD3 / DDPG
    policy_noise: float = bounded(0.2, ge=0)  # target policy smoothing σ
    noise_clip: float = bounded(0.5, ge=0)
    exploration_noise: float = bounded(0.1, ge=0)
    # AWAC: actor weights w = min(B · softmax_batch(A/λ), w_max) on log π(a|s) of the batch's actions
    # temperature λ (the reference's default β; smaller → greedier, ∞ → behaviour cloning)
    awac_lambda: float = bounded(1.0, gt=0)
    # w_max: cap on one sample's normalised weight (mean weight is 1; AWR's 20)
    awac_max_weight: float = bounded(20.0, ge=1)
    awac_entropy: bool = False  # add −α log π terms to AWAC's target and actor, α = init_temperature fixed
    # L2 regularisation of actor and critic weights (Adam's weight_decay: λ·θ added to the gradient)
    weight_decay: float = bounded(0.0, ge=0)
    # DDPGfD (Vecerik et al. 2017): L_Q = L_1step + λ_n L_nstep; L_μ = L_DDPG + λ_bc L_BC
    lambda_nstep: float = bounded(1.0, ge=0)  # weight of the n-step TD loss next to the 1-step one
    lambda_bc: float = bounded(1.0, ge=0)  # weight of the behaviour-cloning loss on demonstration transitions
    q_filter: bool = True  # clone a demo action only where the critic prefers it: Q(s, a_demo) > Q(s, μ(s))
    # Prioritised replay (DDPGfD): p = (|δ| + per_eps + per_demo_eps · is_demo)^per_alpha; DQfD's values
    per_alpha: float = bounded(0.4, ge=0)  # prioritisation exponent α (0: uniform)
    # importance-sampling exponent β at the start, annealed linearly to 1 ...
    per_beta0: float = bounded(0.6, ge=0, le=1)
    per_beta_steps: int = bounded(100_000, ge=1)  # ... over this many sampled minibatches
    per_eps: float = bounded(1e-3, gt=0)  # ε: keeps every transition sampleable
    per_demo_eps: float = bounded(1.0, ge=0)  # ε_demo: priority bonus of demonstration transitions
    device: str = "cpu"  # cpu, cuda, cuda:<index> or mps; must exist on the machine that runs it
    # CPU float32 matmuls: oneDNN where a start-up check shows it keeps float32 accuracy, else torch's
    # default (MKL); 1.4x more SAC updates/s on this project's AMD benchmark machine; process-wide;
    # see robot_rl/agents/kernels.py
    fp32_matmul: Literal["default", "onednn"] = "onednn"
    # SAC (also REDQ and RLPD-style critics, not DroQ's dropout): torch.compile the critic and actor
    # objectives, backward included (robot_rl/agents/compiled.py); 1.09-1.13x updates per CPU second
    # for SAC N=2 on this project's benchmark machine, after 15-20 s of compilation at the first
    # update (2-3 s once inductor's disk cache holds the graphs)
    compile: bool = False
    # normalise the vector observation entries by the mean and std of the training data seen before
    # the first update (demonstrations and warm-up steps), fixed from then on and checkpointed
    normalize_observations: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.subset_size > self.ensemble_size:
            raise FieldError("subset_size",
                             f"must be in 1..ensemble_size ({self.ensemble_size}), got {self.subset_size}")
        if self.compile and self.algo != "sac":
            raise FieldError("compile", f"only SAC compiles its update, not {self.algo!r}")
        if self.compile and self.encoder.mode == "finetune":
            raise FieldError("compile", "not with encoder.mode finetune")
        if self.compile and self.dropout > 0:  # Dropout16's in-place random_ breaks the traced graph
            raise FieldError("compile", "not with dropout > 0 (DroQ)")
        if not DEVICE_PATTERN.fullmatch(self.device):  # whether it exists: device_problem, at load
            raise FieldError("device", f"expected {DEVICE_CHOICES}, got {self.device!r}")
