"""Proportional prioritised replay (Schaul et al. 2016) with pinned demonstrations (DDPGfD).

``SumTree`` is an array-backed binary tree over ``2^k`` leaves: node ``i`` has children ``2i``
and ``2i + 1``, the root is node 1 and leaf ``j`` is node ``2^k + j``. Batch updates write the
leaves and recompute the parents level by level (one numpy operation per level, never a loop
over the batch); batch sampling descends all prefix sums together, one level at a time.

``PrioritizedReplayBuffer`` composes two :class:`~robot_rl.data.replay.ReplayBuffer` s, which
keep the steps, the whole-episode eviction and the n-step gather:

* ``demos``: demonstrations, **pinned**. Nothing is ever evicted from it; a demonstration that
  does not fit its capacity is an error instead.
* ``online``: the FIFO ring of the agent's own episodes.

One sum tree spans both: leaves ``[0, D)`` are the demo buffer's steps (``D`` its capacity; a
step that is never evicted keeps absolute index = ring slot = leaf) and leaves ``[D, D + C)``
the online ring's slots (leaf ``D + step mod C``). Free and evicted slots have priority 0, so
they are never drawn. Transition ids handed out in ``Batch.indices`` are ``leaf`` for a
demonstration and ``D + absolute step index`` for online data; the absolute index tells
whether the step has been evicted since it was sampled, and :meth:`update_priorities` drops
such stale ids instead of reviving a free slot (or re-prioritising its new occupant).

With TD errors δ, ``p_i = (|δ_i| + ε + ε_demo · is_demo_i)^α`` and ``P(i) = p_i / Σ_j p_j``;
new transitions enter with the largest priority given so far (1 at the start). A batch is
drawn by stratified sampling (one draw in each of B equal slices of the total) and weighted by
``w_i = (N · P(i))^(−β) / max_batch w`` (N stored steps), with β annealed linearly from ``β0``
to 1 over ``beta_steps`` calls of :meth:`sample`.

After construction, add episodes only through :meth:`PrioritizedReplayBuffer.add_episode`
(the tree must see every eviction). Not thread-safe, like the buffers it composes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robot_rl.data.replay import Batch, ReplayBuffer

if TYPE_CHECKING:
    from robot_rl.agents.config import AgentConfig


class SumTree:
    """Non-negative leaf values with O(log n) batch updates, total and prefix-sum search.

    Leaves ``0 … capacity − 1``; the tree is sized to the next power of two (extra leaves stay 0).
    Sums are float64 and every parent is recomputed from its children (no drift from deltas).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.depth = max(0, (self.capacity - 1).bit_length())  # levels below the root
        self._leaf0 = 1 << self.depth  # node index of leaf 0
        self._nodes = np.zeros(2 * self._leaf0, np.float64)  # node 0 unused

    @property
    def total(self) -> float:
        return float(self._nodes[1])

    def __getitem__(self, leaves: np.ndarray) -> np.ndarray:
        """Values of ``leaves`` (any integer array)."""
        return self._nodes[self._leaf0 + np.asarray(leaves)]

    def update(self, leaves: np.ndarray, values: np.ndarray) -> None:
        """Set ``leaves`` to ``values`` (arrays of one length, or a scalar value).

        A leaf listed more than once takes the value of its **last** occurrence, as a sequence
        of single updates would.
        """
        leaves = np.asarray(leaves, np.int64).ravel()
        values = np.broadcast_to(np.asarray(values, np.float64), leaves.shape)
        if np.any((leaves < 0) | (leaves >= self.capacity)):
            raise IndexError(f"SumTree leaves must be in [0, {self.capacity})")
        if np.any(~np.isfinite(values) | (values < 0)):
            raise ValueError("SumTree values must be finite and non-negative")
        # np.unique keeps the first occurrence of each value: reverse to keep the last one.
        nodes, last = np.unique(leaves[::-1], return_index=True)
        self._nodes[self._leaf0 + nodes] = values[::-1][last]
        nodes = nodes + self._leaf0
        for _ in range(self.depth):
            nodes = np.unique(nodes >> 1)
            self._nodes[nodes] = self._nodes[2 * nodes] + self._nodes[2 * nodes + 1]

    def find(self, prefix: np.ndarray) -> np.ndarray:
        """For each ``u`` in ``prefix`` (within ``[0, total)``), the leaf ``j`` with
        ``Σ_{i<j} v_i ≤ u < Σ_{i≤j} v_i``: all searches descend the tree together.

        A zero-valued subtree is never entered while its sibling is positive, so a leaf of value
        0 is never returned when the total is positive (even where rounding puts ``u`` on a
        boundary). Non-decreasing ``prefix`` gives non-decreasing leaves.
        """
        u = np.array(prefix, np.float64)
        nodes = np.ones(u.shape, np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sum = self._nodes[left]
            right = (u >= left_sum) & (self._nodes[left + 1] > 0)
            u -= np.where(right, left_sum, 0.0)
            nodes = left + right
        return nodes - self._leaf0

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` leaves, leaf ``j`` with probability ``v_j / total`` (per draw), by stratified
        sampling: one uniform draw in each of ``count`` equal slices of ``[0, total)``. The
        leaves come out in ascending order."""
        total = self.total
        if total <= 0:
            raise ValueError("cannot sample from a SumTree whose total is 0")
        return self.find((np.arange(count) + rng.random(count)) * (total / count))


class PrioritizedReplayBuffer:
    """Proportional prioritised replay over pinned demonstrations and a FIFO online ring.

    ``online`` and ``demos`` must share features; episodes already in them enter with priority
    1 (see the module docstring for the layout and the formulas). ``demos=None``: no
    demonstrations (plain prioritised replay).
    """

    def __init__(self, online: ReplayBuffer, demos: ReplayBuffer | None = None, *, alpha: float = 0.4,
                 beta0: float = 0.6, beta_steps: int = 100_000, eps: float = 1e-3, demo_eps: float = 1.0) -> None:
        if demos is not None and (demos.obs_keys != online.obs_keys or demos.specs != online.specs):
            raise ValueError(f"demos and online replay must share features ({demos.specs} vs {online.specs})")
        if demos is not None and demos.device != online.device:
            raise ValueError(f"demos and online replay must share a device ({demos.device} vs {online.device})")
        if demos is not None and demos.step_range[0] != 0:
            raise ValueError("demos: the demo buffer has already evicted episodes (give it room for all of them)")
        if alpha < 0 or not 0 <= beta0 <= 1 or beta_steps < 1 or eps <= 0 or demo_eps < 0:
            raise ValueError(f"need alpha >= 0, 0 <= beta0 <= 1, beta_steps >= 1, eps > 0, demo_eps >= 0; got "
                             f"{alpha=}, {beta0=}, {beta_steps=}, {eps=}, {demo_eps=}")
        self.online, self.demos = online, demos
        self.alpha, self.beta0, self.beta_steps, self.eps, self.demo_eps = alpha, beta0, beta_steps, eps, demo_eps
        self.device = online.device
        self.demo_capacity = 0 if demos is None else demos.capacity
        self.tree = SumTree(self.demo_capacity + online.capacity)
        self.max_priority = 1.0  # largest p^α given so far: the priority of new transitions
        self.sample_calls = 0  # drives the β schedule (restore it when resuming a run)
        demo_end = 0 if demos is None else demos.step_range[1]
        self.tree.update(np.arange(demo_end), self.max_priority)
        self.tree.update(self._online_leaves(np.arange(*online.step_range)), self.max_priority)

    @classmethod
    def from_config(cls, online: ReplayBuffer, demos: ReplayBuffer | None,
                    config: AgentConfig) -> PrioritizedReplayBuffer:
        """A buffer with the ``per_*`` settings of an agent config."""
        return cls(online, demos, alpha=config.per_alpha, beta0=config.per_beta0, beta_steps=config.per_beta_steps,
                   eps=config.per_eps, demo_eps=config.per_demo_eps)

    def __len__(self) -> int:
        """Stored steps, demonstrations included."""
        return len(self.online) + (0 if self.demos is None else len(self.demos))

    @property
    def beta(self) -> float:
        """β = β0 + (1 − β0) · min(1, sample_calls / beta_steps)."""
        return self.beta0 + (1.0 - self.beta0) * min(1.0, self.sample_calls / self.beta_steps)

    def add_episode(self, steps: Mapping[str, np.ndarray], final_obs: Mapping[str, np.ndarray],
                    is_demo: bool = False) -> None:
        """Store a whole episode with the maximal priority: a demonstration is pinned (error if
        the demo buffer is full), online data may evict the oldest online episodes."""
        if is_demo:
            if self.demos is None:
                raise ValueError("add_episode(is_demo=True): this buffer was built without a demo buffer")
            if len(self.demos) + len(steps["action"]) > self.demos.capacity:
                raise ValueError(f"add_episode: a demonstration of {len(steps['action'])} steps does not fit the "
                                 f"{self.demos.capacity - len(self.demos)} free demo steps (demos are never evicted)")
            first = self.demos.step_range[1]
            self.demos.add_episode(steps, final_obs)
            self.tree.update(np.arange(first, self.demos.step_range[1]), self.max_priority)
            return
        old_start, old_end = self.online.step_range
        self.online.add_episode(steps, final_obs)
        start, end = self.online.step_range
        # Evicted steps drop to 0, then the new steps take their slots (last update of a leaf wins).
        leaves = self._online_leaves(np.concatenate([np.arange(old_start, start), np.arange(old_end, end)]))
        values = np.repeat([0.0, self.max_priority], [start - old_start, end - old_end])
        self.tree.update(leaves, values)

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int = 1, gamma: float = 0.99) -> Batch:
        """``batch_size`` transitions drawn with probability ``P(i)`` (rows ordered by leaf:
        demonstrations first), with n-step and 1-step target fields, ``indices``, ``weights``
        and ``is_demo``. Advances the β schedule."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty PrioritizedReplayBuffer")
        leaves = self.tree.sample(batch_size, rng)
        probability = self.tree[leaves] / self.tree.total
        split = int(np.searchsorted(leaves, self.demo_capacity))  # ascending leaves: demo rows first
        online_steps = self._online_steps(leaves[split:] - self.demo_capacity)
        batch = self.online.empty_batch(batch_size, one_step=True)
        if split:
            self.demos.gather(batch, 0, leaves[:split], n_step, gamma)
        self.online.gather(batch, split, online_steps, n_step, gamma)
        weights = (len(self) * probability) ** -self.beta
        batch.weights = torch.from_numpy((weights / weights.max()).astype(np.float32))
        batch.indices = torch.from_numpy(np.concatenate([leaves[:split], self.demo_capacity + online_steps]))
        batch.is_demo = torch.arange(batch_size) < split
        self.sample_calls += 1
        return batch if self.device.type == "cpu" else batch.to(self.device)

    def update_priorities(self, indices: torch.Tensor | np.ndarray, td_errors: torch.Tensor | np.ndarray) -> None:
        """``p_i = (|δ_i| + ε + ε_demo · is_demo_i)^α`` for the transitions ``indices`` (from
        ``Batch.indices``); ids of steps evicted since they were sampled are ignored. A
        transition listed twice keeps the later error."""
        ids, errors = _numpy(indices).astype(np.int64), np.abs(_numpy(td_errors).astype(np.float64))
        if ids.shape != errors.shape:
            raise ValueError(f"update_priorities: {ids.shape} indices but {errors.shape} TD errors")
        is_demo = ids < self.demo_capacity
        live = is_demo | (ids - self.demo_capacity >= self.online.step_range[0])
        ids, priorities = ids[live], (errors[live] + self.eps + self.demo_eps * is_demo[live]) ** self.alpha
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))
        self.tree.update(self._leaves(ids), priorities)

    def priorities(self, indices: torch.Tensor | np.ndarray) -> np.ndarray:
        """Current ``p^α`` of the transitions ``indices`` (ids from ``Batch.indices``)."""
        return self.tree[self._leaves(_numpy(indices).astype(np.int64))]

    def state_dict(self) -> dict[str, Any]:
        """Priorities, the largest priority and the β schedule position, for checkpoints (tensors
        and plain values only, so ``torch.load(weights_only=True)`` reads them)."""
        return {"priorities": torch.from_numpy(self.tree[np.arange(self.tree.capacity)].copy()),
                "max_priority": self.max_priority, "sample_calls": self.sample_calls,
                "online_step_range": list(self.online.step_range),
                "demo_steps": 0 if self.demos is None else len(self.demos)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into a buffer holding the same transitions (the same demos
        and the same online steps, e.g. refilled from the same store); ValueError otherwise."""
        demo_steps = 0 if self.demos is None else len(self.demos)
        mismatch = {key: (state[key], mine) for key, mine in (
            ("online_step_range", list(self.online.step_range)), ("demo_steps", demo_steps))
            if list(np.atleast_1d(state[key])) != list(np.atleast_1d(mine))}
        if len(state["priorities"]) != self.tree.capacity:
            mismatch["capacity"] = (len(state["priorities"]), self.tree.capacity)
        if mismatch:
            raise ValueError(f"saved priorities belong to other replay contents: {mismatch} (saved, here)")
        self.tree.update(np.arange(self.tree.capacity), _numpy(state["priorities"]).astype(np.float64))
        self.max_priority, self.sample_calls = float(state["max_priority"]), int(state["sample_calls"])

    def _leaves(self, ids: np.ndarray) -> np.ndarray:
        """Transition ids → tree leaves."""
        return np.where(ids < self.demo_capacity, ids, self._online_leaves(ids - self.demo_capacity))

    def _online_leaves(self, steps: np.ndarray) -> np.ndarray:
        """Absolute online step indices → tree leaves."""
        return self.demo_capacity + steps % self.online.capacity

    def _online_steps(self, slots: np.ndarray) -> np.ndarray:
        """Online ring slots of stored steps → absolute step indices."""
        start = self.online.step_range[0]
        return start + (slots - start) % self.online.capacity


def _numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
