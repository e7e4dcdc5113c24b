"""Multi-process ROS 2 scenarios run by tests/test_bridge.py, each in a private network namespace.

``python tests/ros2_scenarios.py <scenario>`` starts ``robot-rl bridge`` processes, drives them
from this process over real DDS (loopback-only configuration, set before any participant) and
prints one JSON line of findings; failed checks raise (non-zero exit, traceback on stderr).
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
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.hardware.transport import TransportConfig, use_loopback_network  # noqa: E402

DOMAIN = 17
use_loopback_network()  # before anything can create a participant
# Bridges serve their local e-stop channel in the runtime directory (hardware/estop.py); a private
# one per run keeps concurrent runs on this host (other network namespaces) from sharing sockets
# (tests/netns.py gives one; this covers running the file directly).
os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="robot_rl_run_")
atexit.register(shutil.rmtree, os.environ["XDG_RUNTIME_DIR"], ignore_errors=True)

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import robot_rl  # noqa: E402,F401
from robot_rl.envs.config import Ros2ArmConfig  # noqa: E402
from robot_rl.hardware.ros2_arm import Ros2Arm  # noqa: E402
from robot_rl.hardware.transport import make_transport  # noqa: E402
from robot_rl.robot import (  # noqa: E402
    EndEffectorCommand,
    JointCommand,
    ResetRequest,
    SafetyStopError,
    StaleStateError,
)
from robot_rl.envs.experts import make_expert  # noqa: E402
from bridge_process import BridgeProcess as SharedBridgeProcess  # noqa: E402  (tests/ is the script's directory)

BACKEND = os.environ.get("ROBOT_RL_TEST_BACKEND", "dds")  # rclpy on a ROS 2 machine
TRANSPORT = {"backend": BACKEND, "network": "loopback", "domain_id": DOMAIN}


def BridgeProcess(*args: str) -> SharedBridgeProcess:
    """A bridge on this file's domain and backend."""
    return SharedBridgeProcess(*args, domain=DOMAIN, backend=BACKEND)


def arm_config(namespace: str = "") -> Ros2ArmConfig:
    return Ros2ArmConfig(transport=TransportConfig(**TRANSPORT, namespace=namespace))


def tool_speed(arm: Ros2Arm, seconds: float) -> float:
    """Mean tool speed (m/s) over ``seconds`` from the bridge's state stream."""
    start = arm.read_state()
    time.sleep(seconds)
    end = arm.read_state()
    return float(np.linalg.norm(end.ee_pos - start.ee_pos) / max(end.timestamp - start.timestamp, 1e-9))


def wait_event(arm: Ros2Arm, kind: str, timeout: float = 2.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in list(arm.events):
            if event["kind"] == kind:
                return event
        time.sleep(0.01)
    raise AssertionError(f"no {kind!r} event within {timeout} s; events: {list(arm.events)}")


# --------------------------------------------------------------------------- scenarios
def episodes() -> dict:
    """ArmEnv over ROS 2: the arm moves where commanded; the scripted expert solves pick."""
    bridge = BridgeProcess("--robot", "sim", "--task", "pick")
    findings: dict = {}
    try:
        env = gym.make("RobotRL/ArmPickCube-v0", robot="ros2", overrides={"robot": {"ros2": {"transport": TRANSPORT}}})
        obs, _ = env.reset(seed=3)
        start = obs["ee_pos"].copy()
        for _ in range(5):
            obs, *_ = env.step(np.array([1.0, 0.0, 0.0, 1.0], np.float32))  # +3 cm x per step
        moved = obs["ee_pos"] - start
        findings["moved_x"] = float(moved[0])
        assert 0.10 <= moved[0] <= 0.16 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, moved
        successes = []
        expert = make_expert(env)
        for seed in (0, 1):
            obs, info = env.reset(seed=seed)
            expert.reset()
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                done = terminated or truncated
            successes.append(bool(info["is_success"]))
        findings["expert_successes"] = successes
        assert all(successes), successes
        findings["traffic"] = env.unwrapped.robot.traffic()
        env.close()
    finally:
        findings["bridge"] = bridge.stop()
    assert findings["bridge"]["commands_received"] == findings["traffic"]["commands_sent"], findings
    return findings


def safety() -> dict:
    """E-stop within one control period (the client raising SafetyStopError while it lasts),
    clipping reported, NaN rejected, heartbeat hold."""
    bridge = BridgeProcess("--robot", "sim", "--task", "reach", "--set", "safety.command_timeout=0.3")
    findings: dict = {}
    try:
        arm = Ros2Arm(arm_config())
        state = arm.reset(ResetRequest(arm.spec.home, 0.04))
        raw = make_transport(TransportConfig(**TRANSPORT))
        joints_pub = raw.publisher("forward_position_controller/commands", "std_msgs/msg/Float64MultiArray")
        estop_pub = raw.publisher("robot_rl/estop", "std_msgs/msg/Bool")
        time.sleep(0.5)  # discovery of the raw publishers

        # Moving at 0.5 m/s toward a far target, then e-stop: the tool must stop within 0.1 s.
        target = state.ee_pos + np.array([0.0, 0.3, 0.0])
        for _ in range(3):
            arm.command(EndEffectorCommand(target, state.ee_quat, 0.04))
            arm.advance(0.1)
        moving = tool_speed(arm, 0.05)
        estop_pub.publish(raw.message("std_msgs/msg/Bool", data=True))
        sent = arm.read_state().timestamp
        engaged = wait_event(arm, "estop_engaged")
        findings["estop_latency_s"] = engaged["time"] - sent
        assert engaged["time"] - sent <= 0.1, findings
        safety_stops = 0
        for _ in range(5):  # the client keeps commanding: ignored while stopped, every step refused
            arm.command(EndEffectorCommand(target, state.ee_quat, 0.04))
            try:
                arm.advance(0.1)
            except SafetyStopError:
                safety_stops += 1
        try:
            arm.reset(ResetRequest(arm.spec.home, 0.04))
        except SafetyStopError as exc:
            findings["reset_while_stopped"] = str(exc)[:80]
        stopped = tool_speed(arm, 0.2)
        findings.update(speed_before=moving, speed_after=stopped, safety_stops=safety_stops)
        assert moving > 0.2 and stopped < 0.01 and safety_stops == 5, findings
        assert "e-stop is engaged" in findings.get("reset_while_stopped", ""), findings
        # Releasing over the public topic is refused (reported); the arm stays stopped.
        estop_pub.publish(raw.message("std_msgs/msg/Bool", data=False))
        findings["topic_release"] = wait_event(arm, "estop_release_refused")["detail"]
        assert arm.safety_stopped and tool_speed(arm, 0.2) < 0.01, findings
        try:
            arm.advance(0.1)
            raise AssertionError("a step went through after a refused release")
        except SafetyStopError:
            pass
        # Released by the local command on this host (the bridge's Unix socket).
        release = subprocess.run([sys.executable, "-m", "robot_rl.cli", "bridge", "estop", "--release",
                                  "--domain-id", str(DOMAIN)], capture_output=True, text=True, timeout=60)
        assert release.returncode == 0, release.stderr
        findings["local_release"] = json.loads(release.stdout)
        findings["released_by"] = wait_event(arm, "estop_released")["detail"]
        assert not arm.safety_stopped
        arm.command(EndEffectorCommand(state.ee_pos, state.ee_quat, 0.04))
        arm.advance(0.1)  # released: steps go through again

        # Joint targets beyond the limits: clipped, reported, never exceeded.
        beyond = arm.spec.joint_upper + 0.5
        for _ in range(10):
            arm.command(JointCommand(beyond, 0.04))
            arm.advance(0.1)
        clipped = wait_event(arm, "clipped")
        findings["clipped"] = clipped["detail"]
        assert np.all(arm.read_state().joint_pos <= arm.spec.joint_upper + 0.02)

        # NaN command: rejected, the arm keeps its previous target.
        hold = arm.spec.home
        for _ in range(20):
            arm.command(JointCommand(hold, 0.04))
            arm.advance(0.1)
        joints_pub.publish(raw.message("std_msgs/msg/Float64MultiArray", data=[float("nan")] * 7))
        wait_event(arm, "rejected")
        for _ in range(3):
            arm.command(JointCommand(hold, 0.04))
            after = arm.advance(0.1)
        findings["hold_error_after_nan_rad"] = float(np.max(np.abs(after.joint_pos - hold)))
        assert findings["hold_error_after_nan_rad"] < 0.02, findings

        # Heartbeat: no command for longer than command_timeout → hold.
        arm.command(EndEffectorCommand(state.ee_pos, state.ee_quat, 0.04))
        wait_event(arm, "command_stale", timeout=2.0)

        # A SIGKILLed client (reliable reader that never acknowledges again, until its lease ends)
        # must not stall the bridge's loop: the state keeps flowing at the tick rate.
        client = subprocess.Popen([sys.executable, __file__, "_client"], stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "connected"
        before = arm.traffic()["states_received"]
        client.send_signal(signal.SIGKILL)
        client.wait()
        time.sleep(5.0)
        findings["states_in_5s_after_client_kill"] = arm.traffic()["states_received"] - before
        assert findings["states_in_5s_after_client_kill"] > 0.5 * 5.0 * 500, findings  # slots are skipped under load, never stalled
        raw.close()
        arm.close()
    finally:
        findings["bridge"] = bridge.stop()
    return findings


def commands_and_images() -> dict:
    """JointTrajectory and TwistStamped commands from a plain ROS 2 publisher, /clock, and camera
    images (raw into the env's observations, JPEG on the compressed topic)."""
    bridge = BridgeProcess("--robot", "sim", "--task", "reach", "--clock", "--cameras", "scene", "wrist",
                           "--compressed", "--set", "safety.command_timeout=0.3")
    findings: dict = {}
    try:
        raw = make_transport(TransportConfig(**TRANSPORT))
        received: dict[str, list] = {"clock": [], "jpeg": []}
        raw.subscribe("/clock", "rosgraph_msgs/msg/Clock", lambda m: received["clock"].append(m.clock.sec + m.clock.nanosec * 1e-9))
        raw.subscribe("camera/scene/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                      lambda m: received["jpeg"].append((m.format, bytes(m.data))))
        trajectory_pub = raw.publisher("joint_trajectory_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory")
        twist_pub = raw.publisher("robot_rl/tool_twist", "geometry_msgs/msg/TwistStamped")
        env = gym.make("RobotRL/ArmReach-v0", robot="ros2", images=True,
                       overrides={"robot": {"ros2": {"transport": TRANSPORT}}})
        obs, _ = env.reset(seed=0)
        arm = env.unwrapped.robot
        first = obs["image_wrist"].copy()
        for _ in range(5):
            obs, *_ = env.step(np.array([0.0, 1.0, 0.0, -1.0], np.float32))
        findings["image_shapes"] = [list(obs["image_scene"].shape), list(obs["image_wrist"].shape)]
        findings["wrist_image_change"] = float(np.abs(obs["image_wrist"].astype(int) - first).mean())
        assert findings["image_shapes"] == [[128, 128, 3], [128, 128, 3]] and findings["wrist_image_change"] > 1.0

        # A two-point trajectory (joint names shuffled, as a controller accepts them).
        start = arm.read_state().joint_pos
        goal = start + np.array([0.2, 0.0, 0.0, -0.1, 0.0, 0.0, 0.2])
        order = [6, 0, 3, 1, 2, 4, 5]
        point = lambda q, t: raw.message(  # noqa: E731
            "trajectory_msgs/msg/JointTrajectoryPoint", positions=[float(q[i]) for i in order],
            time_from_start=raw.message("builtin_interfaces/msg/Duration", sec=int(t), nanosec=int((t % 1) * 1e9)))
        trajectory_pub.publish(raw.message("trajectory_msgs/msg/JointTrajectory",
                                           joint_names=[arm.spec.joint_names[i] for i in order],
                                           points=[point((start + goal) / 2, 0.5), point(goal, 1.0)]))
        time.sleep(1.8)
        findings["trajectory_error_rad"] = float(np.max(np.abs(arm.read_state().joint_pos - goal)))
        assert findings["trajectory_error_rad"] < 0.02, findings

        # A tool twist of 5 cm/s along +z for 0.5 s, then silence: the arm stops by itself.
        before = arm.read_state().ee_pos
        for _ in range(10):
            twist_pub.publish(raw.message("geometry_msgs/msg/TwistStamped", twist=raw.message(
                "geometry_msgs/msg/Twist", linear=raw.message("geometry_msgs/msg/Vector3", z=0.05))))
            time.sleep(0.05)
        time.sleep(1.0)
        moved = arm.read_state().ee_pos - before
        findings["twist_moved_m"] = moved.tolist()
        assert 0.015 < moved[2] < 0.045 and np.all(np.abs(moved[:2]) < 0.005), findings
        assert tool_speed(arm, 0.2) < 0.005
        wait_event(arm, "command_stale")

        findings["clock_messages"] = len(received["clock"])
        assert len(received["clock"]) > 100 and np.all(np.diff(received["clock"]) > 0)
        fmt, data = received["jpeg"][-1]
        from io import BytesIO

        from PIL import Image
        findings["jpeg"] = [fmt, list(np.asarray(Image.open(BytesIO(data))).shape)]
        assert findings["jpeg"] == ["jpeg", [128, 128, 3]]
        env.close()
        raw.close()
    finally:
        findings["bridge"] = bridge.stop()
    return findings


def hardware_chain() -> dict:
    """A real-arm bridge (hardware config) in front of a "ros2_control arm" (the sim bridge):
    reset drives home, tool targets move the arm, and a SIGKILLed joint-state publisher makes
    the bridge hold and the client raise StaleStateError."""
    from robot_rl.sim.sim_arm import ARM_JOINTS, HOME, VELOCITY_LIMITS, SimArm

    sim = SimArm("reach")
    lower, upper = sim.spec.joint_lower, sim.spec.joint_upper
    sim.close()
    config = {
        "name": "sim_as_ros2_control", "joint_names": list(ARM_JOINTS), "joint_lower": lower.tolist(),
        "joint_upper": upper.tolist(), "joint_velocity_limit": VELOCITY_LIMITS.tolist(), "home": HOME.tolist(),
        "kinematics": "franka_panda",
        "state": {"joint_states_topic": "/sim/joint_states"},
        "command": {"mode": "position", "topic": "/sim/forward_position_controller/commands", "rate_hz": 100.0},
        "safety": {"state_timeout": 0.1, "command_timeout": 0.5},
    }
    path = Path(tempfile.mkdtemp()) / "arm.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    robot_arm = BridgeProcess("--robot", "sim", "--task", "reach", "--namespace", "/sim", "--set",
                              "safety.command_timeout=2.0")
    front = BridgeProcess("--robot", str(path), "--namespace", "/arm")
    findings: dict = {}
    try:
        arm = Ros2Arm(arm_config("/arm"))
        away = HOME + np.array([0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3])  # tool 7 cm sideways, wrist turned
        state = arm.reset(ResetRequest(away, 0.0))
        findings["reset_error_rad"] = float(np.max(np.abs(state.joint_pos - away)))
        assert findings["reset_error_rad"] < 0.02, findings
        target = state.ee_pos + np.array([0.05, 0.0, -0.05])
        for _ in range(15):
            arm.command(EndEffectorCommand(target, state.ee_quat, 0.0))
            state = arm.advance(0.1)
        findings["tool_error_m"] = float(np.linalg.norm(state.ee_pos - target))
        refused = HOME + np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # tool far outside the box
        try:
            arm.reset(ResetRequest(refused, 0.0))
            raise AssertionError("a reset pose outside the workspace was accepted")
        except ValueError as exc:
            findings["refused_reset"] = str(exc)[:120]
        assert findings["tool_error_m"] < 0.01, findings
        robot_arm.process.send_signal(signal.SIGKILL)
        robot_arm.process.wait(timeout=10)
        stale = wait_event(arm, "state_stale", timeout=3.0)
        findings["stale_event"] = stale["detail"]
        try:
            arm.command(EndEffectorCommand(target, state.ee_quat, 0.0))
            arm.advance(0.1)
            raise AssertionError("advance returned although the arm's joint states stopped")
        except StaleStateError as exc:
            findings["client_error"] = str(exc)[:80]
        arm.close()
    finally:
        findings["front_bridge"] = front.stop()
        if robot_arm.process.poll() is None:
            robot_arm.process.kill()
    assert findings["front_bridge"]["stale_ticks"] > 0, findings
    return findings


def train() -> dict:
    """``robot-rl train`` unchanged over ROS 2 (env.robot.kind=ros2): episodes stored, evaluation
    run, checkpoint written."""
    from robot_rl.data import EpisodeStore

    bridge = BridgeProcess("--robot", "sim", "--task", "reach")
    run_dir = Path(tempfile.mkdtemp()) / "run"
    findings: dict = {}
    try:
        command = [sys.executable, "-m", "robot_rl.cli", "train", "--task", "reach", "--run-dir", str(run_dir),
                   "--set", "env.robot.kind=ros2", f"env.robot.ros2.transport.backend={BACKEND}",
                   f"env.robot.ros2.transport.domain_id={DOMAIN}", "train.total_steps=100", "train.warmup_steps=50",
                   "train.eval_every=100", "train.eval_episodes=1", "train.checkpoint_every=100",
                   "train.torch_threads=1", "train.progress=false", "agent.batch_size=32"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        with EpisodeStore.open(run_dir / "seed_0" / "replay.zarr", "r") as store:
            findings["episodes"] = store.n_episodes
        findings["eval_rows"] = len((run_dir / "seed_0" / "logs" / "eval.csv").read_text().splitlines()) - 1
        findings["checkpoint"] = (run_dir / "seed_0" / "checkpoints" / "last.pt").exists()
        assert findings == {"episodes": 2, "eval_rows": 1, "checkpoint": True}, findings
    finally:
        findings["bridge"] = bridge.stop()
    return findings


SCENARIOS = {"train": train, "episodes": episodes, "safety": safety, "commands_and_images": commands_and_images,
             "hardware_chain": hardware_chain}

def _client() -> None:
    """A client that connects and then waits to be killed (see ``safety``)."""
    Ros2Arm(arm_config())
    print("connected", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    if sys.argv[1] == "_client":
        _client()
        sys.exit(0)
    try:
        print(json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
    except BaseException:
        for bridge in BridgeProcess.started:  # what the bridges said, for the failure report
            print(f"--- bridge {bridge.process.args[4:]}:\n{''.join(bridge.lines[-40:])}", file=sys.stderr)
        raise
