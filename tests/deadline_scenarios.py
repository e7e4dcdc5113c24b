"""Bridge-deadline scenarios run by tests/test_bridge_deadlines.py, each in a private network namespace.

``python tests/deadline_scenarios.py <scenario>`` prints one JSON line of findings.

* ``sigstop``: a ``robot-rl bridge`` process at 500 Hz is stopped (SIGSTOP) for 60 ms and
  continued; a client here records when each ``joint_states`` message arrives and every
  ``deadline_missed`` event; the bridge's final statistics come from its "stopped" line.
* ``no_permission``: ``robot-rl bridge --realtime`` in a process that may not raise its
  priority (``setpriv`` drops CAP_SYS_NICE when run as root); its scheduling outcome and log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from robot_rl.hardware.transport import TransportConfig, use_loopback_network

DOMAIN = 21
use_loopback_network()  # before anything can create a participant

BRIDGE = [sys.executable, "-m", "robot_rl.cli", "bridge", "--robot", "sim", "--task", "reach", "--backend", "dds",
          "--network", "loopback", "--domain-id", str(DOMAIN)]


def start_bridge(*args: str, prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen, list[str]]:
    process = subprocess.Popen([*prefix, *BRIDGE, *args], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in process.stderr:
            lines.append(line)
            if '"ready"' in line:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(120) or process.poll() is not None:
        process.kill()
        raise RuntimeError("the bridge did not start:\n" + "".join(lines))
    return process, lines


def stop_bridge(process: subprocess.Popen, lines: list[str]) -> dict:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    time.sleep(0.2)  # the drain thread reads the last lines
    stopped = [line for line in lines if '"stopped"' in line]
    if not stopped:
        raise RuntimeError("no statistics from the bridge:\n" + "".join(lines))
    return json.loads(stopped[-1])


def sigstop() -> dict:
    from robot_rl.hardware import topics
    from robot_rl.hardware.transport import make_transport

    process, lines = start_bridge("--state-hz", "500")
    arrivals: list[float] = []
    missed: list[dict] = []
    client = make_transport(TransportConfig(backend="dds", network="loopback", domain_id=DOMAIN))
    try:
        client.subscribe(topics.JOINT_STATES, "sensor_msgs/msg/JointState",
                         lambda _m: arrivals.append(time.perf_counter()))

        def on_event(message) -> None:
            event = json.loads(message.data)
            if event["kind"] == "deadline_missed":
                missed.append(event)

        client.subscribe(topics.SAFETY_EVENTS, "std_msgs/msg/String", on_event, topics.EVENTS)
        deadline = time.monotonic() + 30
        while len(arrivals) < 500 and time.monotonic() < deadline:  # discovery, then 1 s of states
            time.sleep(0.05)
        before = len(missed)
        os.kill(process.pid, signal.SIGSTOP)
        time.sleep(0.06)
        resumed = time.perf_counter()
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(1.5)
    finally:
        stats = stop_bridge(process, lines)
        client.close()
    return {"bridge": stats, "deadline_events": len(missed) - before, "events": missed[-3:],
            "states_in_50ms_after_resume": sum(resumed <= t < resumed + 0.05 for t in arrivals)}


def no_permission() -> dict:
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return {"skipped": "root, and no setpriv to drop CAP_SYS_NICE"}
        prefix = ("setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice")
    process, lines = start_bridge("--realtime", "--duration", "1.5", prefix=prefix)
    process.wait(timeout=60)
    time.sleep(0.2)
    stopped = [line for line in lines if '"stopped"' in line]
    if not stopped:
        raise RuntimeError("no statistics from the bridge:\n" + "".join(lines))
    return {**json.loads(stopped[-1]), "log": "".join(line for line in lines if '"stopped"' not in line)}


SCENARIOS = {"sigstop": sigstop, "no_permission": no_permission}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
