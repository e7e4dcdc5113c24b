"""DDS backend: the ``cyclonedds`` wheel speaking ROS 2's wire conventions (no ROS install needed).

What makes a ROS 2 node (``rmw_cyclonedds_cpp`` or ``rmw_fastrtps_cpp``) see our topics:

* DDS topic ``rt`` + fully qualified ROS name (``/arm1/joint_states`` → ``rt/arm1/joint_states``);
* DDS type ``pkg::msg::dds_::Name_``, keyless, final, plain CDR (XCDR1) little endian — readers
  and writers only offer/accept XCDR1 (``DataRepresentation``), as ROS 2's RMWs do;
* participant user data ``enclave=/;``; with ``distro="jazzy"`` every endpoint also carries
  ``typehash=RIHS01_…;`` (REP-2016, what ``ros2 topic info -v`` shows);
* ROS QoS → DDS QoS one to one (reliability, durability, KEEP_LAST depth).

Not implemented: the ``ros_discovery_info`` graph topic, so ``ros2 node list`` will not list us;
topics and their endpoints are plain DDS discovery, which ``ros2 topic`` and ROS 2 nodes use.

Threads: one participant per transport; one daemon delivery thread (started by the first
``subscribe``) blocks in a Cyclone ``WaitSet`` (GIL released) on one ``ReadCondition`` per
subscription plus a guard condition that wakes it for ``close``; it takes the serialised samples
(cyclonedds' own ``ddspy_take``, as ``DataReader.take`` does), deserialises each one on its own
(bytes that do not deserialise are logged and dropped, instead of ending the thread) and calls
back; ``raw`` subscriptions get the bytes. A Listener (``on_data_available``) was measured as the alternative: it calls back on
Cyclone's receive thread (or, for a writer in the same process, inside ``publish``), which must
then take the GIL. Two processes ping-ponging a 7-joint JointState on a loaded 2-core machine:
WaitSet round trip p50 ≈ 320 µs, p99 ≈ 410-430 µs, ~180 µs CPU per round trip on the pinging
side; Listener p50 ≈ 365 µs, p99 0.7-2.6 ms, ~220 µs CPU. Idle subscriptions cost no CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cyclonedds._clayer import ddspy_take
from cyclonedds.core import (
    DDSException,
    GuardCondition,
    Policy,
    Qos,
    ReadCondition,
    SampleState,
    WaitSet,
)
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration
from robot_rl.hardware.transport import messages
from robot_rl.hardware.transport.base import (
    DEFAULT_QOS,
    QoS,
    TransportConfig,
    resolve_topic,
)
from robot_rl.hardware.transport.network import (
    loopback_cyclone_config,
    loopback_forced,
    loopback_sockets_only,
    sros2_cyclone_security,
    use_loopback_network,
)

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("robot_rl.hardware.transport")

#: How long ``publish`` may block when reliable readers lag (Cyclone's writer history high-water
#: mark); after that it raises ``cyclonedds.core.DDSException``.
MAX_BLOCKING_TIME = duration(seconds=1)
#: Samples taken from a reader per wake-up (bounds the time one busy topic holds the thread).
_TAKE_BATCH = 64

# Cyclone allows one Domain object per domain id and process; transports on the same id share it.
_domains_lock = threading.Lock()
_domains: dict[int, list[Any]] = {}  # domain id -> [Domain, number of transports using it]


def dds_topic_name(topic: str) -> str:
    """DDS topic of a fully qualified ROS 2 topic name: ``/a/b`` → ``rt/a/b``."""
    return "rt" + topic


def _acquire_domain(domain_id: int, loopback: bool, security: str | None) -> None:
    """Create (or share) the process's Domain for ``domain_id`` before any participant on it:
    the loopback-only configuration and/or the DDS Security fragment (network.py)."""
    config = loopback_cyclone_config(domain_id) if loopback else os.environ.get("CYCLONEDDS_URI", "")
    if security is not None:
        config = f"{config},{security}"  # Cyclone reads a comma-separated list of sources
    with _domains_lock:
        entry = _domains.get(domain_id)
        if entry is None:
            try:
                # Cyclone binds its unicast receive sockets to 0.0.0.0 whatever the config says;
                # pin them to the loopback device before any participant exists (network.py).
                with loopback_sockets_only() if loopback else contextlib.nullcontext():
                    domain = Domain(domain_id, config=config)
                entry = _domains[domain_id] = [domain, 0]
            except Exception as error:
                raise RuntimeError(_domain_refused(domain_id, loopback, security is not None)) from error
        entry[1] += 1


def _domain_refused(domain_id: int, loopback: bool, secure: bool) -> str:
    if secure:  # fail closed: never fall back to an unsecured participant
        return (f"DDS Security was asked for (ROS_SECURITY_ENABLE=true) but Cyclone DDS refused the security "
                f"configuration of domain {domain_id}; the cyclonedds wheel from PyPI is built without DDS Security. "
                f"Use --backend rclpy (ROS 2's RMW with SROS2) or a cyclonedds built with -DENABLE_SECURITY=ON. "
                f"Nothing was started")
    if loopback:  # Cyclone refuses a second Domain for a live domain id
        return (f"cannot force the loopback network on DDS domain {domain_id}: a participant created "
                "outside robot_rl already uses it with another configuration")
    return f"cannot create DDS domain {domain_id} with CYCLONEDDS_URI"


def _release_domain(domain_id: int) -> None:
    with _domains_lock:
        entry = _domains[domain_id]
        entry[1] -= 1
        if entry[1] == 0:
            del _domains[domain_id]
            _delete(entry[0])


def _delete(entity: Any) -> None:
    """Delete a cyclonedds entity now (its ``__del__`` is the library's only deletion path)."""
    entity.__del__()


def _endpoint_qos(qos: QoS, user_data: bytes | None) -> Qos:
    policies = [
        Policy.Reliability.Reliable(MAX_BLOCKING_TIME) if qos.reliable else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal if qos.transient_local else Policy.Durability.Volatile,
        Policy.History.KeepLast(qos.depth),
        Policy.DataRepresentation(use_cdrv0_representation=True),  # XCDR1 only, like ROS 2
    ]
    if user_data:
        policies.append(Policy.Userdata(user_data))
    return Qos(*policies)


class DdsPublisher:
    """Writes messages of one type on one topic."""

    def __init__(self, writer: DataWriter, topic: str) -> None:
        self._writer = writer
        self.topic = topic

    def publish(self, msg: IdlStruct) -> None:
        """Serialise and send ``msg`` now (it may be reused afterwards)."""
        self._writer.write(msg)


class DdsSubscription:
    """One reader and its callback; created by :meth:`DdsTransport.subscribe`."""

    def __init__(self, transport: DdsTransport, reader: DataReader, condition: ReadCondition,
                 callback: Callable[[Any], None], topic: str, message_class: type[IdlStruct] | None) -> None:
        self._transport = transport
        self.reader = reader
        self.condition = condition
        self.callback = callback
        self.topic = topic
        self.message_class = message_class  # None: raw, the callback gets the serialised bytes
        self.closed = False
        self.undecodable = 0  # samples dropped because they did not deserialise

    def close(self) -> None:
        """Stop delivery (waits for a callback of this subscription running on another thread)."""
        self._transport._close_subscription(self)


class DdsTransport:
    """:class:`~robot_rl.hardware.transport.base.Transport` over the cyclonedds wheel."""

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self._domain_id = config.domain_id
        self._loopback = config.network == "loopback"
        security = sros2_cyclone_security()  # None unless ROS_SECURITY_ENABLE=true (SROS2's environment)
        self._own_domain = self._loopback or security is not None
        if self._loopback:
            use_loopback_network(config.domain_id)  # also for anything else in this process
        elif loopback_forced():
            raise RuntimeError(
                "network='system' after network='loopback' in the same process: CYCLONEDDS_URI was "
                "replaced by the loopback configuration; use one network mode per process"
            )
        if self._own_domain:
            _acquire_domain(config.domain_id, self._loopback, security)
        try:
            # Network discipline: with network="loopback" the loopback-only Domain above exists
            # before this participant; "system" is the robot PC's own CYCLONEDDS_URI, by request.
            self._participant = DomainParticipant(config.domain_id, qos=Qos(Policy.Userdata(b"enclave=/;")))
        except Exception:
            if self._own_domain:
                _release_domain(config.domain_id)
            raise
        self._topics: dict[str, tuple[Topic, type[IdlStruct]]] = {}
        self._writers: list[DataWriter] = []
        self._subscriptions: list[DdsSubscription] = []
        self._lock = threading.RLock()  # guards the entity lists and _closed
        # Held by the delivery thread while it serves a subscription, so closing a subscription
        # waits for its running callback; re-entrant so that a callback may close itself.
        # Always taken before _lock, never after.
        self._delivery_lock = threading.RLock()
        self._waitset = WaitSet(self._participant)
        self._wake = GuardCondition(self._participant)
        self._waitset.attach(self._wake)
        self._thread: threading.Thread | None = None
        self._closed = False

    def message(self, type_name: str, **fields: Any) -> IdlStruct:
        """A generated message (``config.distro`` definitions) with ``fields`` set."""
        return messages.new_message(type_name, self.config.distro, **fields)

    def publisher(self, topic: str, type_name: str, qos: QoS = DEFAULT_QOS) -> DdsPublisher:
        """A writer of ``type_name`` on ``topic`` (resolved like ROS 2 does)."""
        with self._lock:
            self._check_open()
            name = self._resolve(topic)
            dds_topic = self._topic(name, type_name)
            writer = DataWriter(self._participant, dds_topic, qos=_endpoint_qos(qos, self._type_user_data(type_name)))
            self._writers.append(writer)
            return DdsPublisher(writer, name)

    def subscribe(self, topic: str, type_name: str, callback: Callable[[Any], None],
                  qos: QoS = DEFAULT_QOS, raw: bool = False) -> DdsSubscription:
        """Call ``callback(msg)`` on the delivery thread for each message on ``topic`` (with
        ``raw``: ``callback(bytes)``, the serialised message; see :meth:`deserialize`)."""
        with self._lock:
            self._check_open()
            name = self._resolve(topic)
            dds_topic = self._topic(name, type_name)
            reader = DataReader(self._participant, dds_topic, qos=_endpoint_qos(qos, self._type_user_data(type_name)))
            condition = ReadCondition(reader, SampleState.NotRead)
            cls = None if raw else messages.message_class(type_name, self.config.distro)
            subscription = DdsSubscription(self, reader, condition, callback, name, cls)
            self._subscriptions.append(subscription)
            self._waitset.attach(condition)
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name="robot_rl-dds-delivery", daemon=True)
                self._thread.start()
            return subscription

    def deserialize(self, type_name: str, data: bytes) -> IdlStruct:
        """The message in ``data``, the bytes a ``raw`` subscription delivers."""
        return messages.message_class(type_name, self.config.distro).deserialize(data)

    def close(self) -> None:
        """Stop the delivery thread and delete every entity (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set(True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            for subscription in self._subscriptions:
                subscription.closed = True
            # Children first, so no Python object is left pointing at a deleted handle.
            entities = [self._waitset, self._wake]
            entities += [e for s in self._subscriptions for e in (s.condition, s.reader)]
            entities += self._writers + [topic for topic, _ in self._topics.values()] + [self._participant]
            for entity in entities:
                _delete(entity)
            self._subscriptions.clear()
            self._writers.clear()
            self._topics.clear()
        if self._own_domain:
            _release_domain(self._domain_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("transport is closed")

    def _resolve(self, topic: str) -> str:
        return resolve_topic(topic, self.config.namespace, self.config.node_name)

    def _type_user_data(self, type_name: str) -> bytes | None:
        if self.config.distro == "humble":  # Humble's RMWs announce no type hash
            return None
        return f"typehash={messages.type_hash(type_name, self.config.distro)};".encode()

    def _topic(self, name: str, type_name: str) -> Topic:
        cls = messages.message_class(type_name, self.config.distro)
        known = self._topics.get(name)
        if known is None:
            known = self._topics[name] = (Topic(self._participant, dds_topic_name(name), cls), cls)
        elif known[1] is not cls:
            raise ValueError(f"topic {name!r} is already used with type {known[1].__idl_typename__}, not {type_name}")
        return known[0]

    def _close_subscription(self, subscription: DdsSubscription) -> None:
        with self._delivery_lock, self._lock:
            if subscription.closed:
                return
            subscription.closed = True
            self._subscriptions.remove(subscription)
            self._waitset.detach(subscription.condition)
            _delete(subscription.condition)
            _delete(subscription.reader)

    def _deliver(self) -> None:
        """Delivery thread: wait, then drain every subscription in arrival order."""
        while not self._closed:
            self._waitset.wait(duration(infinite=True))  # ctypes call: releases the GIL
            with self._lock:
                subscriptions = list(self._subscriptions)
            for subscription in subscriptions:
                self._drain(subscription)

    def _drain(self, subscription: DdsSubscription) -> None:
        with self._delivery_lock:
            while not (subscription.closed or self._closed):
                # What DataReader.take does, minus deserialising every sample before the first
                # callback: a raw subscriber gets the bytes, and one sample that does not
                # deserialise is dropped instead of raising out of the delivery thread.
                samples = ddspy_take(subscription.reader._ref, subscription.condition.mask, _TAKE_BATCH)
                if isinstance(samples, int):
                    raise DDSException(samples, f"Occurred while taking data from {subscription.topic}")
                for data, info in samples:
                    if subscription.closed or self._closed:  # closed by a callback
                        return
                    if not info.valid_data:  # e.g. "writer gone" notifications
                        continue
                    if subscription.message_class is None:
                        message = data
                    else:
                        try:
                            message = subscription.message_class.deserialize(data)
                        except Exception:  # noqa: BLE001 - bytes no conforming writer sends
                            subscription.undecodable += 1
                            if subscription.undecodable <= 10 or subscription.undecodable % 1000 == 0:
                                log.exception("dropped a sample on %s that does not deserialise (%d so far)",
                                              subscription.topic, subscription.undecodable)
                            continue
                        message.sample_info = info
                    try:
                        subscription.callback(message)
                    except Exception:
                        log.exception("subscription callback for %s raised", subscription.topic)
                if len(samples) < _TAKE_BATCH:
                    return
