"""Run a Python script in a private network namespace (only ``lo``), for tests that use real DDS.

``unshare -n`` gives the script and every process it spawns a network stack of their own with only
the loopback interface, so nothing they do can reach (or be disturbed by) the host's networks or
other tests' participants. Where unprivileged users may not create namespaces, the script runs
in the current namespace instead; the transports still force the loopback-only Cyclone
configuration (``TransportConfig(network="loopback")``), so traffic stays on 127.0.0.1 either way.

Each run also gets a private ``XDG_RUNTIME_DIR``: bridges serve their local e-stop channel as a
Unix socket there (``robot_rl.hardware.estop``), and the file system is shared between network
namespaces, so concurrent runs on one host would otherwise meet on the same socket path.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_ENTER = "ip link set lo up && exec \"$0\" \"$@\""


@functools.cache
def private_namespace_available() -> bool:
    """Whether ``unshare -n`` (and ``ip`` to bring ``lo`` up inside) works for this user."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "sh", "-c", _ENTER, "true"], check=False, capture_output=True, timeout=10)
    return probe.returncode == 0


def run_python(script: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python script args...`` (in a private network namespace when possible); output as text."""
    command = [sys.executable, str(script), *args]
    if private_namespace_available():
        command = ["unshare", "-n", "sh", "-c", _ENTER, *command]
    with tempfile.TemporaryDirectory(prefix="robot_rl_run_") as runtime_dir:
        env = {**os.environ, "XDG_RUNTIME_DIR": runtime_dir}
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, env=env)
