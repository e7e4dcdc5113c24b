"""Any gymnasium environment for this project's learners, replay store and logs.

:func:`make_gym_env` makes the env an :class:`~robot_rl.envs.config.GymEnvConfig` describes
(``robot-rl train --env ID``): it imports ``imports`` (packages that register their ids on import,
e.g. ``gymnasium_robotics``), calls ``gymnasium.make(id, **kwargs)``, applies each of ``wrappers``
(``"module:callable"``, ``callable(env) -> env``) in order, and wraps the result in
:class:`GymAdapter`, which gives the learners what they take from the arm:

* **observations**: a ``Dict`` of float32 vectors. A ``Box`` observation becomes
  ``Dict(state=...)``; a ``Dict`` of ``Box`` es (one level, e.g. gymnasium-robotics'
  ``observation`` / ``achieved_goal`` / ``desired_goal``) keeps its keys. Real-number boxes of any
  shape are cast to float32; the learners' encoder concatenates the keys in sorted order, as it
  does for the arm's goal observations (:class:`~robot_rl.envs.GoalObservation`).
* **actions**: a ``Box`` in ``[-1, 1]``. A ``Box`` with finite bounds is rescaled linearly
  (``gymnasium.wrappers.RescaleAction``).
* **non-finite observations or rewards** raise
  :class:`~robot_rl.envs.arm_env.NonFiniteStateError`, as the arm does for a non-finite state.
* **success**: ``info["is_success"]`` is passed on when the env gives it;
  :attr:`GymAdapter.reports_success` says whether it has. Runs then report success rates;
  otherwise only returns (:func:`robot_rl.training.rollout.episode_summary`).

Anything else is refused before training with an :class:`UnsupportedEnvError` (a
:class:`~robot_rl.config.ConfigError`) naming the space and what is supported: discrete, multi-
discrete, multi-binary, tuple or unbounded actions; observations that are not real-number boxes
or a flat dict of them; image observations (uint8 ``(H, W, C)``); an env without a time limit
(pass ``max_episode_steps`` in ``kwargs``). An unknown id lists the close matches.

A goal env (a dict observation with ``achieved_goal`` and ``desired_goal`` and a vectorised
``compute_reward(achieved_goal, desired_goal, info)``, gymnasium-robotics' convention) also
supports hindsight relabelling through :class:`GymGoalTask`. This module imports no simulator:
``gymnasium.make`` of a MuJoCo env loads MuJoCo at run time, as the env's own package decides.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.config import ConfigError, to_dict
from robot_rl.envs.arm_env import NonFiniteStateError
from robot_rl.envs.config import GymEnvConfig

#: Names the store gives the transition itself; an observation key may not take them.
RESERVED_KEYS = ("action", "reward", "terminated")
SUPPORTED = ("supported: observations that are a Box of real numbers or a Dict of such Boxes, and a Box action "
             "space with finite bounds (rescaled to [-1, 1])")


class UnsupportedEnvError(ConfigError):
    """The env's spaces (or its lack of a time limit) are not something the learners can use."""


def _import(name: str, key: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import {name!r} ({type(exc).__name__}: {exc})") from None


def _wrapper(spec: str, key: str) -> Callable[[gym.Env], Any]:
    """``"module:attr.path"`` → the callable it names."""
    module_name, _, path = spec.partition(":")
    target: Any = _import(module_name, key)
    for part in path.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{key}: {spec!r} not found: {getattr(target, '__name__', target)!r} has no "
                              f"attribute {part!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{key}: {spec!r} is a {type(target).__name__}, not a callable env -> env")
    return target


def _unknown_id(env_id: str, exc: Exception) -> ConfigError:
    ids = sorted(gym.registry)
    close = difflib.get_close_matches(env_id, ids, n=5, cutoff=0.6)
    if not close:  # e.g. "pendulum": compare without case and versions too
        lowered = {i.lower(): i for i in ids}
        close = [lowered[m] for m in difflib.get_close_matches(env_id.lower(), list(lowered), n=5, cutoff=0.5)]
    hint = f"; close matches: {', '.join(close)}" if close else "; no registered id is close (a package may need " \
                                                                "--env-import to register its ids)"
    return ConfigError(f"env.gym.id: unknown gymnasium env {env_id!r} ({exc}){hint}")


def make_gym_env(config: GymEnvConfig, render_mode: str | None = None) -> GymAdapter:
    """The adapted env ``config`` describes (see the module docstring); configuration problems
    (an import that fails, an unknown id, a wrapper not found, unsupported spaces) are
    :class:`~robot_rl.config.ConfigError` s naming the setting."""
    if not config.id:
        raise ConfigError("env.gym.id: empty; set a gymnasium env id (e.g. Pendulum-v1)")
    for index, name in enumerate(config.imports):
        _import(name, f"env.gym.imports[{index}]")
    wrappers = [_wrapper(spec, f"env.gym.wrappers[{index}]") for index, spec in enumerate(config.wrappers)]
    kwargs = dict(config.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(config.id, **kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound) as exc:
        raise _unknown_id(config.id, exc) from None
    except ModuleNotFoundError as exc:  # "module:Id" ids import their module
        raise ConfigError(f"env.gym.id: {config.id!r}: {exc}") from None
    except Exception as exc:  # e.g. a keyword the env does not take, a missing dependency, a model that fails
        raise ConfigError(f"env.gym: gymnasium.make({config.id!r}, **{config.kwargs}) failed "
                          f"({type(exc).__name__}: {exc})") from exc  # --debug shows where
    try:
        for spec, wrap in zip(config.wrappers, wrappers):
            wrapped = wrap(env)
            if not isinstance(wrapped, gym.Env):
                raise ConfigError(f"env.gym.wrappers: {spec!r} returned a {type(wrapped).__name__}, "
                                  f"not a gymnasium env")
            env = wrapped
        return GymAdapter(env, config)
    except BaseException:
        env.close()
        raise


def _time_limit(env: gym.Env) -> int | None:
    """``max_episode_steps`` of the outermost ``TimeLimit`` in the wrapper chain, or None."""
    while True:
        if isinstance(env, gym.wrappers.TimeLimit):
            return int(env._max_episode_steps)
        if not isinstance(env, gym.Wrapper):
            return None
        env = env.env


def _control_hz(env: gym.Env) -> float:
    """Steps per second of simulated time: ``1 / dt`` where the env has it (MuJoCo envs,
    classic control), else its ``render_fps``, else 1 (the store needs a positive rate)."""
    dt = getattr(env.unwrapped, "dt", None)
    if isinstance(dt, (int, float)) and not isinstance(dt, bool) and np.isfinite(dt) and dt > 0:
        return float(1.0 / dt)
    fps = env.metadata.get("render_fps")
    if isinstance(fps, (int, float)) and not isinstance(fps, bool) and np.isfinite(fps) and fps > 0:
        return float(fps)
    return 1.0


def _observation_boxes(space: spaces.Space, env_id: str) -> dict[str, spaces.Box]:
    """The env's observation as named Boxes (``state`` for a plain Box), checked."""
    boxes = {"state": space} if isinstance(space, spaces.Box) else dict(space.spaces) \
        if isinstance(space, spaces.Dict) else None
    if boxes is None:
        raise UnsupportedEnvError(f"{env_id}: observation space {space} is not supported; {SUPPORTED}")
    for key, box in boxes.items():
        where = "observation space" if isinstance(space, spaces.Box) else f"observation {key!r}"
        if not isinstance(box, spaces.Box) or box.dtype.kind not in "iuf":
            raise UnsupportedEnvError(f"{env_id}: {where} {box} is not supported (a nested or non-Box entry); "
                                      f"{SUPPORTED}")
        if box.dtype == np.uint8 and len(box.shape) == 3:
            raise UnsupportedEnvError(f"{env_id}: {where} {box} is an image; the learners take vector "
                                      f"observations only (pixel learners are not there yet); {SUPPORTED}")
        if key in RESERVED_KEYS or key.startswith("image_") or not key or "/" in key or key.startswith("."):
            raise UnsupportedEnvError(f"{env_id}: observation key {key!r} is not usable (reserved names: "
                                      f"{', '.join(RESERVED_KEYS)}, image_*; no '/' or leading '.')")
    return boxes


def _float32_box(box: spaces.Box) -> spaces.Box:
    with np.errstate(over="ignore"):  # float64 bounds beyond float32 become ±inf
        low, high = box.low.astype(np.float32), box.high.astype(np.float32)
    return spaces.Box(low, high, shape=box.shape, dtype=np.float32)


def _check_action_space(space: spaces.Space, env_id: str) -> None:
    if not isinstance(space, spaces.Box) or space.dtype.kind != "f":
        raise UnsupportedEnvError(f"{env_id}: action space {space} is not supported: the learners need continuous "
                                  f"actions; {SUPPORTED}")
    if len(space.shape) != 1:
        raise UnsupportedEnvError(f"{env_id}: action space {space} is not supported: actions must be one vector; "
                                  f"{SUPPORTED}")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise UnsupportedEnvError(f"{env_id}: action space {space} is not supported: unbounded actions cannot be "
                                  f"rescaled to [-1, 1]; {SUPPORTED} (or add a --wrapper that bounds them)")


class GymAdapter(gym.Wrapper):
    """A gymnasium env as the learners, replay store and logs expect it (module docstring).

    ``env_id``, ``control_hz`` and ``max_episode_steps`` describe it; :attr:`recording_info` is
    what a store recorded from it keeps in its root attributes (the data layer reads it through
    ``get_wrapper_attr``); ``goal_task`` is a :class:`GymGoalTask` for goal envs, else None.
    """

    def __init__(self, env: gym.Env, config: GymEnvConfig) -> None:
        env_id = config.id
        boxes = _observation_boxes(env.observation_space, env_id)
        _check_action_space(env.action_space, env_id)
        max_steps = _time_limit(env)
        if max_steps is None:
            raise UnsupportedEnvError(f"{env_id}: the env has no time limit, so its episodes may never end; pass "
                                      f"max_episode_steps, e.g. --env-kwargs '{{\"max_episode_steps\": 200}}'")
        inner_space = env.action_space
        if not (np.allclose(inner_space.low, -1.0) and np.allclose(inner_space.high, 1.0)):
            with warnings.catch_warnings():  # gymnasium's float64 arithmetic on float32 bounds
                warnings.filterwarnings("ignore", message=".*precision lowered by casting")
                env = gym.wrappers.RescaleAction(env, -1.0, 1.0)
        super().__init__(env)
        self.env_id, self.max_episode_steps = env_id, max_steps
        self.control_hz = _control_hz(env)
        self._plain_box = isinstance(self.env.observation_space, spaces.Box)
        self._action_dtype = inner_space.dtype
        self.observation_space = spaces.Dict({key: _float32_box(box) for key, box in boxes.items()})
        self.action_space = spaces.Box(-1.0, 1.0, shape=inner_space.shape, dtype=np.float32)
        self.recording_info = {"task": env_id, "control_hz": self.control_hz, "env": {"gym": to_dict(config)},
                               "robot": "gymnasium"}
        self.reports_success = False  # True once an info has carried "is_success"
        self.goal_task: GymGoalTask | None = None
        self.goal_problem = ""  # why a goal-shaped env cannot be relabelled
        try:
            self.goal_task = GymGoalTask.of(self)
        except ConfigError as exc:
            self.goal_problem = str(exc)
        self._steps = 0

    def _observation(self, observation: Any) -> dict[str, np.ndarray]:
        items = {"state": observation} if self._plain_box else observation
        converted = {}
        for key in self.observation_space.spaces:
            value = np.asarray(items[key], dtype=np.float32)
            if not np.all(np.isfinite(value)):
                raise NonFiniteStateError(f"{self.env_id}: observation {key!r} is not finite at step {self._steps}: "
                                          f"{value}")
            converted[key] = value
        return converted

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self._steps = 0
        return self._observation(observation), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=self._action_dtype))
        self._steps += 1
        reward = float(reward)
        if not np.isfinite(reward):
            raise NonFiniteStateError(f"{self.env_id}: reward is not finite at step {self._steps}: {reward}")
        if "is_success" in info:
            self.reports_success = True
        return self._observation(observation), reward, bool(terminated), bool(truncated), info


class GymGoalTask:
    """The goal functions hindsight relabelling needs (:class:`robot_rl.data.hindsight.GoalTask`)
    for a goal env: ``achieved_goal`` and ``desired_goal`` observation entries and the env's own
    vectorised ``compute_reward(achieved_goal, desired_goal, info)`` (gymnasium-robotics'
    convention; called with one empty info dict per row, as Stable-Baselines3's HER does without
    ``copy_info_dict``). Termination under a new goal is the env's ``compute_terminated`` where it
    has one (broadcast over the batch), else False.
    """

    goal_keys = ("desired_goal",)
    context_keys: tuple[str, ...] = ()
    is_goal_task = True

    def __init__(self, name: str, compute_reward: Callable[..., Any],
                 compute_terminated: Callable[..., Any] | None, goal_shape: tuple[int, ...]) -> None:
        self.name, self.goal_shape = name, goal_shape
        self._reward, self._terminated = compute_reward, compute_terminated
        probe = np.zeros((2, *goal_shape), np.float32)
        try:
            shape = np.shape(self.compute_reward(probe, probe, {}))
        except Exception as exc:  # noqa: BLE001 (any failure means: not usable for relabelling)
            raise ConfigError(f"her.strategy: {name}.compute_reward failed on a batch of goals "
                              f"({type(exc).__name__}: {exc}); relabelling needs a vectorised one") from None
        if shape != (2,):
            raise ConfigError(f"her.strategy: {name}.compute_reward is not vectorised (a batch of 2 goals gave shape "
                              f"{shape}); set her.strategy: none")

    @classmethod
    def of(cls, env: GymAdapter) -> GymGoalTask | None:
        """The env's goal task; None if it has no goal entries or ``compute_reward``, a
        ConfigError if its ``compute_reward`` does not take a batch."""
        space = env.observation_space
        if not {"achieved_goal", "desired_goal"} <= set(space.spaces) or \
                space["achieved_goal"].shape != space["desired_goal"].shape:
            return None
        try:
            reward = env.env.get_wrapper_attr("compute_reward")
        except AttributeError:
            return None
        try:
            terminated = env.env.get_wrapper_attr("compute_terminated")
        except AttributeError:
            terminated = None
        return cls(env.env_id, reward, terminated, space["achieved_goal"].shape)

    def achieved_goal(self, obs: Any) -> np.ndarray:
        return np.asarray(obs["achieved_goal"])

    def desired_goal(self, obs: Any) -> np.ndarray:
        return np.asarray(obs["desired_goal"])

    def relabel_observation(self, obs: Any, goal: np.ndarray) -> dict[str, np.ndarray]:
        return {"desired_goal": np.asarray(goal, dtype=np.float32)}

    def reward_info(self, obs: Any) -> dict[str, Any]:
        return {}

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        infos = np.array([{} for _ in range(len(achieved_goal))], dtype=object)
        return np.asarray(self._reward(achieved_goal, desired_goal, infos), dtype=np.float32)

    def compute_terminated(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        rows = len(achieved_goal)
        if self._terminated is None:
            return np.zeros(rows, dtype=bool)
        infos = np.array([{} for _ in range(rows)], dtype=object)
        return np.broadcast_to(np.asarray(self._terminated(achieved_goal, desired_goal, infos), dtype=bool), (rows,))


def goal_task_of(env: GymAdapter) -> GymGoalTask:
    """``env.goal_task``, or a :class:`~robot_rl.config.ConfigError` saying why hindsight
    relabelling cannot work on ``env``."""
    if env.goal_problem:
        raise ConfigError(env.goal_problem)
    if env.goal_task is None:
        raise ConfigError(f"her.strategy: {env.env_id} is no goal env (relabelling needs a Dict observation with "
                          f"achieved_goal and desired_goal and a vectorised env.compute_reward(achieved_goal, "
                          f"desired_goal, info); its observation space is {env.observation_space}); "
                          f"set her.strategy: none")
    return env.goal_task


def gym_goal_task(config: GymEnvConfig) -> GymGoalTask:
    """The goal functions of the goal env ``config`` describes, for hindsight relabelling; a
    :class:`~robot_rl.config.ConfigError` if it is no goal env."""
    env = make_gym_env(config)
    try:
        return goal_task_of(env)
    finally:
        env.close()  # compute_reward is the env's pure function of the goals
