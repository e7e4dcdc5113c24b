"""Learner metrics accumulated on the device and read once per logging interval.

A learner's update returns its metrics as detached 0-d tensors; reading one with ``.item()``
would make the host wait for the device after every update. :class:`MetricMeans` sums them
where they are and transfers all of them in one go when the loop logs (or must know that
they are finite, e.g. before a checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


class MetricMeans:
    """Running sums and counts of named 0-d tensors (a metric may be missing from some updates,
    e.g. the actor's on a delayed schedule)."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._sums)

    def add(self, metrics: Mapping[str, torch.Tensor]) -> None:
        """Accumulate one update's metrics (no host sync)."""
        for name, value in metrics.items():
            total = self._sums.get(name)
            self._sums[name] = value if total is None else total + value
            self._counts[name] = self._counts.get(name, 0) + 1

    def _read(self) -> dict[str, float]:
        """Current means, in one device-to-host transfer."""
        if not self._sums:
            return {}
        sums = torch.stack(list(self._sums.values())).tolist()
        return {name: total / self._counts[name] for name, total in zip(self._sums, sums)}

    def all_finite(self) -> tuple[bool, dict[str, float]]:
        """Whether every accumulated metric is finite, and the current means (kept accumulating)."""
        means = self._read()
        return all(math.isfinite(value) for value in means.values()), means

    def take(self) -> dict[str, float]:
        """Mean of every metric since the last call; start accumulating afresh."""
        means = self._read()
        self._sums.clear()
        self._counts.clear()
        return means
