"""Manipulation tasks: reset distribution, task observation, reward and success.

Tasks see the arm only through :class:`~robot_rl.robot.RobotState` (tool pose, gripper width and
object poses), so the same task runs in simulation and on hardware with an object tracker.
Every dense reward lies in ``[0, 1]`` and is 1 only at success; the sparse reward is
``1.0 if success else 0.0``. Task observations carry the relevant offsets (goal − tool, object −
tool, ...) next to the absolute positions: learners converge much faster when they need not
discover the subtraction themselves. Positions are metres in the robot base frame (table top: z = 0).

**Goal tasks** (reach, push, pick, peg) also speak gymnasium-robotics' goal convention, in pure
numpy so that the core (replay, samplers) can use it without a simulator: an *achieved goal* and a
*desired goal* read from an observation (batched or not), ``compute_reward(achieved_goal,
desired_goal, info)`` and ``compute_terminated(...)`` vectorised over a leading batch axis, and
:meth:`Task.relabel_observation`, the observation entries that change when the desired goal is
replaced (hindsight relabelling). The env's own reward *is* ``compute_reward`` of the observation
it returns (same float32 inputs, same code), so a relabelled reward equals the one the env would
have given had that goal been asked for. ``compute_reward`` needs nothing but the two goals for
the sparse reward; the dense reward of push and pick also depends on the tool (and the finger
opening), which it reads from ``info["reward_context"]`` (:meth:`Task.reward_info` of the
observation; :class:`~robot_rl.envs.wrappers.GoalObservation` adds it to every step's info).

=====  ===========================  ==================================================
task   achieved goal                desired goal
=====  ===========================  ==================================================
reach  tool centre point (3)        goal point (3)
push   cube centre x, y (2)         goal x, y on the table (2)
pick   cube centre (3)              goal point (3)
peg    peg tip (3)                  where the tip must get to: hole rim centre lowered
                                    by ``success_threshold`` (3)
=====  ===========================  ==================================================

``lift`` has no goal: success is a height above the cube's rest height, the same in every episode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from robot_rl.config import ConfigError
from robot_rl.envs.config import TaskConfig
from robot_rl.geometry import rotate
from robot_rl.robot import ResetRequest, RobotState

IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0])
Observation = Mapping[str, np.ndarray]  # one observation (key → (n,)) or a batch (key → (B, n))


def _vector_space(n: int, low: float = -np.inf, high: float = np.inf) -> spaces.Box:
    return spaces.Box(low, high, shape=(n,), dtype=np.float32)


def _closeness(distance: float | np.ndarray, scale: float = 5.0) -> np.ndarray:
    """1 at distance 0, decaying smoothly: 1 − tanh(scale · d). Scale 5 keeps a usable slope out
    to ~0.4 m (the far side of the workspace) while still rewarding the last centimetres."""
    return 1.0 - np.tanh(scale * np.asarray(distance))


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis (batched)."""
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


def _f32(value: Any) -> np.ndarray:
    """float32, as every observation entry is: rewards computed from the observation's values
    come out identical whether the env or a relabelling replay computes them."""
    return np.asarray(value, dtype=np.float32)


class Task(ABC):
    """Reset distribution, task observation and reward of one manipulation task.

    A goal task also sets ``goal_keys`` and implements the goal methods (see the module
    docstring); the base class turns them into the env's reward, ``compute_reward`` and
    ``compute_terminated``.
    """

    name: str
    scene: str  # MuJoCo scene under sim/assets (scene_<name>.xml)
    initial_gripper_width = 0.08
    has_object_start = False  # whether task.object_start (random / fixed) applies
    # Goal tasks: the observation entries that depend on the desired goal (what relabelling
    # rewrites) and the ones their dense reward needs besides the achieved goal (reward context).
    goal_keys: tuple[str, ...] = ()
    context_keys: tuple[str, ...] = ()
    # Observation entries only a simulator (or a motion-capture rig) can give: object poses and
    # anything computed from them. ``observation.privileged: false`` leaves them out.
    privileged_keys: tuple[str, ...] = ()
    goal_dim = 0

    def __init__(self, config: TaskConfig) -> None:
        if config.object_start != "random" and not self.has_object_start:
            raise ConfigError(f"task.object_start: {config.object_start!r} applies to the cube tasks "
                              f"(push, pick, lift), not to {self.name!r}")
        self.config = config
        self.goal = np.zeros(3)

    @abstractmethod
    def sample_reset(self, rng: np.random.Generator, home: np.ndarray, home_noise: float) -> ResetRequest:
        """Draw object and goal poses for a new episode."""

    @abstractmethod
    def observation_space(self) -> dict[str, spaces.Box]:
        """Task part of the observation (objects, goal)."""

    @abstractmethod
    def observe(self, state: RobotState) -> dict[str, np.ndarray]:
        ...

    def progress(self, state: RobotState) -> tuple[float, bool]:
        """(dense reward in [0, 1], success). A goal task's come from its goal functions applied
        to the observation of ``state`` (the tool position and finger opening added as the env
        reports them), so the env's reward and :meth:`compute_reward` are the same numbers; a task
        without a goal overrides this."""
        obs = {**self.observe(state), "ee_pos": _f32(state.ee_pos), "gripper_width": _f32([state.gripper_width])}
        achieved, desired = self.achieved_goal(obs), self.desired_goal(obs)
        context = {key: obs[key] for key in self.context_keys}
        return float(self.goal_dense(achieved, desired, context)), bool(self.goal_success(achieved, desired))

    def reward(self, state: RobotState) -> tuple[float, bool]:
        dense, success = self.progress(state)
        return float(self._reward_from(dense, success)), bool(success)

    def _reward_from(self, dense: np.ndarray | float, success: np.ndarray | bool) -> np.ndarray:
        """The configured reward: sparse 1/0, or dense capped below 1 except at success."""
        if self.config.reward_type == "sparse":
            return np.asarray(success, dtype=np.float64)
        return np.where(success, 1.0, np.minimum(np.asarray(dense, dtype=np.float64), 0.99))

    @staticmethod
    def _noisy_home(rng: np.random.Generator, home: np.ndarray, noise: float) -> np.ndarray:
        return home + rng.uniform(-noise, noise, size=home.shape)

    # ------------------------------------------------------------------ goal interface
    @property
    def is_goal_task(self) -> bool:
        return bool(self.goal_keys)

    def achieved_goal(self, obs: Observation) -> np.ndarray:
        """(…, goal_dim) float32: what the state has achieved, read from an observation."""
        raise self._no_goal()

    def desired_goal(self, obs: Observation) -> np.ndarray:
        """(…, goal_dim) float32: the goal the observation asks for."""
        raise self._no_goal()

    def relabel_observation(self, obs: Observation, goal: np.ndarray) -> dict[str, np.ndarray]:
        """The entries of ``obs`` (one of :attr:`goal_keys` each) as they would read had the
        desired goal been ``goal`` (…, goal_dim); the other entries are unchanged."""
        raise self._no_goal()

    def goal_success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """(…) bool: success, from the two goals alone (float32 inputs)."""
        raise self._no_goal()

    def goal_dense(self, achieved_goal: np.ndarray, desired_goal: np.ndarray,
                   context: Mapping[str, np.ndarray]) -> np.ndarray:
        """(…) dense progress in [0, 1] (uncapped); ``context``: :attr:`context_keys` entries."""
        raise self._no_goal()

    def reward_info(self, obs: Observation) -> dict[str, Any]:
        """The ``info`` that :meth:`compute_reward` needs for transitions ending in ``obs``:
        ``{"reward_context": {key: obs[key]}}`` for the :attr:`context_keys` (empty when none)."""
        if not self.context_keys:
            return {}
        return {"reward_context": {key: _f32(obs[key]) for key in self.context_keys}}

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """The task's reward for reaching ``achieved_goal`` when ``desired_goal`` was asked for.

        Vectorised: goals (B, g) give (B,) float64 (a single (g,) pair gives a 0-d array). Equals
        the env's reward for the same observation, for ``reward_type`` sparse and dense. ``info``
        is only read for the dense reward of tasks with :attr:`context_keys`: a step's info dict
        (``info["reward_context"]`` holding (g,) or (B, g) arrays) or a sequence of such dicts, one
        per row (what Stable-Baselines3's ``HerReplayBuffer`` passes with ``copy_info_dict=True``).
        """
        achieved, desired = self._goal_pair(achieved_goal, desired_goal)
        success = self.goal_success(achieved, desired)
        if self.config.reward_type == "sparse":
            return self._reward_from(0.0, success)
        context = self._reward_context(info, achieved.shape[:-1])
        return self._reward_from(self.goal_dense(achieved, desired, context), success)

    def compute_terminated(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """(B,) bool: whether the env would end the episode (``task.terminate_on_success``)."""
        success = self.goal_success(*self._goal_pair(achieved_goal, desired_goal))
        return success & self.config.terminate_on_success

    def _goal_pair(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        achieved, desired = _f32(achieved_goal), _f32(desired_goal)
        if achieved.shape != desired.shape or achieved.shape[-1:] != (self.goal_dim,):
            raise ValueError(f"{self.name}: achieved_goal and desired_goal must both have shape (..., "
                             f"{self.goal_dim}), got {achieved.shape} and {desired.shape}")
        return achieved, desired

    def _reward_context(self, info: Any, batch_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """``info["reward_context"]`` as arrays of ``batch_shape`` rows, from one dict or a
        sequence of per-row dicts."""
        if not self.context_keys:
            return {}
        missing = ValueError(
            f"{self.name}: the dense reward needs info['reward_context'] with {list(self.context_keys)} (the "
            f"GoalObservation wrapper puts it in every step's info; with Stable-Baselines3's HerReplayBuffer pass "
            f"copy_info_dict=True), or use reward_type='sparse'")
        if isinstance(info, Mapping):
            if "reward_context" not in info:
                raise missing
            context = {key: _f32(info["reward_context"][key]) for key in self.context_keys}
        elif isinstance(info, (Sequence, np.ndarray)) and len(info) == int(np.prod(batch_shape)):
            rows = [row.get("reward_context") if isinstance(row, Mapping) else None for row in info]
            if any(row is None for row in rows):
                raise missing
            context = {key: _f32([row[key] for row in rows]) for key in self.context_keys}
        else:
            raise missing
        return {key: value.reshape(*batch_shape, -1) for key, value in context.items()}

    def _no_goal(self) -> NotImplementedError:
        goal_tasks = ", ".join(name for name, cls in TASK_CLASSES.items() if cls.goal_keys)
        return NotImplementedError(f"task {self.name!r} has no goal (goal tasks: {goal_tasks})")


class _PointGoal:
    """Goal functions of a task whose desired goal is the observation's ``goal_pos`` and whose
    achieved goal is its ``achieved_key`` position (first ``goal_dim`` coordinates of both),
    with ``goal_offset`` = goal − that position, and success within ``success_threshold``."""

    achieved_key: str
    goal_keys = ("goal_pos", "goal_offset")
    goal_dim = 3
    config: TaskConfig

    def achieved_goal(self, obs):
        return _f32(obs[self.achieved_key])[..., :self.goal_dim]

    def desired_goal(self, obs):
        return _f32(obs["goal_pos"])[..., :self.goal_dim]

    def relabel_observation(self, obs, goal):
        goal_pos = self._goal_position(_f32(goal))
        return {"goal_pos": goal_pos, "goal_offset": goal_pos - _f32(obs[self.achieved_key])}

    def _goal_position(self, goal: np.ndarray) -> np.ndarray:
        """``goal_pos`` of a desired goal."""
        return goal

    def goal_success(self, achieved_goal, desired_goal):
        return _distance(achieved_goal, desired_goal) < self.config.success_threshold


class ReachTask(_PointGoal, Task):
    """Bring the tool centre point within ``success_threshold`` of a goal point."""

    name = scene = "reach"
    goal_low = np.array([0.35, -0.25, 0.05])
    goal_high = np.array([0.65, 0.25, 0.35])
    achieved_key = "ee_pos"

    def sample_reset(self, rng, home, home_noise):
        self.goal = rng.uniform(self.goal_low, self.goal_high)
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"goal": np.concatenate([self.goal, IDENTITY_QUAT])})

    def observation_space(self):
        return {"goal_pos": _vector_space(3), "goal_offset": _vector_space(3)}

    def observe(self, state):
        return {"goal_pos": self.goal.astype(np.float32), "goal_offset": (self.goal - state.ee_pos).astype(np.float32)}

    def goal_dense(self, achieved_goal, desired_goal, context):
        return _closeness(_distance(achieved_goal, desired_goal))


class _CubeTask(Task):
    # cube_offset = cube − tool, goal_offset = goal − cube
    privileged_keys = ("cube_pos", "cube_quat", "cube_offset", "goal_offset")
    cube_low = np.array([0.42, -0.15])
    cube_high = np.array([0.58, 0.15])
    cube_half = 0.02
    has_object_start = True

    @property
    def grasp_width(self) -> float:
        """Finger opening (m) below which a cube near the tool counts as grasped: the cube's
        width plus 4 mm (a cube held across two faces)."""
        return 2 * self.cube_half + 0.004

    def _cube_pose(self, rng: np.random.Generator) -> np.ndarray:
        """(x, y, z, qw, qx, qy, qz) of the cube at rest: random x, y and yaw (±45°), or, with
        ``task.object_start: fixed``, the centre of the area with yaw 0."""
        if self.config.object_start == "fixed":
            xy, yaw = (self.cube_low + self.cube_high) / 2, 0.0
        else:
            xy = rng.uniform(self.cube_low, self.cube_high)
            yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        return np.concatenate([xy, [self.cube_half], [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]])

    def _grasped(self, to_cube: np.ndarray, gripper_width: np.ndarray) -> np.ndarray:
        """Whether the cube is in the hand: the tool centre point within 2 cm of the cube's centre
        and the fingers closed to (about) the cube's width."""
        return (to_cube < 0.02) & (gripper_width < self.grasp_width)

    def observation_space(self):
        return {"cube_pos": _vector_space(3), "cube_quat": _vector_space(4, -1.0, 1.0), "goal_pos": _vector_space(3),
                "cube_offset": _vector_space(3), "goal_offset": _vector_space(3)}

    def observe(self, state):
        cube = state.objects["cube"]
        return {"cube_pos": cube[:3].astype(np.float32), "cube_quat": cube[3:].astype(np.float32),
                "goal_pos": self.goal.astype(np.float32),
                "cube_offset": (cube[:3] - state.ee_pos).astype(np.float32),  # cube − tool
                "goal_offset": (self.goal - cube[:3]).astype(np.float32)}  # goal − cube


class PushTask(_PointGoal, _CubeTask):
    """Push the 5 cm cube until its centre is within ``success_threshold`` of the goal (in x, y)."""

    name = scene = "push"
    cube_half = 0.025
    initial_gripper_width = 0.0
    goal_low = np.array([0.40, -0.20])
    goal_high = np.array([0.65, 0.20])
    min_push_distance = 0.08
    achieved_key = "cube_pos"
    context_keys = ("ee_pos",)
    goal_dim = 2  # success is measured in the table plane

    def sample_reset(self, rng, home, home_noise):
        cube = self._cube_pose(rng)
        while True:
            goal_xy = rng.uniform(self.goal_low, self.goal_high)
            if np.linalg.norm(goal_xy - cube[:2]) >= self.min_push_distance:
                break
        self.goal = np.array([goal_xy[0], goal_xy[1], self.cube_half])
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"cube": cube, "goal": np.concatenate([[goal_xy[0], goal_xy[1], 0.001], IDENTITY_QUAT])})

    def _goal_position(self, goal):
        return np.concatenate([goal, np.full((*goal.shape[:-1], 1), self.cube_half, np.float32)], axis=-1)

    def goal_dense(self, achieved_goal, desired_goal, context):
        to_goal = _distance(achieved_goal, desired_goal)
        # Reaching term: the tool just behind the cube, on the side away from the goal.
        push_dir = (desired_goal - achieved_goal) / np.maximum(to_goal, 1e-6)[..., None]
        behind_xy = achieved_goal - push_dir * (self.cube_half + 0.015)
        behind = np.concatenate([behind_xy, np.full((*behind_xy.shape[:-1], 1), self.cube_half)], axis=-1)
        reach = _closeness(_distance(context["ee_pos"], behind))
        return 0.25 * reach + 0.75 * _closeness(to_goal)


class PickCubeTask(_PointGoal, _CubeTask):
    """Grasp the 4 cm cube and hold its centre within ``success_threshold`` of a goal above the table."""

    name = scene = "pick"
    goal_height = (0.06, 0.2)
    achieved_key = "cube_pos"
    context_keys = ("ee_pos", "gripper_width")

    def sample_reset(self, rng, home, home_noise):
        cube = self._cube_pose(rng)
        goal_xy = rng.uniform(self.cube_low, self.cube_high)
        self.goal = np.array([goal_xy[0], goal_xy[1], rng.uniform(*self.goal_height)])
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"cube": cube, "goal": np.concatenate([self.goal, IDENTITY_QUAT])})

    def goal_dense(self, achieved_goal, desired_goal, context):
        cube = achieved_goal
        to_cube = _distance(context["ee_pos"], cube)
        grasped = self._grasped(to_cube, context["gripper_width"][..., 0])
        lifted = grasped & (cube[..., 2] > self.cube_half + 0.01)
        return (_closeness(to_cube) + grasped + lifted * _closeness(_distance(cube, desired_goal))) / 3.0


class LiftTask(_CubeTask):
    """Grasp the 4 cm cube and lift it: success while the cube is in the hand with its centre more
    than ``success_threshold`` (0.1 m) above its rest height (benchmarks' PandaPickCube / "lift").

    Success is judged at each step, not "held for k steps": the reward stays a function of the
    current state (a Markov reward the critic can fit), and holding the cube up is still what
    pays, because every step's reward and ``info["is_success"]`` at the episode's end ask for it
    again. "In the hand" (tool centre within 2 cm of the cube's centre, fingers closed to at
    most the cube's diagonal: a yawed cube is often gripped across two corners) keeps a cube
    that is flung or balanced on open fingers from counting. The dense reward adds reaching,
    grasping and height (up to the threshold) in thirds. The pick scene is reused; its goal
    marker shows the height to clear above the cube's start.
    """

    name = scene = "lift"

    @property
    def grasp_width(self) -> float:
        return 2 * np.sqrt(2) * self.cube_half + 0.004  # across two corners

    def sample_reset(self, rng, home, home_noise):
        cube = self._cube_pose(rng)
        self.goal = np.array([cube[0], cube[1], self.cube_half + self.config.success_threshold])  # marker only
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"cube": cube, "goal": np.concatenate([self.goal, IDENTITY_QUAT])})

    def observation_space(self):
        return {"cube_pos": _vector_space(3), "cube_quat": _vector_space(4, -1.0, 1.0), "cube_offset": _vector_space(3)}

    def observe(self, state):
        cube = state.objects["cube"]
        return {"cube_pos": cube[:3].astype(np.float32), "cube_quat": cube[3:].astype(np.float32),
                "cube_offset": (cube[:3] - state.ee_pos).astype(np.float32)}  # cube − tool

    def progress(self, state):
        cube = state.objects["cube"][:3]
        to_cube = float(np.linalg.norm(state.ee_pos - cube))
        held = bool(self._grasped(to_cube, state.gripper_width))
        height = cube[2] - self.cube_half  # above the rest height
        raised = float(np.clip(height / self.config.success_threshold, 0.0, 1.0))
        dense = (float(_closeness(to_cube)) + held + held * raised) / 3.0
        return dense, held and height > self.config.success_threshold


class PegInsertTask(Task):
    """Insert the held peg: its tip at least ``success_threshold`` below the hole's rim,
    centred within 8 mm."""

    name = scene = "peg"
    initial_gripper_width = 0.0
    privileged_keys = ("peg_pos", "peg_quat", "hole_offset")  # hole_offset = rim − peg tip
    hole_low = np.array([0.45, -0.15])
    hole_high = np.array([0.60, 0.15])
    hole_top = 0.04
    peg_half_length = 0.04
    lateral_tolerance = 0.008  # m
    # The depth test is one-sided, and a relabelled goal equal to an achieved tip sits exactly on
    # it: 10 µm of slack keeps "goal = achieved" a success through float32 rounding of the
    # observation (hole_pos − hole_offset), far below anything physical.
    depth_tolerance = 1e-5  # m
    goal_keys = ("hole_pos", "hole_offset")
    goal_dim = 3

    def sample_reset(self, rng, home, home_noise):
        xy = rng.uniform(self.hole_low, self.hole_high)
        self.goal = np.array([xy[0], xy[1], self.hole_top])
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"hole": np.concatenate([self.goal, IDENTITY_QUAT])}, grasped_object="peg")

    def observation_space(self):
        return {"peg_pos": _vector_space(3), "peg_quat": _vector_space(4, -1.0, 1.0), "hole_pos": _vector_space(3),
                "hole_offset": _vector_space(3)}

    def observe(self, state):
        peg = state.objects["peg"]
        return {"peg_pos": peg[:3].astype(np.float32), "peg_quat": peg[3:].astype(np.float32),
                "hole_pos": self.goal.astype(np.float32),
                "hole_offset": (self.goal - self.peg_tip(state)).astype(np.float32)}  # hole rim − peg tip

    def peg_tip(self, state: RobotState) -> np.ndarray:
        peg = state.objects["peg"]
        axis = rotate(peg[3:], np.array([0.0, 0.0, 1.0]))
        axis = axis if axis[2] < 0 else -axis  # the lower end
        return peg[:3] + self.peg_half_length * axis

    def _depth(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.config.success_threshold], np.float32)

    def achieved_goal(self, obs):
        return _f32(obs["hole_pos"]) - _f32(obs["hole_offset"])  # the peg tip

    def desired_goal(self, obs):
        return _f32(obs["hole_pos"]) - self._depth()  # the tip's target: rim centre, lowered

    def relabel_observation(self, obs, goal):
        hole = _f32(goal) + self._depth()
        return {"hole_pos": hole, "hole_offset": hole - self.achieved_goal(obs)}

    def goal_success(self, achieved_goal, desired_goal):
        lateral = _distance(achieved_goal[..., :2], desired_goal[..., :2])
        return (lateral < self.lateral_tolerance) & (achieved_goal[..., 2] <= desired_goal[..., 2] + self.depth_tolerance)

    def goal_dense(self, achieved_goal, desired_goal, context):
        return _closeness(_distance(achieved_goal, desired_goal))


TASK_CLASSES: dict[str, type[Task]] = {
    cls.name: cls for cls in (ReachTask, PushTask, PickCubeTask, PegInsertTask, LiftTask)
}


def make_task(config: TaskConfig) -> Task:
    return TASK_CLASSES[config.name](config)
