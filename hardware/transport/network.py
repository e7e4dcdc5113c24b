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
"""

from __future__ import annotations

import os

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


def loopback_forced() -> bool:
    """Whether :func:`use_loopback_network` has replaced ``CYCLONEDDS_URI`` in this process."""
    return _forced
