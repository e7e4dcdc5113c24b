"""Neural network building blocks: vectorised critic ensembles and actors.

An ensemble of N critics is *one* module whose weights carry a leading ensemble dimension;
a forward pass is a handful of batched matmuls, whatever N is. Shapes: ``E`` ensemble size,
``B`` batch, features last.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
Members = torch.Tensor | range | None  # which ensemble members to evaluate (None: all)
Q1 = range(1)  # the member a TD3/DDPG actor follows


def select_members(parameter: torch.Tensor, members: Members) -> torch.Tensor:
    """Rows ``members`` of a per-member parameter: all for None, a view for a range, a copy for indices."""
    if members is None:
        return parameter
    if isinstance(members, range):
        return parameter[members.start:members.stop:members.step]
    return parameter[members]


class EnsembleLinear(nn.Module):
    """E independent affine maps applied in one batched matmul.

    Input ``(B, in)`` (shared by all members) or ``(E, B, in)``; output ``(E, B, out)``.
    ``members`` (indices, or a range: a view of the weights, no copy) evaluates only those
    members, e.g. REDQ's random target subset or TD3's Q_1.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        # Same distribution as nn.Linear's default init, drawn independently per member.
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        weight, bias = select_members(self.weight, members), select_members(self.bias, members)
        if x.dim() == 2:  # one input shared by every member: a stride-0 view, not a copy
            x = x.expand(len(weight), *x.shape)
        if weight.shape[-1] == 1:
            # A 1-wide output (the Q head) is one dot product per row: a reduction, several times
            # faster than a batched GEMM with N = 1 on CPU BLAS, forwards and backwards.
            return (x * weight.mT).sum(-1, keepdim=True) + bias
        return torch.baddbmm(bias, x, weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with a separate gain and bias per ensemble member."""

    def __init__(self, ensemble_size: int, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, features))

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        weight, bias = select_members(self.weight, members), select_members(self.bias, members)
        return torch.addcmul(bias, F.layer_norm(x, x.shape[-1:]), weight)  # LN(x) · weight + bias, one op


class Dropout16(nn.Module):
    """Dropout whose mask comes from 16-bit uniforms, four per 64-bit random draw.

    ``nn.Dropout`` draws one float per element; on a CPU generating those random numbers cost
    DroQ as much as two thirds of its matmuls (131k draws per critic layer and pass). Here an
    element is kept when its 16-bit uniform u ∈ {0, …, 65535} is below ``keep`` = round((1 − p)·2¹⁶),
    i.e. the rate is p rounded to a multiple of 2⁻¹⁶ (0.01 → 0.0099945), and kept elements are
    scaled by 2¹⁶/``keep`` = 1/(1 − rate) so that the expected output is the input, as usual.
    Active in training mode only.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.keep = round((1.0 - p) * 65536)
        self.p = 1.0 - self.keep / 65536  # the rate actually applied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.keep >= 65536:
            return x
        # random_ from the int64 minimum with no upper bound fills all 64 bits; seen as int16, four
        # uniforms in [−32768, 32767] per draw
        bits = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
        uniform = bits.view(torch.int16)[:x.numel()].view(x.shape)
        scale = (uniform < self.keep - 32768).to(x.dtype).mul_(65536 / self.keep)
        return x * scale


class EnsembleQ(nn.Module):
    """Q-function ensemble ``Q_i(s, a), i = 1..E`` → tensor ``(E, B)``.

    ``dropout`` > 0 gives DroQ critics; ``layer_norm`` gives RLPD/DroQ critics. Both sit after
    each hidden affine layer, before the ReLU (DroQ's ordering: Linear → Dropout → LayerNorm → ReLU).
    """

    def __init__(self, ensemble_size: int, obs_dim: int, action_dim: int, hidden: Sequence[int],
                 layer_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        layers: list[nn.Module] = []
        width = obs_dim + action_dim
        for size in hidden:
            layers.append(EnsembleLinear(ensemble_size, width, size))
            if dropout > 0:
                layers.append(Dropout16(dropout))
            if layer_norm:
                layers.append(EnsembleLayerNorm(ensemble_size, size))
            layers.append(nn.ReLU(inplace=True))
            width = size
        layers.append(EnsembleLinear(ensemble_size, width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, members: Members = None) -> torch.Tensor:
        """``(E, B)`` values, or ``(len(members), B)`` for a subset of members."""
        x = torch.cat([obs, action], dim=-1)
        for layer in self.net:
            x = layer(x, members) if isinstance(layer, (EnsembleLinear, EnsembleLayerNorm)) else layer(x)
        return x.squeeze(-1)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, size), nn.ReLU(inplace=True)]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def squashed_gaussian_log_prob(pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log π(a) of a = tanh(u), u ~ N(mean, σ²): log N(u; mean, σ²) − log|d tanh(u)/du|, summed → ``(B,)``."""
    gaussian_log_prob = (-0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std
                         - 0.5 * math.log(2 * math.pi)).sum(-1)
    # log|d tanh(u)/du| = log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)), stable for large |u|.
    log_det = (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
    return gaussian_log_prob - log_det


class SquashedGaussianActor(nn.Module):
    """π(a|s) = tanh(N(μ(s), σ(s)²)), actions in (−1, 1)."""

    # Given actions are clamped to |a| ≤ 1 − ε before atanh: atanh(1 − 1e-6) ≈ 7.25 keeps the
    # log-probability of boundary actions (clipped demonstrations) finite.
    ACTION_BOUND = 1.0 - 1e-6

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * action_dim)

    def gaussian(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (clamped) log standard deviation of the pre-tanh Gaussian, each ``(B, A)``."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (reparameterised) an action and its log-probability ``(B,)``."""
        mean, log_std = self.gaussian(obs)
        pre_tanh = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(pre_tanh), squashed_gaussian_log_prob(pre_tanh, mean, log_std)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log π(a|s) of *given* actions a ∈ [−1, 1]^A (e.g. from a dataset) → ``(B,)``.

        u = atanh(clamp(a, ±(1 − 1e-6))), then the same density as :meth:`forward`.
        """
        mean, log_std = self.gaussian(obs)
        pre_tanh = torch.atanh(action.clamp(-self.ACTION_BOUND, self.ACTION_BOUND))
        return squashed_gaussian_log_prob(pre_tanh, mean, log_std)


class DeterministicActor(nn.Module):
    """μ(s) = tanh(MLP(s)) for TD3/DDPG."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))
