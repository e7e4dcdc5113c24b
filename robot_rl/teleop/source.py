"""A teleop device as an action source for rollouts (recording, ``robot-rl teleop``).

:class:`TeleopActionSource` has the :class:`~robot_rl.data.recorder.ActionSource` interface
(``source``, ``reset()``, ``act(obs)``), so :func:`~robot_rl.training.rollout.run_episode` runs
a person exactly like a scripted expert or a policy::

    env = make_arm_env("pick")
    config = TeleopConfig(device="gamepad")
    with closing(make_teleop_device(config)) as device:
        source = TeleopActionSource(device, config, env)
        rollout = run_episode(env, source, seed=0)
        print(source.outcome)   # "success" / "failure" / "reset" if a label ended it

Each ``act`` waits for the next control tick (a person acts in real time, and a simulated arm
would otherwise run as fast as the CPU allows; over ROS 2 ``env.step`` itself takes a control
period and the wait is nil), polls the device once (never blocking), passes the command through
:class:`~robot_rl.teleop.safety.TeleopSafety` and turns the result into an env action with
:class:`TwistToAction`. The action then goes through ``env.step`` like a policy's: the env's
clipping and workspace box and, over ROS 2, the bridge's safety supervisor (limits, rate limits,
e-stop, watchdogs) all apply; nothing here talks to the arm directly. ``act`` must be called
once per control step (as ``run_episode`` does): the deadman, silence and gripper rate rules
are evaluated per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from robot_rl.geometry import quat_to_matrix
from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import TeleopCommand, TeleopDevice
from robot_rl.teleop.safety import SafeCommand, TeleopEvent, TeleopSafety


class TwistToAction:
    """Twist (m/s, rad/s) + gripper command → an ``ee_delta`` action of an
    :class:`~robot_rl.envs.arm_env.ArmEnv` (possibly wrapped).

    The translation is scaled by the control period to a tool displacement and divided by
    ``control.position_scale``; with ``control.use_yaw`` the rotation about the base z axis is
    scaled likewise by ``yaw_scale``. Both are clipped to ``[-1, 1]`` (the env's fastest motion),
    never wrapped. Roll and pitch have no action: the env keeps the tool pointing down. A twist
    in the ``tool`` frame is first rotated into the base frame with the observed tool orientation
    ``ee_quat`` (w, x, y, z).

    Raises:
        ValueError: the env's actions are not ``ee_delta`` (joint-space actions have no twist).
    """

    def __init__(self, env: Any, frame: str = "base") -> None:
        base = env.unwrapped
        control = base.config.control
        if control.action_mode != "ee_delta":
            raise ValueError(f"teleoperation needs control.action_mode = ee_delta (tool-space actions), "
                             f"got {control.action_mode!r}")
        if frame not in ("base", "tool"):
            raise ValueError(f"frame must be 'base' or 'tool', got {frame!r}")
        self.frame = frame
        self.dt = float(base.dt)
        self.position_scale = control.position_scale
        self.yaw_scale = control.yaw_scale if control.use_yaw else None
        self.action_size = int(np.prod(env.action_space.shape))
        self.gripper_max_width = float(env.observation_space["gripper_width"].high[0])

    def gripper_of(self, observation: Mapping[str, np.ndarray]) -> float:
        """The measured gripper opening in command units (−1 fully open … +1 closed)."""
        width = float(np.asarray(observation["gripper_width"]).reshape(-1)[0])
        return float(np.clip(1.0 - 2.0 * width / self.gripper_max_width, -1.0, 1.0))

    def __call__(self, twist: np.ndarray, gripper: float, ee_quat: np.ndarray) -> np.ndarray:
        linear, angular = np.asarray(twist[:3], dtype=np.float64), np.asarray(twist[3:], dtype=np.float64)
        if self.frame == "tool":
            rotation = quat_to_matrix(np.asarray(ee_quat, dtype=np.float64))
            linear, angular = rotation @ linear, rotation @ angular
        action = np.zeros(self.action_size, dtype=np.float32)
        action[:3] = np.clip(linear * self.dt / self.position_scale, -1.0, 1.0)
        if self.yaw_scale is not None:
            action[3] = np.clip(angular[2] * self.dt / self.yaw_scale, -1.0, 1.0) if self.yaw_scale > 0 else 0.0
        action[-1] = np.clip(gripper, -1.0, 1.0)
        return action


class TeleopActionSource:
    """A :class:`~robot_rl.teleop.device.TeleopDevice` as an action source (module docstring).

    ``act`` returns None (ending the episode, its steps kept) when the operator presses a label
    button; :attr:`outcome` then says which (``success``, ``failure`` or ``reset``). After each
    ``act``, :attr:`last` is the step's :class:`SafeCommand` (``engaged`` tells whether the person
    drove that step, the basis for intervention flags). ``clock``: the time base of device
    timestamps (``time.monotonic``; a test may pass simulated time). ``pace``: wait for the next
    control tick in ``act`` (off for simulated time; default: on, unless the device says
    ``realtime = False``, as a scripted operator does). A ``poll`` that raises counts as a
    disconnected device (the arm holds) rather than ending the episode.

    Devices that watch the run (the ``virtual`` operator, :mod:`robot_rl.teleop.virtual`) may
    have three optional methods, called when present: ``attach(env)`` once here,
    ``episode_start()`` at every :meth:`reset`, and ``observe(observation, proposed)`` before
    every poll, with the action the policy proposes for this step (None when no policy runs).
    """

    source = "human"

    def __init__(self, device: TeleopDevice, config: TeleopConfig, env: Any, *,
                 clock: Callable[[], float] = time.monotonic, pace: bool | None = None,
                 on_event: Callable[[TeleopEvent], None] | None = None) -> None:
        self.device = device
        self.config = config
        self.to_action = TwistToAction(env, config.frame)
        self.safety = TeleopSafety(config, self.to_action.dt, on_event=on_event)
        self._clock = clock
        self._pace = bool(getattr(device, "realtime", True)) if pace is None else pace
        self._next_tick: float | None = None
        self.outcome: str | None = None
        self.last: SafeCommand | None = None
        attach = getattr(device, "attach", None)
        if callable(attach):
            attach(env)
        self._observe = getattr(device, "observe", None)

    def reset(self) -> None:
        """A new episode: clears the outcome, re-arms the safety filter, and drops label presses
        made before the episode started (a late "success" must not end the next episode)."""
        self.safety.reset()
        self.outcome = None
        self.last = None
        self._next_tick = None
        episode_start = getattr(self.device, "episode_start", None)
        if callable(episode_start):
            episode_start()
        self._poll()

    def act(self, observation: Mapping[str, np.ndarray], proposed: np.ndarray | None = None) -> np.ndarray | None:
        """The operator's action for this step (a hold when the device does not drive), or None
        when a label button ended the episode. ``proposed``: the action the policy would take,
        for devices that watch it (see the class docstring)."""
        if self._pace:
            self._wait_for_tick()
        if callable(self._observe):
            self._observe(observation, proposed)
        safe = self.safety.filter(self._poll(), self._clock(), self.to_action.gripper_of(observation))
        self.last = safe
        if safe.label is not None:
            self.outcome = safe.label
            return None
        return self.to_action(safe.twist, safe.gripper, observation["ee_quat"])

    def _wait_for_tick(self) -> None:
        """Sleep until one control period after the previous tick; after falling behind (a slow
        step, a pause between episodes) restart from now instead of rushing to catch up."""
        now = time.monotonic()
        if self._next_tick is None or now - self._next_tick > self.to_action.dt:
            self._next_tick = now
        elif self._next_tick > now:
            time.sleep(self._next_tick - now)
        self._next_tick += self.to_action.dt

    def _poll(self) -> TeleopCommand:
        try:
            return self.device.poll()
        except Exception as exc:  # noqa: BLE001 - any device failure means: hold, report, carry on
            return TeleopCommand.idle(self._clock(), connected=False,
                                      fault=f"poll failed: {type(exc).__name__}: {exc}")
