"""How an episode store lies on disk: the directory, its arrays, its root document and its lock.

Layout of a store directory (Zarr v3, ``LocalStore``)::

    zarr.json                 root group; attributes hold the schema and the commit record
    data/<feature>            one time-major array per step feature, all episodes concatenated
    meta/episode_ends         int64, exclusive end step of each episode (chunk 2**16, never rechunked)
    meta/length               int64 steps per episode
    meta/success              bool
    meta/source               int8 code: policy=0, human=1, scripted=2, intervention=3
    meta/seed                 int64 (-1: unknown)
    meta/task                 int16 index into the root attribute ``tasks`` (-1: unspecified)
    meta/label                int8 what a person said: none=-1, failure=0, success=1 (absent in
                              stores written before it existed: every episode reads as none)
    meta/final_<obs key>      the observation after the episode's last action (one row per episode)

Root attributes: ``format``, ``schema_version``, ``features``, ``obs_keys``, ``sources``,
``tasks``, the commit record ``commit`` = ``{n_episodes, n_steps, generation}``, and the
caller's own (``control_hz``, ``task``, env/robot spec, ...). How the commit record is
advanced, and why it is the only truth, is told in :mod:`robot_rl.data.episode_writer`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from robot_rl.data.schema import (
    EPISODE_TABLES,
    FORMAT,
    OPTIONAL_TABLES,
    SCHEMA_VERSION,
    SOURCES,
    CorruptDataError,
    FeatureSpec,
    StoreError,
)

EPISODE_ENDS_CHUNK = 2**16  # fixed: meta/episode_ends is never rechunked
TABLE_CHUNK = 4096  # other per-episode arrays; a commit rewrites their last chunk, so keep it small
# Store every written chunk: skips Zarr's all-fill-value scan and keeps the files predictable.
ARRAY_CONFIG = {"write_empty_chunks": True}
COMMIT_TMP = "zarr.json.commit.partial"


@dataclass
class CommitRecord:
    """``{n_episodes, n_steps, generation}``: how much of the arrays is committed."""

    n_episodes: int = 0
    n_steps: int = 0
    generation: int = 0

    def to_json(self) -> dict[str, int]:
        return {"n_episodes": self.n_episodes, "n_steps": self.n_steps, "generation": self.generation}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CommitRecord:
        return cls(int(data["n_episodes"]), int(data["n_steps"]), int(data["generation"]))


def compressors(spec: FeatureSpec) -> Any:
    """Images: zstd level 1 (on 128×128 MuJoCo renders: ratio ≈ 8.6 at ≈ 0.2 ms per frame, where
    blosc-lz4 reaches ≈ 2.5 at the same speed); everything else: Zarr's default (zstd)."""
    if spec.is_image:
        return (ZstdCodec(level=1),)
    return "auto"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json_atomically(path: Path, tmp: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``tmp``, fsync it, then rename it over ``path`` (one atomic step)."""
    data = json.dumps(document, indent=2).encode()
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def create_directory(root: Path, features: Mapping[str, FeatureSpec], obs_keys: tuple[str, ...],
                     attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Build an empty store (the caller's ``attrs`` plus the format's own root attributes) in a
    temporary sibling directory and rename it to ``root``, so a crash never leaves a half-created
    store; return its root document."""
    document_attrs = {
        **attrs,
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "features": {name: spec.to_json() for name, spec in features.items()},
        "obs_keys": list(obs_keys),
        "sources": dict(SOURCES),
        "tasks": [],
        "commit": CommitRecord().to_json(),
    }
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".partial"))
    try:
        group = zarr.open_group(LocalStore(staging), mode="w")
        data, meta = group.require_group("data"), group.require_group("meta")
        for name, spec in features.items():
            data.create_array(name, shape=(0, *spec.shape), dtype=spec.dtype,
                              chunks=(spec.chunk_rows, *spec.shape), compressors=compressors(spec))
        for name, dtype in EPISODE_TABLES.items():
            rows = EPISODE_ENDS_CHUNK if name == "episode_ends" else TABLE_CHUNK
            meta.create_array(name, shape=(0,), dtype=dtype, chunks=(rows,))
        for key in obs_keys:
            spec = features[key]
            rows = 1 if spec.is_image else TABLE_CHUNK  # one new file per final image, never rewritten
            meta.create_array(f"final_{key}", shape=(0, *spec.shape), dtype=spec.dtype,
                              chunks=(rows, *spec.shape), compressors=compressors(spec))
        document = read_json(staging / "zarr.json")
        document["attributes"] = document_attrs
        write_json_atomically(staging / "zarr.json", staging / COMMIT_TMP, document)
        os.rename(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return document


def read_root(root: Path) -> dict[str, Any]:
    """Read and check the root group document; every failure names the path and the problem."""
    if not root.exists():
        raise StoreError(f"{root}: no episode store here (the path does not exist)")
    if not root.is_dir():
        raise StoreError(f"{root}: not an episode store (not a directory)")
    meta_path = root / "zarr.json"
    if not meta_path.is_file():
        raise StoreError(f"{root}: not an episode store (no zarr.json: not a Zarr v3 store)")
    try:
        document = read_json(meta_path)
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


def open_arrays(root: Path, zstore: LocalStore, features: Mapping[str, FeatureSpec], obs_keys: tuple[str, ...],
                commit: CommitRecord, writable: bool) -> dict[str, zarr.Array]:
    """Open every array the schema names (by path, e.g. ``data/action``) and check dtype, row
    shape and length ≥ the commit. An optional episode table (:data:`OPTIONAL_TABLES`) that the
    store lacks is left out of the result."""
    mode = "r+" if writable else "r"
    wanted: dict[str, tuple[str, tuple[int, ...], int]] = {}
    for name, spec in features.items():
        wanted[f"data/{name}"] = (spec.dtype, spec.shape, commit.n_steps)
    for name, dtype in EPISODE_TABLES.items():
        wanted[f"meta/{name}"] = (dtype, (), commit.n_episodes)
    for key in obs_keys:
        spec = features[key]
        wanted[f"meta/final_{key}"] = (spec.dtype, spec.shape, commit.n_episodes)
    arrays = {}
    for path, (dtype, row_shape, committed) in wanted.items():
        if path.startswith("meta/") and path[5:] in OPTIONAL_TABLES and not _has_array(zstore, path):
            continue
        try:
            array = zarr.open_array(zstore, path=path, mode=mode)
        except (zarr.errors.BaseZarrError, OSError, KeyError, ValueError) as exc:
            raise StoreError(f"{root}: array {path} is missing or unreadable ({type(exc).__name__}: {exc})") from None
        if array.dtype != np.dtype(dtype) or tuple(array.shape[1:]) != row_shape:
            raise StoreError(f"{root}: array {path} is {array.dtype}{list(array.shape[1:])} per row, "
                             f"the schema says {dtype}{list(row_shape)}")
        if array.shape[0] < committed:
            raise StoreError(f"{root}: the commit record points beyond the data: {path} has "
                             f"{array.shape[0]} rows, the commit needs {committed}")
        arrays[path] = array.with_config(ARRAY_CONFIG)
    return arrays


def _has_array(zstore: LocalStore, path: str) -> bool:
    """Whether the store has an array (its ``zarr.json``) at ``path``."""
    return (Path(str(zstore.root)) / path / "zarr.json").is_file()


def read_rows(root: Path | str, array: zarr.Array, rows: slice | np.ndarray,
              episode_store: bool = True) -> np.ndarray:
    """``array[rows]`` (a slice, or an index array as an orthogonal selection). Bytes that cannot
    be decoded are a :class:`CorruptDataError` naming the store, the array and the rows, instead
    of the codec's own error (e.g. ``RuntimeError: Zstd decompression error``); for an
    ``episode_store`` the message points at ``robot-rl data verify``."""
    try:
        return array[rows] if isinstance(rows, slice) else array.get_orthogonal_selection(rows)
    except MemoryError:
        raise
    except Exception as exc:  # the codec decides the type: RuntimeError (zstd), ValueError (wrong size), ...
        if isinstance(rows, slice):
            where = "all rows" if rows.stop is None else f"rows {rows.start or 0}..{rows.stop - 1}"
        else:
            where = f"{len(rows)} selected rows"
        hint = f"; `robot-rl data verify {root}` lists every damaged chunk" if episode_store else ""
        raise CorruptDataError(
            f"{root}: cannot read {array.path} ({where}): damaged data ({type(exc).__name__}: {exc}){hint}") from exc


class StoreLock:
    """An exclusive ``flock`` on the store directory: one appending process (or store object) at
    a time. The kernel releases it if the holder dies."""

    def __init__(self, root: Path) -> None:
        fd = os.open(root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{root}: another process or store object is appending to this store") from None
        self._fd: int | None = fd

    def release(self) -> None:
        """Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
