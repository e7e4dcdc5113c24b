"""What an episode store holds: the step features, the per-episode table and their codes.

This is the one definition of a transition as stored: a step is the observation *before* the
action (one feature per observation key), then :data:`TRANSITION_FEATURES` = ``action``,
``reward``, ``terminated`` (:func:`transition_specs` gives their dtypes and shapes); the
observation after an episode's last action is kept once per episode (``final_obs``).

Optional parts, added after the first stores were written (a store without them opens as before):

* the step feature ``intervention`` (:data:`OPTIONAL_STEP_FEATURES`, bool): a person drove this
  step (``robot-rl train --teleop``). Stores of runs with a teleop device have it; a store or a
  step without it reads as False, and a step appended without it gets False;
* the episode table ``label`` (:data:`OPTIONAL_TABLES`, int8, :data:`LABELS`): what a person
  said of the episode with the success / failure buttons, ``none`` (-1) when nobody labelled it
  (scripted and policy episodes, a teleoperated episode that timed out unlabelled, and every
  episode of a store written before the table existed).

Nothing here touches the disk; :mod:`robot_rl.data.layout` maps this schema onto Zarr arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "robot_rl.episodes"
SCHEMA_VERSION = 1
SOURCES: dict[str, int] = {"policy": 0, "human": 1, "scripted": 2, "intervention": 3}
SOURCE_NAMES: dict[int, str] = {code: name for name, code in SOURCES.items()}
EPISODE_TABLES: dict[str, str] = {
    "episode_ends": "int64",
    "length": "int64",
    "success": "bool",
    "source": "int8",
    "seed": "int64",
    "task": "int16",
    "label": "int8",
}
# Episode tables a store may lack (written before they existed) → the value its episodes read as.
OPTIONAL_TABLES: dict[str, int] = {"label": -1}
# Per-episode labels given by a person (the success / failure buttons of a teleop device).
LABELS: dict[str, int] = {"none": -1, "failure": 0, "success": 1}
LABEL_NAMES: dict[int, str] = {code: name for name, code in LABELS.items()}
LOWDIM_CHUNK = 8192
IMAGE_CHUNK = 8
RESERVED_ATTRS = frozenset({"format", "schema_version", "features", "obs_keys", "sources", "tasks", "commit"})
TRANSITION_FEATURES = ("action", "reward", "terminated")  # the step features that are not observations
INTERVENTION = "intervention"
# Step feature of runs with domain randomisation: the episode's drawn parameters (float32, names
# in its spec), the same on every step of the episode; not an observation (learners never see it).
RANDOMIZATION = "randomization"


class StoreError(RuntimeError):
    """The path is not a usable episode store, or the store cannot be written."""


class SpecMismatchError(StoreError):
    """The store's step features differ from the ones the caller expects."""


class CorruptDataError(StoreError):
    """Stored bytes cannot be read back: a chunk file is damaged or missing (``robot-rl data
    verify`` lists every such chunk)."""


class StoreWriteError(StoreError):
    """The background writer failed; the store keeps its last commit."""


class InvalidDataError(StoreError):
    """Input data that an episode store does not take: a non-numeric dtype, or NaN/inf values
    where finite numbers are expected (imports)."""


@dataclass(frozen=True)
class FeatureSpec:
    """dtype and per-step shape of one step feature; ``names`` label the last axis (optional)."""

    dtype: str
    shape: tuple[int, ...] = ()
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if any(n < 0 for n in self.shape):
            raise ValueError(f"feature shape must be non-negative, got {self.shape}")
        if self.names is not None:
            object.__setattr__(self, "names", tuple(str(n) for n in self.names))
            if not self.shape or len(self.names) != self.shape[-1]:
                raise ValueError(f"{len(self.names)} names do not label the last axis of shape {self.shape}")

    @property
    def is_image(self) -> bool:
        """uint8 (H, W, C) arrays are stored with image chunking and a fast compressor."""
        return self.dtype == "uint8" and len(self.shape) == 3

    @property
    def chunk_rows(self) -> int:
        """Steps per stored chunk: :data:`IMAGE_CHUNK` for images, :data:`LOWDIM_CHUNK` otherwise."""
        return IMAGE_CHUNK if self.is_image else LOWDIM_CHUNK

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "names": None if self.names is None else list(self.names)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(data["dtype"], tuple(data["shape"]), None if data.get("names") is None else tuple(data["names"]))


def transition_specs(action_shape: Sequence[int]) -> dict[str, FeatureSpec]:
    """The :data:`TRANSITION_FEATURES` of a step: ``action`` (float32), ``reward`` (float32,
    ``()``) and ``terminated`` (bool)."""
    return {
        "action": FeatureSpec("float32", tuple(action_shape)),
        "reward": FeatureSpec("float32", ()),
        "terminated": FeatureSpec("bool", ()),
    }


#: Step features a store may have or lack: name → spec; a missing one reads as all False (zeros).
OPTIONAL_STEP_FEATURES: dict[str, FeatureSpec] = {INTERVENTION: FeatureSpec("bool", ())}


def with_interventions(features: Mapping[str, FeatureSpec]) -> dict[str, FeatureSpec]:
    """``features`` plus the per-step ``intervention`` flag (stores of runs with a teleop device)."""
    return {**features, INTERVENTION: OPTIONAL_STEP_FEATURES[INTERVENTION]}


def optional_default(name: str, length: int | None = None) -> np.ndarray:
    """The value an optional step feature has where it was not recorded: zeros (False), one
    step or ``length`` steps."""
    spec = OPTIONAL_STEP_FEATURES[name]
    return np.zeros(spec.shape if length is None else (length, *spec.shape), spec.dtype)


def label_code(value: str | int | None) -> int:
    """The int8 code of a label given by name (``"success"``), code, or None (``none``)."""
    if value is None:
        return LABELS["none"]
    if isinstance(value, str):
        if value not in LABELS:
            raise ValueError(f"unknown label {value!r}; expected one of {sorted(LABELS)}")
        return LABELS[value]
    if int(value) not in LABEL_NAMES:
        raise ValueError(f"unknown label code {value!r}; expected one of {sorted(LABEL_NAMES)}")
    return int(value)


def features_from_spaces(observation_space: Any, action_space: Any) -> dict[str, FeatureSpec]:
    """Step features for a gymnasium ``Dict`` observation space and ``Box`` action space:
    every observation key, then :func:`transition_specs`."""
    features = {key: FeatureSpec(space.dtype, space.shape) for key, space in observation_space.spaces.items()}
    features.update(transition_specs(action_space.shape))
    return features


@dataclass(frozen=True)
class Episode:
    """One episode: ``steps`` (feature → (T, ...) array), ``final_obs`` (obs key → array) and its
    table row. Arrays returned by :meth:`EpisodeStore.end_episode` are read-only views shared
    with the background writer."""

    steps: Mapping[str, np.ndarray]
    final_obs: Mapping[str, np.ndarray]
    success: bool
    source: str
    seed: int
    task: str | None
    label: str = "none"  # what a person said of it (LABELS)

    @property
    def length(self) -> int:
        return len(next(iter(self.steps.values())))


def source_code(value: str | int) -> int:
    """The int8 code of a source given by name (``"human"``) or code (``1``)."""
    if isinstance(value, str):
        if value not in SOURCES:
            raise ValueError(f"unknown source {value!r}; expected one of {sorted(SOURCES)}")
        return SOURCES[value]
    if int(value) not in SOURCES.values():
        raise ValueError(f"unknown source code {value!r}; expected one of {sorted(SOURCES.values())}")
    return int(value)


def check_schema(root: Path, features: Mapping[str, FeatureSpec], obs_keys: tuple[str, ...],
                 attrs: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming ``root`` unless the arguments of a new store are usable."""
    if not features:
        raise ValueError(f"{root}: at least one step feature is required")
    for name in features:
        if not name or "/" in name or name.startswith(".") or not name.isprintable():
            raise ValueError(f"{root}: invalid feature name {name!r}")
    unknown = [key for key in obs_keys if key not in features]
    if unknown:
        raise ValueError(f"{root}: obs_keys {unknown} are not step features ({sorted(features)})")
    shadowed = sorted(RESERVED_ATTRS & set(attrs))
    if shadowed:
        raise ValueError(f"{root}: attrs may not set reserved keys {shadowed}")
    hz = attrs.get("control_hz")
    if isinstance(hz, bool) or not isinstance(hz, (int, float)) or hz <= 0:
        raise ValueError(f"{root}: attrs['control_hz'] must be a positive number, got {hz!r}")
    try:
        json.dumps(dict(attrs))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{root}: attrs must be JSON-serialisable: {exc}") from None


def check_expected(root: Path, stored: Mapping[str, FeatureSpec], expected: Mapping[str, FeatureSpec]) -> None:
    """Raise :class:`SpecMismatchError` naming every difference between the stored and the
    expected step features."""
    problems = []
    for name in sorted(set(expected) | set(stored)):
        if name not in stored:
            problems.append(f"{name}: missing from the store")
        elif name not in expected:
            problems.append(f"{name}: in the store but not expected")
        else:
            want = expected[name] if isinstance(expected[name], FeatureSpec) else FeatureSpec(**expected[name])
            have = stored[name]
            if want.dtype != have.dtype:
                problems.append(f"{name}: dtype {have.dtype} in the store, expected {want.dtype}")
            if want.shape != have.shape:
                problems.append(f"{name}: shape {have.shape} in the store, expected {want.shape}")
    if problems:
        raise SpecMismatchError(f"{root}: step features differ from the expected ones: " + "; ".join(problems))
