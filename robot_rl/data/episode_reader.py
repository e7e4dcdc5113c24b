"""Reading committed episodes: :class:`EpisodeReader` sees a store as its commit record says
(arrays may be longer; rows past the commit are never read) and :class:`CommittedState` is
what it knows of the last commit, which a writer in the same process advances."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from robot_rl.data.layout import CommitRecord, open_arrays, read_rows
from robot_rl.data.schema import (
    EPISODE_TABLES,
    LABEL_NAMES,
    LOWDIM_CHUNK,
    OPTIONAL_TABLES,
    RESERVED_ATTRS,
    SOURCE_NAMES,
    Episode,
    FeatureSpec,
    StoreError,
)


class CommittedState:
    """The last commit: root ``document``, its ``commit`` record and the per-episode ``tables``
    (held in memory, a few bytes per episode; they may hold spare rows past ``n_episodes``).
    Read it under ``lock``; only :meth:`advance` changes it."""

    def __init__(self, root: Path, document: dict[str, Any], arrays: Mapping[str, zarr.Array]) -> None:
        self.lock = threading.Lock()
        self.document = document
        self.commit = commit = CommitRecord.from_json(document["attributes"]["commit"])
        n = commit.n_episodes
        # An optional table the store lacks (written before it existed) reads as its default.
        self.tables = tables = {name: read_rows(root, arrays[f"meta/{name}"], slice(0, n))
                                if f"meta/{name}" in arrays else np.full(n, OPTIONAL_TABLES[name], dtype)
                                for name, dtype in EPISODE_TABLES.items()}
        ends = tables["episode_ends"]
        if n and (ends[-1] != commit.n_steps or np.any(np.diff(ends, prepend=0) != tables["length"])):
            raise StoreError(f"{root}: meta/episode_ends and meta/length disagree with the commit record "
                             f"(n_steps={commit.n_steps}, last end={int(ends[-1])})")
        if not n and commit.n_steps:
            raise StoreError(f"{root}: commit record has n_steps={commit.n_steps} but no episodes")

    def advance(self, document: dict[str, Any], commit: CommitRecord, row: Mapping[str, int | bool]) -> None:
        """Take on a commit that added the episode whose table ``row`` is given."""
        n = self.commit.n_episodes
        with self.lock:
            self.tables = {name: _append_row(table, n, row[name]) for name, table in self.tables.items()}
            self.document = document
            self.commit = commit


class EpisodeReader:
    """The committed episodes of a store. ``writable`` opens the arrays for a writer of this
    process (which then keeps :attr:`_committed` current); a plain reader sees the store as it
    was committed when it was opened."""

    def __init__(self, root: Path, document: dict[str, Any], writable: bool = False) -> None:
        attrs = document["attributes"]
        self._root = root
        self._writable = writable
        self._features = {name: FeatureSpec.from_json(spec) for name, spec in attrs["features"].items()}
        self._obs_keys = tuple(attrs["obs_keys"])
        commit = CommitRecord.from_json(attrs["commit"])
        self._zstore = LocalStore(root, read_only=not writable)
        self._arrays = open_arrays(root, self._zstore, self._features, self._obs_keys, commit, writable)
        self._committed = CommittedState(root, document, self._arrays)

    @property
    def path(self) -> Path:
        return self._root

    @property
    def mode(self) -> str:
        return "a" if self._writable else "r"

    @property
    def features(self) -> dict[str, FeatureSpec]:
        return dict(self._features)

    @property
    def obs_keys(self) -> tuple[str, ...]:
        return self._obs_keys

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes as last committed (includes ``commit``, ``tasks`` and the caller's attrs)."""
        with self._committed.lock:
            return json.loads(json.dumps(self._committed.document["attributes"]))

    @property
    def user_attrs(self) -> dict[str, Any]:
        """The caller-supplied root attributes (``control_hz``, ``task``, env/robot spec, ...):
        :attr:`attrs` without the format's own keys."""
        return {key: value for key, value in self.attrs.items() if key not in RESERVED_ATTRS}

    @property
    def n_episodes(self) -> int:
        """Committed episodes."""
        with self._committed.lock:
            return self._committed.commit.n_episodes

    @property
    def n_steps(self) -> int:
        """Committed steps."""
        with self._committed.lock:
            return self._committed.commit.n_steps

    @property
    def generation(self) -> int:
        """Number of commits since creation."""
        with self._committed.lock:
            return self._committed.commit.generation

    @property
    def episode_ends(self) -> np.ndarray:
        with self._committed.lock:
            return self._committed.tables["episode_ends"][: self._committed.commit.n_episodes].copy()

    @property
    def episodes(self) -> dict[str, np.ndarray]:
        """Per-episode table of committed episodes: ``episode_ends``, ``length``, ``success``,
        ``source`` (int8 codes, see :data:`SOURCES`), ``seed``, ``task`` (index into :attr:`tasks`),
        ``label`` (int8 codes, see :data:`~robot_rl.data.schema.LABELS`; -1 = none)."""
        with self._committed.lock:
            n = self._committed.commit.n_episodes
            return {name: table[:n].copy() for name, table in self._committed.tables.items()}

    @property
    def tasks(self) -> list[str]:
        """Task names; ``episodes["task"]`` indexes this list."""
        with self._committed.lock:
            return list(self._committed.document["attributes"]["tasks"])

    def read_episode(self, index: int) -> Episode:
        """Committed episode ``index`` (negative counts from the end)."""
        n = self.n_episodes
        if not -n <= index < n:
            raise IndexError(f"episode {index} out of range: the store has {n} committed episodes")
        index %= n
        table = self.episodes
        end = int(table["episode_ends"][index])
        start = end - int(table["length"][index])
        steps = {name: self._read(f"data/{name}", slice(start, end)) for name in self._features}
        final = {key: self._read(f"meta/final_{key}", slice(index, index + 1))[0] for key in self._obs_keys}
        task_code = int(table["task"][index])
        return Episode(steps, final, bool(table["success"][index]), SOURCE_NAMES[int(table["source"][index])],
                       int(table["seed"][index]), None if task_code < 0 else self.tasks[task_code],
                       LABEL_NAMES.get(int(table["label"][index]), "none"))

    def load(self, features: Iterable[str] | None = None, episodes: Sequence[int] | np.ndarray | None = None,
             block_steps: int = 8 * LOWDIM_CHUNK) -> dict[str, np.ndarray]:
        """Step features of the given episodes (default: all committed), concatenated in order.

        Consecutive episodes are read as one contiguous range, in chunk-aligned blocks of at most
        ``block_steps`` rows, straight into one preallocated array per feature.
        """
        names = list(self._features) if features is None else list(features)
        unknown = [name for name in names if name not in self._features]
        if unknown:
            raise KeyError(f"{self._root}: unknown features {unknown}; the store has {sorted(self._features)}")
        ranges = self._step_ranges(episodes)
        total = int(sum(stop - start for start, stop in ranges))
        out = {}
        for name in names:
            spec = self._features[name]
            array = self._arrays[f"data/{name}"]
            result = np.empty((total, *spec.shape), spec.dtype)
            block = max(spec.chunk_rows, block_steps // spec.chunk_rows * spec.chunk_rows)
            offset = 0
            for start, stop in ranges:
                lo = start
                while lo < stop:
                    hi = min(stop, (lo // block + 1) * block)
                    result[offset: offset + hi - lo] = read_rows(self._root, array, slice(lo, hi))
                    offset += hi - lo
                    lo = hi
            out[name] = result
        return out

    def final_obs(self, episodes: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Final observation of each selected episode (default: all committed), one row each."""
        rows = slice(0, self.n_episodes) if episodes is None else self._episode_index(episodes)
        return {key: self._read(f"meta/final_{key}", rows) for key in self._obs_keys}

    def _read(self, path: str, rows: slice | np.ndarray) -> np.ndarray:
        """Rows of the array at ``path`` (e.g. ``data/action``); damage is a CorruptDataError."""
        return read_rows(self._root, self._arrays[path], rows)

    def _episode_index(self, episodes: Sequence[int] | np.ndarray) -> np.ndarray:
        n = self.n_episodes
        index = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"episode indices out of range: the store has {n} committed episodes")
        return index % max(n, 1)

    def _step_ranges(self, episodes: Sequence[int] | np.ndarray | None) -> list[tuple[int, int]]:
        """[start, stop) step ranges covering the episodes in order, merging adjacent ones."""
        if episodes is None:
            return [(0, self.n_steps)] if self.n_steps else []
        index = self._episode_index(episodes)
        table = self.episodes
        ends = table["episode_ends"][index]
        starts = ends - table["length"][index]
        if not index.size:
            return []
        breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
        run_starts = starts[np.concatenate(([0], breaks))]
        run_ends = ends[np.concatenate((breaks - 1, [index.size - 1]))]
        return list(zip(run_starts.tolist(), run_ends.tolist()))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self._root)!r}, mode={self.mode!r}, episodes={self.n_episodes}, "
                f"steps={self.n_steps}, features={sorted(self._features)})")


def episode_blocks(lengths: np.ndarray, block_steps: int) -> list[np.ndarray]:
    """Positions ``0 … len(lengths) − 1`` split into runs of consecutive episodes of about
    ``block_steps`` steps each (for reading episodes block by block)."""
    if not len(lengths):
        return []
    starts = np.cumsum(lengths) - lengths
    return np.split(np.arange(len(lengths)), np.flatnonzero(np.diff(starts // max(1, block_steps))) + 1)


def _append_row(table: np.ndarray, n: int, value: int | bool) -> np.ndarray:
    """Set ``table[n] = value``, doubling the in-memory table when full."""
    if n == len(table):
        grown = np.zeros(max(16, 2 * n), dtype=table.dtype)
        grown[:n] = table[:n]
        table = grown
    table[n] = value
    return table
