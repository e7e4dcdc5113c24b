"""The episode in flight, in RAM: what ``append_step`` costs on the control loop (a copy into
preallocated numpy arrays, microseconds, no Zarr), and the checks that turn a caller's episode
into read-only arrays of the stored dtypes and shapes before the writer gets it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from robot_rl.data.schema import OPTIONAL_STEP_FEATURES, FeatureSpec, optional_default

FIRST_BUFFER_STEPS = 256


class EpisodeBuffer:
    """Growable per-feature numpy arrays for the episode in flight (time-major)."""

    def __init__(self, features: Mapping[str, FeatureSpec], capacity: int) -> None:
        self._features = features
        self._shapes = {name: spec.shape for name, spec in features.items()}
        self.n = 0
        self._arrays = self._allocate(capacity)

    def _allocate(self, capacity: int) -> dict[str, np.ndarray]:
        return {name: np.empty((capacity, *spec.shape), spec.dtype) for name, spec in self._features.items()}

    def append(self, step: Mapping[str, Any]) -> None:
        t = self.n
        arrays = self._arrays
        if t == len(next(iter(arrays.values()))):
            self._grow()
            arrays = self._arrays
        if len(step) != len(arrays):
            step = _with_optional_defaults(step, arrays)
            if len(step) != len(arrays):
                extra = sorted(set(step) - set(arrays))
                missing = sorted(set(arrays) - set(step))
                raise ValueError(f"step features do not match the store: missing {missing}, unexpected {extra}")
        for name, buffer in arrays.items():
            try:
                value = step[name]
            except KeyError:
                raise ValueError(f"step is missing feature {name!r}") from None
            if np.shape(value) != self._shapes[name]:
                raise ValueError(f"feature {name!r}: expected shape {self._shapes[name]}, got {np.shape(value)}")
            buffer[t] = value
        self.n = t + 1

    def _grow(self) -> None:
        old = self._arrays
        self._arrays = self._allocate(2 * len(next(iter(old.values()))))
        for name, array in old.items():
            self._arrays[name][: self.n] = array[: self.n]

    def take(self, next_capacity: int) -> dict[str, np.ndarray]:
        """Hand over the filled rows (read-only) and start a fresh buffer."""
        steps = {}
        for name, array in self._arrays.items():
            view = array[: self.n]
            view.flags.writeable = False
            steps[name] = view
        self._arrays = self._allocate(next_capacity)
        self.n = 0
        return steps


def _with_optional_defaults(step: Mapping[str, Any], features: Mapping[str, Any],
                            length: int | None = None) -> Mapping[str, Any]:
    """``step`` (or a whole episode of ``length`` steps) with the optional step features the store
    has but the caller left out set to their default (False: e.g. no intervention)."""
    missing = [name for name in OPTIONAL_STEP_FEATURES if name in features and name not in step]
    if not missing:
        return step
    return {**step, **{name: optional_default(name, length) for name in missing}}


def checked_final_obs(features: Mapping[str, FeatureSpec], obs_keys: tuple[str, ...],
                      final_obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Read-only copies of every observation of ``final_obs`` in the stored dtype and shape."""
    final = {}
    for key in obs_keys:
        if key not in final_obs:
            raise ValueError(f"final_obs is missing observation {key!r}")
        value = np.array(final_obs[key], dtype=features[key].dtype)
        if value.shape != features[key].shape:
            raise ValueError(f"final_obs[{key!r}]: expected shape {features[key].shape}, got {value.shape}")
        value.flags.writeable = False
        final[key] = value
    return final


def checked_steps(features: Mapping[str, FeatureSpec], steps: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    """Read-only copies of a whole episode's ``steps`` (every feature → ``(T, ...)`` array, cast
    to the feature's dtype) and ``T``. An optional step feature the store has and ``steps`` lack
    is filled with its default."""
    if set(steps) != set(features) and "action" in steps:
        steps = _with_optional_defaults(steps, features, len(steps["action"]))
    if set(steps) != set(features):
        raise ValueError(f"append_episode: step features do not match the store: missing "
                         f"{sorted(set(features) - set(steps))}, unexpected {sorted(set(steps) - set(features))}")
    copies = {name: np.array(steps[name], dtype=spec.dtype) for name, spec in features.items()}
    first = next(iter(copies.values()))
    length = first.shape[0] if first.ndim else 0
    if length == 0:
        raise ValueError("append_episode: the episode has no steps")
    for name, values in copies.items():
        if values.shape != (length, *features[name].shape):
            raise ValueError(f"append_episode: feature {name!r} has shape {values.shape}, "
                             f"expected {(length, *features[name].shape)}")
        values.flags.writeable = False
    return copies, length
