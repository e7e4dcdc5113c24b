"""Who may engage and who may release the bridge's e-stop.

Engaging is open to everyone: any publisher of ``std_msgs/Bool`` ``data: true`` on
``robot_rl/estop`` stops the arm at the next tick, and so does ``robot-rl bridge estop --engage``
on the bridge's host. Stopping a robot must never need credentials.

Releasing is not: a topic is reachable by every participant of the DDS domain (with
``--network system``, every host on the LAN, and without DDS Security nothing says who
published), so ``data: false`` on ``robot_rl/estop`` is refused by default; the bridge logs it
and publishes an ``estop_release_refused`` safety event. A release needs an explicit local
action:

* ``robot-rl bridge estop --release`` on the bridge's host, as the bridge's user (or root). It
  talks to the bridge over a Unix-domain socket (:class:`LocalEstopServer`), which no network
  reaches by construction. The socket lives in a directory only its owner can enter
  (``$XDG_RUNTIME_DIR/robot_rl``, else ``/tmp/robot_rl-<uid>``, mode 0700; the socket itself
  0600), and the bridge additionally checks the caller's uid with ``SO_PEERCRED``.
* Or, by explicit opt-in, the topic: ``estop.release_from_topic: true`` honours ``data: false``
  again. Only do that where DDS Security (SROS2, ``ROS_SECURITY_STRATEGY=Enforce``) gives the
  topic an access-control policy that lets only trusted identities publish on it; the bridge
  warns at start when it cannot see security enforced.

One bridge serves one socket, named after its DDS domain and namespace
(:func:`control_socket_path`), so the CLI finds it from the same ``--domain-id`` /
``--namespace`` the bridge was started with.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from robot_rl.config import ConfigError
from robot_rl.envs.config import TransportConfig

log = logging.getLogger(__name__)

#: Commands of the local channel: engage, release, or only report the e-stop's state.
COMMANDS = ("engage", "release", "status")
#: Longest request or reply line (bytes).
MAX_LINE = 4096
#: Longest path a Unix-domain socket can have on Linux (``sun_path`` minus the terminating NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class EstopConfig:
    """The bridge's e-stop authority (``estop:`` section of the bridge config).

    ``release_from_topic``: honour ``data: false`` on ``robot_rl/estop``. Off by default: a
    release then needs ``robot-rl bridge estop --release`` on the bridge's host. Turn it on only
    where DDS Security enforces who may publish on that topic (see the module docstring).
    ``control_socket``: path of the local channel's Unix socket (default:
    :func:`control_socket_path` of the transport's domain and namespace).
    """

    release_from_topic: bool = False
    control_socket: str | None = None

    def __post_init__(self) -> None:
        if self.control_socket is not None and not 0 < len(self.control_socket) <= MAX_SOCKET_PATH:
            raise ConfigError(f"estop.control_socket: must be a path of 1..{MAX_SOCKET_PATH} characters, "
                              f"got {self.control_socket!r}")


def runtime_dir() -> Path:
    """The per-user directory of the local control sockets: ``$XDG_RUNTIME_DIR/robot_rl`` (a
    per-user tmpfs on systemd machines), else ``/tmp/robot_rl-<uid>``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "robot_rl"
    return Path(tempfile.gettempdir()) / f"robot_rl-{os.geteuid()}"


def control_socket_path(transport: TransportConfig, configured: str | None = None) -> Path:
    """Where the bridge serving ``transport``'s domain and namespace listens for local e-stop
    requests (``configured`` wins when given)."""
    if configured:
        return Path(configured)
    namespace = transport.namespace.strip("/").replace("/", ".") or "root"
    return runtime_dir() / f"estop-domain{transport.domain_id}-{namespace}.sock"


def _private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or check that it is ours and closed to everyone else: a
    directory another user made (e.g. in /tmp, before us) could let them swap the socket."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise ConfigError(f"estop.control_socket: {path} must be a directory owned by uid {os.geteuid()} with "
                          f"mode 0700 (it is uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}); remove it or "
                          f"set estop.control_socket")


def _claim(path: Path) -> None:
    """Make room for our socket at ``path``: a live bridge there is an error, a stale socket of a
    killed one is removed, anything that is not a socket is left alone (an error)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"estop.control_socket: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # left behind by a bridge that was killed
        return
    finally:
        probe.close()
    raise ConfigError(f"another bridge already serves the local e-stop channel {path} (same DDS domain and "
                      f"namespace on this host); stop it first")


def peer_uid(connection: socket.socket) -> tuple[int, int] | None:
    """``(pid, uid)`` of the process at the other end of a Unix socket, where the OS says
    (Linux ``SO_PEERCRED``); None elsewhere (then the socket's file mode is the only check)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return pid, uid


class LocalEstopServer:
    """Serves engage / release / status requests on a Unix-domain socket, one connection at a
    time, on a daemon thread.

    Each request is one JSON line ``{"command": "release"}``; the reply is one JSON line, e.g.
    ``{"ok": true, "estop_engaged": false, "detail": "..."}``. ``handle(command, source)`` does the
    work (the bridge queues it for its next tick and waits for it); ``source`` describes the
    caller for the safety event. Callers other than the bridge's own uid and root are refused.
    """

    def __init__(self, path: Path, handle: Callable[[str, str], dict[str, Any]]) -> None:
        self.path = path
        self._handle = handle
        if len(str(path)) > MAX_SOCKET_PATH:
            raise ConfigError(f"estop.control_socket: {path} is longer than {MAX_SOCKET_PATH} characters; set a "
                              f"shorter estop.control_socket")
        _private_dir(path.parent)
        _claim(path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(str(path))
        os.chmod(path, 0o600)
        self._socket.listen(4)
        self._socket.settimeout(0.2)  # how often the accept loop looks at _closing
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="bridge-estop-channel", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and remove the socket file (idempotent)."""
        if self._closing:
            return
        self._closing = True
        self._thread.join(timeout=5.0)
        self._socket.close()
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while not self._closing:
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                if not self._closing:
                    log.exception("local e-stop channel: accept failed")
                return
            with connection:
                try:
                    self._answer(connection)
                except Exception:  # noqa: BLE001 - one bad client must not end the channel
                    log.exception("local e-stop channel: request failed")

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(2.0)
        credentials = peer_uid(connection)
        if credentials is not None and credentials[1] not in (os.geteuid(), 0):
            log.warning("local e-stop channel: refused a request from uid %d (pid %d)", credentials[1], credentials[0])
            _reply(connection, {"ok": False, "error": f"uid {credentials[1]} may not command this bridge"})
            return
        try:
            request = json.loads(_read_line(connection))
            command = request["command"]
        except (ValueError, KeyError, TypeError) as exc:
            _reply(connection, {"ok": False, "error": f"malformed request ({exc})"})
            return
        if command not in COMMANDS:
            _reply(connection, {"ok": False, "error": f"unknown command {command!r} (known: {', '.join(COMMANDS)})"})
            return
        source = "local request"
        if credentials is not None:
            source += f" by uid {credentials[1]} (pid {credentials[0]})"
        _reply(connection, self._handle(command, source))


def _read_line(connection: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(MAX_LINE)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError(f"line longer than {MAX_LINE} bytes")
    return data.decode()


def _reply(connection: socket.socket, body: dict[str, Any]) -> None:
    connection.sendall((json.dumps(body) + "\n").encode())


def request(path: Path, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send ``command`` (engage | release | status) to the bridge listening at ``path``; its
    reply. Raises ``ConnectionError`` if no bridge listens there (or it refused the caller)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown e-stop command {command!r} (known: {', '.join(COMMANDS)})")
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionError(f"no bridge listens on {path} ({exc.strerror}); the local e-stop channel exists "
                                  f"only on the bridge's host, for its DDS domain and namespace (--domain-id, "
                                  f"--namespace) or its estop.control_socket (--socket)") from None
        except PermissionError:
            raise ConnectionError(f"not allowed to reach {path}: only the bridge's user (or root) may "
                                  f"command its e-stop locally") from None
        client.sendall((json.dumps({"command": command}) + "\n").encode())
        reply = json.loads(_read_line(client) or "{}")
    finally:
        client.close()
    if not reply.get("ok"):
        raise ConnectionError(f"the bridge refused: {reply.get('error', 'no reply')}")
    return reply


def security_enforced() -> bool:
    """Whether this process runs with ROS 2 DDS Security enforced (SROS2's environment)."""
    return (os.environ.get("ROS_SECURITY_ENABLE", "").lower() == "true"
            and os.environ.get("ROS_SECURITY_STRATEGY", "") == "Enforce")


class PendingRequest:
    """An engage or release the local channel queued for the bridge's next tick.

    The loop thread applies it only if the caller is still waiting (:meth:`take`); a caller
    that gave up (:meth:`wait` timed out) cancels it, so it never takes effect later, unseen.
    """

    def __init__(self, engaged: bool, source: str) -> None:
        self.engaged, self.source = engaged, source
        self._lock = threading.Lock()
        self._state = "pending"  # -> applied | cancelled
        self._applied = threading.Event()

    def take(self) -> bool:
        """Loop thread: True (and the request counts as applied) unless it was cancelled."""
        with self._lock:
            if self._state == "cancelled":
                return False
            self._state = "applied"
            return True

    def done(self) -> None:
        """Loop thread: the request took effect."""
        self._applied.set()

    def wait(self, timeout: float) -> bool:
        """Channel thread: whether the loop applied the request within ``timeout`` s; if not,
        it is cancelled."""
        if self._applied.wait(timeout):
            return True
        with self._lock:
            if self._state == "pending":
                self._state = "cancelled"
                return False
        return self._applied.wait(1.0)  # taken just now: it is being applied
