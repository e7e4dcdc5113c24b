"""MuJoCo simulation: the arm model, task scenes and ``SimArm`` (robot kind ``sim``).

Installed as ``robot_rl.sim``. Headless rendering needs an OpenGL backend: ``MUJOCO_GL=egl``
(Debian: ``libegl1`` and ``libgl1``) or ``MUJOCO_GL=osmesa`` (``libosmesa6``). On Linux without a
display and with ``MUJOCO_GL`` unset, this package picks EGL (or OSMesa when only that is
installed) before MuJoCo is imported, so import ``robot_rl.sim`` before anything that imports
``mujoco``. Without any backend, state-only simulation still works and rendering raises
:class:`RenderingUnavailableError` saying what to install.
"""

import os
import sys
from ctypes.util import find_library


def _headless_gl_backend() -> str | None:
    """The offscreen backend to use on a display-less Linux machine, or None to leave MuJoCo's
    default (``glfw``, whose context creation then fails with an explanation)."""
    if find_library("EGL") and any(find_library(name) for name in ("OpenGL", "GL", "GLESv2")):
        return "egl"
    if find_library("OSMesa"):
        return "osmesa"
    return None


if (sys.platform.startswith("linux") and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY")
        and "mujoco" not in sys.modules):  # once MuJoCo is imported, its backend is fixed
    _backend = _headless_gl_backend()
    if _backend is not None:
        os.environ["MUJOCO_GL"] = _backend

try:
    import mujoco  # noqa: F401  (loads the OpenGL backend named by MUJOCO_GL)
except (AttributeError, ImportError, OSError) as _exc:
    if isinstance(_exc, ModuleNotFoundError) and _exc.name == "mujoco":
        raise
    raise ImportError(
        f"MuJoCo could not load the OpenGL backend MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
        f"({type(_exc).__name__}: {_exc}). Install Debian libegl1 and libgl1 (MUJOCO_GL=egl) or "
        "libosmesa6 (MUJOCO_GL=osmesa), or set MUJOCO_GL=disable to simulate without images",
        name="mujoco",
    ) from _exc

from robot_rl.sim.sim_arm import RenderingUnavailableError, SimArm  # noqa: E402

__all__ = ["RenderingUnavailableError", "SimArm"]
