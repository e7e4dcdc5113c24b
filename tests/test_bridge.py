"""The arm bridge node over real DDS between separate processes (private network namespace,
loopback-only Cyclone configuration): episodes through ``ArmEnv(robot="ros2")``, the safety
supervisor's e-stop / clipping / NaN / heartbeat behaviour, and a real-arm bridge (hardware
config) in front of a ros2_control-like arm whose joint-state publisher is SIGKILLed.

Each scenario lives in ``tests/ros2_scenarios.py`` and runs as its own process tree; a scenario
checks its own findings and prints them as JSON. With ROS 2 sourced, the same scenarios run on
the rclpy backend::

    source /opt/ros/humble/setup.bash
    ROBOT_RL_TEST_BACKEND=rclpy python -m pytest tests/test_bridge.py
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from netns import run_python

SCENARIOS = Path(__file__).with_name("ros2_scenarios.py")


def run_scenario(name: str, timeout: float = 240.0) -> dict:
    result = run_python(SCENARIOS, name, timeout=timeout)
    assert result.returncode == 0, f"scenario {name} failed:\n{result.stderr[-6000:]}"
    findings = json.loads(result.stdout.strip().splitlines()[-1])
    # Clean shutdown: nothing of the scenario is left running.
    leftovers = subprocess.run(["pgrep", "-f", "robot_rl.cli bridge .*--domain-id 17"], capture_output=True, text=True).stdout.split()
    assert [pid for pid in leftovers if int(pid) != os.getpid()] == [], "stray bridge processes"
    return findings


@pytest.mark.slow
def test_arm_env_episodes_over_ros2():
    findings = run_scenario("episodes")
    assert findings["expert_successes"] == [True, True]
    # Reliable keep-last-100 streams: a loss means the client stalled > 0.2 s (a badly overloaded
    # machine); the zero-loss goal is measured by `robot-rl bench bridge`.
    assert findings["traffic"]["states_lost"] <= 0.01 * findings["traffic"]["states_received"]
    assert findings["bridge"]["commands_received"] == findings["traffic"]["commands_sent"]


@pytest.mark.slow
def test_safety_supervisor_in_the_bridge():
    findings = run_scenario("safety")
    assert findings["estop_latency_s"] <= 0.1  # within one 10 Hz control period
    assert findings["speed_before"] > 0.2 and findings["speed_after"] < 0.01
    assert findings["safety_stops"] == 5  # every step while the e-stop is engaged raises SafetyStopError
    assert "e-stop is engaged" in findings["reset_while_stopped"]
    assert "ignored" in findings["topic_release"]  # data: false on robot_rl/estop is refused, and reported
    assert findings["local_release"]["estop_engaged"] is False  # robot-rl bridge estop --release (Unix socket)
    assert "local request by uid" in findings["released_by"]
    assert "outside limits" in findings["clipped"]
    assert findings["hold_error_after_nan_rad"] < 0.02
    assert findings["states_in_5s_after_client_kill"] > 1250  # a dead client does not stall the bridge (a loaded machine skips slots)


@pytest.mark.slow
def test_real_arm_bridge_holds_when_its_joint_states_stop():
    findings = run_scenario("hardware_chain")
    assert findings["reset_error_rad"] < 0.02 and findings["tool_error_m"] < 0.01
    assert "outside the safety workspace" in findings["refused_reset"]
    assert "no fresh robot state" in findings["stale_event"]
    assert findings["front_bridge"]["stale_ticks"] > 0


@pytest.mark.slow
def test_trajectory_twist_clock_and_camera_topics():
    findings = run_scenario("commands_and_images")
    assert findings["image_shapes"] == [[128, 128, 3], [128, 128, 3]]
    assert findings["trajectory_error_rad"] < 0.02
    assert 0.015 < findings["twist_moved_m"][2] < 0.045
    assert findings["jpeg"] == ["jpeg", [128, 128, 3]]


@pytest.mark.slow
def test_robot_rl_train_runs_unchanged_over_ros2():
    findings = run_scenario("train")
    assert findings["episodes"] == 2 and findings["checkpoint"]


def test_bridge_cli_reports_bad_robot_configs_in_one_line(tmp_path, capsys):
    from robot_rl.cli import main

    assert main(["bridge", "--robot", str(tmp_path / "missing.yaml")]) == 2
    assert "neither" in capsys.readouterr().err
    bad = tmp_path / "arm.yaml"
    bad.write_text((Path(__file__).parents[1] / "hardware/configs/ur5e.yaml").read_text() + "\nspeed_factor: 2\n")
    assert main(["bridge", "--robot", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "speed_factor" in err and str(bad) in err
    assert main(["bridge", "--robot", "sim", "--set", "safety.command_timeout=-1"]) == 2
    assert "command_timeout" in capsys.readouterr().err
