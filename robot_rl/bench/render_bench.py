"""Rendering cost of camera observations: frames per second of the ``scene`` and ``wrist`` cameras
on this machine, and what they do to env steps per second.

For every image size (square, e.g. 64 and 128 px) and every repeat, on ``RobotRL/ArmLift-v0``:

- ``env_steps_per_s_images`` — the env with ``observation.images`` on and both cameras in the
  observation (each env step renders each camera once, without shadows, as the env does);
- ``render_fps.<camera>`` — :meth:`SimArm.render` of one camera alone at that size, in a loop,
  through the image env's own robot and renderer (the observation path: ``update_scene`` +
  draw + pixel read-back, shadows off);

and once per repeat ``state_env.steps_per_s``: the same env without images (physics, controller
and env bookkeeping only). Env steps use seeded uniform random actions with resets inside the
timed window (:func:`robot_rl.bench.env_bench.measure`).

Per size the report splits an image step into ``physics_and_env`` (the state-only step time) and
``rendering`` (image step minus state step, measured), names the part that dominates
(``bottleneck``) and the slower camera. Medians over the repeats, with every raw value. With
``MUJOCO_GL=egl`` and no GPU, EGL runs Mesa's llvmpipe software rasteriser on the CPU (the
``machine.gl_renderer`` string says which); with a GPU the rendering figures change completely,
so compare runs only from the same machine.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

import robot_rl.sim  # noqa: F401  (picks the headless OpenGL backend before MuJoCo is imported)
from robot_rl.bench.env_bench import machine_info as env_machine_info
from robot_rl.bench.env_bench import measure, warm_up
from robot_rl.envs.config import ENV_IDS

ENV_ID = ENV_IDS["lift"]
CAMERAS = ("scene", "wrist")
DEFAULT_SIZES = (64, 128)


def make_image_env(size: int) -> gym.Env:
    """``RobotRL/ArmLift-v0`` observing both cameras at ``size`` × ``size``."""
    return gym.make(ENV_ID, images=True, overrides={"observation": {
        "cameras": list(CAMERAS), "image_height": size, "image_width": size}})


def render_fps(robot: Any, camera: str, size: int, seconds: float) -> float:
    """Frames per second of ``robot.render(camera, size, size, shadows=False)`` over about
    ``seconds`` (after one untimed frame)."""
    robot.render(camera, size, size, shadows=False)
    frames, start = 0, time.perf_counter()
    while True:
        robot.render(camera, size, size, shadows=False)
        frames += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return frames / elapsed


def gl_info() -> dict[str, str | None]:
    """The OpenGL renderer and version of the current context (call right after a render), or
    ``None`` where PyOpenGL cannot tell."""
    try:
        from OpenGL import GL

        def text(name: int) -> str | None:
            value = GL.glGetString(name)
            return value.decode() if value else None

        return {"gl_renderer": text(GL.GL_RENDERER), "gl_version": text(GL.GL_VERSION)}
    except Exception:  # noqa: BLE001  (informational only)
        return {"gl_renderer": None, "gl_version": None}


def machine_info() -> dict[str, Any]:
    """:func:`robot_rl.bench.env_bench.machine_info` plus the load and the OpenGL backend."""
    return {**env_machine_info(), "load_average_1m_at_end": os.getloadavg()[0],
            "pyopengl_platform": os.environ.get("PYOPENGL_PLATFORM"),
            "lp_num_threads": os.environ.get("LP_NUM_THREADS")}


def _summary(raw: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(raw), "raw": raw}


def _describe_size(state_sps: list[float], image_sps: list[float], fps: dict[str, list[float]]) -> dict[str, Any]:
    """Medians and the physics/rendering split of one image size (per-repeat differences)."""
    state_ms = [1000.0 / s for s in state_sps]
    image_ms = [1000.0 / s for s in image_sps]
    extra_ms = [i - s for s, i in zip(state_ms, image_ms)]
    render_ms = [sum(1000.0 / fps[camera][r] for camera in fps) for r in range(len(state_sps))]
    median_state, median_extra = 1000.0 / statistics.median(state_sps), statistics.median(extra_ms)
    median_image = 1000.0 / statistics.median(image_sps)
    camera_ms = {camera: 1000.0 / statistics.median(values) for camera, values in fps.items()}
    slower = max(camera_ms, key=camera_ms.__getitem__)
    bottleneck = "rendering" if median_extra > median_state else "physics"
    return {
        "env_steps_per_s_images": _summary(image_sps),
        "render_fps": {camera: _summary(values) for camera, values in fps.items()},
        "ms_per_step": {
            "images": median_image,
            "physics_and_env": median_state,
            "rendering": median_extra,
            "rendering_raw": extra_ms,
            "rendering_from_fps": statistics.median(render_ms),
            "per_camera_from_fps": camera_ms,
        },
        "rendering_share_of_image_step": median_extra / median_image,
        "slowdown_vs_state": statistics.median(state_sps) / statistics.median(image_sps),
        "bottleneck": bottleneck,
        "slower_camera": slower,
        "slower_camera_share_of_rendering": camera_ms[slower] / sum(camera_ms.values()),
    }


def run_render_benchmark(sizes: Sequence[int] = DEFAULT_SIZES, seconds: float = 2.0, repeats: int = 5,
                         seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every case ``repeats`` times (cases in turn within a repeat, so load changes hit
    them alike); return a JSON-ready dict (see the module docstring). ``progress`` (if given) is
    called with a case name after each measurement.

    Raises:
        robot_rl.sim.RenderingUnavailableError: no OpenGL context can be created here.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive pixel counts, got {list(sizes)}")
    sizes = list(dict.fromkeys(int(size) for size in sizes))
    envs: dict[str, gym.Env] = {}
    try:
        envs["state"] = gym.make(ENV_ID)
        for size in sizes:
            envs[str(size)] = make_image_env(size)
        for env in envs.values():
            warm_up(env, seed)
        gl = gl_info()  # the last warm-up rendered, so the image envs' context is current
        state_sps: list[float] = []
        image_sps: dict[str, list[float]] = {str(size): [] for size in sizes}
        fps: dict[str, dict[str, list[float]]] = {str(size): {camera: [] for camera in CAMERAS} for size in sizes}
        for _ in range(repeats):
            state_sps.append(measure(envs["state"], seconds, seed).steps_per_s)
            if progress is not None:
                progress("state")
            for size in sizes:
                env = envs[str(size)]
                image_sps[str(size)].append(measure(env, seconds, seed).steps_per_s)
                for camera in CAMERAS:
                    fps[str(size)][camera].append(render_fps(env.unwrapped.robot, camera, size, seconds))
                if progress is not None:
                    progress(f"{size} px")
    finally:
        for env in envs.values():
            env.close()
    by_size = {str(size): _describe_size(state_sps, image_sps[str(size)], fps[str(size)]) for size in sizes}
    return {
        "benchmark": "render",
        "settings": {"env_id": ENV_ID, "cameras": list(CAMERAS), "sizes": sizes, "seconds": seconds,
                     "repeats": repeats, "seed": seed, "actions": "uniform random", "shadows": False},
        "definitions": {
            "env_steps_per_s": "env.step calls per second, resets inside the timed window",
            "render_fps": "SimArm.render(camera, size, size, shadows=False) per second, one camera alone",
            "ms_per_step.images": "1000 / median image env steps per second",
            "ms_per_step.physics_and_env": "1000 / median state-only env steps per second",
            "ms_per_step.rendering": "ms per image env step minus ms per state-only step, per repeat",
            "ms_per_step.rendering_from_fps": "sum over cameras of 1000 / render_fps, per repeat",
            "bottleneck": "rendering if ms_per_step.rendering > ms_per_step.physics_and_env, else physics",
        },
        "machine": {**machine_info(), **gl},
        "state_env": {"steps_per_s": _summary(state_sps),
                      "ms_per_step": 1000.0 / statistics.median(state_sps)},
        "sizes": by_size,
    }
