"""Appending episodes: the in-RAM episode in flight, a background writer, and the commit protocol.

The commit protocol. The root ``zarr.json`` holds the commit record ``{n_episodes, n_steps,
generation}``; it is the only truth about what the store contains.

- ``append_step`` copies into an in-memory episode buffer (no Zarr calls). At ``end_episode``
  the episode is queued, and a background thread (with an asyncio event loop of its own) appends
  it past the committed ``n_steps`` (resize, write the slice) together with its per-episode table
  rows, all arrays concurrently, then rewrites the root ``zarr.json`` with the new commit record
  through one ``fsync``-ed ``os.replace``. That rename is the commit; "``episode_ends`` is the
  commit" would not be safe, since a kill between resize and write leaves the fill value visible.
- Arrays grow ahead of the data (:data:`RESERVE_ROWS`, whole chunks) so most commits rewrite no
  array metadata; ``close()`` trims them back to the commit, so a closed store is exact for plain
  Zarr readers (e.g. diffusion_policy's ``meta/episode_ends``).
- Zarr's ``LocalStore`` itself writes every chunk and array metadata file through a
  ``*.partial`` file and a rename, so no file is ever seen half written and committed rows of a
  rewritten boundary chunk are always intact.
- Opening trusts only the commit record: a writer trims arrays longer than it and removes
  leftover ``*.partial`` files (:func:`recover`); a reader (:mod:`robot_rl.data.episode_reader`)
  views the arrays only up to it and changes nothing on disk.
- Everything not committed when a process dies (queued episodes, the episode in flight) is
  lost, nothing else. These guarantees cover the death of the process (kill, crash, OOM). Only
  the commit file is ``fsync``-ed, not the chunk files (about 4 ms per file), so they do not
  extend to a power loss of the host.
- One process writes at a time: a writer holds an exclusive ``flock`` on the store directory
  (:class:`~robot_rl.data.layout.StoreLock`, released by the kernel if the writer dies).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from robot_rl.data.episode_buffer import FIRST_BUFFER_STEPS, EpisodeBuffer, checked_final_obs, checked_steps
from robot_rl.data.episode_reader import CommittedState
from robot_rl.data.layout import COMMIT_TMP, CommitRecord, StoreLock, write_json_atomically
from robot_rl.data.schema import (
    EPISODE_TABLES,
    LABEL_NAMES,
    SOURCE_NAMES,
    Episode,
    FeatureSpec,
    StoreError,
    StoreWriteError,
    label_code,
    source_code,
)

# When an array must grow, it is allocated this far ahead of the data (whole chunks, at least
# one and at most RESERVE_CHUNKS of them), so most commits rewrite no array metadata.
RESERVE_ROWS = 4096
RESERVE_CHUNKS = 64
QUEUED_EPISODES = 8  # end_episode blocks when this many episodes wait for the writer

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """A finished episode waiting for the background writer."""

    steps: dict[str, np.ndarray]
    final_obs: dict[str, np.ndarray]
    row: dict[str, int | bool]
    tasks: list[str]


def recover(root: Path, arrays: Mapping[str, zarr.Array], commit: CommitRecord) -> None:
    """Make the disk match the commit record: trim arrays past it, remove ``*.partial`` files."""
    trim_to_commit(arrays, commit)
    for partial in root.rglob("*.partial"):
        if partial.is_file():
            partial.unlink()


def trim_to_commit(arrays: Mapping[str, zarr.Array], commit: CommitRecord) -> None:
    for path, array in arrays.items():
        committed = commit.n_steps if path.startswith("data/") else commit.n_episodes
        if array.shape[0] > committed:
            array.resize((committed, *array.shape[1:]))


class EpisodeWriter:
    """Appends episodes to the arrays of a store whose ``lock`` the caller holds, advancing
    ``committed`` (shared with the store's reader) after each commit. Opening recovers the store
    to its commit record and starts the writer thread; :meth:`close` (also run at exit) commits
    what is queued, trims the arrays and releases the lock."""

    def __init__(self, root: Path, features: Mapping[str, FeatureSpec], obs_keys: tuple[str, ...],
                 arrays: Mapping[str, zarr.Array], committed: CommittedState, lock: StoreLock) -> None:
        self._root = root
        self._features = features
        self._obs_keys = obs_keys
        self._arrays = arrays
        self._committed = committed
        self._store_lock = lock
        self._tasks: list[str] = list(committed.document["attributes"].get("tasks", []))
        self._tasks_lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUED_EPISODES)
        self._commit_listeners: list[Callable[[CommitRecord], None]] = []
        recover(root, arrays, committed.commit)
        self._buffer = EpisodeBuffer(features, FIRST_BUFFER_STEPS)
        self._next_capacity = FIRST_BUFFER_STEPS
        self._thread = threading.Thread(target=self._write_loop, name=f"EpisodeStore({root.name})", daemon=True)
        self._thread.start()
        atexit.register(self._close_at_exit)

    # ------------------------------------------------------------------ caller's thread
    def append_step(self, step: Mapping[str, Any]) -> None:
        """Copy one step into the episode in flight (:class:`EpisodeBuffer`). No disk I/O."""
        self._check_open()
        self._buffer.append(step)

    def discard_episode(self) -> None:
        self._check_open()
        self._buffer.n = 0

    @property
    def steps_in_flight(self) -> int:
        return self._buffer.n

    def end_episode(self, final_obs: Mapping[str, Any], success: bool, source: str | int = "policy",
                    seed: int = -1, task: str | None = None, label: str | int | None = None) -> Episode:
        """Queue the episode in flight and return it at once (:meth:`EpisodeStore.end_episode`)."""
        self._check_open()
        if self._buffer.n == 0:
            raise ValueError("end_episode: the episode has no steps (append_step first, or discard_episode)")
        final = checked_final_obs(self._features, self._obs_keys, final_obs)
        code = source_code(source)  # before the buffer is handed over
        labelled = self._checked_label(label)
        length = self._buffer.n
        self._next_capacity = max(self._next_capacity, length)
        return self._queue_episode(self._buffer.take(self._next_capacity), length, final, success, code, seed, task,
                                   labelled)

    def append_episode(self, steps: Mapping[str, Any], final_obs: Mapping[str, Any], success: bool,
                       source: str | int = "policy", seed: int = -1, task: str | None = None,
                       label: str | int | None = None) -> Episode:
        """Queue a whole episode at once (:meth:`EpisodeStore.append_episode`)."""
        self._check_open()
        if self._buffer.n:
            raise ValueError(f"append_episode: {self._buffer.n} steps of another episode are in flight "
                             "(end_episode or discard_episode first)")
        copies, length = checked_steps(self._features, steps)
        final = checked_final_obs(self._features, self._obs_keys, final_obs)
        return self._queue_episode(copies, length, final, success, source_code(source), seed, task,
                                   self._checked_label(label))

    def _checked_label(self, label: str | int | None) -> int:
        """The label's code; a store written before labels existed takes only ``none``."""
        code = label_code(label)
        if code != label_code(None) and "meta/label" not in self._arrays:
            raise StoreError(f"{self._root}: this store was written before per-episode labels existed, so it "
                             f"cannot keep the label {label!r}; record into a new store (robot-rl data merge "
                             "can join the two afterwards)")
        return code

    def _queue_episode(self, steps: dict[str, np.ndarray], length: int, final: dict[str, np.ndarray],
                       success: bool, code: int, seed: int, task: str | None, label: int) -> Episode:
        """Hand a checked episode to the background writer, registering its task name."""
        if task is None:
            default = self._committed.document["attributes"].get("task")
            task = default if isinstance(default, str) else None
        with self._tasks_lock:
            if task is not None and task not in self._tasks:
                self._tasks.append(task)
            task_code = -1 if task is None else self._tasks.index(task)
            tasks = list(self._tasks)
        row = {"length": length, "success": bool(success), "source": code, "seed": int(seed), "task": task_code,
               "label": label}
        self._queue.put(_Job(steps, final, row, tasks))
        return Episode(steps, final, bool(success), SOURCE_NAMES[code], int(seed), task, LABEL_NAMES[label])

    def add_commit_listener(self, listener: Callable[[CommitRecord], None]) -> None:
        """Call ``listener(commit)`` on the writer thread after every commit, once the episode is
        durable: what a progress display should count as recorded. A listener that raises is
        logged and does not stop the writer."""
        self._commit_listeners.append(listener)

    def flush(self) -> None:
        """Wait for every queued commit; raise if the writer failed."""
        self._check_open()
        self._queue.join()
        self._raise_writer_error()

    def close(self) -> None:
        """Commit queued episodes, stop the writer thread, trim the arrays to the commit and
        release the lock (the episode in flight, if any, is dropped). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            atexit.unregister(self._close_at_exit)
            self._queue.put(None)
            self._thread.join()
            if self._error is None:
                trim_to_commit(self._arrays, self._committed.commit)  # exact for plain Zarr readers
        finally:
            self._store_lock.release()
        self._raise_writer_error()

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except StoreError:
            pass  # already reported on the caller's thread if it ever looked; nothing more to do at exit

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._root}: the store is closed")
        self._raise_writer_error()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise StoreWriteError(f"{self._root}: the background writer failed; episodes after "
                             f"#{self._committed.commit.n_episodes} were not saved: "
                             f"{type(self._error).__name__}: {self._error}") from self._error

    # ------------------------------------------------------------------ writer thread
    def _write_loop(self) -> None:
        """Commit queued episodes in order, on an event loop of its own."""
        loop = asyncio.new_event_loop()
        try:
            while True:
                job = self._queue.get()
                try:
                    if job is None:
                        return
                    if self._error is None:
                        row = {**job.row, "episode_ends": self._committed.commit.n_steps + job.row["length"]}
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
        n_steps, n_episodes = self._committed.commit.n_steps, self._committed.commit.n_episodes
        writes = [_append(self._arrays[f"data/{name}"], n_steps, job.steps[name]) for name in self._features]
        writes += [_append(self._arrays[f"meta/{name}"], n_episodes, np.array([row[name]], dtype))
                   for name, dtype in EPISODE_TABLES.items() if f"meta/{name}" in self._arrays]
        writes += [_append(self._arrays[f"meta/final_{key}"], n_episodes, job.final_obs[key][None])
                   for key in self._obs_keys]
        await asyncio.gather(*writes)

    def _publish(self, job: _Job, row: Mapping[str, int | bool]) -> None:
        """Commit the written episode: one fsync-ed atomic rename of the root metadata."""
        last = self._committed
        commit = CommitRecord(last.commit.n_episodes + 1, int(row["episode_ends"]), last.commit.generation + 1)
        document = {**last.document, "attributes": {**last.document["attributes"], "tasks": job.tasks,
                                                    "commit": commit.to_json()}}
        write_json_atomically(self._root / "zarr.json", self._root / COMMIT_TMP, document)
        self._committed.advance(document, commit, row)
        for listener in self._commit_listeners:
            try:
                listener(commit)
            except Exception:  # a display must never fail a commit that already happened
                log.exception("commit listener %r failed", listener)


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
