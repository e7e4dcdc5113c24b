"""Action sources and recording stores: what :mod:`robot_rl.training.recorder` needs from data.

An :class:`ActionSource` is anything with a ``source`` name, ``reset()`` and ``act(obs)``: the
scripted experts (:class:`ScriptedSource`), the training run's policy, and later a keyboard,
gamepad, SpaceMouse or a ROS 2 ``Joy`` topic. :func:`open_recording_store` opens (or creates)
the :class:`~robot_rl.data.EpisodeStore` an env's episodes go to, with the root attributes of
:func:`recording_attrs` (the one place they are made). The episodes themselves are run by
:func:`robot_rl.training.rollout.run_episode`; :class:`robot_rl.training.recorder.EpisodeRecorder`
records a source's episodes::

    env = make_arm_env("reach")
    with open_recording_store("demos.zarr", env) as store:
        EpisodeRecorder(env, store, ScriptedSource(env)).record(episodes=20)"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from robot_rl.config import to_dict
from robot_rl.data.compat import adapted_env_info, check_spec
from robot_rl.data.schema import INTERVENTION, RANDOMIZATION, StoreError, with_interventions
from robot_rl.data.store import EpisodeStore, FeatureSpec, features_from_spaces

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
    """The task's scripted expert (:mod:`robot_rl.envs.experts`) as an :class:`ActionSource`."""

    source = "scripted"

    def __init__(self, env: Any) -> None:
        """Raises ValueError if the env's actions are not ``ee_delta`` (the experts act in tool space)."""
        from robot_rl.envs.experts import make_expert

        self._expert = make_expert(env)

    def reset(self) -> None:
        self._expert.reset()

    def act(self, observation: Observation) -> np.ndarray:
        return self._expert.act(observation)


class RandomSource:
    """Uniformly random actions from a seeded copy of the env's action space, stored with source
    ``policy`` (a random policy): failed episodes, e.g. the negatives of a success classifier."""

    source = "policy"

    def __init__(self, env: Any, seed: int = 0) -> None:
        import copy

        self._space = copy.deepcopy(env.action_space)
        self._space.seed(seed)

    def reset(self) -> None:
        """Random actions carry no episode state."""

    def act(self, observation: Observation) -> np.ndarray:
        return self._space.sample()


def recording_attrs(env: Any) -> dict[str, Any]:
    """Root attributes of a store recorded from ``env`` (an ``ArmEnv``, possibly wrapped):
    control rate, task name, the full env config and the robot's name. For another gymnasium env
    (:class:`robot_rl.envs.gym_env.GymAdapter`): its rate, its id as the task, its
    ``env.gym`` config and ``"gymnasium"``."""
    info = adapted_env_info(env)
    if info is not None:
        return dict(info)
    base = env.unwrapped
    return {"control_hz": base.config.control.control_hz, "task": base.config.task.name,
            "env": to_dict(base.config), "robot": base.robot.spec.name}


def episode_parameter_features(env: Any) -> dict[str, FeatureSpec]:
    """The store feature of ``env``'s per-episode domain-randomisation parameters
    (:class:`robot_rl.envs.randomization.DomainRandomization`; every step of an episode carries
    its episode's vector, which compresses to almost nothing), or none."""
    from robot_rl.envs.randomization import find_randomization

    randomization = find_randomization(env)
    return {} if randomization is None else {RANDOMIZATION: FeatureSpec(**randomization.feature_spec())}


def episode_parameters(env: Any) -> dict[str, np.ndarray]:
    """This episode's values of :func:`episode_parameter_features` (call after ``reset``)."""
    from robot_rl.envs.randomization import find_randomization

    randomization = find_randomization(env)
    return {} if randomization is None else {RANDOMIZATION: randomization.parameter_vector()}


def open_recording_store(path: str | os.PathLike[str], env: Any, interventions: bool = False) -> EpisodeStore:
    """Open the store at ``path`` for appending, or create it with ``env``'s features (plus the
    per-step ``intervention`` flag when ``interventions``: a run with a teleop device).

    An existing store must have exactly the env's features (else
    :class:`~robot_rl.data.SpecMismatchError` names every differing feature) and control rate;
    it may have or lack the ``intervention`` flag (steps appended without it get False), except
    that ``interventions`` needs a store that has it (:class:`~robot_rl.data.StoreError`).
    """
    features = {**features_from_spaces(env.observation_space, env.action_space), **episode_parameter_features(env)}
    if interventions:
        features = with_interventions(features)
    if os.path.exists(path):
        store = EpisodeStore.open(path, "a")
    else:
        store = EpisodeStore.create(path, features, list(env.observation_space.spaces), recording_attrs(env))
    try:
        check_spec(store, env)
        if interventions and INTERVENTION not in store.features:
            raise StoreError(f"{path}: this store has no per-step {INTERVENTION!r} flag (it was written without a "
                             f"teleop device), so interventions cannot be recorded into it; use a new store or run "
                             f"directory")
    except BaseException:
        store.close()
        raise
    return store
