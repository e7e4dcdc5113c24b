"""Off-policy learners behind one interface (act / update / state_dict)."""

from __future__ import annotations

from gymnasium import spaces

from robot_rl.agents.awac import AWAC
from robot_rl.agents.base import DataNeeds, OffPolicyAgent, TransitionBatch, UpdateResult
from robot_rl.agents.config import AgentConfig
from robot_rl.agents.ddpgfd import DDPGfD
from robot_rl.agents.sac import SAC
from robot_rl.agents.td3 import DDPG, TD3

AGENTS: dict[str, type[OffPolicyAgent]] = {"sac": SAC, "td3": TD3, "ddpg": DDPG, "ddpgfd": DDPGfD, "awac": AWAC}


def make_agent(observation_space: spaces.Space, action_space: spaces.Box, config: AgentConfig) -> OffPolicyAgent:
    return AGENTS[config.algo](observation_space, action_space, config)


__all__ = ["AGENTS", "AWAC", "AgentConfig", "DDPG", "DDPGfD", "DataNeeds", "OffPolicyAgent", "SAC", "TD3",
           "TransitionBatch", "UpdateResult", "make_agent"]
