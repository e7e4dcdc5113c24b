"""A tiny goal-conditioned gymnasium env that this project did not write into ``ArmEnv``: a point
in the plane driven towards a random goal, with gymnasium-robotics' conventions (goal-dict
observations, a vectorised ``compute_reward``, sparse -1/0 rewards, ``info["is_success"]``) and an
action ``Box`` in ``[-0.5, 0.5]`` (so it is rescaled). Importing this module registers it as
``RobotRLTest/GoalPoint-v0`` (``robot-rl train --env-import gym_goal_env --env RobotRLTest/GoalPoint-v0``;
tests/ is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "RobotRLTest/GoalPoint-v0"
THRESHOLD = 0.15


class GoalPointEnv(gym.Env):
    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, reward_type: str = "sparse") -> None:
        self.reward_type = reward_type
        box = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64)
        self.observation_space = spaces.Dict({"observation": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64),
                                              "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-0.5, 0.5, shape=(2,), dtype=np.float32)
        self.position = np.zeros(2)
        self.goal = np.zeros(2)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self.position.copy(), "achieved_goal": self.position.copy(),
                "desired_goal": self.goal.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-0.8, 0.8, size=2)
        self.goal = self.np_random.uniform(-0.8, 0.8, size=2)
        return self._obs(), {"is_success": self._distance(self.position, self.goal) <= THRESHOLD}

    @staticmethod
    def _distance(achieved, desired) -> np.ndarray:
        return np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1)

    def compute_reward(self, achieved_goal, desired_goal, info):
        """Vectorised: (B, 2), (B, 2) → (B,)."""
        distance = self._distance(achieved_goal, desired_goal)
        if self.reward_type == "dense":
            return -distance
        return -(distance > THRESHOLD).astype(np.float64)

    def compute_terminated(self, achieved_goal, desired_goal, info):
        return False  # as gymnasium-robotics' Fetch envs: the time limit ends episodes

    def step(self, action):
        self.position = np.clip(self.position + 0.4 * np.asarray(action, dtype=np.float64), -1.0, 1.0)
        obs = self._obs()
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], {}))
        success = bool(self._distance(self.position, self.goal) <= THRESHOLD)
        return obs, reward, False, False, {"is_success": success}


def episode_statistics(env: gym.Env) -> gym.Env:
    """A ``--wrapper`` target: gymnasium's RecordEpisodeStatistics (leaves rewards and spaces alone)."""
    return gym.wrappers.RecordEpisodeStatistics(env)


def nan_observations(env: gym.Env) -> gym.Env:
    """A ``--wrapper`` target that breaks the env: every observation entry becomes NaN."""
    return gym.wrappers.TransformObservation(
        env, lambda obs: {key: np.full_like(value, np.nan) for key, value in obs.items()}, env.observation_space)


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=GoalPointEnv, max_episode_steps=20)
