"""Observation wrappers for learners."""

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
