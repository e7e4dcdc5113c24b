"""``robot-rl bridge`` in a child process, for the multi-process ROS 2 scenario scripts.

The scenario scripts (``ros2_scenarios.py``, ``twin_scenarios.py``) run inside a private network
namespace (``tests/netns.py``) with the loopback-only DDS configuration already in force; this
starts the bridge there on the scenario's domain and keeps its stderr, drained on a thread (a pipe
nobody reads would fill up and block the bridge).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time


class BridgeProcess:
    """``robot-rl bridge --backend BACKEND --network loopback --domain-id DOMAIN ARGS...``;
    ``ready`` is the bridge's start-up JSON line, :meth:`stop` returns its final statistics."""

    def __init__(self, *args: str, domain: int, backend: str) -> None:
        command = [sys.executable, "-m", "robot_rl.cli", "bridge", "--backend", backend, "--network", "loopback",
                   "--domain-id", str(domain), *args]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            for line in self.process.stderr:
                self.lines.append(line)
                if '"ready"' in line:
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60):
            self.process.kill()
            raise RuntimeError("bridge did not start:\n" + "".join(self.lines))
        self.ready = next(json.loads(line) for line in self.lines if '"ready"' in line)

    def stop(self) -> dict:
        """Stop the bridge (SIGINT); its final statistics."""
        assert self.process.poll() is None, "the bridge died during the scenario:\n" + "".join(self.lines[-40:])
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        time.sleep(0.1)  # the drain thread reads the last lines
        assert code == 0, f"bridge exited with {code}:\n{''.join(self.lines[-30:])}"
        stopped = [json.loads(line) for line in self.lines if '"stopped"' in line]
        assert stopped, "no final statistics from the bridge"
        return stopped[-1]
