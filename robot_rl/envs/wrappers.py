"""Observation wrappers for learners: one flat state vector (:class:`FlattenState`), or
gymnasium-robotics' goal dictionaries (:class:`GoalObservation`)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def state_keys(space: spaces.Dict) -> list[str]:
    """Vector (non-image) keys of an ArmEnv observation space, in a fixed sorted order."""
    return sorted(k for k in space.spaces if not k.startswith("image_"))


class FlattenState(gym.ObservationWrapper):
    """Concatenate the vector entries of the ``Dict`` observation into one float32 vector.

    Without images the observation becomes that vector. With images it becomes
    ``Dict(state=vector, image_<camera>=...)`` so pixel learners keep their images.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"FlattenState needs a Dict observation space, got {type(space).__name__}")
        self.keys = state_keys(space)
        self.image_keys = sorted(k for k in space.spaces if k.startswith("image_"))
        low = np.concatenate([np.broadcast_to(space[k].low, space[k].shape).ravel() for k in self.keys])
        high = np.concatenate([np.broadcast_to(space[k].high, space[k].shape).ravel() for k in self.keys])
        state_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        if self.image_keys:
            self.observation_space = spaces.Dict({"state": state_space, **{k: space[k] for k in self.image_keys}})
        else:
            self.observation_space = state_space

    def observation(self, observation):
        state = np.concatenate([np.asarray(observation[k], dtype=np.float32).ravel() for k in self.keys])
        if self.image_keys:
            return {"state": state, **{k: observation[k] for k in self.image_keys}}
        return state


class GoalObservation(gym.Wrapper):
    """gymnasium-robotics' goal convention for a goal task (reach, push, pick, peg).

    The observation becomes ``Dict(observation=…, achieved_goal=…, desired_goal=…)`` (plus the
    ``image_<camera>`` entries when images are on): ``observation`` concatenates the vector
    entries that do not depend on the desired goal (sorted keys, as :class:`FlattenState`; the
    task's ``goal_keys``, e.g. ``goal_pos`` and ``goal_offset``, are left out, because a relabelled
    desired goal would leave them stale), and the two goals are the task's (see
    :mod:`robot_rl.envs.tasks`). :meth:`compute_reward` and :meth:`compute_terminated` are
    vectorised, ``(B, g), (B, g), info → (B,)``, and equal the env's reward and termination for
    the same step, so Stable-Baselines3's ``HerReplayBuffer`` works unchanged::

        env = GoalObservation(gym.make("RobotRL/ArmReach-v0", reward_type="sparse"))
        model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer)

    Every step's info gets ``reward_context`` (the tool position and finger opening) for tasks
    whose dense reward needs more than the goals (push, pick); SB3 then needs
    ``replay_buffer_kwargs={"copy_info_dict": True}``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.task = env.unwrapped.task
        if not self.task.is_goal_task:
            raise ValueError(f"GoalObservation: task {self.task.name!r} has no goal (goal tasks: reach, push, pick, peg)")
        space = env.observation_space
        hidden = [key for key in self.task.privileged_keys if key not in space.spaces]
        if hidden:
            raise ValueError(f"GoalObservation: the achieved goal of {self.task.name!r} is computed from {hidden}, "
                             f"which observation.privileged: false leaves out; goal relabelling needs them")
        self.keys = [key for key in state_keys(space) if key not in self.task.goal_keys]
        self.image_keys = sorted(k for k in space.spaces if k.startswith("image_"))
        low = np.concatenate([np.broadcast_to(space[k].low, space[k].shape).ravel() for k in self.keys])
        high = np.concatenate([np.broadcast_to(space[k].high, space[k].shape).ravel() for k in self.keys])
        goal_space = spaces.Box(-np.inf, np.inf, shape=(self.task.goal_dim,), dtype=np.float32)
        self.observation_space = spaces.Dict({
            "observation": spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32),
            "achieved_goal": goal_space, "desired_goal": goal_space,
            **{k: space[k] for k in self.image_keys}})

    def observation(self, observation):
        return {"observation": np.concatenate([np.asarray(observation[k], np.float32).ravel() for k in self.keys]),
                "achieved_goal": self.task.achieved_goal(observation),
                "desired_goal": self.task.desired_goal(observation),
                **{k: observation[k] for k in self.image_keys}}

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self.observation(observation), {**info, **self.task.reward_info(observation)}

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(observation), reward, terminated, truncated, {**info, **self.task.reward_info(observation)}

    def compute_reward(self, achieved_goal, desired_goal, info):
        """The env's reward had ``desired_goal`` been asked for (see ``Task.compute_reward``)."""
        return self.task.compute_reward(achieved_goal, desired_goal, info)

    def compute_terminated(self, achieved_goal, desired_goal, info):
        return self.task.compute_terminated(achieved_goal, desired_goal, info)

    def compute_truncated(self, achieved_goal, desired_goal, info):
        """Never: truncation is the time limit's, not the goal's."""
        return np.zeros(np.shape(achieved_goal)[:-1], dtype=bool)
