"""Arm-bridge scenarios run by tests/test_bridge_control.py, each in a private network namespace.

``python tests/bridge_scenarios.py <scenario>`` runs one scenario over real DDS (loopback-only
configuration, set before any participant) and prints one JSON line of findings; failed checks
raise (non-zero exit, traceback on stderr).

* ``camera_ticks``: the sim bridge (in this process, assembled like ``robot-rl bridge``) ticking
  at 500 Hz with cameras off and on, interleaved; per tick its wall time (``BridgeStats``) and
  its wall time minus the time the loop thread sat in the run queue while other threads had the
  CPU (``/proc/thread-self/schedstat``), so a loaded shared machine does not drown the signal.
* ``edge_checks``: a ``robot-rl bridge`` process gets malformed commands on every command topic
  from a plain publisher; all are refused and counted, the arm does not move, the bridge runs on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.hardware.transport import TransportConfig, use_loopback_network  # noqa: E402

use_loopback_network()  # before anything can create a participant

import numpy as np  # noqa: E402

DOMAIN = 19
TRANSPORT = {"backend": os.environ.get("ROBOT_RL_TEST_BACKEND", "dds"), "network": "loopback", "domain_id": DOMAIN}

CAMERAS = ("scene", "wrist")
IMAGE_SIZE = 128
IMAGE_HZ = 10.0  # the default camera rate
RUN_SECONDS = 3.0
REPEATS = 3


class _RunQueueClock:
    """Time the calling thread spent runnable but waiting for a CPU (s), from schedstat."""

    def __init__(self) -> None:
        path = "/proc/thread-self/schedstat"
        self._file = open(path, "rb") if os.path.exists(path) else None  # noqa: SIM115

    def __call__(self) -> float:
        if self._file is None:
            return 0.0
        self._file.seek(0)
        return int(self._file.read().split()[1]) * 1e-9


def timed_ticks(bridge: Any, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Run ``bridge`` for ``seconds`` of ticks; per tick (ms): wall time as ``BridgeStats``
    records it, and that minus the loop thread's run-queue wait during the tick."""
    step, waits, clock = bridge.step, [], None

    def step_with_wait() -> None:
        nonlocal clock
        clock = clock or _RunQueueClock()  # opened on the loop thread
        before = clock()
        step()
        waits.append(clock() - before)

    bridge.step = step_with_wait
    stats = bridge.run(threading.Event(), max_ticks=int(seconds * bridge.config.state_hz))
    wall = stats.tick_durations() * 1e3
    own = wall - np.asarray(waits[-wall.size:]) * 1e3
    return wall[25:], own[25:]  # without start-up


def open_sim_bridge(cameras: tuple[str, ...], stack: ExitStack) -> Any:
    from robot_rl.hardware.bridge import BridgeConfig
    from robot_rl.hardware.node import open_bridge

    config = BridgeConfig(cameras=cameras, image_height=IMAGE_SIZE, image_width=IMAGE_SIZE, image_hz=IMAGE_HZ,
                          compressed_images=bool(cameras), transport=TransportConfig(**TRANSPORT))
    return open_bridge("sim", "reach", config, stack)


def camera_ticks(open_bridge: Callable[[tuple[str, ...], ExitStack], Any] = open_sim_bridge) -> dict:
    """Tick durations with cameras off and on (interleaved runs, pooled percentiles)."""
    runs: dict[str, dict[str, list]] = {key: {"wall": [], "own": [], "stats": []} for key in ("off", "on")}
    for _ in range(REPEATS):
        for key, cameras in (("off", ()), ("on", CAMERAS)):
            with ExitStack() as stack:
                bridge = open_bridge(cameras, stack)
                wall, own = timed_ticks(bridge, RUN_SECONDS)
                runs[key]["wall"].append(wall)
                runs[key]["own"].append(own)
                runs[key]["stats"].append(bridge.stats)
    findings: dict[str, Any] = {"cameras": list(CAMERAS), "image_size": IMAGE_SIZE, "image_hz": IMAGE_HZ,
                                "seconds": RUN_SECONDS * REPEATS, "expected_frames": IMAGE_HZ * RUN_SECONDS * REPEATS}
    for key, run in runs.items():
        wall, own = np.concatenate(run["wall"]), np.concatenate(run["own"])
        stats = run["stats"]
        findings[key] = {
            "p50_ms": round(float(np.percentile(wall, 50)), 3), "p99_ms": round(float(np.percentile(wall, 99)), 3),
            "p99_ms_own": round(float(np.percentile(own, 99)), 3), "max_ms": round(float(wall.max()), 3),
            "p99_ms_by_run": [round(float(np.percentile(w, 99)), 3) for w in run["wall"]],
            "p99_ms_own_by_run": [round(float(np.percentile(o, 99)), 3) for o in run["own"]],
            "ticks": int(sum(s.ticks for s in stats)), "overruns": int(sum(s.overruns for s in stats)),
            "frames_published": int(sum(getattr(s, "frames_published", 0) for s in stats)),
            "frames_dropped": int(sum(getattr(s, "frames_dropped", 0) for s in stats)),
            "camera_errors": int(sum(getattr(s, "camera_errors", 0) for s in stats)),
        }
    return findings


def edge_checks() -> dict:
    """Malformed commands on every command topic of a ``robot-rl bridge`` process."""
    from ros2_scenarios import TRANSPORT as BRIDGE_TRANSPORT
    from ros2_scenarios import BridgeProcess, arm_config

    from robot_rl.hardware import topics
    from robot_rl.hardware.ros2_arm import Ros2Arm
    from robot_rl.hardware.transport import make_transport
    from robot_rl.robot import ResetRequest

    bridge = BridgeProcess("--robot", "sim", "--task", "reach")
    findings: dict[str, Any] = {}
    try:
        arm = Ros2Arm(arm_config())
        start = arm.reset(ResetRequest(arm.spec.home, 0.04))
        raw = make_transport(TransportConfig(**BRIDGE_TRANSPORT))
        answers: list[dict] = []
        raw.subscribe(topics.RESET_DONE, "std_msgs/msg/String", lambda m: answers.append(json.loads(m.data)))
        pubs = {name: raw.publisher(topic, type_name) for name, topic, type_name in (
            ("tool", topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped"),
            ("twist", topics.TOOL_TWIST, "geometry_msgs/msg/TwistStamped"),
            ("gripper", topics.GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray"),
            ("joints", topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray"),
            ("trajectory", topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory"),
            ("reset", topics.RESET, "std_msgs/msg/String"))}
        time.sleep(1.0)  # discovery of the raw publishers
        m = raw.message
        nan = float("nan")
        pose = m("geometry_msgs/msg/Pose", position=m("geometry_msgs/msg/Point", x=nan, y=0.0, z=0.3),
                 orientation=m("geometry_msgs/msg/Quaternion", x=1.0, y=0.0, z=0.0, w=0.0))
        point = m("trajectory_msgs/msg/JointTrajectoryPoint", positions=[0.0] * 3,
                  time_from_start=m("builtin_interfaces/msg/Duration", sec=1))
        reset = {"id": 424242, "joint_positions": [nan] * 7, "gripper_width": 0.04}
        bad = [
            ("tool", m("geometry_msgs/msg/PoseStamped", pose=pose)),
            ("twist", m("geometry_msgs/msg/TwistStamped", twist=m("geometry_msgs/msg/Twist",
                                                                  linear=m("geometry_msgs/msg/Vector3", z=float("inf"))))),
            ("gripper", m("std_msgs/msg/Float64MultiArray", data=[nan])),
            ("joints", m("std_msgs/msg/Float64MultiArray", data=[0.0] * 5)),
            ("trajectory", m("trajectory_msgs/msg/JointTrajectory", joint_names=list(arm.spec.joint_names),
                             points=[point])),
            ("reset", m("std_msgs/msg/String", data=json.dumps(reset))),
        ]
        for name, message in bad:
            pubs[name].publish(message)
        findings["sent_bad"] = len(bad)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and (
                sum(e["kind"] == "rejected" for e in list(arm.events)) < len(bad) or not answers):
            time.sleep(0.05)
        findings["rejected_events"] = sum(e["kind"] == "rejected" for e in list(arm.events))
        findings["reset_error"] = next((a.get("error", "") for a in answers if a["id"] == 424242), "")
        before = arm.traffic()["states_received"]
        time.sleep(0.5)
        findings["states_after"] = arm.traffic()["states_received"] - before
        findings["moved_rad"] = float(np.max(np.abs(arm.read_state().joint_pos - start.joint_pos)))
        assert not any(e["kind"] == "step_error" for e in list(arm.events)), list(arm.events)
        raw.close()
        arm.close()
    finally:
        findings["bridge"] = bridge.stop()
    assert findings["bridge"]["commands_rejected"] == findings["sent_bad"], findings
    assert findings["rejected_events"] == findings["sent_bad"], findings
    assert findings["moved_rad"] < 2e-3, findings
    return findings


SCENARIOS = {"camera_ticks": camera_ticks, "edge_checks": edge_checks}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
