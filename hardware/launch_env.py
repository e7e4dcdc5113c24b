"""The DDS environment of the ``robot-rl`` processes that the ROS 2 launch files in ``launch/``
start, from their common launch arguments.

Every launch file declares ``network`` (``loopback``, the default, or ``system``), ``interface``
(with ``system``: the only network interface DDS may use, e.g. ``eth1``), ``domain_id`` (0),
``security`` (``false``; ``true`` turns on DDS Security, enforced), ``keystore`` (the SROS2
keystore directory) and ``enclave`` (the process's SROS2 enclave). :func:`dds_environment` turns
them into environment variables that both transports honour: ``ROS_DOMAIN_ID``;
``CYCLONEDDS_URI`` for the interface (``rmw_cyclonedds_cpp`` and the DDS backend; Fast DDS needs
its own XML profile for that); ``ROS_SECURITY_ENABLE=true``, ``ROS_SECURITY_STRATEGY=Enforce``,
``ROS_SECURITY_KEYSTORE`` and ``ROS_SECURITY_ENCLAVE_OVERRIDE`` (SROS2: ROS 2's RMWs read them,
the DDS backend turns them into Cyclone's ``<Security>`` section or refuses to start).
"""

from __future__ import annotations

from robot_rl.hardware.transport.network import interface_cyclone_config

NETWORKS = ("loopback", "system")


def dds_environment(network: str, interface: str, domain_id: str, security: str, keystore: str,
                    enclave: str) -> dict[str, str]:
    """Environment variables for a process started with these launch argument values (strings,
    as launch passes them). Raises ``ValueError`` naming the argument for a bad value."""
    if network not in NETWORKS:
        raise ValueError(f"network:={network!r}: must be one of {', '.join(NETWORKS)}")
    try:
        domain = int(domain_id)
    except ValueError:
        raise ValueError(f"domain_id:={domain_id!r}: must be an integer (0..232)") from None
    env = {"ROS_DOMAIN_ID": str(domain)}
    if interface:
        if network == "loopback":
            raise ValueError(f"interface:={interface!r} needs network:=system (loopback stays on 127.0.0.1)")
        env["CYCLONEDDS_URI"] = interface_cyclone_config(interface)
    if security.lower() == "true":
        if not keystore:
            raise ValueError("security:=true needs keystore:=<SROS2 keystore directory> "
                             "(ros2 security create_keystore)")
        if not enclave.startswith("/"):
            raise ValueError(f"enclave:={enclave!r}: must be an absolute enclave name, e.g. /robot_rl/bridge")
        env.update(ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce", ROS_SECURITY_KEYSTORE=keystore,
                   ROS_SECURITY_ENCLAVE_OVERRIDE=enclave)
    elif security.lower() != "false":
        raise ValueError(f"security:={security!r}: must be true or false")
    return env
