"""Scripted experts: state-machine controllers that solve each task from the observation.

They read privileged simulator state that ArmEnv puts in the observation (object and goal
poses) and the env config, nothing else (no MuJoCo), so recording, benchmarking and ROS 2 code
use them on any robot kind that reports those poses. They output ``ee_delta`` actions in ``[-1, 1]``: ``[dx, dy, dz, (dyaw,) gripper]``, where
``(dx, dy, dz)`` is the desired tool displacement divided by ``control.position_scale`` and
``gripper`` is −1 (open) … +1 (closed). Every expert is a proportional controller towards a
waypoint; the waypoint changes with the phase, and phases switch on observed positions (tool,
object, goal, finger opening), never on step counts alone, so an expert recovers when, e.g., the
cube slips out of the hand.

Usage::

    env = gymnasium.make("RobotRL/ArmPickCube-v0")
    expert = make_expert(env)
    obs, _ = env.reset(seed=0)
    expert.reset()
    action = expert.act(obs)

Check the success rates with ``robot-rl sim experts --episodes 100 [--set control.use_yaw=true]``.
"""

from __future__ import annotations

import abc
import enum
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from robot_rl.envs.config import ENV_IDS, EnvConfig
from robot_rl.envs.tasks import LiftTask, PickCubeTask, PushTask
from robot_rl.geometry import quat_to_matrix, wrap_angle, yaw_of_top_down

Observation = dict[str, np.ndarray]
OPEN, CLOSE = -1.0, 1.0  # gripper commands


class ScriptedExpert(abc.ABC):
    """Base class: a phase machine over waypoints plus the shared "move towards" action.

    Subclasses set ``task`` and ``initial_phase`` and implement :meth:`act`.
    """

    task: ClassVar[str]
    initial_phase: ClassVar[enum.Enum]

    def __init__(self, env_config: EnvConfig) -> None:
        control = env_config.control
        if control.action_mode != "ee_delta":
            raise ValueError(f"scripted experts output ee_delta actions, but the env uses action_mode "
                             f"{control.action_mode!r}; make the env with action_mode='ee_delta'")
        self.config = env_config
        self.position_scale = control.position_scale
        self.use_yaw = control.use_yaw
        self.yaw_scale = control.yaw_scale
        self.phase = self.initial_phase

    def reset(self) -> None:
        """Start a new episode (call after ``env.reset``)."""
        self.phase = self.initial_phase

    @abc.abstractmethod
    def act(self, observation: Observation) -> np.ndarray:
        """Action for ``observation``: float32 in ``[-1, 1]`` with the env's action shape."""

    def _move(self, observation: Observation, target: np.ndarray, gripper: float,
              max_step: float = 0.03, yaw: float = 0.0) -> np.ndarray:
        """Action moving the tool towards ``target`` (world, m) by at most ``max_step`` m this
        step, straight along the error; turning towards tool ``yaw`` (rad) when yaw is used."""
        error = np.asarray(target, dtype=float) - observation["ee_pos"]
        move = error * min(1.0, max_step / max(float(np.linalg.norm(error)), 1e-9)) / self.position_scale
        parts = [move / max(1.0, float(np.abs(move).max()))]  # in [-1, 1], direction kept
        if self.use_yaw:
            yaw_error = wrap_angle(yaw - yaw_of_top_down(observation["ee_quat"]))
            parts.append([np.clip(yaw_error / self.yaw_scale, -1.0, 1.0)])
        parts.append([gripper])
        return np.concatenate(parts).astype(np.float32)


def _horizontal_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a[:2], float) - np.asarray(b[:2], float)))


# --------------------------------------------------------------------------- reach
class ReachExpert(ScriptedExpert):
    """Reach: one phase, move the tool straight to the goal with the gripper open."""

    class Phase(enum.Enum):
        REACH = "reach"

    task = "reach"
    initial_phase = Phase.REACH

    def act(self, observation: Observation) -> np.ndarray:
        return self._move(observation, observation["goal_pos"], OPEN)


# --------------------------------------------------------------------------- push
class PushExpert(ScriptedExpert):
    """Push: with the fingers closed, push the cube along the line from the cube to the goal.

    Phases:

    * ``ABOVE``: rise straight up to ``travel_height`` (clearing the cube), then fly to above
      the pre-push point, ``standoff`` behind the cube on the side away from the goal;
    * ``DESCEND``: lower the fingers to ``push_height`` at the pre-push point;
    * ``PUSH``: track the contact point behind the cube on the current cube→goal line and lead
      it along that line by a step that shrinks near the goal; when the tool is off the line it
      backs off while re-centring instead of dragging the cube sideways. If the tool ends up
      far off the line or beside the cube, go back to ``ABOVE``;
    * ``HOLD``: the cube is on the goal: keep the tool where it stopped (a zero action would
      let it drift). If the cube leaves the goal again, start over.
    """

    class Phase(enum.Enum):
        ABOVE = "above"
        DESCEND = "descend"
        PUSH = "push"
        HOLD = "hold"

    task = "push"
    initial_phase = Phase.ABOVE
    contact_offset = PushTask.cube_half + 0.014  # + finger pad half thickness (closed fingers)
    standoff = 0.065  # pre-push point distance from the cube centre
    push_height = 0.025
    travel_height = 0.09
    push_speed = 0.02  # m per step the tool leads the contact point
    push_gain = 0.5  # lead as a fraction of the remaining distance (slows down near the goal)
    back_off_gain = 2.0  # m of back-off per m of sideways error
    done_radius = 0.01  # stop pushing once the cube is this close to the goal

    def reset(self) -> None:
        super().reset()
        self._hold = np.zeros(3)

    def act(self, observation: Observation) -> np.ndarray:
        ee, cube, goal = observation["ee_pos"], observation["cube_pos"], observation["goal_pos"]
        to_goal = goal[:2] - cube[:2]
        remaining = float(np.linalg.norm(to_goal))
        if self.phase is not self.Phase.HOLD and remaining < self.done_radius:
            self.phase, self._hold = self.Phase.HOLD, ee.astype(float)
        if self.phase is self.Phase.HOLD:
            if remaining < 2 * self.done_radius:
                return self._move(observation, self._hold, CLOSE)
            self.phase = self.Phase.ABOVE
        direction = np.array([*(to_goal / remaining), 0.0])
        contact = np.array([cube[0], cube[1], self.push_height]) - self.contact_offset * direction
        pre_push = contact - (self.standoff - self.contact_offset) * direction
        offset = ee - contact
        lateral = float(np.linalg.norm((offset - (offset @ direction) * direction)[:2]))
        if self.phase is self.Phase.PUSH and (lateral > 0.025 or offset @ direction > 0.015):
            self.phase = self.Phase.ABOVE
        if self.phase is self.Phase.ABOVE:
            above = pre_push + np.array([0.0, 0.0, self.travel_height - self.push_height])
            if _horizontal_distance(ee, above) < 0.01:
                self.phase = self.Phase.DESCEND
            elif ee[2] < self.travel_height - 0.02:
                above = np.array([ee[0], ee[1], self.travel_height])  # clear the cube first
            return self._move(observation, above, CLOSE)
        if self.phase is self.Phase.DESCEND:
            if abs(float(ee[2] - self.push_height)) < 0.008:
                self.phase = self.Phase.PUSH
            elif _horizontal_distance(ee, pre_push) > 0.02:
                self.phase = self.Phase.ABOVE  # the cube moved meanwhile
            return self._move(observation, pre_push, CLOSE)
        lead = min(self.push_speed, self.push_gain * remaining) - self.back_off_gain * lateral
        return self._move(observation, contact + lead * direction, CLOSE, max_step=0.02)


# --------------------------------------------------------------------------- pick
class PickExpert(ScriptedExpert):
    """Pick: grasp the cube from above and carry it to the goal.

    Phases:

    * ``APPROACH``: open the gripper and move above the cube (turning to the cube's yaw when
      yaw is used);
    * ``DESCEND``: lower the open fingers around the cube, tracking it sideways;
    * ``GRASP``: close the fingers in place until the opening stops shrinking;
    * ``CARRY``: lift, then move so that the *cube* (not the tool) reaches the goal, and hold
      it there. If the cube leaves the hand, start over.
    """

    class Phase(enum.Enum):
        APPROACH = "approach"
        DESCEND = "descend"
        GRASP = "grasp"
        CARRY = "carry"

    task = "pick"
    initial_phase = Phase.APPROACH
    hover = 0.07  # m above the cube centre
    grasp_depth = 0.0  # tool centre point relative to the cube centre
    lift_clearance = 0.03  # lift the cube this high before moving sideways

    def reset(self) -> None:
        super().reset()
        self._last_width = np.inf

    def _grasp_yaw(self, observation: Observation) -> float:
        """Tool yaw that puts the finger pads on two cube faces: of the cube's yaws modulo 90°,
        the one nearest the tool's yaw (so the choice does not flip near ±45°)."""
        if not self.use_yaw:
            return 0.0
        x_axis = quat_to_matrix(observation["cube_quat"].astype(float))[:, 0]
        tool_yaw = yaw_of_top_down(observation["ee_quat"])
        turn = float(np.arctan2(x_axis[1], x_axis[0])) - tool_yaw
        return tool_yaw + float((turn + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def _goal(self, observation: Observation) -> np.ndarray:
        """Where the cube's centre is to be carried."""
        return observation["goal_pos"]

    def act(self, observation: Observation) -> np.ndarray:
        ee, cube, goal = observation["ee_pos"], observation["cube_pos"], self._goal(observation)
        width = float(observation["gripper_width"][0])
        yaw = self._grasp_yaw(observation)
        grasp_point = cube + np.array([0.0, 0.0, self.grasp_depth])
        if self.phase in (self.Phase.GRASP, self.Phase.CARRY) and np.linalg.norm(ee - cube) > 0.03:
            self.phase = self.Phase.APPROACH  # lost the cube
        if self.phase is self.Phase.APPROACH:
            above = grasp_point + np.array([0.0, 0.0, self.hover])
            aligned = not self.use_yaw or abs(wrap_angle(yaw - yaw_of_top_down(observation["ee_quat"]))) < 0.05
            if np.linalg.norm(ee - above) < 0.01 and aligned and width > 0.07:
                self.phase = self.Phase.DESCEND
            return self._move(observation, above, OPEN, yaw=yaw)
        if self.phase is self.Phase.DESCEND:
            if _horizontal_distance(ee, cube) > 0.015:
                self.phase = self.Phase.APPROACH
            elif np.linalg.norm(ee - grasp_point) < 0.006:
                self.phase = self.Phase.GRASP
                self._last_width = np.inf
            return self._move(observation, grasp_point, OPEN, max_step=0.02, yaw=yaw)
        if self.phase is self.Phase.GRASP:
            if self._last_width - width < 0.0005 and width < 0.075:
                self.phase = self.Phase.CARRY
            self._last_width = width
            return self._move(observation, grasp_point, CLOSE, yaw=yaw)
        # CARRY: move the tool by the cube's error so the cube itself converges on the goal.
        target = ee + (goal - cube)
        if cube[2] < goal[2] and cube[2] < PickCubeTask.cube_half + self.lift_clearance:
            target = np.array([ee[0], ee[1], target[2]])  # lift straight up first
        return self._move(observation, target, CLOSE, max_step=0.025, yaw=yaw)


# --------------------------------------------------------------------------- lift
class LiftExpert(PickExpert):
    """Lift: the pick expert with the goal straight above the cube, ``margin`` higher than the
    success height (so the cube clears it despite sag in the hand), held there to the end."""

    task = "lift"
    margin = 0.03  # m above the success height

    def _goal(self, observation: Observation) -> np.ndarray:
        cube = observation["cube_pos"]
        height = LiftTask.cube_half + self.config.task.success_threshold + self.margin
        return np.array([cube[0], cube[1], height])


# --------------------------------------------------------------------------- peg
class PegExpert(ScriptedExpert):
    """Peg insertion with the peg already held (fingers kept closed).

    Phases:

    * ``ALIGN``: move the peg tip to ``approach_height`` above the hole's centre;
    * ``INSERT``: lower the tip straight down to ``insert_depth`` below the rim, correcting
      sideways; if the tip drifts off the hole axis before entering, go back to ``ALIGN``.
    """

    class Phase(enum.Enum):
        ALIGN = "align"
        INSERT = "insert"

    task = "peg"
    initial_phase = Phase.ALIGN
    approach_height = 0.02  # tip above the rim
    insert_depth = 0.03  # tip below the rim at the end

    def act(self, observation: Observation) -> np.ndarray:
        ee, hole = observation["ee_pos"], observation["hole_pos"]
        tip = hole - observation["hole_offset"]  # the task observes hole − peg tip
        entry = hole + np.array([0.0, 0.0, self.approach_height])
        if self.phase is self.Phase.ALIGN:
            if np.linalg.norm(tip - entry) < 0.004:
                self.phase = self.Phase.INSERT
            return self._move(observation, ee + (entry - tip), CLOSE)
        if tip[2] > hole[2] and _horizontal_distance(tip, hole) > 0.004:
            self.phase = self.Phase.ALIGN
        bottom = hole - np.array([0.0, 0.0, self.insert_depth])
        return self._move(observation, ee + (bottom - tip), CLOSE, max_step=0.01)


# --------------------------------------------------------------------------- API
EXPERTS: dict[str, type[ScriptedExpert]] = {
    cls.task: cls for cls in (ReachExpert, PushExpert, PickExpert, PegExpert, LiftExpert)
}


def make_expert(env: gym.Env) -> ScriptedExpert:
    """The scripted expert for ``env`` (an ``ArmEnv``, possibly wrapped), built from its config
    (a :class:`SeeingExpert` when the observation leaves out object poses).

    Raises:
        ValueError: if the env uses ``joint_delta`` actions (experts act in tool space).
    """
    config: EnvConfig = env.unwrapped.config
    expert = EXPERTS[config.task.name](config)
    return expert if config.observation.privileged else SeeingExpert(expert, env.unwrapped)


class SeeingExpert:
    """A scripted expert on an env whose observation leaves out object poses
    (``observation.privileged: false``): it gets them from the env, as a person demonstrating on
    a real arm sees the scene, while the recorded observation stays what the arm reports."""

    def __init__(self, expert: ScriptedExpert, env: Any) -> None:
        self.expert, self.env = expert, env

    @property
    def phase(self) -> Any:
        return self.expert.phase

    def reset(self) -> None:
        self.expert.reset()

    def act(self, observation: Observation) -> np.ndarray:
        return self.expert.act({**observation, **self.env.privileged_observation()})


def evaluate_expert(env_id_or_task: str, episodes: int, seed: int = 0, **make_kwargs) -> dict:
    """Run the task's expert for ``episodes`` episodes seeded ``seed … seed + episodes − 1``.

    ``env_id_or_task`` is a registered id (``RobotRL/ArmPush-v0``) or a task name (``push``);
    ``make_kwargs`` go to ``gymnasium.make`` (e.g. ``overrides={"control": {"use_yaw": True}}``).
    Success is ``info["is_success"]`` at the last step of each episode.
    """
    env_id = ENV_IDS.get(env_id_or_task, env_id_or_task)
    env = gym.make(env_id, **make_kwargs)
    try:
        expert = make_expert(env)
        successes = 0
        for episode in range(episodes):
            observation, info = env.reset(seed=seed + episode)
            expert.reset()
            done = False
            while not done:
                observation, _, terminated, truncated, info = env.step(expert.act(observation))
                done = terminated or truncated
            successes += bool(info["is_success"])
    finally:
        env.close()
    task = env.unwrapped.config.task.name
    return {"task": task, "episodes": episodes, "successes": successes,
            "success_rate": successes / episodes if episodes else 0.0}
