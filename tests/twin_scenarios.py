"""Reality-gap twin scenarios run by tests/test_twin.py, each in a private network namespace.

``python tests/twin_scenarios.py <scenario>`` starts a ``robot-rl bridge --twin`` process, drives it
from this process over real DDS (loopback-only configuration, set before any participant) and
prints one JSON line of findings; failed checks raise (non-zero exit, traceback on stderr).

* ``fast_twin``: ``robot-rl bridge --twin default --task lift --time-scale 4``; ``ArmEnv`` steps of
  ``RobotRL/ArmLift-v0`` over ROS 2 (robot kind ``ros2``) succeed, and the twin's ``/clock``
  (published by default when the time scale is not 1) runs about four times faster than the wall.
* ``finetune_faults``: ``robot-rl finetune`` of a small sim-trained lift agent on the twin, while
  the twin stops publishing for 2 s (SIGSTOP/SIGCONT of its process) and, later, its e-stop is
  engaged for 2 s and released through the local channel; the run must finish with both faults
  in ``logs/robot_events.csv`` and a store without a half or doubled episode.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.hardware.transport import TransportConfig, use_loopback_network  # noqa: E402

use_loopback_network()  # before anything can create a participant
# The bridge serves its local e-stop channel in the runtime directory: a private one per run
# (tests/netns.py gives one; this covers running the file directly).
os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="robot_rl_run_")
atexit.register(shutil.rmtree, os.environ["XDG_RUNTIME_DIR"], ignore_errors=True)

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import robot_rl  # noqa: E402,F401  (registers the RobotRL/* ids)
from robot_rl.hardware import topics  # noqa: E402
from robot_rl.hardware.transport import make_transport  # noqa: E402
from bridge_process import BridgeProcess  # noqa: E402  (tests/ is the script's directory)

DOMAIN = 29  # not another scenario's (17, 19, 21, 23, 27, 117, 121): no crosstalk even outside a namespace
BACKEND = os.environ.get("ROBOT_RL_TEST_BACKEND", "dds")  # rclpy on a ROS 2 machine
TRANSPORT = {"backend": BACKEND, "network": "loopback", "domain_id": DOMAIN}
TIME_SCALE = 4.0


def TwinBridge(*args: str) -> BridgeProcess:
    """A bridge on this file's domain and backend."""
    return BridgeProcess(*args, domain=DOMAIN, backend=BACKEND)


def fast_twin() -> dict:
    bridge = TwinBridge("--twin", "default", "--task", "lift", "--time-scale", str(TIME_SCALE))
    findings: dict = {"ready": bridge.ready}
    clock: list[tuple[float, float]] = []  # (wall time received, sim time)
    try:
        raw = make_transport(TransportConfig(**TRANSPORT))
        raw.subscribe(topics.CLOCK, "rosgraph_msgs/msg/Clock", lambda m: clock.append(
            (time.perf_counter(), m.clock.sec + m.clock.nanosec * 1e-9)), topics.DEFAULT)
        env = gym.make("RobotRL/ArmLift-v0", robot="ros2", overrides={"robot": {"ros2": {"transport": TRANSPORT}}})
        obs, _ = env.reset(seed=0)
        start_height = float(obs["ee_pos"][2])
        stamps, started = [], time.perf_counter()
        for _ in range(8):
            obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, -0.5, 1.0], np.float32))
            assert all(np.all(np.isfinite(value)) for value in obs.values()), obs
            assert not terminated and not truncated
            stamps.append(env.unwrapped.robot.read_state().timestamp)
        findings["steps_wall_s"] = time.perf_counter() - started
        findings["steps_sim_s"] = stamps[-1] - stamps[0]
        findings["tool_drop_m"] = start_height - float(obs["ee_pos"][2])  # 1.5 cm asked per step
        env.close()
        time.sleep(0.5)  # a stretch of /clock with no client at all
        received = [entry for entry in clock if entry[0] >= clock[-1][0] - 1.0]  # the last wall second
        findings["clock_messages"] = len(clock)
        findings["clock_ratio"] = (received[-1][1] - received[0][1]) / (received[-1][0] - received[0][0])
        raw.close()
    finally:
        findings["bridge"] = bridge.stop()
    return findings


def finetune_faults() -> dict:
    import csv
    from pathlib import Path

    from robot_rl.data import EpisodeStore
    from robot_rl.training import load_train_config, train
    from robot_rl.training.checkpoint import load_checkpoint

    work = Path(tempfile.mkdtemp(prefix="robot_rl_finetune_"))
    small = {"env": {"task": {"name": "lift"}}, "agent": {"hidden_sizes": [32, 32], "batch_size": 32},
             "train": {"total_steps": 100, "warmup_steps": 50, "eval_every": 100, "eval_episodes": 1,
                       "progress": False, "torch_threads": 1}}
    train(load_train_config(overrides=small), work / "sim")  # the "pretrained in simulation" agent
    bridge = TwinBridge("--twin", "identical", "--task", "lift", "--time-scale", "4", "--state-hz", "100")
    run_dir = work / "finetune"
    command = [sys.executable, "-m", "robot_rl.cli", "finetune", "--from", str(work / "sim"), "--steps", "600",
               "--run-dir", str(run_dir), "--set", f"env.robot.ros2.transport.domain_id={DOMAIN}",
               f"env.robot.ros2.transport.backend={BACKEND}", "env.robot.ros2.state_timeout=0.3",
               "train.warmup_steps=50", "train.eval_every=600", "train.eval_episodes=1", "train.progress=false",
               "train.robot_recovery_timeout=60"]
    finetune = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store_path = run_dir / "seed_0" / "replay.zarr"

    def wait_for_episodes(count: int) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert finetune.poll() is None, finetune.communicate()
            if store_path.exists():
                with EpisodeStore.open(store_path, "r") as store:
                    if store.n_episodes >= count:
                        return
            time.sleep(0.2)
        raise AssertionError(f"the fine-tuning run did not reach {count} episodes")

    def estop(action: str) -> None:
        subprocess.run([sys.executable, "-m", "robot_rl.cli", "bridge", "estop", f"--{action}", "--domain-id",
                        str(DOMAIN)], check=True, capture_output=True, timeout=30)

    findings: dict = {}
    try:
        wait_for_episodes(2)
        time.sleep(0.5)  # mid-episode
        bridge.process.send_signal(signal.SIGSTOP)  # the twin stops publishing
        time.sleep(2.0)
        bridge.process.send_signal(signal.SIGCONT)
        wait_for_episodes(5)
        time.sleep(0.5)
        estop("engage")
        time.sleep(2.0)
        estop("release")
        out, err = finetune.communicate(timeout=180)
        assert finetune.returncode == 0, err[-4000:]
    finally:
        if finetune.poll() is None:
            finetune.kill()
        findings["bridge"] = bridge.stop()
    with open(run_dir / "seed_0" / "logs" / "robot_events.csv", newline="") as f:
        findings["robot_errors"] = sorted({row["error"] for row in csv.DictReader(f)})
    with EpisodeStore.open(store_path, "r") as store:
        seeds = store.episodes["seed"].tolist()
        findings.update(n_steps=store.n_steps, lengths_sum=int(np.sum(np.diff([0, *store.episode_ends]))),
                        last_end=int(store.episode_ends[-1]), seeds_unique=len(set(seeds)) == len(seeds))
    findings["checkpoint_env_steps"] = load_checkpoint(run_dir / "seed_0" / "checkpoints" / "last.pt")["counters"]["env_steps"]
    shutil.rmtree(work, ignore_errors=True)
    return findings


SCENARIOS = {"fast_twin": fast_twin, "finetune_faults": finetune_faults}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
