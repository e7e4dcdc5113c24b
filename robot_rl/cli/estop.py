"""``robot-rl bridge estop``: engage, release or show the e-stop of a bridge on this host.

Releasing the e-stop is deliberately a local action: the command reaches the bridge through its
Unix-domain socket (see ``robot_rl.hardware.estop``), so it works only on the bridge's host, as
the bridge's user (or root). Engaging works from anywhere as well (``std_msgs/Bool`` ``true`` on
``robot_rl/estop``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def bridge_estop(args: argparse.Namespace) -> int:
    from robot_rl.hardware.estop import control_socket_path, request
    from robot_rl.hardware.node import load_bridge_config

    transport = {key: value for key, value in (("domain_id", args.domain_id), ("namespace", args.namespace))
                 if value is not None}
    config = load_bridge_config(args.config, {"transport": transport} if transport else None)
    path = args.socket or control_socket_path(config.transport, config.estop.control_socket)
    command = "release" if args.release else "engage" if args.engage else "status"
    reply = request(path, command)  # ConnectionError (no bridge there, or refused) → one-line error, exit 2
    print(json.dumps({"command": command, "estop_engaged": reply["estop_engaged"], "detail": reply["detail"],
                      "socket": str(path)}), flush=True)
    return 0


def add_estop_command(commands: argparse._SubParsersAction) -> None:
    """Register ``estop`` under ``robot-rl bridge``. Its ``--domain-id`` / ``--namespace`` /
    ``--config`` may also be given before ``estop`` (as for the bridge itself)."""
    parser = commands.add_parser(
        "estop", help="engage, release or show the e-stop of a bridge on this host",
        description="Engage (--engage), release (--release) or show the e-stop of the bridge serving this DDS domain "
                    "and namespace on this host, through its local Unix socket. Releasing is only possible this way "
                    "(or with estop.release_from_topic where DDS Security enforces who may publish on robot_rl/estop): "
                    "std_msgs/Bool false on robot_rl/estop is refused and reported as an estop_release_refused event.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--release", action="store_true", help="release the e-stop (the arm accepts commands again)")
    action.add_argument("--engage", action="store_true", help="engage the e-stop (the arm holds)")
    suppress: dict[str, Any] = {"default": argparse.SUPPRESS}  # keep a value given before "estop"
    parser.add_argument("--domain-id", type=int, help="the bridge's DDS domain (default 0)", **suppress)
    parser.add_argument("--namespace", help="the bridge's namespace, e.g. /arm1", **suppress)
    parser.add_argument("--config", type=Path, help="the bridge's config YAML (transport, estop.control_socket)",
                        **suppress)
    parser.add_argument("--socket", type=Path, help="the bridge's control socket (overrides the derived path)")
    parser.set_defaults(handler=bridge_estop)
