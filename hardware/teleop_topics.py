"""ROS 2 topics as teleop devices: ``sensor_msgs/Joy`` and ``geometry_msgs/Twist(Stamped)``.

Any input a ROS user already has then drives robot_rl: ``joy_node`` / ``game_controller_node``
(``joy``), ``spacenav_node`` (``joy`` with ``teleop.mapping: spacenav``, or its twist topic),
``teleop_twist_joy`` / ``teleop_twist_keyboard`` (``twist`` or ``twist_stamped``), a VR or
leader-arm bridge. The devices subscribe through the project's transports
(:mod:`robot_rl.hardware.transport`, rclpy or the cyclonedds wheel, ``teleop.transport``
settings; loopback-only unless ``network: system``). They are device kinds ``joy``, ``twist``
and ``twist_stamped`` through the ``robot_rl.teleop_devices`` entry points, so the core
(:mod:`robot_rl.teleop`) never imports this module or DDS.

=================  =====================================  ===============  ===========================
device             message                                default topic    meaning
=================  =====================================  ===============  ===========================
``joy``            sensor_msgs/Joy                        ``joy``          axes/buttons via a mapping
``twist``          geometry_msgs/Twist                    ``cmd_vel``      m/s, rad/s in teleop.frame
``twist_stamped``  geometry_msgs/TwistStamped             ``cmd_vel``      same (header not used)
=================  =====================================  ===============  ===========================

A command's timestamp is the message's arrival time on this host (``time.monotonic``), not its
header stamp: the safety filter's silence check must not depend on another machine's clock. So a
publisher that stops (or publishes only on change, like ``joy_node`` with ``autorepeat_rate: 0``)
makes the arm hold after ``teleop.silence_timeout``; keep publishing at a steady rate.
Before the first message the device reports ``connected=False``. Joy axes must lie in ``[-1, 1]``
and twist components within ``teleop.linear_speed`` / ``angular_speed``: anything else (or NaN)
is a fault and the arm holds. A twist topic has no deadman of its own: any non-zero twist
counts as the operator engaging (publishers like ``teleop_twist_joy`` apply their enable button
themselves and publish zero when released). Subscriptions are best effort, which matches both
reliable and best-effort publishers; only the newest message matters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_rl.hardware.transport import QoS, Transport, make_transport
from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import TeleopCommand, shape_twist
from robot_rl.teleop.mapping import RANGE_TOLERANCE, RawInput, load_mapping

JOY = "sensor_msgs/msg/Joy"
TWIST = "geometry_msgs/msg/Twist"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
#: Best effort matches any publisher; the newest message is all a device needs.
TELEOP_QOS = QoS(reliable=False, transient_local=False, depth=10)


class _TopicDevice:
    """Subscribes to one topic; the delivery thread hands each message to :meth:`_store`, and
    ``poll`` reads what the last one said (never blocks on the network)."""

    def __init__(self, config: TeleopConfig, type_name: str, default_topic: str, transport: Transport | None,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.topic = config.topic or default_topic
        self._clock = clock
        self._lock = threading.Lock()
        self._received: float | None = None  # arrival time of the newest message
        self._owns_transport = transport is None
        self._transport = transport if transport is not None else make_transport(config.transport)
        try:
            self._subscription = self._transport.subscribe(self.topic, type_name, self._on_message, TELEOP_QOS)
        except BaseException:
            self.close()
            raise

    def _on_message(self, msg: Any) -> None:
        with self._lock:
            self._store(msg)
            self._received = self._clock()

    def poll(self) -> TeleopCommand:
        with self._lock:
            if self._received is None:
                return TeleopCommand.idle(self._clock(), connected=False,
                                          fault=f"no message on {self.topic!r} yet")
            return self._command(self._received)

    def close(self) -> None:
        """Stop the subscription and, if this device made it, the transport (idempotent)."""
        subscription = getattr(self, "_subscription", None)
        if subscription is not None:
            subscription.close()
        if self._owns_transport and self._transport is not None:
            self._transport.close()
        self._transport = None

    def __enter__(self) -> _TopicDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _store(self, msg: Any) -> None:  # called with the lock held, on the delivery thread
        raise NotImplementedError

    def _command(self, timestamp: float) -> TeleopCommand:  # called with the lock held
        raise NotImplementedError


class JoyDevice(_TopicDevice):
    """``sensor_msgs/Joy`` through an axis mapping (default ``joy``: joy_node's Xbox layout; see
    :data:`robot_rl.teleop.mapping.BUILTIN`). Button presses between two polls are kept, so a
    quick tap of a label button is not lost."""

    def __init__(self, config: TeleopConfig, transport: Transport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._mapping = load_mapping(config.mapping, "joy")  # before subscribing: a bad file fails first
        self._axes: list[float] = []
        self._buttons: list[bool] = []
        self._pressed: list[bool] = []
        super().__init__(config, JOY, "joy", transport, clock)

    @property
    def help(self) -> str:
        return f"sensor_msgs/Joy on {self.topic!r}: {self._mapping.describe()}"

    def _store(self, msg: Any) -> None:
        buttons = [bool(b) for b in msg.buttons]
        previous = self._buttons + [False] * (len(buttons) - len(self._buttons))
        pressed = self._pressed + [False] * (len(buttons) - len(self._pressed))
        self._pressed = [p or (b and not before) for p, b, before in zip(pressed, buttons, previous)]
        self._axes, self._buttons = [float(a) for a in msg.axes], buttons

    def _command(self, timestamp: float) -> TeleopCommand:
        raw = RawInput(self._axes, self._buttons, self._pressed)
        self._pressed = [False] * len(self._buttons)
        return self._mapping.command(raw, self.config, timestamp)


class TwistDevice(_TopicDevice):
    """``geometry_msgs/Twist`` (or, with ``stamped``, ``TwistStamped``): the twist as sent, in
    m/s and rad/s, with ``teleop.invert`` and ``teleop.scale`` applied."""

    def __init__(self, config: TeleopConfig, stamped: bool = False, transport: Transport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if config.mapping:
            raise ValueError(f"teleop.mapping: twist topics carry a twist, they take no mapping "
                             f"(got {config.mapping!r}); use teleop.invert and teleop.scale")
        self._type = TWIST_STAMPED if stamped else TWIST
        self._twist = np.zeros(6)
        super().__init__(config, self._type, "cmd_vel", transport, clock)

    @property
    def help(self) -> str:
        return (f"{self._type.replace('/msg/', '/')} on {self.topic!r}: linear m/s, angular rad/s in the "
                f"{self.config.frame} frame, up to {self.config.linear_speed:g} m/s and "
                f"{self.config.angular_speed:g} rad/s")

    def _store(self, msg: Any) -> None:
        twist = msg.twist if self._type == TWIST_STAMPED else msg
        self._twist = np.array([twist.linear.x, twist.linear.y, twist.linear.z,
                                twist.angular.x, twist.angular.y, twist.angular.z], dtype=np.float64)

    def _command(self, timestamp: float) -> TeleopCommand:
        speeds = np.array([self.config.linear_speed] * 3 + [self.config.angular_speed] * 3)
        normalized = self._twist / speeds
        if not np.all(np.isfinite(normalized)):
            return TeleopCommand.idle(timestamp, fault=f"twist on {self.topic!r} is not finite: {self._twist}")
        if np.any(np.abs(normalized) > 1.0 + RANGE_TOLERANCE):
            return TeleopCommand.idle(timestamp, fault=(
                f"twist on {self.topic!r} exceeds teleop.linear_speed = {self.config.linear_speed:g} m/s or "
                f"angular_speed = {self.config.angular_speed:g} rad/s: {self._twist}"))
        return TeleopCommand(shape_twist(normalized, self.config, deadband=False), deadman=bool(np.any(self._twist)),
                             timestamp=timestamp)


def make_joy_device(config: TeleopConfig) -> JoyDevice:
    """Device factory ``joy``."""
    return JoyDevice(config)


def make_twist_device(config: TeleopConfig) -> TwistDevice:
    """Device factory ``twist``."""
    return TwistDevice(config)


def make_twist_stamped_device(config: TeleopConfig) -> TwistDevice:
    """Device factory ``twist_stamped``."""
    return TwistDevice(config, stamped=True)
