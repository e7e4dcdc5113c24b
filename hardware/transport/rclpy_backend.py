"""rclpy backend: a real ROS 2 node, for machines where ROS 2 (Humble or newer) is sourced.

``rclpy`` is imported only when an :class:`RclpyTransport` is created, so this module imports
anywhere. Each transport initialises its own ``rclpy`` Context (no signal handlers: the user's
own ``rclpy.init()`` / default context and Ctrl-C handling are left alone), creates one node
``TransportConfig.node_name`` in ``TransportConfig.namespace`` and spins it with a
``SingleThreadedExecutor`` in a daemon thread, so callbacks run one at a time, in arrival order
per subscription, off the caller's thread, like the DDS backend.

``network="loopback"`` configures the RMW before the context is initialised: with
``RMW_IMPLEMENTATION=rmw_cyclonedds_cpp`` it installs the DDS backend's loopback configuration
(``CYCLONEDDS_URI``, unicast discovery on 127.0.0.1, so both backends discover each other);
otherwise it sets the standard ROS variable (``ROS_LOCALHOST_ONLY=1`` on Humble,
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` on Iron and newer). Like the DDS backend's setting
this is process-wide, and it only applies if no other rclpy context of the process started DDS
before. UDP sockets the RMW opens on a wildcard address while the node is created are bound to
the loopback device, as with the DDS backend (:func:`.network.loopback_sockets_only`).

Messages are the native ``rosidl`` classes. :meth:`RclpyTransport.message` also accepts, as field
values, messages generated for the DDS backend (e.g. :func:`~.messages.stamp`), ``bytes`` for
``uint8[]`` fields and numpy arrays, converting them to what the native setters want. Received
``uint8[]`` / numeric sequences are ``array.array`` (buffer protocol: ``np.frombuffer`` works
for both backends).
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from robot_rl.hardware.transport.base import (
    DEFAULT_QOS,
    QoS,
    TransportConfig,
    resolve_topic,
)
from robot_rl.hardware.transport.network import loopback_sockets_only, use_loopback_network

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("robot_rl.hardware.transport")

_LOCALHOST_ONLY_DISTROS = ("foxy", "galactic", "humble")  # before ROS_AUTOMATIC_DISCOVERY_RANGE


class RclpySubscription:
    """A native subscription whose callback is never called once :meth:`close` has returned."""

    def __init__(self, node: Any, topic: str, msg_type: type, callback: Callable[[Any], None],
                 qos_profile: Any, raw: bool = False) -> None:
        self._node = node
        self._callback = callback
        self._lock = threading.RLock()  # held while the callback runs; re-entrant for self-close
        self._closed = False
        self.topic = topic
        # raw: rclpy hands over the serialised message (bytes) and deserialises nothing
        self._subscription = node.create_subscription(msg_type, topic, self._deliver, qos_profile, raw=raw)

    def _deliver(self, msg: Any) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._callback(msg)
            except Exception:  # an exception would end the executor's spin thread
                log.exception("subscription callback for %s raised", self.topic)

    def close(self) -> None:
        """Destroy the subscription (waits for a running callback on another thread)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._node.destroy_subscription(self._subscription)


class RclpyTransport:
    """:class:`~robot_rl.hardware.transport.base.Transport` over rclpy (one node, one spin thread)."""

    def __init__(self, config: TransportConfig) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import (
            DurabilityPolicy,
            HistoryPolicy,
            QoSProfile,
            ReliabilityPolicy,
        )
        from rosidl_runtime_py.utilities import get_message

        self.config = config
        self._qos_types = (QoSProfile, HistoryPolicy, ReliabilityPolicy, DurabilityPolicy)
        self._get_message = get_message
        if config.network == "loopback":
            if os.environ.get("RMW_IMPLEMENTATION") == "rmw_cyclonedds_cpp":
                use_loopback_network(config.domain_id)
            elif os.environ.get("ROS_DISTRO", config.distro) in _LOCALHOST_ONLY_DISTROS:
                os.environ["ROS_LOCALHOST_ONLY"] = "1"
            else:
                os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self._context = Context()
        # The RMW opens its sockets here; in loopback mode wildcard ones are pinned to the
        # loopback device (network.py: Cyclone binds them to 0.0.0.0 whatever its config says).
        with loopback_sockets_only() if config.network == "loopback" else contextlib.nullcontext():
            rclpy.init(args=[], context=self._context, domain_id=config.domain_id)
            self._node = rclpy.create_node(config.node_name, namespace=config.namespace or "/", context=self._context)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._subscriptions: list[RclpySubscription] = []
        self._closed = False
        self._thread = threading.Thread(target=self._spin, name="robot_rl-rclpy-executor", daemon=True)
        self._thread.start()

    def message(self, type_name: str, **fields: Any) -> Any:
        """A native message with ``fields`` set (DDS-backend messages, bytes, numpy converted)."""
        cls = self._get_message(type_name)
        field_types = cls.get_fields_and_field_types()
        return cls(**{name: self._native(value, field_types.get(name, "")) for name, value in fields.items()})

    def publisher(self, topic: str, type_name: str, qos: QoS = DEFAULT_QOS) -> Any:
        """A native rclpy publisher (its ``publish(msg)`` is the Publisher protocol)."""
        return self._node.create_publisher(self._get_message(type_name), self._resolve(topic), self._profile(qos))

    def subscribe(self, topic: str, type_name: str, callback: Callable[[Any], None],
                  qos: QoS = DEFAULT_QOS, raw: bool = False) -> RclpySubscription:
        """Call ``callback(msg)`` on the executor thread for each message on ``topic`` (with
        ``raw``: ``callback(bytes)``, the serialised message; see :meth:`deserialize`)."""
        subscription = RclpySubscription(self._node, self._resolve(topic), self._get_message(type_name),
                                         callback, self._profile(qos), raw)
        self._subscriptions.append(subscription)
        return subscription

    def deserialize(self, type_name: str, data: bytes) -> Any:
        """The native message in ``data``, the bytes a ``raw`` subscription delivers."""
        from rclpy.serialization import deserialize_message

        return deserialize_message(bytes(data), self._get_message(type_name))

    def close(self) -> None:
        """Stop the executor thread, destroy the node and shut the private context down."""
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            subscription.close()
        in_callback = self._thread is threading.current_thread()
        self._executor.shutdown(timeout_sec=0 if in_callback else None)  # it waits for callbacks
        if not in_callback:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                log.warning("rclpy executor thread did not stop within 5 s")
        self._node.destroy_node()
        self._context.try_shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # rclpy raises on a context shut down under it; only log the unexpected
            if not self._closed:
                log.exception("rclpy executor stopped")

    def _resolve(self, topic: str) -> str:
        return resolve_topic(topic, self.config.namespace, self.config.node_name)

    def _profile(self, qos: QoS) -> Any:
        profile, history, reliability, durability = self._qos_types
        return profile(
            history=history.KEEP_LAST,
            depth=qos.depth,
            reliability=reliability.RELIABLE if qos.reliable else reliability.BEST_EFFORT,
            durability=durability.TRANSIENT_LOCAL if qos.transient_local else durability.VOLATILE,
        )

    def _native(self, value: Any, field_type: str) -> Any:
        """``value`` in the form the native setter of a field of rosidl type ``field_type`` takes."""
        idl_name = getattr(type(value), "__idl_typename__", None)
        if idl_name is not None:  # a DDS-backend message: "pkg::msg::dds_::Name_"
            pkg, _, _, name = idl_name.split("::")
            return self.message(f"{pkg}/msg/{name[:-1]}",
                                **{f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
        if field_type == "sequence<uint8>" and not isinstance(value, array.array):
            return array.array("B", bytes(value))  # one copy; the setter's per-item check is slow
        if hasattr(value, "tolist"):  # numpy: the native setters want Python sequences
            return value.tolist()
        if isinstance(value, list) and value and hasattr(type(value[0]), "__idl_typename__"):
            return [self._native(v, "") for v in value]
        return value
