"""``env.step`` over ROS 2: the sim bridge in a separate process, the env client here.

For each policy rate (10 Hz and 100 Hz by default) a fresh ``robot-rl bridge --robot sim``
process is started on the loopback-only DDS configuration, ``ArmReach-v0`` is stepped through it
with ``robot="ros2"`` while (optionally) a SAC learner trains on a synthetic replay buffer in a
thread of the same client process, and we record:

* ``overhead_ms``: wall time of ``env.step`` minus the control period (p50 / p99 / max). The
  client waits for the first state stamped one period after the state its command was based on,
  so 0 means "exactly one control period"; negative values are steps that started late (after
  a slow policy/learner) and caught up;
* ``states_lost``: gaps in the stamps of ``joint_states`` (every bridge tick publishes one);
* ``commands_lost``: commands the client sent minus commands the bridge received;
* the same loop with the MuJoCo arm in process, for comparison (its ``env.step`` is pure compute,
  not paced: ``step_ms``).

Goal: p99 overhead ≤ 2 ms and zero losses at 100 Hz with the learner running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from robot_rl.bench.env_bench import machine_info

DOMAIN_ID = 42


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    array = np.asarray(values_ms)
    return {"p50": round(float(np.percentile(array, 50)), 3), "p99": round(float(np.percentile(array, 99)), 3),
            "max": round(float(array.max()), 3), "n": int(array.size)}


class _Learner:
    """SAC updates (N=2, 256×256, batch 256) in a background thread of this process."""

    def __init__(self) -> None:
        from robot_rl.bench.learner_bench import ours

        self._run = ours(ensemble_size=2, subset_size=2, device="cpu")
        self._stop = threading.Event()
        self.updates = 0
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-learner")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._run(1)
            self.updates += 1

    def __enter__(self) -> _Learner:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _start_bridge(domain_id: int, env: dict[str, str], twin: str | None = None) -> tuple[subprocess.Popen, list[str]]:
    """The bridge process and the list its stderr lines are drained into (on a thread: a pipe
    nobody reads fills up and blocks the bridge)."""
    command = [sys.executable, "-m", "robot_rl.cli", "bridge", "--robot", "sim", "--task", "reach",
               "--backend", "dds", "--network", "loopback", "--domain-id", str(domain_id),
               *(["--twin", twin] if twin else [])]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in process.stderr:
            lines.append(line)
            if '"ready"' in line:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(120)
    if not any('"ready"' in line for line in lines):
        process.kill()
        raise RuntimeError("the bridge did not start: " + "".join(lines[-20:]))
    return process, lines


def _stop_bridge(process: subprocess.Popen, lines: list[str]) -> dict[str, Any]:
    process.send_signal(2)  # SIGINT: clean shutdown, final statistics on stderr
    process.wait(timeout=30)
    time.sleep(0.1)  # the drain thread reads the last lines
    stopped = [line for line in lines if '"stopped"' in line]
    return json.loads(stopped[-1]) if stopped else {}


def _drive(env: Any, seconds: float, seed: int) -> list[float]:
    """Step with small random actions for ``seconds``; per-step overhead beyond the period, ms."""
    rng = np.random.default_rng(seed)
    dt = env.unwrapped.dt
    overheads: list[float] = []
    env.reset(seed=seed)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        action = rng.uniform(-0.3, 0.3, env.action_space.shape).astype(np.float32)
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        overheads.append((time.perf_counter() - start - dt) * 1e3)
        if terminated or truncated:
            env.reset(seed=int(rng.integers(1 << 30)))
    return overheads


def measure_over_ros2(rate_hz: float, seconds: float, learner: bool, domain_id: int,
                      twin: str | None = None) -> dict[str, Any]:
    import gymnasium as gym

    env_vars = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bridge, lines = _start_bridge(domain_id, env_vars, twin)
    try:
        env = gym.make("RobotRL/ArmReach-v0", robot="ros2", overrides={
            "control": {"control_hz": rate_hz},
            "robot": {"ros2": {"transport": {"backend": "dds", "network": "loopback", "domain_id": domain_id}}}})
        arm = env.unwrapped.robot
        try:
            if learner:
                with _Learner() as running:
                    overheads = _drive(env, seconds, seed=0)
                updates = running.updates
            else:
                overheads, updates = _drive(env, seconds, seed=0), 0
            counts = arm.traffic()
        finally:
            env.close()
    finally:
        stats = _stop_bridge(bridge, lines)
    commands_received = int(stats.get("commands_received", -1))
    return {
        "rate_hz": rate_hz, "twin": twin, "learner_running": learner, "learner_updates_per_s": round(updates / seconds, 1),
        "overhead_ms": _percentiles(overheads),
        "states_received": counts["states_received"], "states_lost": counts["states_lost"],
        "commands_sent": counts["commands_sent"], "commands_lost": counts["commands_sent"] - commands_received,
        "bridge": stats,
    }


def measure_in_process(rate_hz: float, seconds: float) -> dict[str, Any]:
    import gymnasium as gym

    env = gym.make("RobotRL/ArmReach-v0", overrides={"control": {"control_hz": rate_hz}})
    try:
        step_ms = [overhead + 1e3 / rate_hz for overhead in _drive(env, seconds, seed=0)]
    finally:
        env.close()
    return {"rate_hz": rate_hz, "step_ms": _percentiles(step_ms)}


def run_bridge_benchmark(rates: tuple[float, ...] = (10.0, 100.0), seconds: float = 20.0, learner: bool = True,
                         domain_id: int = DOMAIN_ID, twin: str | None = None) -> dict[str, Any]:
    from robot_rl.hardware.transport import use_loopback_network

    use_loopback_network(domain_id)  # before any participant exists, here and in the bridge child
    results: dict[str, Any] = {"machine": machine_info(), "seconds_per_case": seconds, "cases": []}
    for rate in rates:
        results["cases"].append({"over_ros2": measure_over_ros2(rate, seconds, learner, domain_id, twin),
                                 "in_process": measure_in_process(rate, min(seconds, 5.0))})
    fast = [case["over_ros2"] for case in results["cases"] if case["over_ros2"]["rate_hz"] >= 100]
    if fast:
        case = fast[0]
        results["goal"] = {"p99_overhead_ms_at_100hz": case["overhead_ms"]["p99"], "target_ms": 2.0,
                           "met": case["overhead_ms"]["p99"] <= 2.0 and case["states_lost"] == 0
                           and case["commands_lost"] == 0}
    return results
