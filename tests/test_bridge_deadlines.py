"""The bridge loop's deadlines: a stalled loop skips the missed ticks (no catch-up burst), holds the
arm, counts and reports the miss; realtime scheduling falls back cleanly without permission.

Behaviour, not timing: the stalls are long (0.15-0.5 s) against the thresholds (0.1 s), so a busy
machine does not change the outcome. How well the period is kept under load is measured by
``benchmarks/control_loop.py``. The SIGSTOP case runs ``robot-rl bridge`` processes over real DDS in
a private network namespace (``tests/deadline_scenarios.py``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from netns import run_python
from robot_rl.config import ConfigError
from robot_rl.hardware import topics
from robot_rl.hardware.bridge import ArmBridge, BridgeConfig
from robot_rl.robot import JointCommand
from test_bridge_control import MemoryTransport, RecordingArm

RATE = 100.0  # Hz: a 10 ms period, so a 0.1 s hold threshold is 10 periods
PERIOD = 1.0 / RATE
SCENARIOS = Path(__file__).with_name("deadline_scenarios.py")


class StallingArm(RecordingArm):
    """The real SimArm; ``advance`` call n sleeps ``stalls[n]`` seconds first (a stalled tick)."""

    def __init__(self, arm):
        super().__init__(arm)
        self.stalls: dict[int, float] = {}

    def advance(self, duration):
        self.advances += 1
        if self.advances in self.stalls:
            time.sleep(self.stalls[self.advances])
        return self.arm.advance(duration)


def timed_bridge(make_arm, **config):
    """A real-time bridge at :data:`RATE` over the in-memory transport, its tick starts recorded."""
    arm = StallingArm(make_arm("reach"))
    node = ArmBridge(arm, MemoryTransport(), BridgeConfig(state_hz=RATE, hold_after_late_periods=10, **config))
    node.starts = []
    step = node.step

    def timed_step():
        node.starts.append(time.perf_counter())
        step()

    node.step = timed_step
    return node


def events(node, kind):
    return [e for e in node.transport.events() if e["kind"] == kind]


def test_a_stalled_loop_skips_the_missed_ticks_holds_the_arm_and_reports_it(make_arm):
    node = timed_bridge(make_arm)
    try:
        arm = node.robot
        target = arm.read_state().joint_pos + np.array([0.6, 0, 0, 0, 0, 0, 0])
        node.transport.deliver(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", data=target.tolist())
        arm.stalls = {20: 0.5}  # tick 20 takes 0.5 s (50 periods): tick 21 starts ~49 periods late
        stats = node.run(threading.Event(), max_ticks=80)
    finally:
        node.close()
    starts = np.asarray(node.starts)
    gaps = np.diff(starts)
    stall = int(np.argmax(gaps))
    assert stall == 19 and gaps[stall] >= 0.5
    # Skipped, not caught up: no two ticks ever start less than half a period apart.
    assert gaps.min() >= 0.45 * PERIOD, np.sort(gaps)[:5]
    assert 40 <= stats.ticks_skipped <= 60 and stats.overruns >= 1
    assert stats.ticks == 80 and stats.deadline_misses == 1
    assert stats.worst_lateness >= 0.45
    lateness = stats.tick_lateness()
    assert lateness[20] >= 0.45 and lateness.size == 80
    # Reported once, as a safety event.
    (missed,) = events(node, "deadline_missed")
    assert "1 tick(s) started late" in missed["detail"]
    # Held: after the stall the arm is told to hold where it is; the command is not followed on.
    after = arm.commands[20]
    assert isinstance(after, JointCommand)
    assert all(np.allclose(c.positions, after.positions) for c in arm.commands[20:])
    assert abs(after.positions[0] - target[0]) > 0.1 and np.allclose(arm.read_state().joint_pos, after.positions,
                                                                       atol=2e-2)


def test_a_new_command_after_a_deadline_miss_is_followed(make_arm):
    node = timed_bridge(make_arm)
    try:
        arm = node.robot
        start = arm.read_state().joint_pos
        deliver = lambda q: node.transport.deliver(  # noqa: E731
            topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", data=q.tolist())
        deliver(start + np.array([0.3, 0, 0, 0, 0, 0, 0]))
        arm.stalls = {5: 0.2}
        node.run(threading.Event(), max_ticks=10)
        assert node.stats.deadline_misses == 1
        target = start + np.array([0.05, 0, 0, 0, 0, 0, 0])
        deliver(target)
        node.run(threading.Event(), max_ticks=200)
    finally:
        node.close()
    assert np.allclose(arm.read_state().joint_pos, target, atol=5e-3)


def test_deadline_events_are_rate_limited_and_every_miss_is_counted(make_arm):
    node = timed_bridge(make_arm, spin=1e-3)  # (and the spinning end of the wait)
    try:
        node.robot.stalls = {10: 0.15, 15: 0.15, 20: 0.15}  # three misses within a second
        stats = node.run(threading.Event(), max_ticks=140)  # then ~1.1 s more: the rest is reported
    finally:
        node.close()
    assert stats.deadline_misses == 3
    first, second = events(node, "deadline_missed")
    assert first["detail"].startswith("1 tick(s)") and second["detail"].startswith("2 tick(s)")
    assert second["time"] > first["time"]


def test_a_loop_paced_by_the_arm_has_no_deadlines(make_arm):
    arm = StallingArm(make_arm("reach"))
    node = ArmBridge(arm, MemoryTransport(), BridgeConfig(real_time=False, hold_after_late_periods=1))
    try:
        arm.stalls = {3: 0.05}
        stats = node.run(threading.Event(), max_ticks=10)
    finally:
        node.close()
    assert stats.ticks == 10 and stats.deadline_misses == 0 and stats.ticks_skipped == 0
    assert not events(node, "deadline_missed") and stats.lateness_ms()["max"] == 0.0


# ---------------------------------------------------------------------------- scheduling
def scheduling_of_this_thread():
    tid = threading.get_native_id()
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, tid), os.sched_getaffinity(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux thread scheduling")
def test_realtime_scheduling_without_permission_falls_back_and_says_so(make_arm, monkeypatch, caplog):
    def refuse(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(os, "setpriority", refuse)
    node = ArmBridge(make_arm("reach"), MemoryTransport(), BridgeConfig(state_hz=500.0, realtime_scheduling=True))
    before = scheduling_of_this_thread()
    try:
        with caplog.at_level(logging.WARNING, logger="robot_rl.hardware.bridge"):
            stats = node.run(threading.Event(), max_ticks=50)
    finally:
        node.close()
    assert stats.ticks == 50 and stats.step_errors == 0
    assert stats.scheduling.startswith("default (SCHED_FIFO refused: Operation not permitted")
    assert any("not permitted" in record.getMessage() for record in caplog.records)
    assert scheduling_of_this_thread() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux thread scheduling")
def test_realtime_scheduling_falls_back_to_a_nice_boost(make_arm, monkeypatch):
    def refuse(*_args):
        raise PermissionError(1, "Operation not permitted")

    tid = threading.get_native_id()
    seen = []
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    real_setpriority = os.setpriority

    def setpriority(which, who, value):  # the boost needs CAP_SYS_NICE; record what was asked for
        if who == tid:  # (the bridge's other threads lower their own priority)
            seen.append(value)
        if value < os.getpriority(which, who):
            return
        real_setpriority(which, who, value)

    monkeypatch.setattr(os, "setpriority", setpriority)
    nice = os.getpriority(os.PRIO_PROCESS, tid)
    node = ArmBridge(make_arm("reach"), MemoryTransport(), BridgeConfig(state_hz=500.0, realtime_scheduling=True))
    try:
        stats = node.run(threading.Event(), max_ticks=20)
    finally:
        node.close()
    assert stats.scheduling.startswith(f"nice {max(-20, nice - 10)} (SCHED_FIFO refused")
    assert seen == [max(-20, nice - 10), nice]  # boosted, then restored


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux thread scheduling")
def test_scheduling_and_process_settings_are_restored_after_run(make_arm):
    if 0 not in os.sched_getaffinity(0):
        pytest.skip("CPU 0 not usable here")
    switch, before = sys.getswitchinterval(), scheduling_of_this_thread()
    node = ArmBridge(make_arm("reach"), MemoryTransport(),
                     BridgeConfig(state_hz=500.0, realtime_scheduling=True, loop_cpu=0, switch_interval=1e-4))
    seen = {}
    step = node.step

    def step_and_look():
        seen.setdefault("during", (scheduling_of_this_thread(), sys.getswitchinterval()))
        step()

    node.step = step_and_look
    try:
        stats = node.run(threading.Event(), max_ticks=20)
    finally:
        node.close()
    (policy, _, cpus), interval = seen["during"]
    assert cpus == {0} and interval == pytest.approx(1e-4)
    if stats.scheduling.startswith("SCHED_FIFO"):
        assert policy == os.SCHED_FIFO
    assert scheduling_of_this_thread() == before and sys.getswitchinterval() == switch


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux thread scheduling")
def test_with_the_loop_raised_its_helper_threads_are_not_left_lowered(make_arm):
    """A helper thread (here the trajectory parser) niced below the loop would hold the GIL the
    SCHED_FIFO loop waits for while other processes have its CPU; once the loop thread is raised
    it goes back to the loop's former priority."""
    node = ArmBridge(make_arm("reach"), MemoryTransport(), BridgeConfig(state_hz=500.0, realtime_scheduling=True))
    try:
        helper = getattr(getattr(node, "_parser", None), "_thread", None)
        if helper is None:
            pytest.skip("this bridge has no parser thread")
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        deadline = time.monotonic() + 5
        while os.getpriority(os.PRIO_PROCESS, helper.native_id) == nice and time.monotonic() < deadline:
            time.sleep(0.01)  # until the thread has lowered itself
        stats = node.run(threading.Event(), max_ticks=5)
        if stats.scheduling.startswith("default"):
            pytest.skip(f"the loop thread could not be raised here: {stats.scheduling}")
        assert os.getpriority(os.PRIO_PROCESS, helper.native_id) == nice
    finally:
        node.close()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux capabilities")
def test_realtime_switch_without_cap_sys_nice_in_a_real_process():
    """``robot-rl bridge --realtime`` where the process may not raise its priority (no
    CAP_SYS_NICE, no rtprio limit): it runs, logs the fallback and reports it."""
    findings = scenario("no_permission")
    if "skipped" in findings:
        pytest.skip(findings["skipped"])
    if findings["scheduling"].startswith("SCHED_FIFO"):
        pytest.skip("this user may use SCHED_FIFO (an rtprio limit)")
    assert findings["ticks"] > 0 and findings["step_errors"] == 0
    assert findings["scheduling"].startswith(("default (SCHED_FIFO refused", "nice ")), findings
    assert "not permitted" in findings["log"]


@pytest.mark.slow
def test_sigstop_of_a_bridge_process_skips_and_reports():
    """SIGSTOP a 500 Hz ``robot-rl bridge`` process for 60 ms: its joint states resume at the
    tick rate (the old loop ran the 30 missed ticks back to back), the miss is counted and
    published as a safety event."""
    findings = scenario("sigstop")
    bridge = findings["bridge"]
    assert bridge["deadline_misses"] >= 1 and bridge["ticks_skipped"] >= 20, findings
    assert findings["deadline_events"] >= 1
    # In the 50 ms after SIGCONT the bridge publishes ~25 states; catching up as well would be ~55.
    assert findings["states_in_50ms_after_resume"] <= 40, findings


def scenario(name: str) -> dict:
    result = run_python(SCENARIOS, name, timeout=120)
    assert result.returncode == 0, f"scenario {name} failed:\n{result.stderr[-6000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_timing_config_is_checked():
    for bad in ({"realtime_priority": 0}, {"realtime_priority": 100}, {"spin": -1.0}, {"spin": 0.01},
                {"hold_after_late_periods": 0.5}, {"loop_cpu": -1}, {"switch_interval": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            BridgeConfig(**bad)
