"""Loopback mode exposes nothing to other hosts: every socket a DDS participant opens with the
loopback configuration is bound to 127.0.0.1 or, where Cyclone insists on the wildcard address
(its unicast discovery and data ports), to the loopback device. And DDS Security asked for with
SROS2's environment is either applied or nothing starts.

The participant lives in a child process in a private network namespace (tests/netns.py); the
child reads its own sockets from ``/proc/net/{udp,udp6,tcp,tcp6}`` (local addresses) and the
socket options (bound device), and asks ``ss`` (the kernel's sock_diag view) as a second witness.
It also sends itself a message over DDS, so the pinned sockets are shown to still work; traffic
between processes is covered by tests/test_transport.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import netns  # tests/ is on sys.path under pytest and when this file runs as a script
from robot_rl.hardware.transport.network import SROS2_ENCLAVE_FILES, sros2_cyclone_security

DOMAIN = 121
PROTOCOLS = ("udp", "udp6", "tcp", "tcp6")


def _address(hex_address: str) -> tuple[str, int]:
    """``0100007F:23C8`` (or the 32-digit IPv6 form) from /proc/net → ``("127.0.0.1", 9160)``."""
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # four host-order 32-bit words
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def _bound_device(fd: int) -> str:
    sock = socket.socket(fileno=fd)
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0").decode()
    finally:
        sock.detach()


def own_sockets() -> list[dict]:
    """Every IP socket of this process: protocol, local address and port, bound device."""
    by_inode = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            by_inode[target[8:-1]] = int(name)
    found = []
    for protocol in PROTOCOLS:
        for row in Path(f"/proc/net/{protocol}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[9] in by_inode:
                address, port = _address(fields[1])
                found.append({"protocol": protocol, "address": address, "port": port,
                              "device": _bound_device(by_inode[fields[9]])})
    return found


def ss_view() -> list[str]:
    """``ss``'s local address column for this process's UDP/TCP sockets (``0.0.0.0%lo:9160``)."""
    if shutil.which("ss") is None:
        return []
    lines = subprocess.run(["ss", "-uatnp"], capture_output=True, text=True, check=True).stdout.splitlines()
    return [line.split()[4] for line in lines if f"pid={os.getpid()}," in line]


def scenario() -> dict:
    from robot_rl.hardware.transport import TransportConfig, make_transport, use_loopback_network

    use_loopback_network()  # before anything can create a participant
    received = threading.Event()
    with make_transport(TransportConfig(backend="dds", domain_id=DOMAIN)) as transport:
        transport.subscribe("exposure", "std_msgs/msg/String", lambda _message: received.set())
        publisher = transport.publisher("exposure", "std_msgs/msg/String")
        for _ in range(50):
            publisher.publish(transport.message("std_msgs/msg/String", data="hello"))
            if received.wait(0.1):
                break
        return {"sockets": own_sockets(), "ss": ss_view(), "received": received.is_set()}


def test_loopback_participant_binds_nothing_reachable_from_other_interfaces():
    result = netns.run_python(Path(__file__), "scenario", timeout=60)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout.strip().splitlines()[-1])
    sockets = findings["sockets"]
    assert findings["received"], findings  # the pinned sockets still carry DDS traffic
    discovery_port = 7400 + 250 * DOMAIN + 10  # participant index 0
    assert {s["port"] for s in sockets} >= {discovery_port, discovery_port + 1}, sockets
    for entry in sockets:
        loopback_address = entry["address"] == "127.0.0.1"
        wildcard_on_lo = entry["address"] in ("0.0.0.0", "::") and entry["device"] == "lo"
        assert loopback_address or wildcard_on_lo, f"reachable from other interfaces: {entry} (all: {sockets})"
    for local in findings["ss"]:  # the kernel's own view agrees
        assert local.startswith(("127.0.0.1:", "0.0.0.0%lo:", "[::]%lo:")), findings["ss"]


# --------------------------------------------------------------------------- DDS Security (SROS2)
def make_keystore(root: Path, enclave: str) -> Path:
    """An SROS2-shaped keystore with placeholder files for ``enclave`` (its layout, not real keys)."""
    directory = root / "enclaves" / enclave.strip("/")
    directory.mkdir(parents=True)
    for name in SROS2_ENCLAVE_FILES.values():
        (directory / name).write_text("placeholder\n")
    return root


def test_sros2_environment_becomes_cyclones_security_section(tmp_path):
    keystore = make_keystore(tmp_path / "keystore", "/robot_rl/bridge")
    assert sros2_cyclone_security({}) is None
    xml = sros2_cyclone_security({"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_KEYSTORE": str(keystore),
                                  "ROS_SECURITY_ENCLAVE_OVERRIDE": "/robot_rl/bridge",
                                  "ROS_SECURITY_STRATEGY": "Enforce"})
    security = ET.fromstring(xml).find("c:Domain/c:Security", {"c": "https://cdds.io/config"})
    local = lambda element: element.tag.split("}")[1]  # noqa: E731 (tag without its namespace)
    files = {f"{local(section)}/{local(item)}": item.text for section in security for item in section}
    enclave = keystore / "enclaves" / "robot_rl" / "bridge"
    assert files == {key: f"file:{enclave / name}" for key, name in SROS2_ENCLAVE_FILES.items()}


def test_enforced_security_without_the_enclave_refuses_to_start(tmp_path):
    environ = {"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_KEYSTORE": str(tmp_path),
               "ROS_SECURITY_ENCLAVE_OVERRIDE": "/robot_rl/bridge", "ROS_SECURITY_STRATEGY": "Enforce"}
    with pytest.raises(RuntimeError, match="lacks identity_ca.cert.pem.*not starting"):
        sros2_cyclone_security(environ)
    assert sros2_cyclone_security({**environ, "ROS_SECURITY_STRATEGY": "Permissive"}) is None  # as ROS 2 does


def secure_scenario() -> dict:
    """The DDS backend with SROS2's environment: this cyclonedds build rejects the security
    section, and the transport refuses to start (no unsecured fallback, no socket left)."""
    import tempfile

    from robot_rl.hardware.transport import TransportConfig, make_transport, use_loopback_network

    use_loopback_network()  # before anything can create a participant
    keystore = make_keystore(Path(tempfile.mkdtemp()), "/robot_rl/bridge")
    os.environ.update({"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_KEYSTORE": str(keystore),
                       "ROS_SECURITY_ENCLAVE_OVERRIDE": "/robot_rl/bridge", "ROS_SECURITY_STRATEGY": "Enforce"})
    try:
        make_transport(TransportConfig(backend="dds", domain_id=DOMAIN)).close()
        return {"started": True, "sockets": own_sockets()}
    except RuntimeError as exc:
        return {"started": False, "error": str(exc), "sockets": own_sockets()}


def test_dds_backend_never_runs_unsecured_when_security_is_asked_for():
    result = netns.run_python(Path(__file__), "secure_scenario", timeout=60)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout.strip().splitlines()[-1])
    if findings["started"]:  # a cyclonedds built with DDS Security accepted the (placeholder) enclave?
        pytest.fail(f"a transport started with placeholder security files: {findings}")
    assert "DDS Security" in findings["error"] and "Nothing was started" in findings["error"], findings
    assert findings["sockets"] == [], findings


if __name__ == "__main__":
    print(json.dumps({"scenario": scenario, "secure_scenario": secure_scenario}[sys.argv[1]]()), flush=True)
