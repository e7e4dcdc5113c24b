"""RAM tier of the replay: preallocated numpy rings sampled into torch batches.

``ReplayBuffer`` keeps the most recent steps in a ring of ``capacity`` preallocated steps (the
float32 low-dim observations and the action packed as columns of one matrix, so a single gather
serves them all; images and other dtypes in arrays of their own). Eviction is FIFO with
whole-episode granularity: adding an episode first
drops the oldest episodes until it fits, so every stored step belongs to a complete episode and
its n-step window and final observation are always available. Final observations (the
observation after an episode's last action) live in a per-episode ring that grows on demand.

Sampling is uniform over stored steps and fully vectorised: one ``(B, n)`` index matrix gives the
n-step return (truncated at the episode end), ``next_obs`` is the observation ``n'`` steps later
or the episode's final observation when the episode ends within ``n`` steps, and
``discount = γ^{n'} · (1 − terminated)`` where ``terminated`` is that of the window's last step.
A batch made with ``one_step=True`` also carries the 1-step fields (``reward_1``, ``next_obs_1``,
``discount_1``) of the same transitions, for learners that regress on both (DDPGfD).
:mod:`robot_rl.data.samplers` draws the learner's minibatches from these buffers (uniform,
prioritised, or a mixture of several at fixed per-source counts); :mod:`robot_rl.data.hindsight`
relabels goals at sample time through :meth:`ReplayBuffer.episode_bounds`,
:meth:`ReplayBuffer.next_observations` and the ``relabelled`` targets of :meth:`ReplayBuffer.gather`.

Not thread-safe: add and sample from one thread (the training loop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from math import prod

import numpy as np
import torch

from robot_rl.data.schema import INTERVENTION
from robot_rl.data.store import (
    TRANSITION_FEATURES,
    EpisodeStore,
    FeatureSpec,
    episode_blocks,
    transition_specs,
)


@dataclass
class Batch:
    """A minibatch of transitions (CPU tensors unless moved with :meth:`to`).

    ``obs``/``next_obs``: key → (B, ...) tensors in the stored dtype (images stay uint8);
    ``action`` (B, A) float32; ``reward`` (B,) float32 n-step discounted return;
    ``discount`` (B,) float32 = γ^{n'} · (1 − terminated), to multiply the bootstrap value.
    The float32 low-dim observations and the action of a CPU batch are column views of one
    (B, D) matrix (so ``torch.cat`` of the low-dim observations is cheap).

    Optional fields (``None`` unless the sampler provides them):
    ``reward_1``/``next_obs_1``/``discount_1``: the same transitions' 1-step target fields
    (``empty_batch(one_step=True)``); ``indices`` (B,) int64 ids to hand back with new
    priorities, ``weights`` (B,) float32 importance weights and ``is_demo`` (B,) bool
    (:class:`~robot_rl.data.prioritized.PrioritizedReplayBuffer`).
    """

    obs: dict[str, torch.Tensor]
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    discount: torch.Tensor
    reward_1: torch.Tensor | None = None
    next_obs_1: dict[str, torch.Tensor] | None = None
    discount_1: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    is_demo: torch.Tensor | None = None
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)  # numpy views to fill

    def __len__(self) -> int:
        return len(self.reward)

    def to(self, device: str | torch.device, non_blocking: bool = True) -> Batch:
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def rows(self, rows: slice) -> Batch:
        """Rows ``rows`` of every field, as views (e.g. the rows one mixture source produced)."""
        return self._map(lambda tensor: tensor[rows])

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """A batch of ``fn`` applied to every tensor (``None`` fields stay ``None``)."""
        Field = torch.Tensor | dict[str, torch.Tensor] | None

        def apply(value: Field) -> Field:
            if isinstance(value, dict):
                return {k: fn(v) for k, v in value.items()}
            return None if value is None else fn(value)

        return Batch(**{f.name: apply(getattr(self, f.name)) for f in fields(self) if f.name != "_arrays"})


class _Layout:
    """Where sampled features live: float32 low-dim observations and the action are columns of
    one packed matrix (one gather serves them all); other observations (images, other dtypes)
    each have their own array."""

    def __init__(self, specs: Mapping[str, FeatureSpec], obs_keys: Sequence[str]) -> None:
        self.obs_keys = tuple(obs_keys)
        self.separate = tuple(key for key in obs_keys if specs[key].is_image or specs[key].dtype != "float32")
        self.packed: dict[str, tuple[slice, tuple[int, ...]]] = {}
        width = 0
        for key in (*(key for key in obs_keys if key not in self.separate), "action"):
            size = prod(specs[key].shape)
            self.packed[key] = (slice(width, width + size), specs[key].shape)
            width += size
        self.width = width
        self.specs = specs

    def empty_batch(self, batch_size: int, one_step: bool = False) -> Batch:
        """Uninitialised arrays for a batch and a :class:`Batch` of tensor views of them;
        ``one_step`` adds the 1-step target fields (the "_1" arrays)."""
        suffixes = ("", "_1") if one_step else ("",)
        sides = ("obs", *(f"next_obs{suffix}" for suffix in suffixes))
        arrays = {side: np.empty((batch_size, self.width), np.float32) for side in sides}
        for suffix in suffixes:
            arrays[f"reward{suffix}"] = np.empty(batch_size, np.float32)
            arrays[f"discount{suffix}"] = np.empty(batch_size, np.float32)
        for key in self.separate:
            spec = self.specs[key]
            # One block for all sides: glibc's malloc serves a freed block this large again from
            # its heap, so fresh batches of images do not pay page faults on every sample.
            block = np.empty((len(sides), batch_size, *spec.shape), spec.dtype)
            arrays.update({f"{side}/{key}": images for side, images in zip(sides, block)})

        def observation(side: str) -> dict[str, torch.Tensor]:
            return {key: torch.from_numpy(arrays[f"{side}/{key}"]) if key in self.separate
                    else self.column(arrays[side], key) for key in self.obs_keys}

        targets = {f"{name}{suffix}": torch.from_numpy(arrays[f"{name}{suffix}"])
                   for suffix in suffixes for name in ("reward", "discount")}
        return Batch(obs=observation("obs"), action=self.column(arrays["obs"], "action"),
                     **{f"next_obs{suffix}": observation(f"next_obs{suffix}") for suffix in suffixes},
                     **targets, _arrays=arrays)

    def column(self, packed: np.ndarray, key: str) -> torch.Tensor:
        """Feature ``key`` of a packed (B, D) matrix as a tensor sharing its memory."""
        columns, shape = self.packed[key]
        view = packed[:, columns.start] if shape == () else packed[:, columns]
        if len(shape) > 1:
            view = view.reshape(len(packed), *shape)  # splits contiguous columns: always a view
        return torch.from_numpy(view)


class ReplayBuffer:
    """A ring of the most recent ``capacity`` steps (whole episodes), sampled into :class:`Batch`.

    ``features`` must contain every obs key plus ``action`` (float32), ``reward`` (float32,
    shape ()) and ``terminated`` (bool, shape ()); with the optional ``intervention`` feature the
    buffer also keeps each step's intervention flag (:meth:`intervened`; False for episodes added
    without it); other features are ignored. Arrays are allocated up front (``np.zeros``: the OS
    maps pages as they are first written).
    """

    def __init__(self, features: Mapping[str, FeatureSpec], obs_keys: Sequence[str], capacity: int,
                 device: str | torch.device = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 step, got {capacity}")
        self.obs_keys = tuple(obs_keys)
        missing = [key for key in (*self.obs_keys, *TRANSITION_FEATURES) if key not in features]
        if missing:
            raise ValueError(f"ReplayBuffer needs features {missing} (have {sorted(features)})")
        for name, want in transition_specs(features["action"].shape).items():
            have = features[name]
            if (have.dtype, have.shape) != (want.dtype, want.shape):
                raise ValueError(f"feature {name!r} must be {want.dtype} with shape {want.shape}, "
                                 f"got {have.dtype} {have.shape}")
        self.specs: dict[str, FeatureSpec] = {key: features[key] for key in (*self.obs_keys, *TRANSITION_FEATURES)}
        self._layout = _Layout(self.specs, self.obs_keys)
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self._packed = np.zeros((capacity, self._layout.width), np.float32)
        self._separate = {key: np.zeros((capacity, *self.specs[key].shape), self.specs[key].dtype)
                          for key in self._layout.separate}
        self._reward = np.zeros(capacity, np.float32)
        self._terminated = np.zeros(capacity, bool)
        self._intervention = np.zeros(capacity, bool) if INTERVENTION in features else None
        self._step_episode = np.zeros(capacity, np.int64)  # absolute episode id of each ring slot
        self._remaining = np.zeros(capacity, np.int64)  # steps from this one to its episode's end (≥ 1)
        self._elapsed = np.zeros(capacity, np.int64)  # steps from its episode's first step to this one
        self._start = 0  # absolute index of the oldest stored step
        self._end = 0  # absolute index one past the newest stored step
        self._first_episode = 0  # absolute id of the oldest stored episode
        self._next_episode = 0
        self._episode_capacity = 64
        self._episode_end = np.zeros(self._episode_capacity, np.int64)  # absolute exclusive end step
        self._final_packed = np.zeros((self._episode_capacity, self._layout.width), np.float32)
        self._final_separate = {key: np.zeros((self._episode_capacity, *ring.shape[1:]), ring.dtype)
                                for key, ring in self._separate.items()}

    # ------------------------------------------------------------------ filling
    @classmethod
    def from_store(cls, store: EpisodeStore, capacity: int | None = None, obs_keys: Sequence[str] | None = None,
                   device: str | torch.device = "cpu", block_steps: int = 65536) -> ReplayBuffer:
        """A buffer holding the most recent committed episodes of ``store`` that fit ``capacity``
        (default: all of them), loaded in blocks of about ``block_steps`` steps."""
        obs_keys = store.obs_keys if obs_keys is None else tuple(obs_keys)
        table = store.episodes
        capacity = max(1, store.n_steps) if capacity is None else capacity
        buffer = cls(store.features, obs_keys, capacity, device)
        fits = np.cumsum(table["length"][::-1]) <= capacity
        first = len(fits) - int(np.count_nonzero(fits))
        names = list(buffer.specs) + ([INTERVENTION] if buffer.tracks_interventions else [])
        for block in episode_blocks(table["length"][first:], block_steps):
            episodes = first + block
            steps = store.load(names, episodes)
            finals = store.final_obs(episodes)
            offsets = np.concatenate(([0], np.cumsum(table["length"][episodes])))
            for i in range(len(episodes)):
                part = slice(offsets[i], offsets[i + 1])
                buffer.add_episode({name: array[part] for name, array in steps.items()},
                                   {key: final[i] for key, final in finals.items()})
        return buffer

    def add_episode(self, steps: Mapping[str, np.ndarray], final_obs: Mapping[str, np.ndarray]) -> None:
        """Copy a whole episode in (``steps``: feature → (T, ...); extra features are ignored),
        evicting the oldest episodes as needed."""
        missing = [name for name in self.specs if name not in steps]
        missing += [f"final_obs[{key!r}]" for key in self.obs_keys if key not in final_obs]
        if missing:
            raise ValueError(f"add_episode: missing {missing}")
        length = len(steps["action"])
        if length < 1:
            raise ValueError("add_episode: the episode has no steps")
        if length > self.capacity:
            raise ValueError(f"add_episode: an episode of {length} steps does not fit a buffer of {self.capacity}")
        for name, spec in self.specs.items():
            shape = np.shape(steps[name])
            if shape != (length, *spec.shape):
                raise ValueError(f"add_episode: feature {name!r} has shape {shape}, expected {(length, *spec.shape)}")
        while self._end + length - self._start > self.capacity:
            self._start = int(self._episode_end[self._first_episode % self._episode_capacity])
            self._first_episode += 1
        if self._next_episode - self._first_episode == self._episode_capacity:
            self._grow_episodes()
        episode = self._next_episode
        first = self._end % self.capacity
        for key, (columns, _) in self._layout.packed.items():
            _write_ring(self._packed[:, columns], first, np.reshape(steps[key], (length, -1)))
        for key, ring in self._separate.items():
            _write_ring(ring, first, steps[key])
        _write_ring(self._reward, first, steps["reward"])
        _write_ring(self._terminated, first, steps["terminated"])
        if self._intervention is not None:
            flags = steps[INTERVENTION] if INTERVENTION in steps else np.zeros(length, bool)
            _write_ring(self._intervention, first, flags)
        _write_ring(self._step_episode, first, np.full(length, episode))
        _write_ring(self._remaining, first, np.arange(length, 0, -1))
        _write_ring(self._elapsed, first, np.arange(length))
        slot = episode % self._episode_capacity
        self._end += length
        self._episode_end[slot] = self._end
        for key, (columns, _) in self._layout.packed.items():
            if key != "action":
                self._final_packed[slot, columns] = np.reshape(final_obs[key], -1)
        for key, final in self._final_separate.items():
            final[slot] = final_obs[key]
        self._next_episode += 1

    def _grow_episodes(self) -> None:
        """Double the per-episode ring, re-slotting live episodes (slot = id mod capacity)."""
        old, new = self._episode_capacity, 2 * self._episode_capacity
        ids = np.arange(self._first_episode, self._next_episode)

        def regrow(table: np.ndarray) -> np.ndarray:
            grown = np.zeros((new, *table.shape[1:]), table.dtype)
            grown[ids % new] = table[ids % old]
            return grown

        self._episode_end = regrow(self._episode_end)
        self._final_packed = regrow(self._final_packed)
        self._final_separate = {key: regrow(final) for key, final in self._final_separate.items()}
        self._episode_capacity = new

    @property
    def tracks_interventions(self) -> bool:
        """Whether the buffer keeps per-step intervention flags (its features had ``intervention``)."""
        return self._intervention is not None

    def intervened(self, steps: np.ndarray | None = None) -> np.ndarray:
        """Intervention flags of the steps at absolute indices ``steps`` (default: every stored
        step, oldest first); all False for a buffer that does not track them."""
        steps = np.arange(self._start, self._end) if steps is None else np.asarray(steps)
        if self._intervention is None:
            return np.zeros(steps.shape, bool)
        return self._intervention[steps % self.capacity]

    # ------------------------------------------------------------------ sampling
    def __len__(self) -> int:
        """Stored steps."""
        return self._end - self._start

    @property
    def n_episodes(self) -> int:
        return self._next_episode - self._first_episode

    @property
    def step_range(self) -> tuple[int, int]:
        """Absolute indices ``[first, end)`` of the stored steps (a step's ring slot is its
        index mod ``capacity``; indices keep growing as episodes are added)."""
        return self._start, self._end

    def empty_batch(self, batch_size: int, one_step: bool = False) -> Batch:
        """An uninitialised CPU batch laid out for this buffer's samples (for ``sample(out=…)``);
        ``one_step`` adds the 1-step fields ``reward_1``, ``next_obs_1``, ``discount_1``."""
        return self._layout.empty_batch(batch_size, one_step)

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int = 1, gamma: float = 0.99,
               out: Batch | None = None, one_step: bool = False) -> Batch:
        """``batch_size`` transitions drawn uniformly from the stored steps.

        ``one_step`` also fills the 1-step fields next to the n-step ones. ``out`` (from
        :meth:`empty_batch`) is filled in place instead of allocating a new batch; this saves
        the page faults of fresh image tensors, but the previous contents are lost.
        The batch is moved to the buffer's device before it is returned.
        """
        batch = self.empty_batch(batch_size, one_step) if out is None else out
        if len(batch) != batch_size:
            raise ValueError(f"out holds {len(batch)} transitions, batch_size is {batch_size}")
        if one_step and batch.reward_1 is None:
            raise ValueError("one_step: out has no 1-step fields (make it with empty_batch(..., one_step=True))")
        self.fill(batch, 0, batch_size, rng, n_step, gamma)
        return batch if self.device.type == "cpu" else batch.to(self.device)

    def fill(self, batch: Batch, start: int, count: int, rng: np.random.Generator, n_step: int, gamma: float) -> None:
        """Write ``count`` uniformly sampled transitions into rows ``[start, start + count)`` of
        ``batch`` (a batch from :meth:`empty_batch`)."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer")
        self.gather(batch, start, rng.integers(self._start, self._end, size=count), n_step, gamma)

    def episode_bounds(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Absolute indices ``(first, end)`` of the episode of each step in ``steps`` (absolute
        indices within :attr:`step_range`): its first step and one past its last."""
        here = np.asarray(steps) % self.capacity
        return steps - self._elapsed[here], steps + self._remaining[here]

    def next_observations(self, steps: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Observation entries ``keys`` after the action of each step in ``steps`` (absolute
        indices within :attr:`step_range`): the next step's observation, or the episode's final
        observation after its last step. key → new ``(len(steps), *shape)`` array."""
        unknown = [key for key in keys if key not in self.obs_keys]
        if unknown:
            raise KeyError(f"next_observations: {unknown} are not observation keys of this buffer")
        here = np.asarray(steps) % self.capacity
        there = (here + 1) % self.capacity
        at_end = np.flatnonzero(self._remaining[here] == 1)
        final_slot = self._step_episode[here[at_end]] % self._episode_capacity

        def after(ring: np.ndarray, finals: np.ndarray) -> np.ndarray:
            value = ring[there]
            value[at_end] = finals[final_slot]
            return value

        values: dict[str, np.ndarray] = {}
        packed = [key for key in keys if key not in self._separate]
        if packed:  # one gather of whole packed rows serves every packed key
            rows = after(self._packed, self._final_packed)
            for key in packed:
                values[key] = rows[:, self._layout.packed[key][0]].reshape(len(there), *self.specs[key].shape)
        for key in keys:
            if key in self._separate:
                values[key] = after(self._separate[key], self._final_separate[key])
        return values

    def gather(self, batch: Batch, start: int, steps: np.ndarray, n_step: int, gamma: float,
               relabelled: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Write the transitions at absolute step indices ``steps`` (within :attr:`step_range`)
        into rows ``[start, start + len(steps))`` of ``batch`` (a batch from :meth:`empty_batch`):
        observation and action, the n-step target fields and, if the batch has them, the 1-step ones.

        ``relabelled = (rewards, terminated)``, two ``(len(steps), n_step)`` arrays, replaces the
        stored reward and terminated flag of the ``k``-th step of every window (hindsight
        relabelling; entries past the episode's end are ignored); a window then also ends at its
        first terminated step. Observations are copied as stored either way."""
        if n_step < 1:
            raise ValueError(f"n_step must be at least 1, got {n_step}")
        if not batch._arrays:
            raise ValueError("can only fill a CPU batch made by empty_batch()")
        arrays, rows = batch._arrays, slice(start, start + len(steps))
        here = steps % self.capacity  # ring slots
        np.take(self._packed, here, axis=0, out=arrays["obs"][rows], mode="clip")
        for key, ring in self._separate.items():
            np.take(ring, here, axis=0, out=arrays[f"obs/{key}"][rows], mode="clip")
        self._write_targets(arrays, "", rows, here, n_step, gamma, relabelled)
        if "reward_1" in arrays:
            first = None if relabelled is None else (relabelled[0][:, :1], relabelled[1][:, :1])
            self._write_targets(arrays, "_1", rows, here, 1, gamma, first)

    def _write_targets(self, arrays: dict[str, np.ndarray], suffix: str, rows: slice, here: np.ndarray,
                       n_step: int, gamma: float, relabelled: tuple[np.ndarray, np.ndarray] | None) -> None:
        """``reward{suffix}``, ``discount{suffix}`` and ``next_obs{suffix}`` of the n-step windows
        starting at ring slots ``here``, truncated at their episode's end (one ``(B, n)`` gather)
        and, with ``relabelled`` rewards and terminations, at their first terminated step."""
        capacity = self.capacity
        powers = gamma ** np.arange(n_step + 1)
        offsets = np.arange(n_step)
        remaining = self._remaining[here]
        n_valid = np.minimum(remaining, n_step)  # n' ∈ [1, n]: steps until the window leaves the episode
        if relabelled is None:
            # Stored episodes terminate at their last step only, so the window's last step says it.
            if n_step == 1:
                arrays[f"reward{suffix}"][rows] = self._reward[here]
            else:
                rewards = self._reward[(here[:, None] + offsets) % capacity]  # (B, n); past the end: masked
                arrays[f"reward{suffix}"][rows] = np.where(offsets < n_valid[:, None], rewards, 0.0) @ powers[:-1]
            terminated = self._terminated[(here + n_valid - 1) % capacity]
        else:
            rewards, ends = relabelled
            ends = ends[:, :n_step] & (offsets < n_valid[:, None])
            terminated = ends.any(axis=1)
            n_valid = np.where(terminated, ends.argmax(axis=1) + 1, n_valid)  # the first terminated step ends it
            arrays[f"reward{suffix}"][rows] = np.where(offsets < n_valid[:, None], rewards[:, :n_step], 0.0) @ powers[:-1]
        arrays[f"discount{suffix}"][rows] = powers[n_valid] * ~terminated
        there = (here + n_valid) % capacity
        at_end = np.flatnonzero(n_valid == remaining)  # next_obs is the episode's final observation
        final_slot = self._step_episode[here[at_end]] % self._episode_capacity
        next_rows = arrays[f"next_obs{suffix}"][rows]
        np.take(self._packed, there, axis=0, out=next_rows, mode="clip")
        next_rows[at_end] = self._final_packed[final_slot]
        for key, ring in self._separate.items():
            next_rows = arrays[f"next_obs{suffix}/{key}"][rows]
            np.take(ring, there, axis=0, out=next_rows, mode="clip")
            next_rows[at_end] = self._final_separate[key][final_slot]


def _write_ring(ring: np.ndarray, first: int, values: np.ndarray) -> None:
    """``ring[first:first + len(values)] = values``, wrapping around the end of ``ring``."""
    head = min(len(values), len(ring) - first)
    ring[first: first + head] = values[:head]
    ring[: len(values) - head] = values[head:]
