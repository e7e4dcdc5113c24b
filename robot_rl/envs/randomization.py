"""Per-episode domain randomisation as a gymnasium wrapper (:class:`DomainRandomization`).

At every ``reset`` the wrapper draws the episode's parameters uniformly from the explicit ranges
of a :class:`~robot_rl.envs.config.RandomizationConfig` (``env.randomization`` in YAML) and:

* **physics and looks** (friction, object mass/size, joint damping/armature, controller gains,
  camera pose/FOV, light, object colour): passes them to the robot's
  :meth:`~robot_rl.robot.RandomizableRobot.set_dynamics` *before* the inner reset, so objects
  settle under the new physics. The robot restores its nominal model first, so episodes never
  compound. A range off its nominal point (``[1, 1]``, or ``[0, 0]`` for ``camera_position``)
  on a robot without the capability (a physical arm) is a :class:`~robot_rl.config.ConfigError`
  at construction;
* **action latency** of ``k`` control periods: a FIFO, so the action given at step ``t`` is
  executed at step ``t + k``; the first ``k`` steps of an episode execute the *hold action*:
  zero on every motion dimension and, for ``ArmEnv``, the gripper command that keeps the
  finger opening measured at reset (zeros for other envs, or ``hold_action`` if given);
* **action noise**: per-step Gaussian noise of the episode's standard deviation added to the
  executed action, which is then clipped to the action space;
* **control-rate jitter** ``j`` (a fraction of the period): every step lasts ``dt · (1 + u)``,
  ``u ~ U(−j, j)``, through ``ArmEnv.set_next_step_duration`` (a non-zero range on an env
  without it is a ``ConfigError``);
* **observation noise and bias** on the configured keys (by default every proprioceptive key:
  ``joint_pos``, ``joint_vel``, ``ee_pos``, ``ee_quat``, ``gripper_width``; task keys only if
  configured; images never): a per-episode bias drawn element-wise plus per-step Gaussian
  noise, clipped to the observation space (``ee_quat`` is not renormalised).

Reward and success stay the env's own, computed from the true state. ``info["executed_action"]``
gives the action the env executed at each step.

Reproducibility: the draws (and the per-step noise) come from a generator seeded from the reset
seed, separate from the env's own generator; a reset without a seed continues the stream.

Logging: :attr:`DomainRandomization.episode_parameters` (name → float, a fixed set of names per
config, in :attr:`~DomainRandomization.parameter_names` order) is also given as
``info["randomization"]`` at reset; :meth:`~DomainRandomization.parameter_vector` and
:meth:`~DomainRandomization.feature_spec` give a float32 vector and its
``{"dtype", "shape", "names"}`` description, e.g. for a per-step store feature ``randomization``.
:func:`find_randomization` finds the wrapper in a wrapper stack.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.config import ConfigError
from robot_rl.envs.arm_env import checked_action
from robot_rl.envs.config import ROBOT_RANGES, RandomizationConfig
from robot_rl.robot import RandomizableRobot

_SEED_SALT = 0x5EED_D0  # mixes the reset seed into this wrapper's own generator


def _is_image(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


class DomainRandomization(gym.Wrapper):
    """Draws an episode's randomisation at each reset and applies it (see the module docstring).

    Args:
        env: an env with a ``Dict`` observation space and a ``Box`` action space; its
            ``unwrapped.robot`` is randomised when physics/look ranges are configured.
        config: the ranges (``config.enabled`` is not consulted: ``make_arm_env`` checks it).
        hold_action: the action executed during the first ``k`` steps of latency; default: see
            the module docstring.

    Raises:
        ConfigError: physics/look ranges on a robot without ``RandomizableRobot`` (or one that
            lacks a parameter), or an observation key that is missing or an image.
    """

    def __init__(self, env: gym.Env, config: RandomizationConfig, hold_action: Sequence[float] | None = None) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Dict) or not isinstance(env.action_space, spaces.Box):
            raise TypeError("DomainRandomization needs a Dict observation space and a Box action space")
        self.config = config
        self.robot = getattr(env.unwrapped, "robot", None)
        randomizable = isinstance(self.robot, RandomizableRobot)
        accepted = self.robot.dynamics_defaults() if randomizable else {}
        self._robot_ranges: list[tuple[str, tuple[float, float]]] = []  # robot parameter → range
        for key, (names, nominal) in ROBOT_RANGES.items():
            low, high = getattr(config, key)
            off = low == high == nominal
            if not off and not randomizable:
                raise ConfigError(
                    f"randomization.{key}: {[low, high]} needs a robot that can change its physics "
                    f"(robot_rl.robot.RandomizableRobot, e.g. the MuJoCo arm); "
                    f"{type(self.robot).__name__} cannot: set it to {[nominal, nominal]}")
            missing = [name for name in names if name not in accepted]
            if not off and missing:
                raise ConfigError(f"randomization.{key}: the robot {type(self.robot).__name__} has no "
                                  f"dynamics parameter {missing[0]!r} (it has {', '.join(accepted)})")
            self._robot_ranges += [(name, (low, high)) for name in names]
        self._apply_dynamics = randomizable
        self._set_step_duration = getattr(env.unwrapped, "set_next_step_duration", None)
        if config.control_jitter[1] > 0 and self._set_step_duration is None:
            raise ConfigError(f"randomization.control_jitter: {list(config.control_jitter)} needs an env whose step "
                              f"length can vary (ArmEnv.set_next_step_duration); {type(env.unwrapped).__name__} "
                              f"has none: set it to [0, 0]")
        space = env.observation_space
        for section in ("observation_noise", "observation_bias"):
            for key in getattr(config, section):
                if key not in space.spaces:
                    raise ConfigError(f"randomization.{section}.{key}: no such observation key "
                                      f"(keys: {', '.join(space.spaces)})")
                if _is_image(space[key]):
                    raise ConfigError(f"randomization.{section}.{key}: images are never noised")
        self._noise_keys = dict(config.observation_noise)
        self._bias_keys = dict(config.observation_bias)
        names = [name for name, _ in self._robot_ranges] + ["action_latency", "action_noise", "control_jitter"]
        names += [f"obs_noise/{key}" for key in self._noise_keys]
        for key in self._bias_keys:
            size = int(np.prod(space[key].shape))
            names += [f"obs_bias/{key}[{i}]" for i in range(size)]
        self.parameter_names: tuple[str, ...] = tuple(names)
        self._hold_action = None if hold_action is None else np.asarray(hold_action, dtype=np.float64)
        if self._hold_action is not None and self._hold_action.shape != env.action_space.shape:
            raise ValueError(f"hold_action must have shape {env.action_space.shape}, got {self._hold_action.shape}")
        self._rng = np.random.default_rng()
        self._params: dict[str, float] = {}
        self._bias: dict[str, np.ndarray] = {}
        self._noise_std: dict[str, float] = {}
        self._queue: deque[np.ndarray] = deque()
        self._latency = 0
        self._action_std = 0.0
        self._jitter = 0.0

    # ------------------------------------------------------------------ logging
    @property
    def episode_parameters(self) -> dict[str, float]:
        """The current episode's parameters, name → value (empty before the first reset)."""
        return dict(self._params)

    def parameter_vector(self) -> np.ndarray:
        """:attr:`episode_parameters` as float32, in :attr:`parameter_names` order."""
        if not self._params:
            raise gym.error.ResetNeeded("call reset() before parameter_vector()")
        return np.array([self._params[name] for name in self.parameter_names], dtype=np.float32)

    def feature_spec(self) -> dict[str, Any]:
        """``{"dtype": "float32", "shape": (n,), "names": parameter_names}``: the description of
        :meth:`parameter_vector` as a store feature (``robot_rl.data.FeatureSpec(**spec)``)."""
        return {"dtype": "float32", "shape": (len(self.parameter_names),), "names": self.parameter_names}

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng([int(seed), _SEED_SALT])
        rng, config = self._rng, self.config
        params = {name: float(rng.uniform(low, high)) for name, (low, high) in self._robot_ranges}
        self._latency = int(rng.integers(config.action_latency[0], config.action_latency[1] + 1))
        self._action_std = float(rng.uniform(*config.action_noise))
        self._jitter = float(rng.uniform(*config.control_jitter))
        params["action_latency"] = float(self._latency)
        params["action_noise"] = self._action_std
        params["control_jitter"] = self._jitter
        self._noise_std = {key: float(rng.uniform(low, high)) for key, (low, high) in self._noise_keys.items()}
        params.update({f"obs_noise/{key}": std for key, std in self._noise_std.items()})
        self._bias = {}
        for key, (low, high) in self._bias_keys.items():
            shape = self.env.observation_space[key].shape
            self._bias[key] = rng.uniform(low, high, size=shape)
            params.update({f"obs_bias/{key}[{i}]": float(v) for i, v in enumerate(self._bias[key].ravel())})
        if self._apply_dynamics:
            self.robot.set_dynamics({name: params[name] for name, _ in self._robot_ranges})
        self._params = params
        obs, info = self.env.reset(seed=seed, options=options)
        hold = self._hold_action if self._hold_action is not None else self._default_hold(obs)
        self._queue = deque(hold.copy() for _ in range(self._latency))
        return self._noisy(obs), {**info, "randomization": dict(params)}

    def step(self, action):
        space = self.env.action_space
        requested = np.clip(checked_action(action, space), space.low, space.high)
        if self._latency:
            self._queue.append(requested)
            executed = self._queue.popleft()
        else:
            executed = requested
        if self._action_std > 0:
            executed = np.clip(executed + self._rng.normal(0.0, self._action_std, size=executed.shape),
                               space.low, space.high)
        executed = executed.astype(space.dtype)
        if self._jitter > 0:
            self._set_step_duration(self.env.unwrapped.dt * (1.0 + self._rng.uniform(-self._jitter, self._jitter)))
        obs, reward, terminated, truncated, info = self.env.step(executed)
        return self._noisy(obs), reward, terminated, truncated, {**info, "executed_action": executed}

    # ------------------------------------------------------------------ internals
    def _default_hold(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Zero motion; for an ``ArmEnv``, the gripper command (last entry, −1 open … +1 closed)
        that keeps the finger opening measured at reset."""
        hold = np.zeros(self.env.action_space.shape)
        spec = getattr(self.robot, "spec", None)
        if spec is not None and "gripper_width" in obs and hold.ndim == 1:
            width = float(np.asarray(obs["gripper_width"]).ravel()[0])
            hold[-1] = np.clip(1.0 - 2.0 * width / spec.gripper_max_width, -1.0, 1.0)
        return hold

    def _noisy(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs = dict(obs)
        for key in dict.fromkeys([*self._noise_keys, *self._bias_keys]):
            space = self.env.observation_space[key]
            value = np.asarray(obs[key], dtype=np.float64)
            if key in self._bias:
                value = value + self._bias[key]
            std = self._noise_std.get(key, 0.0)
            if std > 0:
                value = value + self._rng.normal(0.0, std, size=value.shape)
            obs[key] = np.clip(value, space.low, space.high).astype(space.dtype)
        return obs


def find_randomization(env: gym.Env) -> DomainRandomization | None:
    """The :class:`DomainRandomization` in ``env``'s wrapper stack, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, DomainRandomization):
            return env
        env = env.env
    return None
