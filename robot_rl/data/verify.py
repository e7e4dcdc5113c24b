"""Read back every stored chunk of an episode store (``robot-rl data verify``).

Opening a store, and :func:`~robot_rl.data.info.store_info`, read the root document and the small
per-episode tables only. A chunk damaged on disk (bit rot, a truncated copy, a file deleted by
hand) is noticed only when its rows are read, perhaps hours into a training run. And a *missing*
chunk file is not noticed at all: Zarr reads it as the fill value (zeros). :func:`verify_store`
reads every chunk that holds committed rows, in every array, and reports each one that is
missing or cannot be decoded; it changes nothing on disk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import zarr
from zarr.storage import LocalStore

from robot_rl.data.layout import CommitRecord, open_arrays, read_root
from robot_rl.data.schema import FeatureSpec, StoreError

READ_BYTES = 64 << 20  # chunks are read about this many (uncompressed) bytes at a time


@dataclass(frozen=True)
class ChunkProblem:
    """One chunk that does not read back: ``array`` (e.g. ``data/action``), ``chunk`` (its index
    along the time axis), the ``rows`` it holds ``[start, stop)``, its ``file`` and the ``error``."""

    array: str
    chunk: int
    rows: tuple[int, int]
    file: str
    error: str


def verify_store(path: str | os.PathLike[str], progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Read every chunk holding committed rows of every array of the store at ``path``.

    Returns ``{"path", "ok", "arrays", "chunks", "problems"}`` where ``problems`` lists
    :class:`ChunkProblem` s as dicts (plus, when every chunk reads, any disagreement between the
    episode tables and the commit record). ``progress(chunks_done, chunks_total)`` is called as
    it goes. Raises :class:`~robot_rl.data.StoreError` only if ``path`` is not a store at all.
    """
    root = Path(path)
    document = read_root(root)
    attrs = document["attributes"]
    features = {name: FeatureSpec.from_json(spec) for name, spec in attrs["features"].items()}
    commit = CommitRecord.from_json(attrs["commit"])
    arrays = open_arrays(root, LocalStore(root, read_only=True), features, tuple(attrs["obs_keys"]), commit,
                         writable=False)  # metadata only: no chunk is read yet
    committed = {name: commit.n_steps if name.startswith("data/") else commit.n_episodes for name in arrays}
    total = sum(math.ceil(committed[name] / array.chunks[0]) for name, array in arrays.items())
    problems: list[ChunkProblem] = []
    done = 0
    for name, array in arrays.items():
        for chunks, found in _check_array(root, array, committed[name]):
            problems += found
            done += chunks
            if progress is not None:
                progress(done, total)
    report: list[dict[str, Any]] = [asdict(problem) for problem in problems]
    if not problems:
        report += _table_problems(root)
    return {"path": str(root), "ok": not report, "arrays": len(arrays), "chunks": total, "problems": report}


def _check_array(root: Path, array: zarr.Array, rows: int) -> Iterator[tuple[int, list[ChunkProblem]]]:
    """``(chunks checked, problems among them)`` for successive groups of chunks of ``array``
    covering its first ``rows`` rows: missing files first, then a read of the whole group, and
    chunk by chunk only when the group fails (so a healthy store costs few reads)."""
    step = array.chunks[0]
    row_bytes = array.dtype.itemsize * math.prod(array.shape[1:])
    group = max(1, READ_BYTES // max(1, step * row_bytes))
    n_chunks = math.ceil(rows / step)
    for first in range(0, n_chunks, group):
        indices = range(first, min(n_chunks, first + group))
        problems = []
        readable = []
        for index in indices:
            # Zarr reads a missing chunk file as the fill value; the writer stores every chunk it writes.
            if not (root / array.path / _chunk_key(array, index)).is_file():
                problems.append(_problem(array, index, rows, "chunk file is missing (would read as zeros)"))
            else:
                readable.append(index)
        if readable and _read_error(array, slice(readable[0] * step, min(rows, (readable[-1] + 1) * step))):
            for index in readable:
                error = _read_error(array, slice(index * step, min(rows, (index + 1) * step)))
                if error:
                    problems.append(_problem(array, index, rows, error))
        yield len(indices), problems


def _chunk_key(array: zarr.Array, index: int) -> str:
    """The file of chunk ``index`` along the time axis, relative to the array (e.g. ``c/3/0``);
    the store's arrays are chunked along time only."""
    return array.metadata.encode_chunk_key((index, *[0] * (array.ndim - 1)))


def _read_error(array: zarr.Array, rows: slice) -> str | None:
    try:
        array[rows]
    except MemoryError:
        raise
    except Exception as exc:  # whatever the codec raises for bad bytes
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def _problem(array: zarr.Array, index: int, rows: int, error: str) -> ChunkProblem:
    step = array.chunks[0]
    return ChunkProblem(array.path, index, (index * step, min(rows, (index + 1) * step)),
                        f"{array.path}/{_chunk_key(array, index)}", error)


def _table_problems(root: Path) -> list[dict[str, Any]]:
    """Opening the store checks the episode tables against the commit record."""
    from robot_rl.data.store import EpisodeStore

    try:
        with EpisodeStore.open(root, "r"):
            return []
    except StoreError as exc:
        return [{"array": "meta", "chunk": None, "rows": None, "file": None, "error": str(exc)}]


def problem_line(problem: dict[str, Any]) -> str:
    """One readable line for a problem of :func:`verify_store`."""
    if problem["chunk"] is None:
        return f"{problem['array']}: {problem['error']}"
    start, stop = problem["rows"]
    return (f"{problem['array']} chunk {problem['chunk']} (rows {start}..{stop - 1}, file {problem['file']}): "
            f"{problem['error']}")

