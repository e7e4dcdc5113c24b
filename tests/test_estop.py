"""E-stop authority: anyone may engage, only a local action (or a trusted, opted-in topic) may
release.

The bridge here is the real :class:`ArmBridge` around the real MuJoCo arm with an in-memory
transport (no DDS participant in this process); the local channel is the real Unix socket. The
same over real DDS between processes, with ``robot-rl bridge estop --release`` as a separate
process, is ``tests/test_bridge.py::test_safety_supervisor_in_the_bridge``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from robot_rl.config import ConfigError
from robot_rl.hardware import topics
from robot_rl.hardware.bridge import ArmBridge, BridgeConfig
from robot_rl.hardware.estop import (
    EstopConfig,
    LocalEstopServer,
    control_socket_path,
    peer_uid,
    request,
    runtime_dir,
)
from robot_rl.hardware.transport import TransportConfig
from test_bridge_control import MemoryTransport

BOOL = "std_msgs/msg/Bool"


@pytest.fixture
def make_bridge(make_arm):
    """``make_bridge(**config)`` → a bridge around the sim arm with an in-memory transport."""
    bridges: list[ArmBridge] = []

    def _make(real_time: bool = False, **config) -> ArmBridge:
        bridge = ArmBridge(make_arm("reach"), MemoryTransport(), BridgeConfig(real_time=real_time, **config))
        bridges.append(bridge)
        return bridge

    yield _make
    for bridge in bridges:
        bridge.close()


def kinds(bridge: ArmBridge) -> list[str]:
    return [event["kind"] for event in bridge.transport.events()]


@contextmanager
def running(bridge: ArmBridge) -> Iterator[None]:
    """The bridge's loop on a thread while the block runs (make it with ``real_time=True``, so
    the loop is paced rather than eating a CPU)."""
    stop = threading.Event()
    thread = threading.Thread(target=lambda: bridge.run(stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_topic_engages_but_its_release_is_refused_and_reported(make_bridge):
    bridge = make_bridge()
    bridge.transport.deliver(topics.ESTOP, BOOL, data=True)
    bridge.step()
    assert bridge.supervisor.estop_engaged and kinds(bridge)[-1] == "estop_engaged"
    for _ in range(50):  # a publisher insisting on "release"
        bridge.transport.deliver(topics.ESTOP, BOOL, data=False)
    bridge.step()
    for _ in range(10):
        bridge.transport.deliver(topics.ESTOP, BOOL, data=False)
        bridge.step()
    assert bridge.supervisor.estop_engaged  # still stopped
    refused = [e for e in bridge.transport.events() if e["kind"] == "estop_release_refused"]
    assert len(refused) == 1  # at most one event a second, with the count
    assert "50 release request(s)" in refused[0]["detail"] and "estop --release" in refused[0]["detail"]
    assert "estop_released" not in kinds(bridge)


def test_local_release_works_and_names_the_caller(make_bridge, tmp_path):
    bridge = make_bridge(real_time=True)
    bridge.transport.deliver(topics.ESTOP, BOOL, data=True)
    bridge.step()
    path = tmp_path / "estop.sock"
    server = LocalEstopServer(path, bridge.local_estop)
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        with running(bridge):
            assert request(path, "status")["estop_engaged"] is True
            reply = request(path, "release")
            assert reply == {"ok": True, "estop_engaged": False, "detail": "e-stop released: commands accepted"}
            assert request(path, "engage")["estop_engaged"] is True
            assert request(path, "release")["estop_engaged"] is False
    finally:
        server.close()
    assert not path.exists()
    released = [e for e in bridge.transport.events() if e["kind"] == "estop_released"]
    assert len(released) == 2 and f"local request by uid {os.geteuid()}" in released[0]["detail"]


def test_release_and_engage_in_one_tick_leave_the_arm_stopped(make_bridge):
    bridge = make_bridge()
    bridge.transport.deliver(topics.ESTOP, BOOL, data=True)
    bridge.step()
    answer: dict = {}
    caller = threading.Thread(target=lambda: answer.update(bridge.local_estop("release", "test", timeout=5.0)))
    caller.start()
    while not bridge._inbox.local_estops:  # the release is queued for the next tick ...
        threading.Event().wait(0.001)
    bridge.transport.deliver(topics.ESTOP, BOOL, data=True)  # ... and so is a stop, after it
    bridge.step()
    caller.join(5)
    assert bridge.supervisor.estop_engaged and answer["estop_engaged"] is True


def test_a_release_the_caller_gave_up_on_is_never_applied_later(make_bridge):
    bridge = make_bridge()
    bridge.transport.deliver(topics.ESTOP, BOOL, data=True)
    bridge.step()
    reply = bridge.local_estop("release", "test", timeout=0.05)  # nobody ticks meanwhile
    assert reply["ok"] is False and "nothing was changed" in reply["error"]
    bridge.step()
    assert bridge.supervisor.estop_engaged


def test_topic_release_only_by_explicit_opt_in_with_a_warning_without_security(make_bridge, caplog, monkeypatch):
    monkeypatch.delenv("ROS_SECURITY_ENABLE", raising=False)
    with caplog.at_level(logging.WARNING, logger="robot_rl.hardware.bridge"):
        bridge = make_bridge(estop=EstopConfig(release_from_topic=True))
    assert "DDS Security is not enforced" in caplog.text
    bridge.transport.deliver(topics.ESTOP, BOOL, data=True)
    bridge.step()
    bridge.transport.deliver(topics.ESTOP, BOOL, data=False)
    bridge.step()
    assert not bridge.supervisor.estop_engaged
    assert kinds(bridge)[-2:] == ["estop_engaged", "estop_released"]
    assert f"{topics.ESTOP} topic" in bridge.transport.events()[-1]["detail"]


def test_cli_releases_through_the_socket(make_bridge, tmp_path, capsys):
    from robot_rl.cli import main

    bridge = make_bridge(real_time=True)
    bridge.transport.deliver(topics.ESTOP, BOOL, data=True)
    bridge.step()
    path = tmp_path / "estop.sock"
    server = LocalEstopServer(path, bridge.local_estop)
    try:
        with running(bridge):
            assert main(["bridge", "estop", "--release", "--socket", str(path)]) == 0
    finally:
        server.close()
    out = json.loads(capsys.readouterr().out)
    assert out["command"] == "release" and out["estop_engaged"] is False
    assert main(["bridge", "estop", "--release", "--socket", str(path)]) == 2  # nobody listens any more
    assert "no bridge listens" in capsys.readouterr().err


def test_socket_path_follows_domain_and_namespace(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert runtime_dir() == tmp_path / "robot_rl"
    path = control_socket_path(TransportConfig(domain_id=17, namespace="/lab/arm1"))
    assert path == tmp_path / "robot_rl" / "estop-domain17-lab.arm1.sock"
    assert control_socket_path(TransportConfig(), "/run/x.sock") == Path("/run/x.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir().name == f"robot_rl-{os.geteuid()}"


def test_socket_directory_must_be_private_and_sockets_are_not_shared(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(ConfigError, match="mode 0700"):
        LocalEstopServer(shared / "estop.sock", lambda *_: {})
    path = tmp_path / "private" / "estop.sock"
    first = LocalEstopServer(path, lambda *_: {"ok": True, "estop_engaged": False, "detail": ""})
    try:
        with pytest.raises(ConfigError, match="another bridge"):
            LocalEstopServer(path, lambda *_: {})
    finally:
        first._closing = True  # stop serving but leave the socket file behind, as a SIGKILL would
        first._thread.join(5)
        first._socket.close()
    assert path.exists()
    second = LocalEstopServer(path, lambda *_: {})  # a stale socket is replaced
    second.close()


def test_peer_credentials_identify_the_caller():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        pid, uid = peer_uid(a)
    assert (pid, uid) == (os.getpid(), os.geteuid())


def test_malformed_and_unknown_requests_are_answered_not_fatal(tmp_path):
    path = tmp_path / "estop.sock"
    server = LocalEstopServer(path, lambda command, source: {"ok": True, "estop_engaged": False, "detail": command})
    try:
        for line, error in ((b"not json\n", "malformed"), (b'{"command": "reboot"}\n', "unknown command")):
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
                client.sendall(line)
                assert error in json.loads(client.makefile().readline())["error"]
        assert request(path, "status")["detail"] == "status"  # still serving
    finally:
        server.close()
