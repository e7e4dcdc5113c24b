"""Dataset tools behind ``robot-rl data``: merge, split, filter, and diffusion_policy import/export.

Every tool writes a new output and never changes its inputs. The output is built inside a
hidden temporary sibling directory (``.<name>.<random>.partial``) and renamed into place when it
is complete, so a crash never leaves a half-written output at the given path (only, at worst, a
hidden ``*.partial`` directory that can be deleted). An existing output path is refused.
Episodes are copied in blocks of about :data:`BLOCK_STEPS` steps, so stores larger than RAM work.

diffusion_policy interchange (``real-stanford/diffusion_policy``'s ``ReplayBuffer`` layout: a
Zarr **v2** root group with ``data/<key>`` time-major arrays and ``meta/episode_ends`` int64):

* **export** writes every step feature as ``data/<feature>`` (``action``, ``reward`` and
  ``terminated`` included; Blosc-lz4, diffusion_policy's default compressor),
  ``meta/episode_ends``, and, for the way back, robot_rl's per-episode tables
  (``meta/length|success|source|seed|task|label``, ``meta/final_<obs key>``) and root attributes
  (``.zattrs["robot_rl"]``). diffusion_policy reads only ``data/`` and ``meta/episode_ends``;
  ``ReplayBuffer.copy_from_path`` also loads the other ``meta`` arrays, which is harmless.
* **import** maps a store to ours: every ``data/<key>`` array becomes a step feature of the same
  name, dtype and per-step shape; ``action`` is required and becomes float32 (values are not
  rescaled: diffusion_policy actions are often in task units, not ``[-1, 1]``); ``reward``
  (float32) and ``terminated`` (bool) are taken from ``data/`` when present, else 0 and False;
  every other key is an observation key. The final observation of an episode is its last step's
  observation. Source, success, seed and task come from the arguments, else from robot_rl's
  tables when the store is one of our exports, else ``human``, False, -1 and none. The control
  rate is required (diffusion_policy stores do not record it) unless the store is our export.
  A ``.zip`` file (``ZipStore``) is read as well as a directory. Import refuses, naming the array,
  any array that is not bool, integer or float (strings, objects, complex numbers), and any
  NaN/inf in a float array, naming the array and the first bad step, unless ``allow_nonfinite``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.storage import LocalStore, ZipStore

from robot_rl.data.layout import read_rows
from robot_rl.data.schema import LABEL_NAMES, InvalidDataError
from robot_rl.data.store import (
    EPISODE_TABLES,
    FORMAT,
    RESERVED_ATTRS,
    SOURCES,
    TRANSITION_FEATURES,
    EpisodeStore,
    FeatureSpec,
    SpecMismatchError,
    StoreError,
    episode_blocks,
)

PathLike = str | os.PathLike[str]
Progress = Callable[[int, int], None]
"""Called as ``progress(episodes_written, episodes_total)`` after every block of episodes."""

BLOCK_STEPS = 65536
# diffusion_policy's ReplayBuffer.resolve_compressor("default")
DIFFUSION_POLICY_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
EXPORT_ATTRS_KEY = "robot_rl"


# --------------------------------------------------------------------------- shared machinery
@contextmanager
def _staged_outputs(*outputs: PathLike) -> Iterator[list[Path]]:
    """Yield one path per output inside a hidden temporary sibling directory; when the block
    succeeds, rename every one into place, else delete them all. Existing outputs are refused."""
    paths = [Path(output) for output in outputs]
    if len(set(paths)) != len(paths):
        raise StoreError(f"the outputs must be different paths, got {[str(p) for p in paths]}")
    for path in paths:
        if path.exists():
            raise StoreError(f"{path}: the output already exists; refusing to overwrite it "
                             "(choose another path or delete it first)")
    with ExitStack() as cleanup:
        staged = []
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
            cleanup.callback(shutil.rmtree, staging, ignore_errors=True)
            staged.append(staging / path.name)
        yield staged
        for built, path in zip(staged, paths):
            if path.exists():
                raise StoreError(f"{path}: appeared while the output was being written; left untouched")
            os.rename(built, path)


@dataclass(frozen=True)
class _Block:
    """Consecutive episodes: their steps back to back and one table row per episode."""

    steps: Mapping[str, np.ndarray]
    final_obs: Mapping[str, np.ndarray]
    length: np.ndarray
    success: np.ndarray
    source: np.ndarray  # int8 codes
    seed: np.ndarray
    task: Sequence[str | None]
    label: np.ndarray | None = None  # int8 codes; None: nobody labelled them

    def __len__(self) -> int:
        return len(self.length)

    def write_to(self, store: EpisodeStore) -> None:
        """Queue every episode of the block into ``store``."""
        bounds = np.concatenate(([0], np.cumsum(self.length)))
        for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
            store.append_episode({name: values[start:stop] for name, values in self.steps.items()},
                                 {key: values[i] for key, values in self.final_obs.items()},
                                 success=bool(self.success[i]), source=int(self.source[i]),
                                 seed=int(self.seed[i]), task=self.task[i],
                                 label=None if self.label is None else int(self.label[i]))


def _store_blocks(store: EpisodeStore, episodes: np.ndarray) -> Iterator[_Block]:
    """The given committed episodes of ``store``, in order, block by block."""
    table, tasks = store.episodes, store.tasks
    for block in episode_blocks(table["length"][episodes], BLOCK_STEPS):
        chosen = episodes[block]
        yield _Block(store.load(episodes=chosen), store.final_obs(chosen), table["length"][chosen],
                     table["success"][chosen], table["source"][chosen], table["seed"][chosen],
                     [tasks[code] if code >= 0 else None for code in table["task"][chosen].tolist()],
                     table["label"][chosen])


class _Counter:
    """Counts episodes written towards ``total`` and reports them to an optional :data:`Progress`."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self._progress = total, 0, progress

    def add(self, episodes: int) -> None:
        self.done += episodes
        if self._progress is not None:
            self._progress(self.done, self.total)


def _write_blocks(store: EpisodeStore, blocks: Iterator[_Block], counter: _Counter) -> None:
    """Copy every block into ``store`` and wait until it is committed."""
    for block in blocks:
        block.write_to(store)
        counter.add(len(block))
    store.flush()


def _summary(path: Path, store: EpisodeStore) -> dict[str, Any]:
    return {"path": str(path), "episodes": store.n_episodes, "steps": store.n_steps,
            "successes": int(store.episodes["success"].sum())}


def _copy_episodes(outputs: Sequence[PathLike], template: EpisodeStore, attrs: Mapping[str, Any],
                   selections: Sequence[Sequence[tuple[EpisodeStore, np.ndarray]]],
                   progress: Progress | None) -> list[dict[str, Any]]:
    """Build one new store per output holding the selected episodes (``(store, episodes)``
    pairs, in order) with ``template``'s features and ``attrs``; all outputs appear together."""
    counter = _Counter(sum(len(episodes) for selection in selections for _, episodes in selection), progress)
    summaries = []
    with _staged_outputs(*outputs) as staged:
        for output, path, selection in zip(outputs, staged, selections):
            with EpisodeStore.create(path, template.features, template.obs_keys, attrs) as target:
                for store, episodes in selection:
                    _write_blocks(target, _store_blocks(store, episodes), counter)
                summaries.append(_summary(Path(output), target))
    return summaries


# --------------------------------------------------------------------------- merge, split, filter
def merge_stores(out: PathLike, inputs: Sequence[PathLike], progress: Progress | None = None) -> dict[str, Any]:
    """Write the episodes of every input, in order, to a new store ``out``.

    Inputs must share features (names, dtypes, shapes), observation keys and control rate, else
    :class:`SpecMismatchError` names the input and the difference. Episode tables (success,
    source, seed, task) are kept; task names are remapped to the output's task list. The
    output's root attributes are those on which every input agrees.
    """
    if not inputs:
        raise ValueError("merge: no input stores given")
    with ExitStack() as stack:
        first = stack.enter_context(EpisodeStore.open(inputs[0], "r"))
        stores = [first]
        for path in inputs[1:]:
            try:
                store = stack.enter_context(EpisodeStore.open(path, "r", expect_features=first.features))
            except SpecMismatchError as exc:
                raise SpecMismatchError(f"cannot merge {path} with {first.path}: {exc}") from None
            _check_same_layout(first, store)
            stores.append(store)
        attrs = first.user_attrs
        for store in stores[1:]:
            other = store.user_attrs
            attrs = {key: value for key, value in attrs.items() if key in other and other[key] == value}
        selection = [(store, np.arange(store.n_episodes)) for store in stores]
        return _copy_episodes([out], first, attrs, [selection], progress)[0]


def _check_same_layout(first: EpisodeStore, other: EpisodeStore) -> None:
    problems = []
    if set(other.obs_keys) != set(first.obs_keys):
        problems.append(f"observation keys {sorted(other.obs_keys)} vs {sorted(first.obs_keys)}")
    if other.attrs["control_hz"] != first.attrs["control_hz"]:
        problems.append(f"control rate {other.attrs['control_hz']} Hz vs {first.attrs['control_hz']} Hz")
    if problems:
        raise SpecMismatchError(f"cannot merge {other.path} with {first.path}: " + "; ".join(problems))


def split_store(src: PathLike, train_out: PathLike, valid_out: PathLike, valid_fraction: float = 0.1,
                seed: int = 0, progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """Split the episodes of ``src`` at random (``seed``) into two new stores.

    ``round(valid_fraction · episodes)`` episodes (at least one, and at least one left for
    training) go to ``valid_out``, the rest to ``train_out``; both keep the source order.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be between 0 and 1 (exclusive), got {valid_fraction}")
    with EpisodeStore.open(src, "r") as store:
        n = store.n_episodes
        if n < 2:
            raise StoreError(f"{store.path}: cannot split {n} episode(s) into a training and a validation set")
        n_valid = min(max(1, round(valid_fraction * n)), n - 1)
        valid = np.sort(np.random.default_rng(seed).choice(n, n_valid, replace=False))
        train = np.setdiff1d(np.arange(n), valid)
        train_summary, valid_summary = _copy_episodes(
            [train_out, valid_out], store, store.user_attrs, [[(store, train)], [(store, valid)]], progress)
    return {"train": train_summary, "valid": valid_summary}


def filter_store(src: PathLike, out: PathLike, successful_only: bool = False, sources: Sequence[str] = (),
                 tasks: Sequence[str] = (), progress: Progress | None = None) -> dict[str, Any]:
    """Write the episodes of ``src`` that pass every given filter to a new store ``out``:
    successful ones only, ones from any of ``sources``, ones of any of ``tasks``."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown sources {unknown}; expected some of {sorted(SOURCES)}")
    with EpisodeStore.open(src, "r") as store:
        table = store.episodes
        keep = np.ones(store.n_episodes, bool)
        if successful_only:
            keep &= table["success"]
        if sources:
            keep &= np.isin(table["source"], [SOURCES[name] for name in sources])
        if tasks:
            missing = sorted(set(tasks) - set(store.tasks))
            if missing:
                raise StoreError(f"{store.path}: no episodes of tasks {missing}; its tasks are {store.tasks}")
            keep &= np.isin(table["task"], [store.tasks.index(task) for task in tasks])
        if not keep.any():
            raise StoreError(f"{store.path}: none of its {store.n_episodes} episodes pass the filter "
                             f"(successful_only={successful_only}, sources={list(sources)}, tasks={list(tasks)}); "
                             "no output written")
        return _copy_episodes([out], store, store.user_attrs, [[(store, np.flatnonzero(keep))]], progress)[0]


# --------------------------------------------------------------------------- diffusion_policy
def export_diffusion_policy(src: PathLike, out: PathLike, progress: Progress | None = None) -> dict[str, Any]:
    """Write the committed episodes of ``src`` as a diffusion_policy ``ReplayBuffer`` store
    (Zarr v2 directory) at ``out``; see the module docstring for the layout."""
    with EpisodeStore.open(src, "r") as store, _staged_outputs(out) as (path,):
        root = zarr.open_group(LocalStore(path), mode="w-", zarr_format=2)
        root.attrs[EXPORT_ATTRS_KEY] = {key: value for key, value in store.attrs.items() if key != "commit"}
        data, meta = root.create_group("data"), root.create_group("meta")
        table, n = store.episodes, store.n_episodes
        for name, dtype in EPISODE_TABLES.items():
            meta.create_array(name, data=table[name].astype(dtype), chunks=(max(1, n),),
                              compressors=DIFFUSION_POLICY_COMPRESSOR)
        steps = {name: data.create_array(name, shape=(store.n_steps, *spec.shape), dtype=spec.dtype,
                                         chunks=(spec.chunk_rows, *spec.shape), compressors=DIFFUSION_POLICY_COMPRESSOR)
                 for name, spec in store.features.items()}
        finals = {key: meta.create_array(f"final_{key}", shape=(n, *store.features[key].shape),
                                         dtype=store.features[key].dtype, compressors=DIFFUSION_POLICY_COMPRESSOR)
                  for key in store.obs_keys}
        counter, step = _Counter(n, progress), 0
        for block in _store_blocks(store, np.arange(n)):
            block_steps, episode = int(block.length.sum()), counter.done
            for name, array in steps.items():
                array[step: step + block_steps] = block.steps[name]
            for key, array in finals.items():
                array[episode: episode + len(block)] = block.final_obs[key]
            step += block_steps
            counter.add(len(block))
        return {"path": str(out), "episodes": n, "steps": store.n_steps, "features": list(store.features)}


@contextmanager
def _open_foreign_group(path: Path) -> Iterator[zarr.Group]:
    """The root group of a Zarr store (directory or ``.zip``), read-only."""
    if not path.exists():
        raise StoreError(f"{path}: no such file or directory")
    zstore = ZipStore(path, mode="r") if path.is_file() and zipfile.is_zipfile(path) else LocalStore(path, read_only=True)
    try:
        try:
            root = zarr.open_group(zstore, mode="r")
        except (zarr.errors.BaseZarrError, ValueError, OSError) as exc:
            raise StoreError(f"{path}: not a Zarr group ({type(exc).__name__}: {exc})") from None
        yield root
    finally:
        zstore.close()


def _member(root: zarr.Group, path: Path, name: str) -> Any:
    """``root[name]``, or a StoreError naming the store and the missing or unreadable member."""
    try:
        return root[name]
    except KeyError:
        raise StoreError(f"{path}: not a diffusion_policy store (no {name!r})") from None
    except (zarr.errors.BaseZarrError, ValueError) as exc:  # e.g. a codec numcodecs does not know
        raise StoreError(f"{path}: cannot read {name!r} ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class _ForeignLayout:
    """A diffusion_policy store mapped to our features (see the module docstring)."""

    arrays: dict[str, Any]  # data/<key> arrays (zarr), by feature name
    features: dict[str, FeatureSpec]
    obs_keys: tuple[str, ...]
    episode_ends: np.ndarray
    exported: dict[str, Any]  # our root attributes when the store is a robot_rl export, else {}


def _foreign_layout(root: zarr.Group, path: Path) -> _ForeignLayout:
    if root.attrs.get("format") == FORMAT:
        raise StoreError(f"{path}: already a robot_rl episode store; use `robot-rl data merge` or `filter` to copy it")
    data = _member(root, path, "data")
    if not isinstance(data, zarr.Group):
        raise StoreError(f"{path}: not a diffusion_policy store ('data' is not a group)")
    ends_array = _numeric(_member(root, path, "meta/episode_ends"), path, kinds="iu")
    arrays = {name: _numeric(_member(root, path, f"data/{name}"), path) for name in sorted(data.array_keys())}
    if "action" not in arrays:
        raise StoreError(f"{path}: no data/action array (data has {sorted(arrays)})")
    ends = np.asarray(read_rows(path, ends_array, slice(None), episode_store=False), dtype=np.int64)
    if ends.ndim != 1 or not len(ends):
        raise StoreError(f"{path}: meta/episode_ends must list at least one episode end, got shape {ends.shape}")
    lengths = np.diff(ends, prepend=0)
    if np.any(lengths <= 0):
        raise StoreError(f"{path}: meta/episode_ends must be strictly increasing and positive "
                         f"(episode {int(np.argmax(lengths <= 0))} is empty)")
    short = {name: array.shape[0] for name, array in arrays.items() if array.shape[0] < ends[-1]}
    if short:
        raise StoreError(f"{path}: arrays shorter than the last episode end {int(ends[-1])}: {short}")
    exported = root.attrs.get(EXPORT_ATTRS_KEY, {})
    exported = exported if isinstance(exported, dict) and exported.get("format") == FORMAT else {}
    labels = exported.get("features", {})
    features = {name: FeatureSpec(array.dtype, array.shape[1:], labels.get(name, {}).get("names"))
                for name, array in arrays.items()}
    if np.dtype(features["action"].dtype).kind == "b":
        raise InvalidDataError(f"{path}: data/action must be numeric, got {features['action'].dtype}")
    features["action"] = FeatureSpec("float32", features["action"].shape, features["action"].names)
    for name, spec in (("reward", FeatureSpec("float32")), ("terminated", FeatureSpec("bool"))):
        if name in features and features[name].shape != ():
            raise StoreError(f"{path}: data/{name} must hold one value per step, got shape {features[name].shape}")
        features[name] = spec
    obs_keys = tuple(exported.get("obs_keys", [name for name in arrays if name not in TRANSITION_FEATURES]))
    return _ForeignLayout(arrays, features, obs_keys, ends, exported)


# dtype kinds an episode store takes: bool, signed and unsigned integers, floats
NUMERIC_KINDS = "biuf"


def _numeric(array: Any, path: Path, kinds: str = NUMERIC_KINDS) -> Any:
    """``array`` if its dtype is of one of ``kinds``, else an :class:`InvalidDataError` naming it."""
    if not isinstance(array, zarr.Array):
        raise StoreError(f"{path}: {array.path} is a group, expected an array")
    if array.dtype.kind not in kinds:
        names = {"b": "bool", "i": "int", "u": "uint", "f": "float"}
        raise InvalidDataError(f"{path}: {array.path} has dtype {array.dtype}, which an episode store cannot "
                               f"hold (expected {'/'.join(names[k] for k in kinds)} numbers)")
    return array


def _check_finite(values: np.ndarray, what: str, first_step: int, path: Path) -> None:
    """Raise :class:`InvalidDataError` naming ``what`` and the step of the first NaN/inf in
    ``values`` (a float array whose row 0 is step ``first_step``)."""
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), values.shape)
        where = (first_step + int(index[0]), *map(int, index[1:]))
        raise InvalidDataError(f"{path}: {what} holds {values[index]} at index {list(where)} (step {where[0]}), "
                               f"the first non-finite value; pass allow_nonfinite=True (--allow-nonfinite) "
                               f"to import it anyway")


def _episode_table(meta: zarr.Group, name: str, n: int, path: Path) -> np.ndarray | None:
    """``meta/<name>`` when present (it must have one row per episode), else None."""
    if name not in meta:
        return None
    values = read_rows(path, _numeric(meta[name], path), slice(None), episode_store=False)
    if len(values) != n:
        raise StoreError(f"{path}: meta/{name} has {len(values)} rows for {n} episodes")
    return values


def _foreign_blocks(root: zarr.Group, layout: _ForeignLayout, path: Path, source: str | None,
                    success: bool | None, task: str | None, allow_nonfinite: bool = False) -> Iterator[_Block]:
    """The episodes of a diffusion_policy store, block by block, with their table rows, cast to
    the features' dtypes and (unless ``allow_nonfinite``) checked to be finite."""
    meta, ends, n = root["meta"], layout.episode_ends, len(layout.episode_ends)
    lengths = np.diff(ends, prepend=0)
    tables = {name: _episode_table(meta, name, n, path) for name in ("success", "source", "seed", "task", "label")}
    if tables["label"] is not None and not np.isin(tables["label"], list(LABEL_NAMES)).all():
        tables["label"] = None  # someone else's meta/label: not our per-episode labels
    finals = {key: _numeric(meta[f"final_{key}"], path) for key in layout.obs_keys if f"final_{key}" in meta}
    if len(finals) != len(layout.obs_keys):
        finals = {}  # not our export: final observation = last step's observation
    if success is not None or tables["success"] is None:
        tables["success"] = np.full(n, bool(success))
    if source is not None or tables["source"] is None:
        tables["source"] = np.full(n, SOURCES[source or "human"], np.int8)
    if tables["seed"] is None:
        tables["seed"] = np.full(n, -1, np.int64)
    task_names = layout.exported.get("tasks", [])
    if task is not None or tables["task"] is None:
        episode_tasks = [task] * n
    else:
        episode_tasks = [task_names[code] if 0 <= code < len(task_names) else None for code in tables["task"].tolist()]
    def read(array: zarr.Array, rows: slice) -> np.ndarray:
        return read_rows(path, array, rows, episode_store=False)

    for block in episode_blocks(lengths, BLOCK_STEPS):
        first, last = int(block[0]), int(block[-1]) + 1
        start, stop = int(ends[first] - lengths[first]), int(ends[last - 1])
        # Cast here, not in the store, so that a float64 too large for float32 is caught as inf.
        with np.errstate(over="ignore"):
            steps = {name: read(array, slice(start, stop)).astype(layout.features[name].dtype, copy=False)
                     for name, array in layout.arrays.items()}
        steps.setdefault("reward", np.zeros(stop - start, np.float32))
        steps.setdefault("terminated", np.zeros(stop - start, bool))
        last_steps = ends[first:last] - 1 - start
        final_obs = ({key: read(array, slice(first, last)) for key, array in finals.items()} if finals
                     else {key: steps[key][last_steps] for key in layout.obs_keys})
        if not allow_nonfinite:
            for name, values in steps.items():
                _check_finite(values, f"data/{name}", start, path)
            for key, values in final_obs.items():
                _check_finite(values, f"meta/final_{key} (per episode)", first, path)
        yield _Block(steps, final_obs, lengths[first:last], tables["success"][first:last],
                     tables["source"][first:last], tables["seed"][first:last], episode_tasks[first:last],
                     None if tables["label"] is None else tables["label"][first:last])


def import_diffusion_policy(path: PathLike, out: PathLike, source: str | None = None, success: bool | None = None,
                            control_hz: float | None = None, task: str | None = None,
                            allow_nonfinite: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Convert the diffusion_policy store at ``path`` (Zarr v2 or v3 directory, or ``.zip``)
    into a new episode store ``out``; see the module docstring for the mapping.

    ``source``/``success``/``task`` apply to every episode (defaults: the store's robot_rl tables
    if it is our export, else ``human``, False and none). ``control_hz`` is required unless the
    store is our export.

    Raises :class:`~robot_rl.data.schema.InvalidDataError` (naming the array, and for NaN/inf the
    first bad step) for an array that is not bool/integer/float, or a non-finite float value
    unless ``allow_nonfinite``; nothing is written at ``out`` then.
    """
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {sorted(SOURCES)}")
    path = Path(path)
    with _open_foreign_group(path) as root:
        layout = _foreign_layout(root, path)
        attrs = {key: value for key, value in layout.exported.items() if key not in RESERVED_ATTRS}
        if control_hz is not None:
            attrs["control_hz"] = control_hz
        if "control_hz" not in attrs:
            raise StoreError(f"{path}: the store does not record its control rate; pass it (--control-hz HZ)")
        attrs["imported_from"] = {"path": str(path.resolve()), "layout": "diffusion_policy"}
        n = len(layout.episode_ends)
        with (_staged_outputs(out) as (staged,),
              EpisodeStore.create(staged, layout.features, layout.obs_keys, attrs) as target):
            blocks = _foreign_blocks(root, layout, path, source, success, task, allow_nonfinite)
            _write_blocks(target, blocks, _Counter(n, progress))
            return {**_summary(Path(out), target), "features": list(layout.features)}
