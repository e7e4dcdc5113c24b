"""Gymnasium environments: ``ArmEnv`` over any ``Robot``, task definitions and registration.

``import robot_rl`` registers ``RobotRL/ArmReach-v0``, ``RobotRL/ArmPush-v0``,
``RobotRL/ArmPickCube-v0``, ``RobotRL/ArmPegInsert-v0`` and ``RobotRL/ArmLift-v0``::

    env = gymnasium.make("RobotRL/ArmPickCube-v0", reward_type="sparse", images=True)
    env = gymnasium.make("RobotRL/ArmReach-v0", goal_observation=True)  # gymnasium-robotics goal dicts
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym

from robot_rl.config import deep_merge
from robot_rl.envs.arm_env import ArmEnv, NonFiniteStateError, RenderingNotSupportedError
from robot_rl.envs.config import ENV_IDS, TASKS, EnvConfig, RandomizationConfig, load_env_config
from robot_rl.envs.randomization import DomainRandomization, find_randomization
from robot_rl.envs.robots import make_robot, register_robot_kind, robot_kinds, unregister_robot_kind
from robot_rl.envs.wrappers import FlattenState, GoalObservation
from robot_rl.robot import Robot


def make_arm_env(
    task: str,
    config: EnvConfig | str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    reward_type: str | None = None,
    images: bool | None = None,
    action_mode: str | None = None,
    robot: Robot | str | None = None,
    render_mode: str | None = None,
    goal_observation: bool = False,
) -> gym.Env:
    """Entry point behind every registered id; returns ``TimeLimit(ArmEnv)``, wrapped in
    :class:`GoalObservation` when ``goal_observation`` (goal tasks only). With
    ``randomization.enabled`` the order is ``TimeLimit(DomainRandomization(ArmEnv))`` (the
    goal wrapper then sees the noisy observations, so its achieved goal is noisy too).

    ``config`` is an :class:`EnvConfig` or a YAML path layered over the task's defaults;
    ``overrides`` is a nested dict (``{"control": {"use_yaw": True}}``); ``reward_type``,
    ``images`` and ``action_mode`` are shortcuts for the most common overrides. ``robot`` is a
    ready :class:`Robot`, or the kind to build (``robot.kind``; see :mod:`robot_rl.envs.robots`):
    ``"sim"`` (MuJoCo in process), ``"ros2"`` (a client of a running ``robot-rl bridge``;
    settings under ``robot.ros2``) or any kind registered with :func:`register_robot_kind`.
    """
    shortcuts: dict[str, Any] = {}
    if isinstance(robot, str):
        shortcuts = {"robot": {"kind": robot}}
        robot = None
    if reward_type is not None:
        shortcuts = deep_merge(shortcuts, {"task": {"reward_type": reward_type}})
    if images is not None:
        shortcuts = deep_merge(shortcuts, {"observation": {"images": images}})
    if action_mode is not None:
        shortcuts = deep_merge(shortcuts, {"control": {"action_mode": action_mode}})
    merged = deep_merge(shortcuts, overrides or {})
    if isinstance(config, EnvConfig):
        from robot_rl.config import from_dict, to_dict

        env_config = from_dict(EnvConfig, deep_merge(to_dict(config), merged), "overrides")
    else:
        env_config = load_env_config(task, config, deep_merge(merged, {"task": {"name": task}}))
    env: gym.Env = ArmEnv(env_config, robot=robot, render_mode=render_mode)
    if env_config.randomization.enabled:
        try:
            env = DomainRandomization(env, env_config.randomization)
        except Exception:
            if robot is None:  # built here: release it
                env.close()
            raise
    limited = gym.wrappers.TimeLimit(env, max_episode_steps=env_config.task.max_episode_steps)
    if not goal_observation:
        return limited
    try:
        return GoalObservation(limited)
    except ValueError:
        limited.close()
        raise


def register_envs() -> None:
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="robot_rl.envs:make_arm_env", kwargs={"task": task},
                         disable_env_checker=False)


__all__ = ["ArmEnv", "DomainRandomization", "EnvConfig", "RandomizationConfig", "find_randomization", "FlattenState", "GoalObservation", "NonFiniteStateError", "RenderingNotSupportedError", "ENV_IDS",
           "TASKS", "load_env_config", "make_arm_env", "make_robot", "register_envs", "register_robot_kind",
           "robot_kinds", "unregister_robot_kind"]
