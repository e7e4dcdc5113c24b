"""Samplers: where a learner's minibatches come from, behind one small interface.

A :class:`Sampler` draws ``sample(batch_size, rng) -> Batch`` and, after the update, takes
``feedback(batch, td_errors)`` (new priorities; a no-op for uniform sampling). The training loop
talks to nothing else, so it never asks which learner or which buffers it runs:

* :class:`UniformSampler`: uniform over one :class:`~robot_rl.data.replay.ReplayBuffer`;
* :class:`PrioritizedSampler`: proportional priorities over a
  :class:`~robot_rl.data.prioritized.PrioritizedReplayBuffer` (demonstrations pinned);
  feedback becomes ``update_priorities``;
* :class:`MixtureSampler`: several samplers at fixed per-source row counts (online replay +
  demonstrations as in RLPD; interventions later), feedback routed to the component that
  produced each row.

The target fields of a batch (``n_step``, ``gamma``) are fixed when a sampler is built. A
sampler's ``state_dict`` holds what a resumed run needs to carry on (priorities, the β schedule,
a mixture's round-robin turn), as tensors and plain values for ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from robot_rl.data.prioritized import PrioritizedReplayBuffer
from robot_rl.data.replay import Batch, ReplayBuffer


class NonFiniteFeedback(ValueError):
    """TD errors handed to :meth:`Sampler.feedback` contain NaN or inf (the learner diverged)."""


class Sampler(ABC):
    """Minibatches for a learner, and the learner's per-sample feedback on them."""

    takes_feedback: bool = False  # False: feedback() does nothing (the caller may still call it)

    @abstractmethod
    def __len__(self) -> int:
        """Transitions available to draw."""

    def ready(self, batch_size: int) -> bool:
        """Whether a batch of ``batch_size`` can be drawn now."""
        return len(self) >= batch_size

    @abstractmethod
    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` transitions (on the buffers' device)."""

    def feedback(self, batch: Batch, td_errors: torch.Tensor | None) -> None:
        """Per-sample ``(B,)`` |TD errors| of ``batch`` after an update (``None``: none given)."""

    @property
    def features(self) -> tuple[tuple[str, ...], Mapping[str, Any]]:
        """``(obs_keys, feature specs)`` of the transitions drawn (mixtures check they agree)."""
        raise TypeError(f"{type(self).__name__} does not describe its features")

    def empty_batch(self, batch_size: int) -> Batch:
        """An uninitialised CPU batch this sampler can :meth:`fill`."""
        raise TypeError(f"{type(self).__name__} cannot be a component of a MixtureSampler")

    def fill(self, batch: Batch, start: int, count: int, rng: np.random.Generator) -> None:
        """Draw ``count`` transitions into rows ``[start, start + count)`` of ``batch``."""
        raise TypeError(f"{type(self).__name__} cannot be a component of a MixtureSampler")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError if it belongs to other buffer contents."""


class UniformSampler(Sampler):
    """Uniform draws from one :class:`ReplayBuffer`."""

    def __init__(self, buffer: ReplayBuffer, n_step: int = 1, gamma: float = 0.99) -> None:
        self.buffer, self.n_step, self.gamma = buffer, n_step, gamma
        self.device = buffer.device

    def __len__(self) -> int:
        return len(self.buffer)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.buffer.sample(batch_size, rng, self.n_step, self.gamma)

    @property
    def features(self) -> tuple[tuple[str, ...], Mapping[str, Any]]:
        return self.buffer.obs_keys, self.buffer.specs

    def empty_batch(self, batch_size: int) -> Batch:
        return self.buffer.empty_batch(batch_size)

    def fill(self, batch: Batch, start: int, count: int, rng: np.random.Generator) -> None:
        self.buffer.fill(batch, start, count, rng, self.n_step, self.gamma)


class PrioritizedSampler(Sampler):
    """Draws by priority from a :class:`PrioritizedReplayBuffer` (batches carry ``indices``,
    ``weights``, ``is_demo`` and the 1-step fields); feedback sets the new priorities."""

    takes_feedback = True

    def __init__(self, buffer: PrioritizedReplayBuffer, n_step: int = 1, gamma: float = 0.99) -> None:
        self.buffer, self.n_step, self.gamma = buffer, n_step, gamma

    def __len__(self) -> int:
        return len(self.buffer)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.buffer.sample(batch_size, rng, self.n_step, self.gamma)

    def feedback(self, batch: Batch, td_errors: torch.Tensor | None) -> None:
        """Raises :class:`NonFiniteFeedback` (priorities untouched) if an error is NaN or inf."""
        if td_errors is None:
            raise ValueError("PrioritizedSampler.feedback: the learner gave no TD errors (does it declare "
                             "DataNeeds(prioritized=True) and return UpdateResult.td_errors?)")
        errors = td_errors.detach().cpu().numpy()  # the update's one device-to-host transfer
        if not np.isfinite(errors).all():
            raise NonFiniteFeedback(f"non-finite TD errors for {int((~np.isfinite(errors)).sum())} of "
                                    f"{len(errors)} transitions")
        self.buffer.update_priorities(batch.indices, errors)

    @property
    def features(self) -> tuple[tuple[str, ...], Mapping[str, Any]]:
        return self.buffer.online.obs_keys, self.buffer.online.specs

    def state_dict(self) -> dict[str, Any]:
        return self.buffer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.buffer.load_state_dict(state)


class MixtureSampler(Sampler):
    """Batches drawn from several samplers with fixed per-source counts.

    For batch size ``B`` and normalised weights ``w``, source ``i`` gets ``floor(B · w_i)`` rows;
    the rows left over by rounding go to the sources with the largest fractional parts, ties
    taken in an order that rotates by one source each time this happens (round-robin). The
    counts therefore always sum to ``B``, are exact when ``B · w_i`` are integers (256 at
    0.5/0.5 → 128 + 128) and are the same sequence in every run. An empty source is an error
    unless ``skip_empty``, which spreads its share over the others. Rows are ordered by source;
    all sources must share obs keys, dtypes and shapes.

    A source is a :class:`Sampler` that can :meth:`~Sampler.fill` rows, or a
    :class:`ReplayBuffer` (sampled uniformly with this mixture's ``n_step`` and ``gamma``).
    :meth:`feedback` hands each source the rows it produced in the last batch.
    """

    def __init__(self, sources: Sequence[tuple[Sampler | ReplayBuffer, float]], skip_empty: bool = False,
                 names: Sequence[str] | None = None, n_step: int = 1, gamma: float = 0.99) -> None:
        if not sources:
            raise ValueError("MixtureSampler needs at least one (sampler, weight) source")
        self.samplers = [source if isinstance(source, Sampler) else UniformSampler(source, n_step, gamma)
                         for source, _ in sources]
        self.weights = np.array([float(weight) for _, weight in sources])
        self.names = list(names) if names is not None else [f"source {i}" for i in range(len(sources))]
        if len(self.names) != len(sources):
            raise ValueError(f"{len(self.names)} names for {len(sources)} sources")
        if not np.all(np.isfinite(self.weights)) or np.any(self.weights <= 0):
            raise ValueError(f"mixture weights must be positive and finite, got {self.weights.tolist()}")
        first = self.samplers[0].features
        for name, sampler in zip(self.names[1:], self.samplers[1:]):
            if sampler.features != first:
                raise ValueError(f"{name}: features differ from {self.names[0]}'s "
                                 f"({sampler.features[1]} vs {first[1]})")
        self.skip_empty = skip_empty
        self.device = getattr(self.samplers[0], "device", torch.device("cpu"))
        self._turn = 0
        self._last_counts = np.zeros(len(self.samplers), np.int64)

    @property
    def takes_feedback(self) -> bool:  # type: ignore[override]
        return any(sampler.takes_feedback for sampler in self.samplers)

    @property
    def features(self) -> tuple[tuple[str, ...], Mapping[str, Any]]:
        return self.samplers[0].features

    def __len__(self) -> int:
        return sum(len(sampler) for sampler in self.samplers)

    def ready(self, batch_size: int) -> bool:
        return len(self) >= batch_size and (self.skip_empty or all(len(sampler) for sampler in self.samplers))

    def counts(self, batch_size: int) -> np.ndarray:
        """Rows per source for the next batch (advances the round-robin turn when rounding left
        rows over)."""
        active = np.array([len(sampler) > 0 for sampler in self.samplers])
        if not active.all():
            empty = [name for name, ok in zip(self.names, active) if not ok]
            if not self.skip_empty:
                raise ValueError(f"cannot sample: {', '.join(empty)} is empty (pass skip_empty=True to skip)")
            if not active.any():
                raise ValueError("cannot sample: every source is empty")
        weights = np.where(active, self.weights, 0.0)
        exact = batch_size * weights / weights.sum()
        counts = np.floor(exact + 1e-9).astype(np.int64)
        fraction = np.round(exact - counts, 9)
        leftover = batch_size - int(counts.sum())
        if leftover:
            order = np.roll(np.flatnonzero(active), -self._turn)  # round-robin tie order
            ranked = order[np.argsort(-fraction[order], kind="stable")]
            counts[ranked[:leftover]] += 1
            self._turn += 1
        return counts

    def sample(self, batch_size: int, rng: np.random.Generator, out: Batch | None = None) -> Batch:
        """One batch with :meth:`counts` rows from each source, in source order (``out``: a
        batch from :meth:`empty_batch` to fill in place)."""
        counts = self.counts(batch_size)
        batch = self.samplers[0].empty_batch(batch_size) if out is None else out
        if len(batch) != batch_size:
            raise ValueError(f"out holds {len(batch)} transitions, batch_size is {batch_size}")
        start = 0
        for sampler, count in zip(self.samplers, counts.tolist()):
            if count:
                sampler.fill(batch, start, count, rng)
            start += count
        self._last_counts = counts
        return batch if self.device.type == "cpu" else batch.to(self.device)

    def feedback(self, batch: Batch, td_errors: torch.Tensor | None) -> None:
        """Each source that takes feedback gets its own rows of the last batch and their errors."""
        bounds = np.concatenate(([0], np.cumsum(self._last_counts))).tolist()
        for sampler, start, end in zip(self.samplers, bounds[:-1], bounds[1:]):
            if end > start and sampler.takes_feedback:
                rows = slice(start, end)
                sampler.feedback(batch.rows(rows), None if td_errors is None else td_errors[rows])

    def empty_batch(self, batch_size: int) -> Batch:
        return self.samplers[0].empty_batch(batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"turn": self._turn, "sources": [sampler.state_dict() for sampler in self.samplers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["sources"]) != len(self.samplers):
            raise ValueError(f"saved mixture has {len(state['sources'])} sources, this one {len(self.samplers)}")
        for sampler, source_state in zip(self.samplers, state["sources"]):
            sampler.load_state_dict(source_state)
        self._turn = int(state["turn"])
