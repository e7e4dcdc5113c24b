"""``EpisodeStore``: one on-disk Zarr format for online replay and demonstration datasets.

Layout of a store directory (Zarr v3, ``LocalStore``)::

    zarr.json                 root group; attributes hold the schema and the commit record
    data/<feature>            one time-major array per step feature, all episodes concatenated
    meta/episode_ends         int64, exclusive end step of each episode (chunk 2**16, never rechunked)
    meta/length               int64 steps per episode
    meta/success              bool
    meta/source               int8 code: policy=0, human=1, scripted=2, intervention=3
    meta/seed                 int64 (-1: unknown)
    meta/task                 int16 index into the root attribute ``tasks`` (-1: unspecified)
    meta/final_<obs key>      the observation after the episode's last action (one row per episode)

A step holds the observation *before* the action (one entry per observation key), ``action``,
``reward`` and ``terminated``; the observation after the last action of an episode is stored
once per episode in ``meta/final_<obs key>`` so targets can bootstrap at a truncation.

Crash safety. ``append_step`` copies into an in-memory episode buffer (no Zarr calls). At
``end_episode`` a background thread appends the episode past the committed ``n_steps`` (resize,
write the slice) together with its per-episode table rows, then rewrites the root ``zarr.json``
with the new commit record ``{n_episodes, n_steps, generation}`` through one ``fsync``-ed
``os.replace``. Arrays grow ahead of the data (:data:`RESERVE_ROWS`, whole chunks) so most
commits rewrite no array metadata; ``close()`` trims them back to the commit, so a closed store
is exact for plain Zarr readers (e.g. diffusion_policy's ``meta/episode_ends``). Zarr's
``LocalStore`` itself writes every chunk and array metadata file through a ``*.partial`` file and
a rename, so no file is ever seen half written and committed rows of a rewritten boundary chunk
are always intact. Opening trusts only the commit record: arrays longer than it are trimmed
(mode ``"a"``) or viewed only up to it (mode ``"r"``), and leftover ``*.partial`` files are
removed. Everything not committed when a process dies (queued episodes, the episode in flight)
is lost, nothing else. These guarantees cover the death of the process (kill, crash, OOM).
Only the commit file is ``fsync``-ed, not the chunk files (about 4 ms per file), so they do not
extend to a power loss of the host.

One process writes at a time: mode ``"a"`` takes an exclusive ``flock`` on the store directory
(released by the kernel if the writer dies).
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

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
}
EPISODE_ENDS_CHUNK = 2**16  # fixed: meta/episode_ends is never rechunked
TABLE_CHUNK = 4096  # other per-episode arrays; a commit rewrites their last chunk, so keep it small
LOWDIM_CHUNK = 8192
IMAGE_CHUNK = 8
# When an array must grow, it is allocated this far ahead of the data (whole chunks, at least
# one and at most RESERVE_CHUNKS of them), so most commits rewrite no array metadata.
RESERVE_ROWS = 4096
RESERVE_CHUNKS = 64
# Store every written chunk: skips Zarr's all-fill-value scan and keeps the files predictable.
_ARRAY_CONFIG = {"write_empty_chunks": True}
RESERVED_ATTRS = frozenset({"format", "schema_version", "features", "obs_keys", "sources", "tasks", "commit"})
_COMMIT_TMP = "zarr.json.commit.partial"
_FIRST_BUFFER_STEPS = 256
TRANSITION_FEATURES = ("action", "reward", "terminated")  # the step features that are not observations


class StoreError(RuntimeError):
    """The path is not a usable episode store, or the store cannot be written."""


class SpecMismatchError(StoreError):
    """The store's step features differ from the ones the caller expects."""


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


def features_from_spaces(observation_space: Any, action_space: Any) -> dict[str, FeatureSpec]:
    """Step features for a gymnasium ``Dict`` observation space and ``Box`` action space:
    every observation key, ``action`` (float32), ``reward`` (float32, ``()``), ``terminated`` (bool)."""
    features = {key: FeatureSpec(space.dtype, space.shape) for key, space in observation_space.spaces.items()}
    features["action"] = FeatureSpec("float32", action_space.shape)
    features["reward"] = FeatureSpec("float32", ())
    features["terminated"] = FeatureSpec("bool", ())
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

    @property
    def length(self) -> int:
        return len(next(iter(self.steps.values())))


@dataclass
class _Commit:
    n_episodes: int = 0
    n_steps: int = 0
    generation: int = 0

    def to_json(self) -> dict[str, int]:
        return {"n_episodes": self.n_episodes, "n_steps": self.n_steps, "generation": self.generation}


@dataclass
class _Job:
    """A finished episode waiting for the background writer."""

    steps: dict[str, np.ndarray]
    final_obs: dict[str, np.ndarray]
    row: dict[str, int | bool]
    tasks: list[str]


class _EpisodeBuffer:
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


def _compressors(spec: FeatureSpec) -> Any:
    """Images: zstd level 1 (on 128×128 MuJoCo renders: ratio ≈ 8.6 at ≈ 0.2 ms per frame, where
    blosc-lz4 reaches ≈ 2.5 at the same speed); everything else: Zarr's default (zstd)."""
    if spec.is_image:
        return (ZstdCodec(level=1),)
    return "auto"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json_atomically(path: Path, tmp: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``tmp``, fsync it, then rename it over ``path`` (one atomic step)."""
    data = json.dumps(document, indent=2).encode()
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _as_code(value: str | int, table: Mapping[str, int], what: str) -> int:
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(table)}")
        return table[value]
    if int(value) not in table.values():
        raise ValueError(f"unknown {what} code {value!r}; expected one of {sorted(table.values())}")
    return int(value)


class EpisodeStore:
    """Episodes of step features persisted to Zarr; see the module docstring for the format.

    Build one with :meth:`create`, :meth:`open` or :meth:`open_or_create`; use it as a context
    manager (or call :meth:`close`) so queued episodes are committed.
    """

    def __init__(self, root: Path, mode: Literal["r", "a"], document: dict[str, Any]) -> None:
        """Internal: validate and open the store whose root ``zarr.json`` is ``document``."""
        self._root = root
        self._mode = mode
        self._document = document
        attrs = document["attributes"]
        self._features = {name: FeatureSpec.from_json(spec) for name, spec in attrs["features"].items()}
        self._obs_keys = tuple(attrs["obs_keys"])
        self._tasks: list[str] = list(attrs.get("tasks", []))
        commit = attrs["commit"]
        self._commit = _Commit(int(commit["n_episodes"]), int(commit["n_steps"]), int(commit["generation"]))
        self._lock_fd: int | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=8)
        self._writer: threading.Thread | None = None
        if mode == "a":
            self._acquire_lock()
        try:
            self._zstore = LocalStore(root, read_only=mode == "r")
            self._arrays = self._open_arrays()
            self._tables = self._load_tables()
            if mode == "a":
                self._trim_to_commit()
                self._remove_partials()
        except BaseException:
            self._release_lock()
            raise
        self._buffer: _EpisodeBuffer | None = None
        self._next_capacity = _FIRST_BUFFER_STEPS
        if mode == "a":
            self._buffer = _EpisodeBuffer(self._features, self._next_capacity)
            self._writer = threading.Thread(target=self._write_loop, name=f"EpisodeStore({root.name})", daemon=True)
            self._writer.start()
            atexit.register(self._close_at_exit)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        features: Mapping[str, FeatureSpec],
        obs_keys: Sequence[str],
        attrs: Mapping[str, Any],
    ) -> EpisodeStore:
        """Create an empty store at ``path`` (must not exist) and open it for appending.

        ``attrs`` must contain ``control_hz`` and may hold any JSON data (env/robot spec, ``task``
        name used when ``end_episode`` gets none, ...); its keys may not shadow the format's own
        (``format``, ``schema_version``, ``features``, ``obs_keys``, ``sources``, ``tasks``, ``commit``).
        The store is built in a temporary sibling directory and renamed into place, so a crash
        never leaves a half-created store at ``path``.
        """
        root = Path(path)
        if root.exists():
            raise StoreError(f"{root}: cannot create an episode store, the path already exists")
        features = {name: spec if isinstance(spec, FeatureSpec) else FeatureSpec(**spec) for name, spec in features.items()}
        obs_keys = tuple(obs_keys)
        cls._check_schema(root, features, obs_keys, attrs)
        document_attrs = {
            **attrs,
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "features": {name: spec.to_json() for name, spec in features.items()},
            "obs_keys": list(obs_keys),
            "sources": dict(SOURCES),
            "tasks": [],
            "commit": _Commit().to_json(),
        }
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".partial"))
        try:
            group = zarr.open_group(LocalStore(staging), mode="w")
            data, meta = group.require_group("data"), group.require_group("meta")
            for name, spec in features.items():
                data.create_array(name, shape=(0, *spec.shape), dtype=spec.dtype,
                                  chunks=(spec.chunk_rows, *spec.shape), compressors=_compressors(spec))
            for name, dtype in EPISODE_TABLES.items():
                rows = EPISODE_ENDS_CHUNK if name == "episode_ends" else TABLE_CHUNK
                meta.create_array(name, shape=(0,), dtype=dtype, chunks=(rows,))
            for key in obs_keys:
                spec = features[key]
                rows = 1 if spec.is_image else TABLE_CHUNK  # one new file per final image, never rewritten
                meta.create_array(f"final_{key}", shape=(0, *spec.shape), dtype=spec.dtype,
                                  chunks=(rows, *spec.shape), compressors=_compressors(spec))
            document = _read_json(staging / "zarr.json")
            document["attributes"] = document_attrs
            _write_json_atomically(staging / "zarr.json", staging / _COMMIT_TMP, document)
            os.rename(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(root, "a", document)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: Literal["r", "a"] = "r",
        expect_features: Mapping[str, FeatureSpec] | None = None,
    ) -> EpisodeStore:
        """Open an existing store: ``"r"`` to read, ``"a"`` to read and append.

        Only the commit record is trusted: in ``"a"`` mode arrays longer than it are trimmed and
        leftover ``*.partial`` files deleted; ``"r"`` mode changes nothing on disk. ``expect_features``
        (e.g. the features of the env a run resumes with) must equal the stored step features,
        else :class:`SpecMismatchError` names each difference.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        root = Path(path)
        document = cls._read_root(root)
        if expect_features is not None:
            stored = {name: FeatureSpec.from_json(spec) for name, spec in document["attributes"]["features"].items()}
            cls._check_expected(root, stored, expect_features)
        return cls(root, mode, document)

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        features: Mapping[str, FeatureSpec],
        obs_keys: Sequence[str],
        attrs: Mapping[str, Any],
    ) -> EpisodeStore:
        """Append to the store at ``path`` if it exists (its features must equal ``features``),
        otherwise create it."""
        if Path(path).exists():
            return cls.open(path, "a", expect_features=features)
        return cls.create(path, features, obs_keys, attrs)

    @staticmethod
    def _check_schema(root: Path, features: Mapping[str, FeatureSpec], obs_keys: tuple[str, ...],
                      attrs: Mapping[str, Any]) -> None:
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

    @staticmethod
    def _read_root(root: Path) -> dict[str, Any]:
        """Read and check the root group document; every failure names the path and the problem."""
        if not root.exists():
            raise StoreError(f"{root}: no episode store here (the path does not exist)")
        if not root.is_dir():
            raise StoreError(f"{root}: not an episode store (not a directory)")
        meta_path = root / "zarr.json"
        if not meta_path.is_file():
            raise StoreError(f"{root}: not an episode store (no zarr.json: not a Zarr v3 store)")
        try:
            document = _read_json(meta_path)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{root}: unreadable zarr.json ({exc})") from None
        if not isinstance(document, dict) or document.get("zarr_format") != 3 or document.get("node_type") != "group":
            raise StoreError(f"{root}: not an episode store (root zarr.json is not a Zarr v3 group)")
        attrs = document.get("attributes") or {}
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{root}: a Zarr store, but not a robot_rl episode store "
                             f"(format attribute {attrs.get('format')!r}, expected {FORMAT!r})")
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{root}: unsupported schema_version {attrs.get('schema_version')!r} "
                             f"(this version reads {SCHEMA_VERSION})")
        commit = attrs.get("commit")
        if (not isinstance(commit, dict) or
                not all(isinstance(commit.get(k), int) and commit[k] >= 0 for k in ("n_episodes", "n_steps", "generation"))):
            raise StoreError(f"{root}: missing or malformed commit record {commit!r}")
        for key in ("features", "obs_keys"):
            if key not in attrs:
                raise StoreError(f"{root}: root attributes lack {key!r}")
        return document

    @staticmethod
    def _check_expected(root: Path, stored: Mapping[str, FeatureSpec], expected: Mapping[str, FeatureSpec]) -> None:
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

    def _acquire_lock(self) -> None:
        fd = os.open(self._root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self._root}: another process or store object is appending to this store") from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open_arrays(self) -> dict[str, zarr.Array]:
        """Open every array the schema names and check dtype, row shape and length ≥ the commit."""
        mode = "r" if self._mode == "r" else "r+"
        wanted: dict[str, tuple[str, tuple[int, ...], int]] = {}
        for name, spec in self._features.items():
            wanted[f"data/{name}"] = (spec.dtype, spec.shape, self._commit.n_steps)
        for name, dtype in EPISODE_TABLES.items():
            wanted[f"meta/{name}"] = (dtype, (), self._commit.n_episodes)
        for key in self._obs_keys:
            spec = self._features[key]
            wanted[f"meta/final_{key}"] = (spec.dtype, spec.shape, self._commit.n_episodes)
        arrays = {}
        for path, (dtype, row_shape, committed) in wanted.items():
            try:
                array = zarr.open_array(self._zstore, path=path, mode=mode)
            except (zarr.errors.BaseZarrError, OSError, KeyError, ValueError) as exc:
                raise StoreError(f"{self._root}: array {path} is missing or unreadable ({type(exc).__name__}: {exc})") from None
            if array.dtype != np.dtype(dtype) or tuple(array.shape[1:]) != row_shape:
                raise StoreError(f"{self._root}: array {path} is {array.dtype}{list(array.shape[1:])} per row, "
                                 f"the schema says {dtype}{list(row_shape)}")
            if array.shape[0] < committed:
                raise StoreError(f"{self._root}: the commit record points beyond the data: {path} has "
                                 f"{array.shape[0]} rows, the commit needs {committed}")
            arrays[path] = array.with_config(_ARRAY_CONFIG)
        return arrays

    def _load_tables(self) -> dict[str, np.ndarray]:
        """Committed per-episode tables, held in memory (a few bytes per episode)."""
        n = self._commit.n_episodes
        tables = {name: self._arrays[f"meta/{name}"][:n] for name in EPISODE_TABLES}
        ends = tables["episode_ends"]
        if n and (ends[-1] != self._commit.n_steps or np.any(np.diff(ends, prepend=0) != tables["length"])):
            raise StoreError(f"{self._root}: meta/episode_ends and meta/length disagree with the commit record "
                             f"(n_steps={self._commit.n_steps}, last end={int(ends[-1])})")
        if not n and self._commit.n_steps:
            raise StoreError(f"{self._root}: commit record has n_steps={self._commit.n_steps} but no episodes")
        return tables

    def _trim_to_commit(self) -> None:
        for path, array in self._arrays.items():
            committed = self._commit.n_steps if path.startswith("data/") else self._commit.n_episodes
            if array.shape[0] > committed:
                array.resize((committed, *array.shape[1:]))

    def _remove_partials(self) -> None:
        for partial in self._root.rglob("*.partial"):
            if partial.is_file():
                partial.unlink()

    # ------------------------------------------------------------------ properties
    @property
    def path(self) -> Path:
        return self._root

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def features(self) -> dict[str, FeatureSpec]:
        return dict(self._features)

    @property
    def obs_keys(self) -> tuple[str, ...]:
        return self._obs_keys

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes as last committed (includes ``commit``, ``tasks`` and the caller's attrs)."""
        with self._lock:
            return json.loads(json.dumps(self._document["attributes"]))

    @property
    def user_attrs(self) -> dict[str, Any]:
        """The caller-supplied root attributes (``control_hz``, ``task``, env/robot spec, ...):
        :attr:`attrs` without the format's own keys."""
        return {key: value for key, value in self.attrs.items() if key not in RESERVED_ATTRS}

    @property
    def n_episodes(self) -> int:
        """Committed episodes."""
        with self._lock:
            return self._commit.n_episodes

    @property
    def n_steps(self) -> int:
        """Committed steps."""
        with self._lock:
            return self._commit.n_steps

    @property
    def generation(self) -> int:
        """Number of commits since creation."""
        with self._lock:
            return self._commit.generation

    @property
    def episode_ends(self) -> np.ndarray:
        with self._lock:
            return self._tables["episode_ends"][: self._commit.n_episodes].copy()

    @property
    def episodes(self) -> dict[str, np.ndarray]:
        """Per-episode table of committed episodes: ``episode_ends``, ``length``, ``success``,
        ``source`` (int8 codes, see :data:`SOURCES`), ``seed``, ``task`` (index into :attr:`tasks`)."""
        with self._lock:
            n = self._commit.n_episodes
            return {name: table[:n].copy() for name, table in self._tables.items()}

    @property
    def tasks(self) -> list[str]:
        """Task names; ``episodes["task"]`` indexes this list."""
        with self._lock:
            return list(self._document["attributes"]["tasks"])

    # ------------------------------------------------------------------ writing
    def append_step(self, step: Mapping[str, Any]) -> None:
        """Copy one step (every feature, exactly) into the episode in flight. No disk I/O."""
        self._check_writable()
        self._buffer.append(step)

    def discard_episode(self) -> None:
        """Drop the steps of the episode in flight."""
        self._check_writable()
        self._buffer.n = 0

    @property
    def steps_in_flight(self) -> int:
        """Steps appended since the last ``end_episode``/``discard_episode``."""
        return 0 if self._buffer is None else self._buffer.n

    def end_episode(
        self,
        final_obs: Mapping[str, Any],
        success: bool,
        source: str | int = "policy",
        seed: int = -1,
        task: str | None = None,
    ) -> Episode:
        """Queue the episode in flight for the background writer and return it at once.

        ``final_obs`` is the observation after the last action (every obs key). ``task`` defaults
        to ``attrs["task"]`` when the store has one. Blocks only if 8 episodes are already queued.
        """
        self._check_writable()
        if self._buffer.n == 0:
            raise ValueError("end_episode: the episode has no steps (append_step first, or discard_episode)")
        final = self._checked_final_obs(final_obs)
        source_code = _as_code(source, SOURCES, "source")  # before the buffer is handed over
        length = self._buffer.n
        self._next_capacity = max(self._next_capacity, length)
        return self._queue_episode(self._buffer.take(self._next_capacity), length, final, success, source_code,
                                   seed, task)

    def append_episode(
        self,
        steps: Mapping[str, Any],
        final_obs: Mapping[str, Any],
        success: bool,
        source: str | int = "policy",
        seed: int = -1,
        task: str | None = None,
    ) -> Episode:
        """Queue a whole episode at once: ``steps`` maps every feature to a ``(T, ...)`` array
        (copied, cast to the feature's dtype). Same as ``T`` calls of :meth:`append_step` and one
        of :meth:`end_episode`, for copying episodes between stores; no episode may be in flight."""
        self._check_writable()
        if self._buffer.n:
            raise ValueError(f"append_episode: {self._buffer.n} steps of another episode are in flight "
                             "(end_episode or discard_episode first)")
        if set(steps) != set(self._features):
            raise ValueError(f"append_episode: step features do not match the store: missing "
                             f"{sorted(set(self._features) - set(steps))}, unexpected {sorted(set(steps) - set(self._features))}")
        copies = {name: np.array(steps[name], dtype=spec.dtype) for name, spec in self._features.items()}
        first = next(iter(copies.values()))
        length = first.shape[0] if first.ndim else 0
        if length == 0:
            raise ValueError("append_episode: the episode has no steps")
        for name, values in copies.items():
            if values.shape != (length, *self._features[name].shape):
                raise ValueError(f"append_episode: feature {name!r} has shape {values.shape}, "
                                 f"expected {(length, *self._features[name].shape)}")
            values.flags.writeable = False
        final = self._checked_final_obs(final_obs)
        return self._queue_episode(copies, length, final, success, _as_code(source, SOURCES, "source"), seed, task)

    def _checked_final_obs(self, final_obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Read-only copies of every observation of ``final_obs`` in the stored dtype and shape."""
        final = {}
        for key in self._obs_keys:
            if key not in final_obs:
                raise ValueError(f"final_obs is missing observation {key!r}")
            value = np.array(final_obs[key], dtype=self._features[key].dtype)
            if value.shape != self._features[key].shape:
                raise ValueError(f"final_obs[{key!r}]: expected shape {self._features[key].shape}, got {value.shape}")
            value.flags.writeable = False
            final[key] = value
        return final

    def _queue_episode(self, steps: dict[str, np.ndarray], length: int, final: dict[str, np.ndarray],
                       success: bool, source_code: int, seed: int, task: str | None) -> Episode:
        """Hand a checked episode to the background writer, registering its task name."""
        if task is None:
            default = self._document["attributes"].get("task")
            task = default if isinstance(default, str) else None
        with self._lock:
            if task is not None and task not in self._tasks:
                self._tasks.append(task)
            task_code = -1 if task is None else self._tasks.index(task)
            tasks = list(self._tasks)
        row = {"length": length, "success": bool(success), "source": source_code, "seed": int(seed), "task": task_code}
        self._queue.put(_Job(steps, final, row, tasks))
        return Episode(steps, final, bool(success), SOURCE_NAMES[source_code], int(seed), task)

    def flush(self) -> None:
        """Block until every queued episode is committed; raise if the writer failed."""
        self._check_writable()
        self._queue.join()
        self._raise_writer_error()

    def close(self) -> None:
        """Commit queued episodes, stop the writer and release the store (the episode in flight,
        if any, is dropped). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                atexit.unregister(self._close_at_exit)
                self._queue.put(None)
                self._writer.join()
                if self._error is None:
                    self._trim_to_commit()  # a closed store is exact for plain Zarr readers
        finally:
            self._release_lock()
        self._raise_writer_error()

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except StoreError:
            pass  # already reported on the caller's thread if it ever looked; nothing more to do at exit

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        if self._mode != "a":
            raise StoreError(f"{self._root}: opened read-only (mode 'r')")
        if self._closed:
            raise StoreError(f"{self._root}: the store is closed")
        self._raise_writer_error()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise StoreError(f"{self._root}: the background writer failed; episodes after #{self._commit.n_episodes} "
                             f"were not saved: {type(self._error).__name__}: {self._error}") from self._error

    def _write_loop(self) -> None:
        """Writer thread: commit queued episodes in order, on an event loop of its own."""
        loop = asyncio.new_event_loop()
        try:
            while True:
                job = self._queue.get()
                try:
                    if job is None:
                        return
                    if self._error is None:
                        row = {**job.row, "episode_ends": self._commit.n_steps + job.row["length"]}
                        loop.run_until_complete(self._write_episode(job, row))
                        self._publish(job, row)
                except Exception as exc:  # reported on the caller's thread by _raise_writer_error
                    self._error = exc
                finally:
                    self._queue.task_done()
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _write_episode(self, job: _Job, row: Mapping[str, int | bool]) -> None:
        """Write the episode's rows past the commit into every array, all arrays concurrently."""
        n_steps, n_episodes = self._commit.n_steps, self._commit.n_episodes
        writes = [_append(self._arrays[f"data/{name}"], n_steps, job.steps[name]) for name in self._features]
        writes += [_append(self._arrays[f"meta/{name}"], n_episodes, np.array([row[name]], dtype))
                   for name, dtype in EPISODE_TABLES.items()]
        writes += [_append(self._arrays[f"meta/final_{key}"], n_episodes, job.final_obs[key][None])
                   for key in self._obs_keys]
        await asyncio.gather(*writes)

    def _publish(self, job: _Job, row: Mapping[str, int | bool]) -> None:
        """Commit the written episode: one fsync-ed atomic rename of the root metadata."""
        n_episodes = self._commit.n_episodes
        commit = _Commit(n_episodes + 1, int(row["episode_ends"]), self._commit.generation + 1)
        document = {**self._document, "attributes": {**self._document["attributes"], "tasks": job.tasks,
                                                     "commit": commit.to_json()}}
        _write_json_atomically(self._root / "zarr.json", self._root / _COMMIT_TMP, document)
        with self._lock:
            self._tables = {name: _append_row(table, n_episodes, row[name]) for name, table in self._tables.items()}
            self._document = document
            self._commit = commit

    # ------------------------------------------------------------------ reading
    def read_episode(self, index: int) -> Episode:
        """Committed episode ``index`` (negative counts from the end)."""
        n = self.n_episodes
        if not -n <= index < n:
            raise IndexError(f"episode {index} out of range: the store has {n} committed episodes")
        index %= n
        table = self.episodes
        end = int(table["episode_ends"][index])
        start = end - int(table["length"][index])
        steps = {name: self._arrays[f"data/{name}"][start:end] for name in self._features}
        final = {key: self._arrays[f"meta/final_{key}"][index] for key in self._obs_keys}
        task_code = int(table["task"][index])
        return Episode(steps, final, bool(table["success"][index]), SOURCE_NAMES[int(table["source"][index])],
                       int(table["seed"][index]), None if task_code < 0 else self.tasks[task_code])

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
                    result[offset: offset + hi - lo] = array[lo:hi]
                    offset += hi - lo
                    lo = hi
            out[name] = result
        return out

    def final_obs(self, episodes: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Final observation of each selected episode (default: all committed), one row each."""
        n = self.n_episodes
        if episodes is None:
            return {key: self._arrays[f"meta/final_{key}"][:n] for key in self._obs_keys}
        index = self._episode_index(episodes)
        return {key: self._arrays[f"meta/final_{key}"].get_orthogonal_selection(index) for key in self._obs_keys}

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
        return (f"EpisodeStore({str(self._root)!r}, mode={self._mode!r}, episodes={self.n_episodes}, "
                f"steps={self.n_steps}, features={sorted(self._features)})")


async def _append(array: zarr.Array, start: int, values: np.ndarray) -> None:
    """Write ``values`` at rows ``[start, start + len)``, first growing the array (see
    :data:`RESERVE_ROWS`) if it is too short."""
    end = start + len(values)
    if end > array.shape[0]:
        chunk = array.chunks[0]
        reserve = min(max(RESERVE_ROWS, chunk), RESERVE_CHUNKS * chunk)
        rows = -(-(end + reserve) // chunk) * chunk
        await array.async_array.resize((rows, *array.shape[1:]))
    await array.async_array.setitem(slice(start, end), values)


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
