"""Record episodes of an action source (scripted expert, teleoperation, policy) into a store.

An :class:`ActionSource` is anything with a ``source`` name, ``reset()`` and ``act(obs)``: the
scripted experts (:class:`ScriptedSource`), and later a keyboard, gamepad, SpaceMouse or a ROS 2
``Joy`` topic. :class:`EpisodeRecorder` drives one in an env and writes every episode to an
:class:`~robot_rl.data.EpisodeStore`, which makes recording crash-safe (a crash loses at most
the episode in flight) and lets a recording append to an existing dataset::

    env = make_arm_env("reach")
    with open_recording_store("demos.zarr", env) as store:
        EpisodeRecorder(env, store, ScriptedSource(env)).record(episodes=20)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robot_rl.config import to_dict
from robot_rl.data.compat import check_spec
from robot_rl.data.store import SOURCES, EpisodeStore, features_from_spaces

Observation = Mapping[str, np.ndarray]


class ActionSource(Protocol):
    """Where the actions of a recorded episode come from.

    ``source`` is the name stored with every episode: ``"scripted"``, ``"human"``,
    ``"intervention"`` or ``"policy"`` (see :data:`robot_rl.data.store.SOURCES`).
    """

    source: str

    def reset(self) -> None:
        """Start a new episode (called right after ``env.reset``)."""

    def act(self, observation: Observation) -> np.ndarray | None:
        """The action for ``observation`` (in the env's action space), or ``None`` to end the
        episode here (e.g. the operator pressed "done"); the steps so far are kept."""


class ScriptedSource:
    """The task's scripted expert (:mod:`robot_rl.sim.experts`) as an :class:`ActionSource`."""

    source = "scripted"

    def __init__(self, env: Any) -> None:
        """Raises ValueError if the env's actions are not ``ee_delta`` (the experts act in tool space)."""
        from robot_rl.sim.experts import make_expert

        self._expert = make_expert(env)

    def reset(self) -> None:
        self._expert.reset()

    def act(self, observation: Observation) -> np.ndarray:
        return self._expert.act(observation)


@dataclass(frozen=True)
class EpisodeOutcome:
    """What happened in one recorded episode."""

    seed: int
    steps: int
    success: bool  # the env's ``is_success`` after the last step
    total_reward: float
    kept: bool  # written to the store (False: dropped by ``successful_only``, or no steps)


@dataclass(frozen=True)
class RecordingSummary:
    episodes_run: int
    episodes_recorded: int
    successes: int  # among the episodes run
    first_seed: int

    def to_json(self) -> dict[str, int]:
        return {"episodes_run": self.episodes_run, "episodes_recorded": self.episodes_recorded,
                "successes": self.successes, "first_seed": self.first_seed}


def recording_attrs(env: Any) -> dict[str, Any]:
    """Root attributes of a store recorded from ``env`` (an ``ArmEnv``, possibly wrapped):
    control rate, task name, the full env config and the robot's name."""
    base = env.unwrapped
    return {"control_hz": base.config.control.control_hz, "task": base.config.task.name,
            "env": to_dict(base.config), "robot": base.robot.spec.name}


def open_recording_store(path: str | os.PathLike[str], env: Any) -> EpisodeStore:
    """Open the store at ``path`` for appending, or create it with ``env``'s features.

    An existing store must have exactly the env's features (else
    :class:`~robot_rl.data.SpecMismatchError` names every differing feature) and control rate.
    """
    features = features_from_spaces(env.observation_space, env.action_space)
    store = EpisodeStore.open_or_create(path, features, list(env.observation_space.spaces), recording_attrs(env))
    try:
        check_spec(store, env)
    except BaseException:
        store.close()
        raise
    return store


class EpisodeRecorder:
    """Runs an :class:`ActionSource` in ``env`` and appends its episodes to ``store``.

    Each episode is reset with its own seed (stored with it), its steps are the observation
    before each action, the action as executed (clipped to the action space), reward and
    ``terminated``; the observation after the last action is its final observation, and its
    success is the env's ``info["is_success"]`` after the last step. ``successful_only`` drops
    failed episodes instead of recording them with ``success=False``.
    """

    def __init__(self, env: Any, store: EpisodeStore, source: ActionSource, successful_only: bool = False) -> None:
        if source.source not in SOURCES:
            raise ValueError(f"action source name {source.source!r} is not one of {sorted(SOURCES)}")
        check_spec(store, env)
        self.env = env
        self.store = store
        self.source = source
        self.successful_only = successful_only
        self.task = env.unwrapped.config.task.name
        self._low, self._high = env.action_space.low, env.action_space.high

    def record_episode(self, seed: int) -> EpisodeOutcome:
        """Run one episode from ``env.reset(seed=seed)`` and queue it for the store (unless dropped)."""
        observation, info = self.env.reset(seed=seed)
        self.source.reset()
        steps, total_reward, done = 0, 0.0, False
        try:
            while not done:
                action = self.source.act(observation)
                if action is None:
                    break
                action = np.clip(np.asarray(action, dtype=np.float32), self._low, self._high)
                next_observation, reward, terminated, truncated, info = self.env.step(action)
                self.store.append_step({**observation, "action": action, "reward": reward, "terminated": terminated})
                observation, steps, done = next_observation, steps + 1, terminated or truncated
                total_reward += float(reward)
        except BaseException:
            self.store.discard_episode()  # never glue a broken episode's steps onto the next one
            raise
        success = bool(info.get("is_success", False))
        kept = steps > 0 and (success or not self.successful_only)
        if kept:
            self.store.end_episode(observation, success, source=self.source.source, seed=seed, task=self.task)
        else:
            self.store.discard_episode()
        return EpisodeOutcome(seed, steps, success, total_reward, kept)

    def record(self, episodes: int, first_seed: int | None = None,
               progress: Callable[[EpisodeOutcome], None] | None = None) -> RecordingSummary:
        """Run ``episodes`` episodes with seeds ``first_seed, first_seed + 1, ...`` and wait
        until every kept one is committed.

        ``first_seed`` defaults to one past the largest seed already in the store (0 for a new
        store), so appending to a dataset records new scenes. ``progress`` is called after
        every episode.
        """
        if first_seed is None:
            seeds = self.store.episodes["seed"]
            first_seed = int(seeds.max()) + 1 if len(seeds) else 0
        recorded = successes = 0
        for seed in range(first_seed, first_seed + episodes):
            outcome = self.record_episode(seed)
            recorded += outcome.kept
            successes += outcome.success
            if progress is not None:
                progress(outcome)
        self.store.flush()
        return RecordingSummary(episodes, recorded, successes, first_seed)
