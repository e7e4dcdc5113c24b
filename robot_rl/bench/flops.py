"""Analytic FLOPs of one learner update, and the matrix-product throughput to compare them with.

Counting rule: only matrix products are counted, 2·m·k·n FLOPs for an (m×k)@(k×n) product (a
multiply-add is two). Biases, activations, LayerNorm, dropout, losses, optimiser steps, Polyak
updates and the temperature step are O(parameters + activations): together under 2 % of the
products at 256×256 and batch 256, and left out. A linear layer in→out applied to R rows by E
ensemble members costs

* forward: 2·E·R·in·out;
* backward: 2·E·R·in·out for the input gradient, only where something upstream needs it, and
  2·E·R·in·out for the weight gradient, only where the weights are being trained.

One update of the SAC family (the critic step, plus the actor step every k-th update; k =
``actor_update_interval``), batch B:

* TD target: actor forward on s' (TD3/DDPG: the target actor) and the M target critics forward;
* critic step: the N critics forward; weight gradients of every layer, input gradients of every
  layer but the first (its input is data);
* actor step, counted as 1/k per update: actor forward; critics forward — all N for SAC (min or
  mean of them), Q_1 only for TD3/DDPG; critic input gradients of every layer, the first
  included (the action's gradient), but no critic weight gradients (the critics are frozen);
  actor weight gradients of every layer and input gradients of all but the first.

Stable-Baselines3 does the same products plus the critics' weight gradients in the actor step
(its critics are not frozen there: the gradients are computed, then zeroed): ``sb3=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Gemm:
    """``members`` independent (m×k)@(k×n) products."""

    members: int
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.members * self.m * self.k * self.n


def _layers(sizes: Sequence[int]) -> list[tuple[int, int]]:
    return list(zip(sizes[:-1], sizes[1:]))


def _mlp_gemms(sizes: Sequence[int], rows: int, members: int, forward: bool = True, input_grads: str = "none",
               weight_grads: bool = False) -> list[Gemm]:
    """The products of a pass over the MLP with layer widths ``sizes``. ``input_grads``: "none",
    "all" (the first layer's too) or "hidden" (all but the first)."""
    gemms = []
    for index, (fan_in, fan_out) in enumerate(_layers(sizes)):
        if forward:
            gemms.append(Gemm(members, rows, fan_in, fan_out))  # x @ W
        if input_grads == "all" or (input_grads == "hidden" and index > 0):
            gemms.append(Gemm(members, rows, fan_out, fan_in))  # g @ Wᵀ
        if weight_grads:
            gemms.append(Gemm(members, fan_in, rows, fan_out))  # xᵀ @ g
    return gemms


def update_gemms(obs_dim: int, action_dim: int, hidden: Sequence[int], batch: int, ensemble_size: int,
                 subset_size: int, stochastic_actor: bool = True, actor_critics: int | None = None,
                 sb3: bool = False) -> dict[str, list[Gemm]]:
    """The matrix products of one critic step (``target``, ``critic``) and one actor step
    (``actor``), by part. ``actor_critics``: critics evaluated in the actor step (default all N;
    1 for TD3/DDPG, which follow Q_1)."""
    critic = [obs_dim + action_dim, *hidden, 1]
    actor = [obs_dim, *hidden, 2 * action_dim if stochastic_actor else action_dim]
    in_actor_step = ensemble_size if actor_critics is None else actor_critics
    return {
        "target": _mlp_gemms(actor, batch, 1) + _mlp_gemms(critic, batch, subset_size),
        "critic": _mlp_gemms(critic, batch, ensemble_size, input_grads="hidden", weight_grads=True),
        "actor": (_mlp_gemms(actor, batch, 1)
                  + _mlp_gemms(critic, batch, in_actor_step, input_grads="all", weight_grads=sb3)
                  + _mlp_gemms(actor, batch, 1, forward=False, input_grads="hidden", weight_grads=True)),
    }


def update_flops(gemms: dict[str, list[Gemm]], actor_update_interval: int = 1) -> dict[str, float]:
    """GFLOP per update by part and in total, the actor step counted as 1/k of an update."""
    parts = {name: sum(g.flops for g in products) / 1e9 for name, products in gemms.items()}
    parts["actor"] /= actor_update_interval
    return {**{f"{name}_gflop": value for name, value in parts.items()}, "total_gflop": sum(parts.values())}
