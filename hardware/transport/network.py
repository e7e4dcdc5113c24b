"""Loopback-only Cyclone DDS configuration.

Cyclone DDS by default joins the "best" network interface and discovers peers by multicast, i.e.
it talks to the whole LAN. Development machines, CI and tests must stay on loopback, so
``network="loopback"`` (the default of :class:`~robot_rl.envs.config.TransportConfig`)
forces the configuration below: the only interface is 127.0.0.1, multicast is off, and discovery
is unicast to the local participant ports (``ParticipantIndex`` ``auto``, up to
``MAX_LOCAL_PARTICIPANTS`` participants on this host, which is also the number of ports probed).

The configuration is process-wide: Cyclone reads ``CYCLONEDDS_URI`` when a domain is first
created, so :func:`use_loopback_network` must run before any participant exists (``DdsTransport``
calls it itself and additionally passes the XML to the ``Domain`` it creates). Its ``<Domain
id="any">`` makes it apply to every domain id, so a domain-id mix-up can never fall back to
Cyclone's LAN defaults.

Discovery is unicast only, so a local ROS 2 node finds us if it also discovers by unicast on
127.0.0.1: ``rmw_cyclonedds_cpp`` nodes need this same configuration (``export
CYCLONEDDS_URI="$(python -c 'import robot_rl.hardware.transport as t;
print(t.loopback_cyclone_config())')"``). Fast DDS nodes listen for unicast discovery on the same
well-known ports, so they should find us too (not testable without ROS 2 here). A
``rmw_cyclonedds_cpp`` node discovering by multicast (Cyclone's default) and this configuration
do not see each other.

**What is bound where.** With this configuration Cyclone's transmit socket is bound to
127.0.0.1, but its two unicast receive sockets (discovery and data, ports 7410 + 250 · domain +
2 · participant index and one more) are bound to 0.0.0.0: Cyclone 11 binds every unicast
receive socket to the wildcard address (``ddsi_udp.c``: ``DDSI_TRAN_QOS_RECV_UC`` sets
``bind_to_any``), and no configuration element changes that (``NetworkInterface``,
``DontRoute`` and ``ExternalNetworkAddress`` only choose what is sent and advertised). A host on
another network could therefore reach those ports with forged RTPS packets (advertising
127.0.0.1 locators makes Cyclone accept them as a local peer). So :func:`loopback_sockets_only`
binds every wildcard UDP socket the domain creates to the loopback *device* (``SO_BINDTODEVICE``
``lo``) right after the domain is created, before any participant exists: the kernel then
delivers to them only packets that arrived on ``lo``, i.e. from this host. ``/proc/net/udp``
still lists them as 0.0.0.0 (the address is unchanged), ``ss -ua`` shows ``0.0.0.0%lo``. Linux
lets unprivileged processes do this since 5.7; where it is refused (older kernels, other OSes)
a warning says what stays exposed.

**DDS Security.** With SROS2's environment (``ROS_SECURITY_ENABLE=true``, ``ROS_SECURITY_KEYSTORE``,
``ROS_SECURITY_ENCLAVE_OVERRIDE``, ``ROS_SECURITY_STRATEGY=Enforce``) the DDS backend adds the
equivalent Cyclone ``<Security>`` section (:func:`sros2_cyclone_security`) to its domain, in
either network mode. A Cyclone build without DDS Security (the PyPI wheel) rejects that section,
and the transport refuses to start rather than run unsecured; ROS 2's RMWs (the rclpy backend)
read the same variables themselves.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from robot_rl.envs.config import MAX_DOMAIN_ID  # highest ROS domain id, defined with TransportConfig

#: Upper bound on participants on this host that discover each other (each one probes this many
#: unicast ports on 127.0.0.1 during discovery).
MAX_LOCAL_PARTICIPANTS = 50

_LOOPBACK_XML = f"""\
<CycloneDDS xmlns="https://cdds.io/config">
  <Domain id="any">
    <General>
      <Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces>
      <AllowMulticast>false</AllowMulticast>
    </General>
    <Discovery>
      <ParticipantIndex>auto</ParticipantIndex>
      <Peers><Peer address="127.0.0.1"/></Peers>
      <MaxAutoParticipantIndex>{MAX_LOCAL_PARTICIPANTS}</MaxAutoParticipantIndex>
    </Discovery>
  </Domain>
</CycloneDDS>"""

_forced = False
log = logging.getLogger("robot_rl.hardware.transport")
#: The loopback device that wildcard sockets are bound to in loopback mode.
LOOPBACK_DEVICE = "lo"


def loopback_cyclone_config(domain_id: int = 0) -> str:
    """The loopback-only Cyclone DDS XML configuration.

    It applies to every domain id (see the module docstring), so ``domain_id`` is only checked
    to be a valid ROS domain id (0..232); call sites name the domain they prepare.
    """
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise ValueError(f"ROS domain id must be in 0..{MAX_DOMAIN_ID}, got {domain_id}")
    return _LOOPBACK_XML


def use_loopback_network(domain_id: int = 0) -> None:
    """Force the loopback-only configuration for every Cyclone domain this process creates.

    Sets ``CYCLONEDDS_URI`` (replacing any user setting). Idempotent. It only takes effect for
    domains created afterwards, so call it before the first participant of the process exists.
    """
    global _forced
    os.environ["CYCLONEDDS_URI"] = loopback_cyclone_config(domain_id)
    _forced = True


def interface_cyclone_config(interface: str) -> str:
    """A Cyclone DDS configuration that uses only ``interface``, a name (``eth0``) or an IPv4/IPv6
    address of this host, for every domain (``network=system`` on a robot PC with several
    networks: keep DDS off all but the robot's)."""
    try:
        ipaddress.ip_address(interface)
        attribute = "address"
    except ValueError:
        attribute = "name"
    return (f'<CycloneDDS xmlns="https://cdds.io/config"><Domain id="any"><General><Interfaces>'
            f'<NetworkInterface {attribute}={quoteattr(interface)}/></Interfaces></General></Domain></CycloneDDS>')


def loopback_forced() -> bool:
    """Whether :func:`use_loopback_network` has replaced ``CYCLONEDDS_URI`` in this process."""
    return _forced


@contextlib.contextmanager
def loopback_sockets_only() -> Iterator[list[int]]:
    """Bind every UDP socket opened inside the block on a wildcard address (0.0.0.0, ::) to the
    loopback device, so it receives only packets from this host (see the module docstring).

    Yields the list the pinned file descriptors are added to when the block ends. Sockets bound
    to a specific address are left alone. Linux only (elsewhere, and where the kernel refuses,
    a warning is logged and the sockets stay as they are). Meant for the few calls that create a
    DDS domain; other threads opening wildcard UDP sockets at the same moment would be pinned too.
    """
    before = _socket_fds()
    pinned: list[int] = []
    yield pinned
    refused: list[str] = []
    for fd in sorted(_socket_fds() - before):
        outcome = _pin_to_loopback(fd)
        if outcome is True:
            pinned.append(fd)
        elif isinstance(outcome, str):
            refused.append(outcome)
    if refused:
        log.warning("could not bind DDS's wildcard UDP sockets to the loopback device (%s); they stay reachable "
                    "from other hosts on their ports although nothing is sent there (Linux >= 5.7 allows this "
                    "without privileges)", "; ".join(refused))


def _socket_fds() -> set[int]:
    """File descriptors of this process that are sockets (empty where /proc is missing)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    fds = set()
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
        except OSError:  # closed meanwhile (the listing's own descriptor, another thread)
            continue
    return fds


def _pin_to_loopback(fd: int) -> bool | str | None:
    """Bind socket ``fd`` to the loopback device if it is a wildcard-bound UDP socket: True if
    done, None if it is not such a socket, else why it could not be done."""
    try:
        sock = socket.socket(fileno=fd)  # borrowed: detached below, never closed here
    except OSError:
        return None
    try:
        if sock.type != socket.SOCK_DGRAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        address = sock.getsockname()[0]
        if address not in ("0.0.0.0", "::"):
            return None
        option = getattr(socket, "SO_BINDTODEVICE", None)
        if option is None:
            return f"port {sock.getsockname()[1]}: no SO_BINDTODEVICE on this platform"
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, LOOPBACK_DEVICE.encode())
        except OSError as exc:
            return f"port {sock.getsockname()[1]}: {exc.strerror or exc}"
        return True
    finally:
        sock.detach()


#: SROS2 keystore file of each Cyclone DDS Security setting, in ``<keystore>/enclaves/<enclave>/``.
SROS2_ENCLAVE_FILES = {
    "Authentication/IdentityCA": "identity_ca.cert.pem",
    "Authentication/IdentityCertificate": "cert.pem",
    "Authentication/PrivateKey": "key.pem",
    "AccessControl/PermissionsCA": "permissions_ca.cert.pem",
    "AccessControl/Governance": "governance.p7s",
    "AccessControl/Permissions": "permissions.p7s",
}


def sros2_cyclone_security(environ: Mapping[str, str] | None = None) -> str | None:
    """The Cyclone DDS ``<Security>`` configuration equivalent to ROS 2's SROS2 environment, for
    the DDS backend (ROS 2's RMWs read the same variables themselves); None when
    ``ROS_SECURITY_ENABLE`` is not ``true``.

    The enclave's files are ``$ROS_SECURITY_KEYSTORE/enclaves/$ROS_SECURITY_ENCLAVE_OVERRIDE/``
    (enclave ``/`` by default), as ``ros2 security create_enclave`` lays them out. Missing files
    are an error with ``ROS_SECURITY_STRATEGY=Enforce``; otherwise (Permissive) a warning, and
    no security, as ROS 2 does.
    """
    env = os.environ if environ is None else environ
    if env.get("ROS_SECURITY_ENABLE", "").lower() != "true":
        return None
    keystore, enclave = env.get("ROS_SECURITY_KEYSTORE", ""), env.get("ROS_SECURITY_ENCLAVE_OVERRIDE", "/")
    directory = Path(keystore) / "enclaves" / enclave.strip("/")
    missing = [name for name in SROS2_ENCLAVE_FILES.values() if not (directory / name).is_file()]
    if not keystore or missing:
        problem = (f"DDS Security is enabled (ROS_SECURITY_ENABLE=true) but enclave {enclave!r} of keystore "
                   f"{keystore or '(ROS_SECURITY_KEYSTORE unset)'} lacks {', '.join(missing) or 'everything'}")
        if env.get("ROS_SECURITY_STRATEGY") == "Enforce":
            raise RuntimeError(problem + " (ROS_SECURITY_STRATEGY=Enforce: not starting)")
        log.warning("%s; running WITHOUT security (ROS_SECURITY_STRATEGY is not Enforce)", problem)
        return None
    sections: dict[str, list[str]] = {}
    for setting, name in SROS2_ENCLAVE_FILES.items():
        section, element = setting.split("/")
        uri = escape(f"file:{(directory / name).resolve()}")
        sections.setdefault(section, []).append(f"<{element}>{uri}</{element}>")
    body = "".join(f"<{section}>{''.join(items)}</{section}>" for section, items in sections.items())
    return (f'<CycloneDDS xmlns="https://cdds.io/config"><Domain id="any"><Security>{body}</Security></Domain>'
            f'</CycloneDDS>')
