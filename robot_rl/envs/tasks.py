"""Manipulation tasks: reset distribution, task observation, reward and success.

Tasks see the arm only through :class:`~robot_rl.robot.RobotState` (tool pose, gripper width and
object poses), so the same task runs in simulation and on hardware with an object tracker.
Every dense reward lies in ``[0, 1]`` and is 1 only at success; the sparse reward is
``1.0 if success else 0.0``. Task observations carry the relevant offsets (goal − tool, object −
tool, ...) next to the absolute positions: learners converge much faster when they need not
discover the subtraction themselves. Positions are metres in the robot base frame (table top: z = 0).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from gymnasium import spaces

from robot_rl.envs.config import TaskConfig
from robot_rl.geometry import rotate
from robot_rl.robot import ResetRequest, RobotState

IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0])


def _vector_space(n: int, low: float = -np.inf, high: float = np.inf) -> spaces.Box:
    return spaces.Box(low, high, shape=(n,), dtype=np.float32)


def _closeness(distance: float | np.ndarray, scale: float = 5.0) -> float:
    """1 at distance 0, decaying smoothly: 1 − tanh(scale · d). Scale 5 keeps a usable slope out
    to ~0.4 m (the far side of the workspace) while still rewarding the last centimetres."""
    return float(1.0 - np.tanh(scale * distance))


class Task(ABC):
    """Reset distribution, task observation and reward of one manipulation task."""

    name: str
    scene: str  # MuJoCo scene under sim/assets (scene_<name>.xml)
    initial_gripper_width = 0.08

    def __init__(self, config: TaskConfig) -> None:
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

    @abstractmethod
    def progress(self, state: RobotState) -> tuple[float, bool]:
        """(dense reward in [0, 1], success)."""

    def reward(self, state: RobotState) -> tuple[float, bool]:
        dense, success = self.progress(state)
        if self.config.reward_type == "sparse":
            return float(success), success
        return (1.0 if success else min(dense, 0.99)), success

    @staticmethod
    def _noisy_home(rng: np.random.Generator, home: np.ndarray, noise: float) -> np.ndarray:
        return home + rng.uniform(-noise, noise, size=home.shape)


class ReachTask(Task):
    """Bring the tool centre point within ``success_threshold`` of a goal point."""

    name = scene = "reach"
    goal_low = np.array([0.35, -0.25, 0.05])
    goal_high = np.array([0.65, 0.25, 0.35])

    def sample_reset(self, rng, home, home_noise):
        self.goal = rng.uniform(self.goal_low, self.goal_high)
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"goal": np.concatenate([self.goal, IDENTITY_QUAT])})

    def observation_space(self):
        return {"goal_pos": _vector_space(3), "goal_offset": _vector_space(3)}

    def observe(self, state):
        return {"goal_pos": self.goal.astype(np.float32), "goal_offset": (self.goal - state.ee_pos).astype(np.float32)}

    def progress(self, state):
        distance = float(np.linalg.norm(state.ee_pos - self.goal))
        return _closeness(distance), distance < self.config.success_threshold


class _CubeTask(Task):
    cube_low = np.array([0.42, -0.15])
    cube_high = np.array([0.58, 0.15])
    cube_half = 0.02

    def _cube_pose(self, rng: np.random.Generator) -> np.ndarray:
        xy = rng.uniform(self.cube_low, self.cube_high)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        return np.concatenate([xy, [self.cube_half], [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]])

    def observation_space(self):
        return {"cube_pos": _vector_space(3), "cube_quat": _vector_space(4, -1.0, 1.0), "goal_pos": _vector_space(3),
                "cube_offset": _vector_space(3), "goal_offset": _vector_space(3)}

    def observe(self, state):
        cube = state.objects["cube"]
        return {"cube_pos": cube[:3].astype(np.float32), "cube_quat": cube[3:].astype(np.float32),
                "goal_pos": self.goal.astype(np.float32),
                "cube_offset": (cube[:3] - state.ee_pos).astype(np.float32),  # cube − tool
                "goal_offset": (self.goal - cube[:3]).astype(np.float32)}  # goal − cube


class PushTask(_CubeTask):
    """Push the 5 cm cube until its centre is within ``success_threshold`` of the goal (in x, y)."""

    name = scene = "push"
    cube_half = 0.025
    initial_gripper_width = 0.0
    goal_low = np.array([0.40, -0.20])
    goal_high = np.array([0.65, 0.20])
    min_push_distance = 0.08

    def sample_reset(self, rng, home, home_noise):
        cube = self._cube_pose(rng)
        while True:
            goal_xy = rng.uniform(self.goal_low, self.goal_high)
            if np.linalg.norm(goal_xy - cube[:2]) >= self.min_push_distance:
                break
        self.goal = np.array([goal_xy[0], goal_xy[1], self.cube_half])
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"cube": cube, "goal": np.concatenate([[goal_xy[0], goal_xy[1], 0.001], IDENTITY_QUAT])})

    def progress(self, state):
        cube = state.objects["cube"][:3]
        to_goal = float(np.linalg.norm(cube[:2] - self.goal[:2]))
        # Reaching term: the tool just behind the cube, on the side away from the goal.
        push_dir = (self.goal[:2] - cube[:2]) / max(to_goal, 1e-6)
        behind = np.array([*(cube[:2] - push_dir * (self.cube_half + 0.015)), self.cube_half])
        reach = _closeness(float(np.linalg.norm(state.ee_pos - behind)))
        return 0.25 * reach + 0.75 * _closeness(to_goal), to_goal < self.config.success_threshold


class PickCubeTask(_CubeTask):
    """Grasp the 4 cm cube and hold its centre within ``success_threshold`` of a goal above the table."""

    name = scene = "pick"
    goal_height = (0.06, 0.2)

    def sample_reset(self, rng, home, home_noise):
        cube = self._cube_pose(rng)
        goal_xy = rng.uniform(self.cube_low, self.cube_high)
        self.goal = np.array([goal_xy[0], goal_xy[1], rng.uniform(*self.goal_height)])
        return ResetRequest(self._noisy_home(rng, home, home_noise), self.initial_gripper_width,
                            objects={"cube": cube, "goal": np.concatenate([self.goal, IDENTITY_QUAT])})

    def progress(self, state):
        cube = state.objects["cube"][:3]
        to_cube = float(np.linalg.norm(state.ee_pos - cube))
        to_goal = float(np.linalg.norm(cube - self.goal))
        grasped = to_cube < 0.02 and state.gripper_width < 2 * self.cube_half + 0.004
        lifted = grasped and cube[2] > self.cube_half + 0.01
        dense = (_closeness(to_cube) + float(grasped) + float(lifted) * _closeness(to_goal)) / 3.0
        return dense, to_goal < self.config.success_threshold


class PegInsertTask(Task):
    """Insert the held peg: its tip at least ``success_threshold`` below the hole's rim,
    centred within 8 mm."""

    name = scene = "peg"
    initial_gripper_width = 0.0
    hole_low = np.array([0.45, -0.15])
    hole_high = np.array([0.60, 0.15])
    hole_top = 0.04
    peg_half_length = 0.04

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

    def progress(self, state):
        tip = self.peg_tip(state)
        lateral = float(np.linalg.norm(tip[:2] - self.goal[:2]))
        depth = self.hole_top - tip[2]
        target = np.array([*self.goal[:2], self.hole_top - self.config.success_threshold])
        dense = _closeness(float(np.linalg.norm(tip - target)))
        return dense, lateral < 0.008 and depth >= self.config.success_threshold


TASK_CLASSES: dict[str, type[Task]] = {
    cls.name: cls for cls in (ReachTask, PushTask, PickCubeTask, PegInsertTask)
}


def make_task(config: TaskConfig) -> Task:
    return TASK_CLASSES[config.name](config)

