"""``EpisodeStore``: one on-disk Zarr format for online replay and demonstration datasets.

A store is read by an :class:`~robot_rl.data.episode_reader.EpisodeReader` and, opened with mode
``"a"``, appended to by an :class:`~robot_rl.data.episode_writer.EpisodeWriter`;
:class:`EpisodeStore` is both behind one small API. The pieces, each readable on its own:

- :mod:`robot_rl.data.schema`: what a step and an episode hold (features, sources, errors);
- :mod:`robot_rl.data.layout`: the directory on disk (arrays, root document, commit record, lock);
- :mod:`robot_rl.data.episode_buffer`: the episode in flight, in RAM;
- :mod:`robot_rl.data.episode_writer`: the background writer and the commit protocol (crash safety);
- :mod:`robot_rl.data.episode_reader`: reading committed episodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from robot_rl.data.episode_reader import EpisodeReader, episode_blocks
from robot_rl.data.episode_writer import RESERVE_CHUNKS, RESERVE_ROWS, EpisodeWriter
from robot_rl.data.layout import (
    EPISODE_ENDS_CHUNK,
    TABLE_CHUNK,
    CommitRecord,
    StoreLock,
    create_directory,
    read_root,
)
from robot_rl.data.schema import (
    EPISODE_TABLES,
    FORMAT,
    IMAGE_CHUNK,
    LOWDIM_CHUNK,
    RESERVED_ATTRS,
    SCHEMA_VERSION,
    SOURCE_NAMES,
    SOURCES,
    TRANSITION_FEATURES,
    Episode,
    FeatureSpec,
    SpecMismatchError,
    StoreError,
    check_expected,
    check_schema,
    features_from_spaces,
    transition_specs,
)

__all__ = [
    "EPISODE_ENDS_CHUNK",
    "EPISODE_TABLES",
    "Episode",
    "EpisodeStore",
    "FORMAT",
    "FeatureSpec",
    "IMAGE_CHUNK",
    "LOWDIM_CHUNK",
    "RESERVED_ATTRS",
    "RESERVE_CHUNKS",
    "RESERVE_ROWS",
    "SCHEMA_VERSION",
    "SOURCES",
    "SOURCE_NAMES",
    "SpecMismatchError",
    "StoreError",
    "TABLE_CHUNK",
    "TRANSITION_FEATURES",
    "episode_blocks",
    "features_from_spaces",
    "transition_specs",
]


class EpisodeStore(EpisodeReader):
    """Episodes of step features persisted to Zarr (format: :mod:`robot_rl.data.layout`).

    Build one with :meth:`create`, :meth:`open` or :meth:`open_or_create`; use it as a context
    manager (or call :meth:`close`) so queued episodes are committed. Reading (inherited from
    :class:`EpisodeReader`) sees committed episodes only; in mode ``"a"`` the writing methods go
    to an :class:`EpisodeWriter`.
    """

    def __init__(self, root: Path, mode: Literal["r", "a"], document: dict[str, Any]) -> None:
        """Internal: validate and open the store whose root ``zarr.json`` is ``document``."""
        lock = StoreLock(root) if mode == "a" else None
        try:
            super().__init__(root, document, writable=lock is not None)
            self._writer = None if lock is None else EpisodeWriter(
                root, self._features, self._obs_keys, self._arrays, self._committed, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

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
        check_schema(root, features, obs_keys, attrs)
        return cls(root, "a", create_directory(root, features, obs_keys, attrs))

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
        document = read_root(root)
        if expect_features is not None:
            stored = {name: FeatureSpec.from_json(spec) for name, spec in document["attributes"]["features"].items()}
            check_expected(root, stored, expect_features)
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

    # ------------------------------------------------------------------ writing (EpisodeWriter)
    def _checked_writer(self) -> EpisodeWriter:
        if self._writer is None:
            raise StoreError(f"{self._root}: opened read-only (mode 'r')")
        return self._writer

    def append_step(self, step: Mapping[str, Any]) -> None:
        """Copy one step (every feature, exactly) into the episode in flight. No disk I/O."""
        self._checked_writer().append_step(step)

    def discard_episode(self) -> None:
        """Drop the steps of the episode in flight."""
        self._checked_writer().discard_episode()

    @property
    def steps_in_flight(self) -> int:
        """Steps appended since the last ``end_episode``/``discard_episode``."""
        return 0 if self._writer is None else self._writer.steps_in_flight

    def end_episode(self, final_obs: Mapping[str, Any], success: bool, source: str | int = "policy",
                    seed: int = -1, task: str | None = None, label: str | int | None = None) -> Episode:
        """Queue the episode in flight for the background writer and return it at once.

        ``final_obs`` is the observation after the last action (every obs key). ``task`` defaults
        to ``attrs["task"]`` when the store has one. ``label``: what a person said of the episode
        (``success`` / ``failure``; None = ``none``). Blocks only if 8 episodes are already queued.
        """
        return self._checked_writer().end_episode(final_obs, success, source, seed, task, label)

    def append_episode(self, steps: Mapping[str, Any], final_obs: Mapping[str, Any], success: bool,
                       source: str | int = "policy", seed: int = -1, task: str | None = None,
                       label: str | int | None = None) -> Episode:
        """Queue a whole episode at once: ``steps`` maps every feature to a ``(T, ...)`` array
        (copied, cast to the feature's dtype). Same as ``T`` calls of :meth:`append_step` and one
        of :meth:`end_episode`, for copying episodes between stores; no episode may be in flight."""
        return self._checked_writer().append_episode(steps, final_obs, success, source, seed, task, label)

    def add_commit_listener(self, listener: Callable[[CommitRecord], None]) -> None:
        """Call ``listener(commit)`` (on the writer thread) after every commit: the count to show a
        user as "recorded" (an episode is only queued when ``end_episode`` returns)."""
        self._checked_writer().add_commit_listener(listener)

    def flush(self) -> None:
        """Block until every queued episode is committed; raise if the writer failed."""
        self._checked_writer().flush()

    def close(self) -> None:
        """Commit queued episodes, stop the writer and release the store (the episode in flight,
        if any, is dropped). Idempotent."""
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
