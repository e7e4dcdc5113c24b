"""ROS 2 teleop devices (``joy``, ``twist``, ``twist_stamped``) over real DDS between two processes.

The scenario runs in a private network namespace (tests/netns.py) with the loopback-only Cyclone
configuration forced before any participant exists. This file is also the script both processes
run: ``python tests/test_teleop_topics.py orchestrate`` makes the devices through the registry
(entry points into ``robot_rl.hardware.teleop_topics``) and spawns ``... publish``, a plain
publisher of ``sensor_msgs/Joy``, ``geometry_msgs/TwistStamped`` and ``Twist`` whose content follows the
phase the orchestrator announces; the orchestrator prints one JSON line of findings.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import netns  # tests/ is on sys.path under pytest and when this file runs as a script
import pytest

DOMAIN = 27  # not another scenario's (17, 19, 21, 23, 117, 121)
TRANSPORT = {"backend": "dds", "network": "loopback", "domain_id": DOMAIN}
JOY_TOPIC, TWIST_TOPIC, PHASE_TOPIC = "teleop_test/joy", "teleop_test/twist", "teleop_test/phase"
PLAIN_TWIST_TOPIC = "teleop_test/cmd_vel"
STRING, JOY, TWIST_STAMPED = "std_msgs/msg/String", "sensor_msgs/msg/Joy", "geometry_msgs/msg/TwistStamped"
SILENCE_TIMEOUT = 0.3
CONTROL_PERIOD = 0.1


def _publish() -> int:
    """Child: publish Joy and TwistStamped at 50 Hz as the announced phase says, until "quit"."""
    from robot_rl.hardware.transport import TransportConfig, make_transport

    with make_transport(TransportConfig(**TRANSPORT)) as transport:
        phase = ["idle"]
        transport.subscribe(PHASE_TOPIC, STRING, lambda msg: phase.__setitem__(0, msg.data))
        joy_pub = transport.publisher(JOY_TOPIC, JOY)
        twist_pub = transport.publisher(TWIST_TOPIC, TWIST_STAMPED)
        plain_pub = transport.publisher(PLAIN_TWIST_TOPIC, "geometry_msgs/msg/Twist")
        tapped = False
        deadline = time.monotonic() + 60
        while phase[0] != "quit" and time.monotonic() < deadline:
            time.sleep(0.02)
            if phase[0] == "silent":
                continue  # the publisher "dies"
            axes, buttons, linear_x = [0.0] * 8, [0] * 11, 0.0
            axes[5] = 1.0  # joy_node's RT at rest
            if phase[0] == "move":
                axes[1], buttons[4], linear_x = 1.0, 1, 0.1  # left stick up, LB held
            elif phase[0] == "tap" and not tapped:
                buttons[0], tapped = 1, True  # A, in exactly one message
            elif phase[0] == "nan":
                axes[1], linear_x = math.nan, math.nan
            elif phase[0] == "fast":
                linear_x = 5.0  # m/s: far beyond teleop.linear_speed
            joy_pub.publish(transport.message(JOY, axes=axes, buttons=buttons))
            twist = transport.message("geometry_msgs/msg/Twist",
                                      linear=transport.message("geometry_msgs/msg/Vector3", x=linear_x))
            twist_pub.publish(transport.message(TWIST_STAMPED, twist=twist))
            plain_pub.publish(twist)
    return 0


def _orchestrate() -> dict[str, Any]:
    from robot_rl.hardware.transport import TransportConfig, make_transport
    from robot_rl.teleop import TeleopConfig, TeleopSafety, make_teleop_device

    findings: dict[str, Any] = {}
    transport_config = TransportConfig(**TRANSPORT)
    common = {"transport": transport_config, "linear_speed": 0.2, "silence_timeout": SILENCE_TIMEOUT}
    joy = make_teleop_device(TeleopConfig(device="joy", topic=JOY_TOPIC, **common))
    twist = make_teleop_device(TeleopConfig(device="twist_stamped", topic=TWIST_TOPIC, **common))
    plain = make_teleop_device(TeleopConfig(device="twist", topic=PLAIN_TWIST_TOPIC, invert=("x",), **common))
    findings["devices"] = [type(joy).__name__, type(twist).__name__, type(plain).__name__]
    first = joy.poll()
    findings["before_first_message"] = [first.connected, first.fault]
    safety = TeleopSafety(TeleopConfig(silence_timeout=SILENCE_TIMEOUT), CONTROL_PERIOD)
    with make_transport(transport_config) as transport:
        phase_pub = transport.publisher(PHASE_TOPIC, STRING)
        child = subprocess.Popen([sys.executable, __file__, "publish"])

        def announce(phase: str) -> None:
            phase_pub.publish(transport.message(STRING, data=phase))

        def wait_for(phase: str, device: Any, predicate: Any, timeout: float = 20.0) -> Any:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                announce(phase)
                command = device.poll()
                if predicate(command):
                    return command
                time.sleep(0.01)
            raise AssertionError(f"phase {phase!r}: condition not met; last {command}")

        try:
            move = wait_for("move", joy, lambda c: c.connected and c.deadman)
            findings["joy_move"] = [list(move.twist), move.deadman, move.gripper, move.fault]
            tw = wait_for("move", twist, lambda c: c.connected and c.deadman)
            findings["twist_move"] = [list(tw.twist), tw.deadman, tw.gripper, tw.fault]
            findings["plain_twist_move"] = list(wait_for("move", plain, lambda c: c.connected and c.deadman).twist)

            wait_for("tap", joy, lambda c: c.success)  # one message had A down: latched until polled
            later = []
            for _ in range(20):
                announce("tap")
                later.append(joy.poll().success)
                time.sleep(0.01)
            findings["tap_repeats"] = sum(later)

            bad = wait_for("nan", joy, lambda c: c.fault is not None)
            findings["joy_nan"] = [bad.fault, list(bad.twist), bad.deadman,
                                   safety.filter(bad, time.monotonic(), -1.0).hold]
            bad = wait_for("nan", twist, lambda c: c.fault is not None)
            findings["twist_nan"] = [bad.fault, safety.filter(bad, time.monotonic(), -1.0).hold]
            fast = wait_for("fast", twist, lambda c: "exceeds" in (c.fault or ""))
            findings["twist_fast"] = fast.fault

            wait_for("move", joy, lambda c: c.deadman and c.fault is None)
            assert safety.filter(joy.poll(), time.monotonic(), -1.0).hold is None
            # The publisher goes quiet: poll at 100 Hz, filter as a 10 Hz control loop would see it.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                announce("silent")
                command = joy.poll()
                out = safety.filter(command, time.monotonic(), -1.0)
                if out.hold == "silent":
                    findings["silent_after"] = time.monotonic() - command.timestamp
                    findings["silent_twist"] = list(out.twist)
                    break
                time.sleep(0.01)
            findings["events"] = [event.kind for event in safety.events]
        finally:
            for _ in range(20):
                announce("quit")
                time.sleep(0.02)
            findings["child_code"] = child.wait(timeout=20)
            child.kill()
    for device in (joy, twist, plain):
        device.close()
    findings["threads_left"] = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    return findings


def test_joy_and_twist_topics_between_processes() -> None:
    done = netns.run_python(Path(__file__), "orchestrate", timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["devices"] == ["JoyDevice", "TwistDevice", "TwistDevice"]
    assert found["before_first_message"] == [False, f"no message on {JOY_TOPIC!r} yet"]
    assert found["joy_move"] == [pytest.approx([0.2, 0, 0, 0, 0, 0]), True, pytest.approx(-1.0), None]
    assert found["twist_move"] == [pytest.approx([0.1, 0, 0, 0, 0, 0]), True, None, None]
    assert found["plain_twist_move"] == pytest.approx([-0.1, 0, 0, 0, 0, 0])  # teleop.invert: [x]
    assert found["tap_repeats"] == 0  # one press, reported once
    fault, twist, deadman, hold = found["joy_nan"]
    assert "axis 1 is not a finite number" in fault and twist == [0.0] * 6 and not deadman and hold == "bad_input"
    assert "is not finite" in found["twist_nan"][0] and found["twist_nan"][1] == "bad_input"
    assert "exceeds teleop.linear_speed = 0.2 m/s" in found["twist_fast"]
    # Held once the input is older than the timeout, by the next control step at the latest.
    assert SILENCE_TIMEOUT < found["silent_after"] <= SILENCE_TIMEOUT + CONTROL_PERIOD
    assert found["silent_twist"] == [0.0] * 6
    assert found["events"] == ["bad_input", "resumed", "silent"]
    assert found["child_code"] == 0
    assert found["threads_left"] == []


if __name__ == "__main__":
    from robot_rl.hardware.transport import use_loopback_network

    use_loopback_network()  # before anything can create a participant
    role = sys.argv[1]
    if role == "publish":
        sys.exit(_publish())
    print(json.dumps(_orchestrate()), flush=True)
