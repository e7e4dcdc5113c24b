"""Shared fixtures. Everything here runs the real MuJoCo simulation and real (offscreen) rendering.

``MUJOCO_GL`` must be chosen before anything imports ``mujoco``; conftest is imported by pytest
before the test modules, so set the headless EGL backend here unless the caller chose one.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import robot_rl  # noqa: E402,F401  (registers the RobotRL/* ids)
from robot_rl.envs import ENV_IDS  # noqa: E402
from robot_rl.geometry import quat_conjugate, quat_multiply, quat_to_rotvec  # noqa: E402

TASKS = tuple(ENV_IDS)


@pytest.fixture
def make_env():
    """``make_env(task_or_id, **kwargs)`` → ``gymnasium.make(...)`` with a seeded action space (so
    ``action_space.sample()`` is reproducible); every env is closed afterwards."""
    envs: list[gym.Env] = []

    def _make(task_or_id: str, **kwargs) -> gym.Env:
        env = gym.make(ENV_IDS.get(task_or_id, task_or_id), **kwargs)
        env.action_space.seed(len(envs))
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


@pytest.fixture
def make_arm():
    """``make_arm(scene, **kwargs)`` → ``SimArm``; closed afterwards (releases renderers)."""
    from robot_rl.sim import SimArm

    arms = []

    def _make(scene: str = "reach", **kwargs):
        arm = SimArm(scene, **kwargs)
        arms.append(arm)
        return arm

    yield _make
    for arm in arms:
        arm.close()


def orientation_error(actual: np.ndarray, target: np.ndarray) -> float:
    """Angle (rad) of the rotation taking ``target`` to ``actual`` (w, x, y, z quaternions)."""
    return float(np.linalg.norm(quat_to_rotvec(quat_multiply(quat_conjugate(target), actual))))


@pytest.fixture
def one_thread():
    """Tiny networks: one intra-op thread is fastest and immune to a loaded machine's contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
