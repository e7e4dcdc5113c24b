"""Typed ROS 2 publish/subscribe with two backends: ``rclpy`` (ROS 2 sourced) or the ``cyclonedds``
wheel speaking ROS 2's wire conventions (no ROS install needed).

>>> transport = make_transport(TransportConfig(namespace="/arm1"))     # doctest: +SKIP
>>> pub = transport.publisher("joint_states", "sensor_msgs/msg/JointState")
>>> pub.publish(transport.message("sensor_msgs/msg/JointState", name=["j1"], position=[0.1]))
>>> sub = transport.subscribe("joint_states", "sensor_msgs/msg/JointState", print)
>>> transport.close()

See :mod:`.base` for the interface and thread model, :mod:`.messages` for the generated message
classes, :mod:`.dds` / :mod:`.rclpy_backend` for the backends and :mod:`.network` for the
loopback-only default. The message helpers and backends are imported on first use, because
cyclonedds and rosbags take ~0.3 s to import. :class:`TransportConfig` itself is defined in the
core (:mod:`robot_rl.envs.config`, part of the env config) and re-exported here.
"""

from __future__ import annotations

import importlib
from typing import Any

from robot_rl.hardware.transport.base import (
    Publisher,
    QoS,
    Subscription,
    Transport,
    TransportConfig,
    make_transport,
    resolve_topic,
)
from robot_rl.hardware.transport.network import (
    loopback_cyclone_config,
    use_loopback_network,
)

_LAZY = {
    "PROJECT_MESSAGE_TYPES": "messages",
    "message_class": "messages",
    "new_message": "messages",
    "serialize": "messages",
    "deserialize": "messages",
    "stamp": "messages",
    "seconds_of": "messages",
    "split_seconds": "messages",
    "DdsTransport": "dds",
    "RclpyTransport": "rclpy_backend",
}

__all__ = [  # noqa: RUF022 (eager names first, then the lazy ones)
    "Publisher",
    "QoS",
    "Subscription",
    "Transport",
    "TransportConfig",
    "loopback_cyclone_config",
    "make_transport",
    "resolve_topic",
    "use_loopback_network",
    "PROJECT_MESSAGE_TYPES",
    "message_class",
    "new_message",
    "serialize",
    "deserialize",
    "stamp",
    "seconds_of",
    "split_seconds",
    "DdsTransport",
    "RclpyTransport",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
