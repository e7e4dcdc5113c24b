"""The transport interface: typed ROS 2 publish/subscribe behind two interchangeable backends.

User code is backend-agnostic as long as it builds messages with :meth:`Transport.message` (also
for nested messages) and only reads/writes message attributes.

Threading: every subscription callback runs on a background thread owned by the transport, never
on the publisher's thread. Callbacks get one message at a time; messages of one subscription
arrive in the order they were received, and all callbacks of one transport run on the same
thread, so a slow callback delays the others (hand heavy work to your own thread). An exception
raised by a callback is logged (logger ``robot_rl.hardware.transport``) and delivery goes on;
so is a message that cannot be deserialised (it is dropped). Subscribers that must bound the cost
of what remote publishers send (the arm bridge) subscribe ``raw`` and deserialise themselves.
``publish`` may be called from any thread, including from inside a callback.

Topic names follow ROS 2 name resolution (``TransportConfig.namespace`` plays the node
namespace, ``TransportConfig.node_name`` the node name): ``"joint_states"`` →
``"/arm1/joint_states"``, ``"~/status"`` → ``"/arm1/robot_rl/status"``, ``"/clock"`` stays;
``{node}`` and ``{ns}``/``{namespace}`` substitutions are expanded; invalid names raise
``ValueError`` naming the topic.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# The settings dataclass lives in the core (it is part of the env config, which must not import
# this package); re-exported here for the transports.
from robot_rl.envs.config import TransportConfig

#: rmw's limit on fully qualified topic names (255 minus room for the ``rq``/``Request`` affixes
#: of service topics), RMW_TOPIC_MAX_NAME_LENGTH.
MAX_TOPIC_NAME_LENGTH = 247

_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
_FULL_NAME = re.compile(rf"(/{_TOKEN})+")


@dataclass(frozen=True)
class QoS:
    """The ROS 2 QoS subset the project uses (history is always KEEP_LAST)."""

    reliable: bool = True  # RELIABLE (retransmits) vs BEST_EFFORT
    transient_local: bool = False  # TRANSIENT_LOCAL (late joiners get the last `depth`) vs VOLATILE
    depth: int = 10  # KEEP_LAST depth

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"QoS depth must be >= 1, got {self.depth}")


DEFAULT_QOS = QoS()


class Publisher(Protocol):
    def publish(self, msg: Any) -> None:
        """Send ``msg`` (a message built by the owning transport's ``message``)."""


class Subscription(Protocol):
    def close(self) -> None:
        """Stop delivery; once this returns the callback is not called again."""


class Transport(Protocol):
    def publisher(self, topic: str, type_name: str, qos: QoS = DEFAULT_QOS) -> Publisher:
        """A publisher of ``type_name`` (``"sensor_msgs/msg/JointState"``) on ``topic``."""

    def subscribe(
        self, topic: str, type_name: str, callback: Callable[[Any], None], qos: QoS = DEFAULT_QOS,
        raw: bool = False,
    ) -> Subscription:
        """Call ``callback(msg)`` on the delivery thread for every message received on ``topic``.

        With ``raw``, ``callback`` gets the serialised message instead (``bytes``: CDR with its
        4-byte encapsulation header), so that it can check the size of what a remote publisher
        sent before paying for deserialising it with :meth:`deserialize`."""

    def deserialize(self, type_name: str, data: bytes) -> Any:
        """The message of this backend serialised in ``data`` (what a ``raw`` subscription gets);
        raises if the bytes are not a ``type_name``."""

    def message(self, type_name: str, **fields: Any) -> Any:
        """A message object of this backend with ``fields`` set, the rest default."""

    def close(self) -> None:
        """Close all subscriptions and publishers, stop the delivery thread, leave the network."""


def resolve_topic(topic: str, namespace: str = "", node_name: str = "robot_rl") -> str:
    """ROS 2 topic name expansion to a fully qualified name; ValueError naming the topic."""
    if not topic:
        raise ValueError("empty topic name")
    ns = namespace.rstrip("/")
    name = topic.replace("{node}", node_name).replace("{namespace}", ns or "/").replace("{ns}", ns or "/")
    if name.startswith("~"):
        if name != "~" and not name.startswith("~/"):
            raise ValueError(f"invalid topic name {topic!r}: '~' must be followed by '/'")
        name = f"{ns}/{node_name}{name[1:]}"
    elif not name.startswith("/"):
        name = f"{ns}/{name}"
    name = name.replace("//", "/", 1) if name.startswith("//") else name  # "{ns}" of the root
    if not _FULL_NAME.fullmatch(name):
        raise ValueError(
            f"invalid topic name {topic!r} (resolved {name!r}): use tokens of letters, digits and "
            "'_' separated by single '/', not starting with a digit, no trailing '/'"
        )
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise ValueError(f"topic name {topic!r} is longer than {MAX_TOPIC_NAME_LENGTH} characters")
    return name


def make_transport(config: TransportConfig = TransportConfig()) -> Transport:
    """The backend ``config`` asks for (``auto``: rclpy where ROS 2 is sourced, else DDS)."""
    backend = config.backend
    if backend == "auto":
        backend = "rclpy" if importlib.util.find_spec("rclpy") is not None else "dds"
    if backend == "rclpy":
        from robot_rl.hardware.transport.rclpy_backend import RclpyTransport

        return RclpyTransport(config)
    from robot_rl.hardware.transport.dds import DdsTransport

    return DdsTransport(config)
