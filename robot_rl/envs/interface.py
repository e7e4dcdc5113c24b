"""What a trained policy depends on in its env, and the differences between two such descriptions.

A policy trained in simulation can only be moved onto another robot (the twin, a physical arm
over ROS 2) if the new env gives it the same observations and takes the same actions at the same
rate. :func:`env_interface` describes an env as plain data (saved in every checkpoint), and
:func:`interface_mismatches` lists every difference, so ``robot-rl finetune`` and ``robot-rl
eval`` refuse a mismatched robot *before* anything moves, naming all of them at once.

What counts (and what does not):

* observation keys, shapes and dtypes, after the run's wrappers (frozen camera features
  included); action shape and bounds;
* for this project's arm: control rate, action mode and scales, the tool workspace, the camera
  set and image size, and the arm itself (joint names, gripper width);
* for a gymnasium env: its id.

Physics, reward settings, noise and the robot kind (sim, ros2) are deliberately left out: they
are what differs between the simulator and the robot a policy is fine-tuned on.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.envs.arm_env import ArmEnv

#: Relative tolerance for float settings (bounds, rates, scales) read back from YAML or a checkpoint.
_RTOL = 1e-6


class InterfaceMismatchError(ValueError):
    """The env differs from the one a checkpoint was trained on; ``mismatches`` lists each difference."""

    def __init__(self, what: str, mismatches: list[str]) -> None:
        self.mismatches = mismatches
        listed = "\n".join(f"  - {line}" for line in mismatches)
        super().__init__(f"{what}: {len(mismatches)} difference(s) between the checkpoint's env and this one "
                         f"(nothing was moved):\n{listed}")


def _space(space: spaces.Space) -> dict[str, Any]:
    if isinstance(space, spaces.Box):
        described: dict[str, Any] = {"shape": list(space.shape), "dtype": str(space.dtype)}
        if space.dtype != np.uint8:  # image bounds are always 0..255
            described["low"] = np.broadcast_to(space.low, space.shape).ravel().tolist()
            described["high"] = np.broadcast_to(space.high, space.shape).ravel().tolist()
        return described
    return {"type": type(space).__name__}


def env_interface(env: gym.Env) -> dict[str, Any]:
    """The plain-data description of what a policy acting in ``env`` depends on (module docstring)."""
    observation = env.observation_space
    keys = observation.spaces if isinstance(observation, spaces.Dict) else {"": observation}
    interface: dict[str, Any] = {
        # observation bounds change with the robot (joint limits are compared with the arm below)
        "observation": {key: {"shape": list(space.shape), "dtype": str(space.dtype)}
                        for key, space in keys.items()},
        "action": _space(env.action_space),
    }
    base = env.unwrapped
    if isinstance(base, ArmEnv):
        control, obs_cfg, spec = base.config.control, base.config.observation, base.robot.spec
        interface["control"] = {
            "control_hz": control.control_hz, "action_mode": control.action_mode, "use_yaw": control.use_yaw,
            "position_scale": control.position_scale, "yaw_scale": control.yaw_scale,
            "joint_scale": control.joint_scale,
            "workspace_low": list(control.workspace_low), "workspace_high": list(control.workspace_high),
        }
        interface["cameras"] = list(obs_cfg.cameras) if obs_cfg.images else []
        interface["arm"] = {"joint_names": list(spec.joint_names), "gripper_max_width": float(spec.gripper_max_width)}
    else:
        interface["gym_id"] = base.spec.id if base.spec is not None else type(base).__name__
    return interface


def interface_mismatches(trained: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """Every difference between the env a policy was ``trained`` on and the ``target`` env, one
    line each (``path: trained value → target value``); empty when the policy fits."""
    found: list[str] = []
    _compare(trained, target, "", found)
    return found


def _compare(trained: Any, target: Any, path: str, found: list[str]) -> None:
    if isinstance(trained, dict) and isinstance(target, dict):
        for key in trained.keys() - target.keys():
            found.append(f"{path}{key}: present in the checkpoint's env, missing here")
        for key in target.keys() - trained.keys():
            found.append(f"{path}{key}: new here, the checkpoint's policy never saw it")
        for key in sorted(trained.keys() & target.keys()):
            _compare(trained[key], target[key], f"{path}{key}." if isinstance(trained[key], dict) else f"{path}{key}",
                     found)
        return
    if _equal(trained, target):
        return
    found.append(f"{path.rstrip('.')}: {_short(trained)} (checkpoint) → {_short(target)} (here)")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return bool(np.isclose(float(a), float(b), rtol=_RTOL, atol=0.0) or (np.isinf(a) and a == b))
        except (TypeError, ValueError):
            return False
    return a == b


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
