"""Environment throughput: ``RobotRL/ArmPickCube-v0`` side by side with gymnasium's ``Pusher-v5``.

Both are MuJoCo arms driven by random actions (fixed seed, reset at episode end, resets inside
the timed window). They differ in how much physics one env step contains: our arm runs 50
physics steps of 2 ms per 10 Hz control step, Pusher runs ``frame_skip = 5`` steps of 10 ms. So
besides env steps per second the benchmark reports **physics steps (substeps) per second**, the
fair measure of simulator cost, and their ratio ours / Pusher (target: at least
:data:`SUBSTEP_RATIO_TARGET`). A third case, our env with 128×128 ``scene`` and ``wrist`` camera
images in the observation, gives the extra cost of rendering per env step.

The three cases are measured in turn within each repeat, so slow drifts of the machine hit all
of them alike; ratios and differences are computed per repeat and summarised by their median.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, Callable

import gymnasium as gym
import numpy as np

import robot_rl
import robot_rl.sim  # noqa: F401  (picks the headless OpenGL backend before Pusher-v5 imports MuJoCo)
from robot_rl.envs.config import ENV_IDS

OUR_ENV_ID = ENV_IDS["pick"]
PEER_ENV_ID = "Pusher-v5"
SUBSTEP_RATIO_TARGET = 0.5
IMAGE_CAMERAS = ("scene", "wrist")
CASES = ("ours", "pusher", "ours_images")  # measured in this order within every repeat
WARMUP_STEPS = 10  # untimed steps per env before the first measurement
ACTION_BLOCK = 1024  # random actions drawn up front and cycled, so sampling is not timed


@dataclass(frozen=True)
class Measurement:
    """One timed run of one environment."""

    steps: int  # env steps taken
    resets: int  # episode ends (terminated or truncated) inside the window
    physics_steps: int  # mj_step calls, including those inside resets
    seconds: float  # wall time of the window

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def substeps_per_s(self) -> float:
        return self.physics_steps / self.seconds

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "steps_per_s": self.steps_per_s, "substeps_per_s": self.substeps_per_s}


def physics_step_counter(env: gym.Env) -> Callable[[int], int]:
    """Return ``f(env_steps_so_far) -> physics steps since this call``.

    Our ``SimArm`` counts its ``mj_step`` calls (``robot.physics_steps``, so reset settling is
    included); gymnasium's MuJoCo envs run exactly ``frame_skip`` physics steps per env step and
    none in ``reset``.
    """
    base = env.unwrapped
    robot = getattr(base, "robot", None)
    if robot is not None and hasattr(robot, "physics_steps"):
        start = robot.physics_steps
        return lambda env_steps: robot.physics_steps - start
    frame_skip = int(base.frame_skip)
    return lambda env_steps: env_steps * frame_skip


def random_actions(env: gym.Env, seed: int) -> np.ndarray:
    """:data:`ACTION_BLOCK` seeded uniform random actions from ``env``'s Box action space."""
    space = env.action_space
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, size=(ACTION_BLOCK, *space.shape)).astype(space.dtype)


def warm_up(env: gym.Env, seed: int) -> None:
    """Untimed steps once per env: renderer set-up, gymnasium's first-step checks."""
    env.reset(seed=seed)
    for action in random_actions(env, seed)[:WARMUP_STEPS]:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()


def measure(env: gym.Env, seconds: float, seed: int) -> Measurement:
    """Reset ``env`` with ``seed``, then step it with seeded uniform random actions for at least
    one step and ``seconds`` of wall time."""
    actions = random_actions(env, seed)
    env.reset(seed=seed)
    count_physics = physics_step_counter(env)
    steps = resets = 0
    start = time.perf_counter()
    while True:
        _, _, terminated, truncated, _ = env.step(actions[steps % ACTION_BLOCK])
        steps += 1
        if terminated or truncated:
            env.reset()
            resets += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return Measurement(steps=steps, resets=resets, physics_steps=count_physics(steps), seconds=elapsed)


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                             cpu_model)
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": version("numpy"),
        "mujoco": version("mujoco"),
        "gymnasium": version("gymnasium"),
        "robot_rl": robot_rl.__version__,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }


def _describe(env: gym.Env, measurements: list[Measurement]) -> dict[str, Any]:
    base = env.unwrapped
    if hasattr(base, "robot"):
        timestep = float(base.robot.model.opt.timestep)
        substeps_per_step = round(base.dt / timestep)
    else:
        timestep = float(base.model.opt.timestep)
        substeps_per_step = int(base.frame_skip)
    median_substeps = statistics.median(m.substeps_per_s for m in measurements)
    return {
        "env_id": env.spec.id if env.spec else type(base).__name__,
        "physics_timestep_s": timestep,
        "substeps_per_env_step": substeps_per_step,
        "median": {
            "steps_per_s": statistics.median(m.steps_per_s for m in measurements),
            "substeps_per_s": median_substeps,
            "realtime_factor": median_substeps * timestep,
        },
        "raw": [m.to_dict() for m in measurements],
    }


def run_env_bench(
    seconds: float = 2.0,
    repeats: int = 5,
    seed: int = 0,
    image_size: int = 128,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the three cases ``repeats`` times for ``seconds`` each; return a JSON-ready dict.

    ``progress`` (if given) is called with the case name after every measurement.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    image_overrides = {"observation": {"images": True, "cameras": list(IMAGE_CAMERAS),
                                       "image_height": image_size, "image_width": image_size}}
    makers: dict[str, Callable[[], gym.Env]] = {
        "ours": lambda: gym.make(OUR_ENV_ID),
        "pusher": lambda: gym.make(PEER_ENV_ID),
        "ours_images": lambda: gym.make(OUR_ENV_ID, overrides=image_overrides),
    }
    envs: dict[str, gym.Env] = {}
    try:
        for name in CASES:
            envs[name] = makers[name]()
            warm_up(envs[name], seed)
        runs: dict[str, list[Measurement]] = {name: [] for name in envs}
        for _ in range(repeats):
            for name, env in envs.items():
                runs[name].append(measure(env, seconds, seed))
                if progress is not None:
                    progress(name)
        results = {name: _describe(env, runs[name]) for name, env in envs.items()}
    finally:
        for env in envs.values():
            env.close()

    ratios = [o.substeps_per_s / p.substeps_per_s for o, p in zip(runs["ours"], runs["pusher"])]
    extra_ms = [1000.0 / i.steps_per_s - 1000.0 / o.steps_per_s for o, i in zip(runs["ours"], runs["ours_images"])]
    median_ratio = statistics.median(ratios)
    return {
        "benchmark": "env",
        "settings": {"seconds": seconds, "repeats": repeats, "seed": seed, "actions": "uniform random",
                     "image_size": [image_size, image_size], "image_cameras": list(IMAGE_CAMERAS)},
        "machine": machine_info(),
        "envs": results,
        "substep_ratio": {
            "definition": f"substeps/s of {OUR_ENV_ID} / substeps/s of {PEER_ENV_ID}, per repeat",
            "median": median_ratio,
            "raw": ratios,
            "target": SUBSTEP_RATIO_TARGET,
            "meets_target": median_ratio >= SUBSTEP_RATIO_TARGET,
        },
        "image_cost": {
            "definition": f"ms per env step with {'+'.join(IMAGE_CAMERAS)} images minus without, per repeat",
            "steps_per_s_state": results["ours"]["median"]["steps_per_s"],
            "steps_per_s_images": results["ours_images"]["median"]["steps_per_s"],
            "extra_ms_per_step_median": statistics.median(extra_ms),
            "extra_ms_per_step_raw": extra_ms,
        },
    }
