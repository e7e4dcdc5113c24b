"""MuJoCo simulation: the arm model, task scenes, ``SimArm`` and scripted experts.

Installed as ``robot_rl.sim``. Headless rendering needs an OpenGL backend: ``MUJOCO_GL=egl``
(Debian: ``libegl1``) or ``MUJOCO_GL=osmesa`` (``libosmesa6``). When no display is present and
``MUJOCO_GL`` is unset, EGL is chosen before MuJoCo is imported.
"""

import os

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from robot_rl.sim.sim_arm import SimArm  # noqa: E402

__all__ = ["SimArm"]
