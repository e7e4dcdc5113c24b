"""The ``virtual`` teleop device: a scripted operator that watches the policy and steps in the way
people do, so the intervention path of ``robot-rl train --teleop`` can be exercised and
benchmarked without a person.

It is an ordinary registered device (``teleop.device: virtual``): its commands reach the arm
through :class:`~robot_rl.teleop.safety.TeleopSafety`, :class:`~robot_rl.teleop.source.TeleopActionSource`
and the training run's intervention source exactly as a gamepad's would. What it does each step
(``observe`` is called before every poll with the observation and the action the policy proposes):

* it runs the task's scripted expert (:mod:`robot_rl.envs.experts`) on the observation, every
  step, so the expert's phase machine follows the scene whoever drives;
* it tracks a distance to the goal computed from the observation (:data:`GOAL_DISTANCES`: tool to
  cube plus cube to goal for pick, tool to cube plus the missing height for lift, ...) and calls
  the policy **stuck** when that distance has not improved by ``progress_tolerance`` for
  ``stuck_steps`` (k) steps, unless it is already within ``done_distance`` (holding a solved
  task still is not being stuck);
* it calls the policy **heading out of the workspace** when the tool target the proposed action
  asks for lies within ``workspace_margin`` of the box's side walls or ceiling (the table, the
  floor of the box, is where grasps happen, so it does not count);
* either way it takes over ``reaction_delay`` steps later, unless a whole takeover of
  ``control_steps`` would take the fraction of steps it has driven (over the whole run, this
  episode counted in full) above ``budget``; it only watches episodes that start with room for a
  whole takeover, so takeovers come early in an episode; it then holds its deadman and drives with the expert's commands as a twist (capped
  at ``linear_speed`` / ``angular_speed``, plus Gaussian noise of ``noise · linear_speed`` per
  axis) for ``control_steps`` (m) steps, and lets go (letting go as soon as the goal distance is
  small let go of a lift 2 cm below the success height, where the policy then dropped the cube). A takeover is finished, not cut short by the budget: a person who
  grabbed the controller completes the grasp, and a fraction of a demonstration teaches little. On the first step of a takeover it reports no gripper target,
  so the safety filter's pick-up rule lets its next target through (the gripper then ramps from
  where the policy left it);
* with no policy to watch (``proposed`` is None: ``robot-rl teleop``, ``robot-rl record``) it
  drives every step, a noisy scripted demonstrator through the real teleop path.

It never presses a label button and never goes silent (every command is stamped when made).
This module is core: it imports the experts and tasks (pure numpy), never the simulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from robot_rl.envs.experts import PegExpert, make_expert
from robot_rl.envs.tasks import LiftTask
from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import TeleopCommand

Observation = Mapping[str, np.ndarray]


def _norm(vector: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(vector, dtype=np.float64)))


def _lift_distance(obs: Observation, env_config: Any) -> float:
    height = LiftTask.cube_half + env_config.task.success_threshold
    return _norm(obs["ee_pos"] - obs["cube_pos"]) + max(0.0, height - float(obs["cube_pos"][2]))


def _peg_distance(obs: Observation, env_config: Any) -> float:
    tip = obs["hole_pos"] - obs["hole_offset"]
    return _norm(obs["hole_pos"] - np.array([0.0, 0.0, PegExpert.insert_depth]) - tip)


#: Task → distance (m) to the goal from an observation: what "progress" means for each task.
GOAL_DISTANCES: dict[str, Callable[[Observation, Any], float]] = {
    "reach": lambda obs, _: _norm(obs["ee_pos"] - obs["goal_pos"]),
    "push": lambda obs, _: _norm(obs["ee_pos"] - obs["cube_pos"]) + _norm((obs["cube_pos"] - obs["goal_pos"])[:2]),
    "pick": lambda obs, _: _norm(obs["ee_pos"] - obs["cube_pos"]) + _norm(obs["cube_pos"] - obs["goal_pos"]),
    "lift": _lift_distance,
    "peg": _peg_distance,
}


class VirtualOperator:
    """The ``virtual`` :class:`~robot_rl.teleop.device.TeleopDevice` (see the module docstring).
    ``clock``: the time base of command timestamps (that of the safety filter)."""

    help = ("virtual operator: takes over when the policy is stuck or heading out of the workspace "
            "(settings: teleop.virtual.*)")
    realtime = False  # a script: no need to wait for the wall clock's control ticks

    def __init__(self, config: TeleopConfig, clock: Callable[[], float] = time.monotonic) -> None:
        if config.frame != "base":
            raise ValueError(f"the virtual operator commands twists in the base frame; set frame: base "
                             f"(got {config.frame!r})")
        self.config = config
        self.settings = config.virtual
        self._clock = clock
        self._rng = np.random.default_rng(self.settings.seed)
        self._expert: Any = None
        self._episode_steps = 0  # the env's episode length, known once attached
        self._command = TeleopCommand.idle(clock())
        self.closed = False
        self.steps_seen = 0  # every observed step of the run
        self.steps_driven = 0  # the steps it drove
        self.takeovers = 0
        self.takeover_reasons: dict[str, int] = {"stuck": 0, "leaving_workspace": 0}
        self.episode_start()

    # ------------------------------------------------------------------ hooks of TeleopActionSource
    def attach(self, env: Any) -> None:
        """Learn the task, its expert, the control period and the workspace from ``env``.

        Raises:
            ValueError: the env's actions are not ``ee_delta`` or its task has no expert.
        """
        base = env.unwrapped
        self._scene = base
        self._env_config = base.config
        control = base.config.control
        task = base.config.task.name
        if task not in GOAL_DISTANCES:
            raise ValueError(f"the virtual operator knows the tasks {sorted(GOAL_DISTANCES)}, not {task!r}")
        self._expert = make_expert(env)
        self._episode_steps = int(base.config.task.max_episode_steps)
        self._distance = GOAL_DISTANCES[task]
        self._dt = float(base.dt)
        self._position_scale = control.position_scale
        self._yaw_scale = control.yaw_scale if control.use_yaw else None
        margin = self.settings.workspace_margin
        self._low = np.asarray(control.workspace_low, dtype=np.float64) + margin
        self._high = np.asarray(control.workspace_high, dtype=np.float64) - margin

    def episode_start(self) -> None:
        """A new episode: progress tracking, a pending takeover and control all start afresh."""
        if self._expert is not None:
            self._expert.reset()
        self._best = np.inf
        self._since_progress = 0
        # Like a person with limited time, it watches whole episodes: those in which a whole takeover
        # fits the budget (counting this episode's steps), so takeovers come early, when they can finish.
        self._steps_at_start = self.steps_seen
        self._on_watch = self._within_budget()
        self._pending: int | None = None  # steps until a decided takeover happens
        self._left = 0  # steps of control left
        self._first = True  # the next step it drives is the first of a takeover: no gripper target yet

    def observe(self, observation: Observation, proposed: np.ndarray | None) -> None:
        """Decide this step's command from the observation and the policy's proposed action."""
        if self._expert is None:
            raise RuntimeError("VirtualOperator.observe before attach(env): use it through TeleopActionSource")
        self.steps_seen += 1
        expert_action = self._expert.act(observation)  # every step: the phase machine follows the scene
        # it sees the scene, object poses included, whatever the policy's observation leaves out
        distance = self._distance({**observation, **self._scene.privileged_observation()}, self._env_config)
        if distance < self._best - self.settings.progress_tolerance:
            self._best, self._since_progress = distance, 0
        else:
            self._since_progress += 1
        engaged = self._decide(observation, proposed)
        if engaged:
            self.steps_driven += 1
            twist = self._twist(expert_action)
            gripper = None if self._first else float(np.clip(expert_action[-1], -1.0, 1.0))
            self._first = False
        else:
            twist, gripper = np.zeros(6), None
        self._command = TeleopCommand(twist, gripper, deadman=engaged, timestamp=self._clock())

    # ------------------------------------------------------------------ TeleopDevice
    def poll(self) -> TeleopCommand:
        return self._command

    def close(self) -> None:
        self.closed = True

    @property
    def fraction_driven(self) -> float:
        """Share of the observed steps it drove."""
        return self.steps_driven / max(1, self.steps_seen)

    # ------------------------------------------------------------------ internals
    def _decide(self, observation: Observation, proposed: np.ndarray | None) -> bool:
        """Whether it drives this step (updating the takeover state)."""
        if proposed is None:  # nobody else to watch: it is the operator
            return True
        if self._left > 0:  # driving: like a person, it finishes what it started (m steps)
            self._left -= 1
            if self._left == 0:
                self._release()
            return True
        if not self._on_watch:
            return False
        if self._pending is None:
            reason = self._trouble(observation, proposed)
            if reason is not None:
                self._pending, self._reason = self.settings.reaction_delay, reason
        if self._pending is None:
            return False
        if self._pending > 0:  # reacting
            self._pending -= 1
            return False
        self._pending = None
        if not self._within_budget():
            return False
        self.takeovers += 1
        self.takeover_reasons[self._reason] += 1
        self._left = self.settings.control_steps - 1
        self._first = True
        if self._left == 0:
            self._release()
        return True

    def _trouble(self, observation: Observation, proposed: np.ndarray) -> str | None:
        """Why the policy needs help (``stuck`` / ``leaving_workspace``), or None."""
        if self._since_progress >= self.settings.stuck_steps and self._best > self.settings.done_distance:
            return "stuck"
        step = np.clip(np.asarray(proposed, dtype=np.float64)[:3], -1.0, 1.0) * self._position_scale
        ee = np.asarray(observation["ee_pos"], dtype=np.float64)
        target = ee + step
        outward = ((target < self._low) & (step < 0)) | ((target > self._high) & (step > 0))
        outward[2] &= step[2] > 0  # the table is not a wall: grasps happen there
        return "leaving_workspace" if outward.any() else None

    def _within_budget(self) -> bool:
        """Whether a whole takeover (``control_steps``) keeps the driven share within ``budget`` once
        this episode has run its full length."""
        steps = self._steps_at_start + self._episode_steps
        return self.steps_driven + self.settings.control_steps <= self.settings.budget * steps

    def _release(self) -> None:
        """Let go; progress is judged afresh from here (the policy gets ``stuck_steps`` again)."""
        self._left = 0
        self._best, self._since_progress = np.inf, 0

    def _twist(self, action: np.ndarray) -> np.ndarray:
        """The expert's action as a twist (m/s, rad/s), capped at the configured speeds, plus noise."""
        linear = np.asarray(action[:3], dtype=np.float64) * self._position_scale / self._dt
        linear += self._rng.normal(0.0, self.settings.noise * self.config.linear_speed, 3)
        speed = _norm(linear)
        if speed > self.config.linear_speed:
            linear *= self.config.linear_speed / speed
        angular = np.zeros(3)
        if self._yaw_scale is not None:
            yaw_rate = float(action[3]) * self._yaw_scale / self._dt
            yaw_rate += float(self._rng.normal(0.0, self.settings.noise * self.config.angular_speed))
            angular[2] = np.clip(yaw_rate, -self.config.angular_speed, self.config.angular_speed)
        return np.concatenate([linear, angular])


def make_virtual_operator(config: TeleopConfig) -> VirtualOperator:
    """Factory of the ``virtual`` device kind."""
    return VirtualOperator(config)
