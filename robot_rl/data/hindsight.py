"""Hindsight experience replay (Andrychowicz et al. 2017) as a :class:`~robot_rl.data.samplers.Sampler`.

:class:`HindsightSampler` draws uniformly from one :class:`~robot_rl.data.replay.ReplayBuffer` (the
online RAM tier, or demonstrations loaded from a Zarr store) and, in a share ``ratio`` of every
batch's rows, replaces the desired goal by a goal the same episode achieved:

* ``future``: achieved after a step ``j`` drawn uniformly from ``[t, T − 1]`` (``t`` the sampled
  step, ``T`` the episode's length), i.e. in one of the observations ``t + 1 … T`` that follow it
  (``T``: the final observation), so the transition's own outcome is a possible goal, as in the
  paper and Stable-Baselines3;
* ``final``: achieved in the episode's final observation;
* ``episode``: achieved after a step drawn uniformly from the whole episode.

Goals never come from another episode: steps are drawn within the episode's bounds, and the
observation after an episode's last step is its stored final observation. Nothing is written to
the buffer or to any store: relabelling happens on the batch, at sample time.

A relabelled row gets the new goal in ``obs`` and in every next observation (``next_obs``,
``next_obs_1``), via the task's :meth:`relabel_observation`, which also recomputes the entries
derived from the goal (e.g. ``goal_offset``). The reward and the terminated flag of every step of
its n-step window are recomputed with the task's vectorised ``compute_reward`` and
``compute_terminated`` from the observation after that step (its achieved goal and reward
context), so the targets are those the env would have produced for that goal. All of it is
numpy over the relabelled rows at once; there is no Python loop over samples.

HER's ``k`` (relabelled goals per real one) is ``ratio = k / (k + 1)``: k = 4 is 0.8. The number of
relabelled rows is ``ratio · count`` rounded stochastically (exact whenever it is an integer).
Relabelled rows come after the others within the rows a fill writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch

from robot_rl.data.replay import Batch, ReplayBuffer
from robot_rl.data.samplers import Sampler

Strategy = Literal["future", "final", "episode"]
STRATEGIES: tuple[str, ...] = ("future", "final", "episode")


class GoalTask(Protocol):
    """What relabelling needs of a task (``robot_rl.envs.tasks.Task`` of a goal task provides it,
    in numpy only; observations are key → (B, …) arrays)."""

    name: str
    goal_keys: tuple[str, ...]  # observation entries that depend on the desired goal
    context_keys: tuple[str, ...]  # observation entries its dense reward needs besides the goals

    def achieved_goal(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def relabel_observation(self, obs: Mapping[str, np.ndarray], goal: np.ndarray) -> dict[str, np.ndarray]: ...

    def reward_info(self, obs: Mapping[str, np.ndarray]) -> dict[str, Any]: ...

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray: ...

    def compute_terminated(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray: ...


class HindsightSampler(Sampler):
    """Uniform draws from ``buffer`` with a share ``ratio`` of each batch's rows relabelled with
    goals chosen by ``strategy`` (see the module docstring). ``task`` supplies the goal functions;
    the buffer's observation keys must include the task's goal and reward-context entries and
    whatever its achieved goal is read from (``ValueError`` naming the missing ones otherwise).
    Can be a :class:`~robot_rl.data.samplers.MixtureSampler` component."""

    def __init__(self, buffer: ReplayBuffer, task: GoalTask, strategy: Strategy = "future", ratio: float = 0.8,
                 n_step: int = 1, gamma: float = 0.99) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"HER strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"HER ratio must be in [0, 1] (k relabelled goals per real one: k / (k + 1)), got {ratio}")
        if not task.goal_keys:
            raise ValueError(f"task {task.name!r} has no goal to relabel")
        self.buffer, self.task, self.strategy, self.ratio = buffer, task, strategy, float(ratio)
        self.n_step, self.gamma = n_step, gamma
        self.device = buffer.device
        # What the task may read to get an achieved goal and a reward context: every vector entry.
        self._input_keys = tuple(key for key in buffer.obs_keys if not buffer.specs[key].is_image)
        missing = [key for key in (*task.goal_keys, *task.context_keys) if key not in buffer.obs_keys]
        probe = {key: np.zeros((1, *buffer.specs[key].shape), buffer.specs[key].dtype) for key in self._input_keys}
        try:
            task.achieved_goal(probe)
        except KeyError as exc:
            missing.append(str(exc.args[0]))
        if missing:
            raise ValueError(f"HindsightSampler: the buffer's observations lack {sorted(set(missing))}, which task "
                             f"{task.name!r} needs to relabel goals (buffer keys: {list(buffer.obs_keys)})")

    # ------------------------------------------------------------------ Sampler
    def __len__(self) -> int:
        return len(self.buffer)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        batch = self.buffer.empty_batch(batch_size)
        self.fill(batch, 0, batch_size, rng)
        return batch if self.device.type == "cpu" else batch.to(self.device)

    @property
    def features(self) -> tuple[tuple[str, ...], Mapping[str, Any]]:
        return self.buffer.obs_keys, self.buffer.specs

    def empty_batch(self, batch_size: int) -> Batch:
        return self.buffer.empty_batch(batch_size)

    def fill(self, batch: Batch, start: int, count: int, rng: np.random.Generator) -> None:
        """``count`` uniform draws into rows ``[start, start + count)``; the last
        :meth:`relabel_count` of them relabelled."""
        if len(self.buffer) == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer")
        steps = rng.integers(*self.buffer.step_range, size=count)
        relabel = self.relabel_count(count, rng)
        keep = count - relabel
        if keep:
            self.buffer.gather(batch, start, steps[:keep], self.n_step, self.gamma)
        if relabel:
            self._gather_relabelled(batch, start + keep, steps[keep:], rng)

    def state_dict(self) -> dict[str, Any]:
        return {}  # draws depend only on the caller's generator

    # ------------------------------------------------------------------ relabelling
    def relabel_count(self, count: int, rng: np.random.Generator) -> int:
        """Rows of ``count`` to relabel: ``ratio · count``, the fraction rounded up with its own
        probability (so the expected share is exactly ``ratio``)."""
        exact = self.ratio * count
        whole = int(np.floor(exact + 1e-9))
        return whole + int(rng.random() < exact - whole)

    def _goal_steps(self, steps: np.ndarray, first: np.ndarray, end: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
        """For each step (of the episode ``[first, end)``), the step whose outcome (the
        observation after it) becomes its goal."""
        if self.strategy == "future":
            return rng.integers(steps, end)
        if self.strategy == "final":
            return end - 1
        return rng.integers(first, end)

    def _gather_relabelled(self, batch: Batch, start: int, steps: np.ndarray, rng: np.random.Generator) -> None:
        task, n_step = self.task, self.n_step
        first, end = self.buffer.episode_bounds(steps)
        goal_steps = self._goal_steps(steps, first, end, rng)
        goals = task.achieved_goal(self.buffer.next_observations(goal_steps, self._input_keys))
        # Reward and termination of every step of each n-step window under the new goal; steps
        # past the episode's end are clamped to its last one (gather ignores them).
        window = np.minimum(steps[:, None] + np.arange(n_step), end[:, None] - 1).ravel()
        after = self.buffer.next_observations(window, self._input_keys)
        achieved, desired, info = task.achieved_goal(after), np.repeat(goals, n_step, axis=0), task.reward_info(after)
        shape = (len(steps), n_step)
        rewards = np.asarray(task.compute_reward(achieved, desired, info), np.float32).reshape(shape)
        terminated = np.asarray(task.compute_terminated(achieved, desired, info), bool).reshape(shape)
        self.buffer.gather(batch, start, steps, n_step, self.gamma, relabelled=(rewards, terminated))
        rows = slice(start, start + len(steps))
        for side in (batch.obs, batch.next_obs, batch.next_obs_1):
            if side is not None:
                self._set_goal(side, rows, goals)

    def _set_goal(self, obs: Mapping[str, torch.Tensor], rows: slice, goals: np.ndarray) -> None:
        """Rewrite the goal-dependent entries of ``obs[rows]`` in place (CPU tensors viewing the
        batch's numpy arrays) for ``goals``."""
        views = {key: obs[key][rows].numpy() for key in obs}
        for key, value in self.task.relabel_observation(views, goals).items():
            views[key][...] = value
