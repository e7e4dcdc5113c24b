"""Summary of an episode store (``robot-rl data info``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from robot_rl.data.schema import LABEL_NAMES
from robot_rl.data.store import SOURCE_NAMES, EpisodeStore


def store_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """JSON-ready summary of the committed contents of the store at ``path`` (opened read-only).

    Keys: ``path``, ``format``, ``schema_version``, ``generation``, ``episodes``, ``steps``,
    ``control_hz``, ``duration_s`` (steps / control_hz), ``features`` (name → dtype, shape,
    names), ``obs_keys``, ``sources`` (name → episode count), ``success_rate`` (None when
    empty), ``labels`` (what a person said: success / failure / none → episode count), ``tasks`` (name → episode count; ``"<unspecified>"`` for episodes without a task),
    ``task`` (the store's default task attribute, if any), ``mean_length``, ``attrs`` (the
    caller-supplied root attributes), ``chunks_checked`` (always False: only the commit record
    and the episode tables are read; :func:`robot_rl.data.verify.verify_store` reads every chunk).
    """
    with EpisodeStore.open(path, "r") as store:
        return _summary(store)


def _summary(store: EpisodeStore) -> dict[str, Any]:
    attrs = store.attrs
    table = store.episodes
    n = store.n_episodes
    source_counts = np.bincount(table["source"].astype(np.int64), minlength=len(SOURCE_NAMES))
    task_names = store.tasks
    task_codes, task_counts = np.unique(table["task"], return_counts=True)
    control_hz = attrs["control_hz"]
    return {
        "path": str(store.path),
        "format": attrs["format"],
        "schema_version": attrs["schema_version"],
        "generation": store.generation,
        "episodes": n,
        "steps": store.n_steps,
        "control_hz": control_hz,
        "duration_s": store.n_steps / control_hz,
        "features": {name: spec.to_json() for name, spec in store.features.items()},
        "obs_keys": list(store.obs_keys),
        "sources": {name: int(source_counts[code]) for code, name in SOURCE_NAMES.items()},
        "success_rate": float(table["success"].mean()) if n else None,
        "labels": {name: int(np.count_nonzero(table["label"] == code)) for code, name in LABEL_NAMES.items()},
        "tasks": {(task_names[code] if code >= 0 else "<unspecified>"): int(count)
                  for code, count in zip(task_codes.tolist(), task_counts.tolist())},
        "task": attrs.get("task"),
        "mean_length": float(table["length"].mean()) if n else None,
        "attrs": store.user_attrs,
        "chunks_checked": False,
    }
