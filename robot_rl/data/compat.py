"""Does a dataset fit an env? Checks before demonstrations are recorded into or trained from.

A dataset fits an env when its step features equal ``features_from_spaces`` of the env's spaces
(same names, dtypes and per-step shapes: every observation key, ``action``, ``reward``,
``terminated``) and it was recorded at the env's control rate (root attribute ``control_hz``
against the env config's ``control.control_hz``). Observations are matched by name, so the
order of the keys of a ``Dict`` space never matters. When the two only disagree on names (a
dataset recorded before an observation key was renamed, or imported from another project),
``rename={"dataset_name": "env_name"}`` maps dataset feature names to env names; nothing else
is adapted: a different dtype, shape or control rate is a different dataset. Optional step
features (``intervention``, :data:`~robot_rl.data.schema.OPTIONAL_STEP_FEATURES`) may be present
or absent on either side: where a dataset lacks one it reads as False.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from robot_rl.data.schema import OPTIONAL_STEP_FEATURES, RANDOMIZATION
from robot_rl.data.store import EpisodeStore, FeatureSpec, SpecMismatchError, StoreError, features_from_spaces

if TYPE_CHECKING:
    from robot_rl.data.replay import ReplayBuffer


class EmptyDatasetError(StoreError):
    """The dataset holds no committed episode."""


def renamed_features(store: EpisodeStore, rename: Mapping[str, str] | None) -> dict[str, FeatureSpec]:
    """The store's features under env names: ``rename`` maps dataset names to env names.

    An entry whose old name the dataset lacks is skipped when the dataset already has the new
    name (so one mapping serves datasets recorded before and after a renaming).

    Raises ValueError if the dataset has neither name of an entry (a typo), or if two features
    would end up with one name.
    """
    features = store.features
    unknown = sorted(old for old, new in (rename or {}).items() if old not in features and new not in features)
    if unknown:
        raise ValueError(f"rename: {unknown} are not features of {store.path} (it has {sorted(features)})")
    rename = {old: new for old, new in (rename or {}).items() if old in features}
    renamed = {rename.get(name, name): spec for name, spec in features.items()}
    if len(renamed) != len(features):
        targets = [rename.get(name, name) for name in features]
        clashes = sorted({name for name in targets if targets.count(name) > 1})
        raise ValueError(f"rename: several dataset features of {store.path} would be called {clashes}")
    return renamed


def adapted_env_info(env: Any) -> dict[str, Any] | None:
    """The ``recording_info`` of a gymnasium env adapted for the learners
    (:class:`robot_rl.envs.gym_env.GymAdapter`, anywhere in ``env``'s wrapper chain): ``task``
    (the env id), ``control_hz``, ``env`` and ``robot``; None for this project's arm env."""
    getter = getattr(env, "get_wrapper_attr", None)
    if getter is None:
        return None
    try:
        return getter("recording_info")
    except AttributeError:
        return None


def env_identity(env: Any) -> tuple[str, float]:
    """``(task name, control rate in Hz)`` of ``env``: an ``ArmEnv``'s (possibly wrapped) task and
    ``control.control_hz``, or an adapted gymnasium env's id and rate (:func:`adapted_env_info`)."""
    info = adapted_env_info(env)
    if info is not None:
        return str(info["task"]), float(info["control_hz"])
    config = env.unwrapped.config
    return config.task.name, float(config.control.control_hz)


class DerivedFeature(Protocol):
    """An observation entry computed from others, batched: ``inputs`` → ``(N, ...)`` array."""

    inputs: tuple[str, ...]

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray: ...


def derived_features(env: Any) -> Mapping[str, DerivedFeature]:
    """The observation entries a wrapper of ``env`` computes from other entries (its
    ``derived_features`` attribute, e.g. :class:`robot_rl.vision.features.CameraFeatures`); empty
    when no wrapper has any."""
    getter = getattr(env, "get_wrapper_attr", None)
    try:
        return getter("derived_features") if getter is not None else {}
    except AttributeError:
        return {}


def spec_differences(store: EpisodeStore, env: Any, rename: Mapping[str, str] | None = None) -> list[str]:
    """Every way the store's features (after ``rename``) and control rate differ from the env
    (an ``ArmEnv``, possibly wrapped), one readable sentence each; empty when they fit. A
    derived feature (:func:`derived_features`) the store lacks is no difference when the store
    has its inputs: loading computes it."""
    # the episode's domain-randomisation parameters describe how it was recorded, not what the env observes
    have = {name: spec for name, spec in renamed_features(store, rename).items() if name != RANDOMIZATION}
    want = features_from_spaces(env.observation_space, env.action_space)
    computable = {key for key, derive in derived_features(env).items()
                  if key not in have and all(name in have for name in derive.inputs)}
    want = {name: spec for name, spec in want.items() if name not in computable}
    optional = {name for name, spec in OPTIONAL_STEP_FEATURES.items() if have.get(name, spec) == spec}
    have = {name: spec for name, spec in have.items() if name not in optional}
    want = {name: spec for name, spec in want.items() if name not in optional}
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    problems = [f"{name}: the env has it, the dataset does not" for name in missing]
    problems += [f"{name}: the dataset has it, the env does not" for name in extra]
    if missing and extra:
        problems.append("if features were only renamed, pass rename={'dataset_name': 'env_name'}")
    for name in sorted(set(want) & set(have)):
        if have[name].dtype != want[name].dtype:
            problems.append(f"{name}: dtype {have[name].dtype} in the dataset, {want[name].dtype} in the env")
        if have[name].shape != want[name].shape:
            what = "action dimension" if name == "action" else "shape"
            problems.append(f"{name}: {what} {have[name].shape} in the dataset, {want[name].shape} in the env")
    dataset_hz, hz = store.attrs.get("control_hz"), env_identity(env)[1]
    if not isinstance(dataset_hz, (int, float)) or not math.isclose(dataset_hz, hz):
        problems.append(f"control rate: {dataset_hz} Hz in the dataset, {hz} Hz in the env (control.control_hz)")
    return problems


def check_spec(store: EpisodeStore, env: Any, rename: Mapping[str, str] | None = None) -> None:
    """Raise :class:`SpecMismatchError` naming every difference found by :func:`spec_differences`."""
    problems = spec_differences(store, env, rename)
    if problems:
        task = env_identity(env)[0]
        raise SpecMismatchError(f"{store.path} does not fit the {task!r} env: " + "; ".join(problems))


def check_compatible(store: EpisodeStore, env: Any, rename: Mapping[str, str] | None = None) -> None:
    """Check that ``store`` can serve as demonstrations for ``env``.

    Raises:
        SpecMismatchError: naming every difference in features (missing or extra keys, dtype,
            shape, action dimension) or control rate; ``rename`` maps dataset feature names to
            env names first (key order never matters: features are matched by name).
        EmptyDatasetError: the store has no committed episode.
        ValueError: ``rename`` names a feature the dataset lacks, or merges two features.

    Warns (``UserWarning``) when every episode failed: still usable (e.g. for critic learning),
    but rarely what a demonstration set is meant to be.
    """
    check_spec(store, env, rename)
    if store.n_episodes == 0:
        raise EmptyDatasetError(f"{store.path}: the dataset has no committed episodes")
    if not store.episodes["success"].any():
        warnings.warn(f"{store.path}: none of its {store.n_episodes} episodes succeeded", UserWarning, stacklevel=2)


def load_demonstrations(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    env: Any,
    rename: Mapping[str, str] | None = None,
    capacity: int | None = None,
    device: str = "cpu",
    obs_keys: Sequence[str] | None = None,
) -> ReplayBuffer:
    """A :class:`~robot_rl.data.ReplayBuffer` holding the episodes of one or several datasets,
    each checked with :func:`check_compatible` against ``env`` (``rename`` applies to all).

    Episodes are loaded in the order of ``paths``; ``capacity`` (steps, default: all of them)
    keeps the most recent ones that fit, as :meth:`ReplayBuffer.from_store` does. The buffer's
    features are the env's (``obs_keys`` of them, default all), so it mixes with an online buffer
    in a ``MixtureSampler``; derived features a dataset lacks (:func:`derived_features`, e.g.
    frozen camera features) are computed from its images as it loads.
    """
    from robot_rl.data.replay import ReplayBuffer

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("load_demonstrations: no dataset paths given")
    with ExitStack() as stack:
        stores = [stack.enter_context(EpisodeStore.open(path, "r")) for path in paths]
        for store in stores:
            check_compatible(store, env, rename)
        view = _RenamedStores(stores, env, rename or {})
        return ReplayBuffer.from_store(view, capacity=capacity, obs_keys=obs_keys or view.obs_keys, device=device)


class _RenamedStores:
    """Several read-only stores seen as one, under env feature names, with the env's derived
    features computed where a store lacks them: the part of the :class:`EpisodeStore` reading
    interface that :meth:`ReplayBuffer.from_store` uses."""

    def __init__(self, stores: Sequence[EpisodeStore], env: Any, rename: Mapping[str, str]) -> None:
        self._stores = list(stores)
        # Per store, the entries of ``rename`` it needs (dataset name → env name).
        self._renames = [{old: new for old, new in rename.items() if old in store.features} for store in self._stores]
        self._derived = derived_features(env)
        self.features = features_from_spaces(env.observation_space, env.action_space)
        self.obs_keys = tuple(env.observation_space.spaces)
        lengths = np.concatenate([store.episodes["length"] for store in self._stores])
        self.episodes = {"length": lengths}  # the only column ``from_store`` reads
        self._first_episode = np.cumsum([0] + [store.n_episodes for store in self._stores])
        self.n_episodes = int(self._first_episode[-1])
        self.n_steps = int(lengths.sum())

    def _runs(self, episodes: Sequence[int] | np.ndarray) -> Iterator[tuple[EpisodeStore, np.ndarray, dict[str, str]]]:
        """(store, local episode indices, its renames) for each run of consecutive ``episodes``
        in one store."""
        index = np.asarray(episodes, dtype=np.int64).reshape(-1) % max(self.n_episodes, 1)
        which = np.searchsorted(self._first_episode, index, side="right") - 1
        for run in np.split(np.arange(len(index)), np.flatnonzero(np.diff(which)) + 1):
            if len(run):
                store = which[run[0]]
                yield self._stores[store], index[run] - self._first_episode[store], self._renames[store]

    def load(self, features: Sequence[str], episodes: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        parts = []
        for store, local, rename in self._runs(episodes):
            dataset_name = {new: old for old, new in rename.items()}
            derive = self._missing_derived(store, rename, features)
            names = {dataset_name.get(name, name) for name in features if name not in derive}
            names |= {dataset_name.get(name, name) for key in derive for name in self._derived[key].inputs}
            part = {rename.get(name, name): values for name, values in store.load(sorted(names), local).items()}
            parts.append(self._with_derived(part, derive, features))
        return _concatenate(parts)

    def final_obs(self, episodes: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        parts = []
        for store, local, rename in self._runs(episodes):
            part = {rename.get(key, key): values for key, values in store.final_obs(local).items()}
            derive = self._missing_derived(store, rename, self.obs_keys)
            parts.append(self._with_derived(part, derive, [*part, *derive]))
        return _concatenate(parts)

    def _missing_derived(self, store: EpisodeStore, rename: Mapping[str, str], wanted: Sequence[str]) -> list[str]:
        """The derived features among ``wanted`` that ``store`` lacks (under env names)."""
        have = {rename.get(name, name) for name in store.features}
        return [key for key in self._derived if key in wanted and key not in have]

    def _with_derived(self, part: dict[str, np.ndarray], derive: Sequence[str], keep: Sequence[str]) -> dict[str, np.ndarray]:
        """``part`` plus the ``derive`` features computed from it, restricted to ``keep``."""
        computed = {key: self._derived[key](part) for key in derive}
        return {name: values for name, values in {**part, **computed}.items() if name in keep}


def _concatenate(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-key concatenation of dicts of arrays that share their keys."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
