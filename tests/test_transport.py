"""Transport tests: ROS 2 wire format, names, and real DDS between processes.

* Golden bytes: every project message type, Humble and Jazzy definitions, filled generically from
  the field definitions with awkward values (odd-length strings and byte arrays, negative ints,
  NaN/±inf, several nested elements), serialised by our generated classes and compared byte for
  byte with rosbags' ``serialize_cdr`` of the same values; then round-tripped both ways.
* Names: DDS type names, ``rt/`` topic mangling, ROS 2 name resolution, invalid names.
* In-process DDS (loopback config forced, checked before the participant exists).
* Between processes: scenarios below run in a private network namespace (tests/netns.py); the
  orchestrator spawns the publisher process itself so both live in the namespace. This file is
  also the script those processes run (``python tests/test_transport.py <role> ...``).
* rclpy: skipped unless ROS 2 is sourced. On a ROS 2 machine run
  ``source /opt/ros/humble/setup.bash && python -m pytest tests/test_transport.py`` (any RMW; with
  ``RMW_IMPLEMENTATION=rmw_cyclonedds_cpp`` both backends share the loopback configuration).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
import timeit
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import netns  # tests/ is on sys.path under pytest and when this file runs as a script
import numpy as np
import pytest
from robot_rl.hardware.transport import (
    QoS,
    TransportConfig,
    make_transport,
    messages,
    resolve_topic,
)
from robot_rl.hardware.transport.base import MAX_TOPIC_NAME_LENGTH
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.base import Nodetype

STORES = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
NUMPY_TYPES = {
    "bool": np.bool_, "byte": np.uint8, "octet": np.uint8, "char": np.uint8, "int8": np.int8,
    "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}
OCTETS = ("byte", "octet", "char", "uint8")


# ---------------------------------------------------------------------------------------------
# Golden bytes against rosbags
# ---------------------------------------------------------------------------------------------

def _base_value(base: str, k: int) -> Any:
    """A non-default value of ROS base type ``base``; ``k`` varies it between fields/elements."""
    if base == "bool":
        return k % 2 == 0
    if base == "string":
        return ("a", "abc", "abcde", "héllo")[k % 4]  # odd byte lengths (+NUL) misalign what follows
    if base == "float32":
        return (1.5, -2.25, math.nan, math.inf, -math.inf)[k % 5]  # exact in float32
    if base == "float64":
        return (math.pi, math.nan, -math.inf, math.inf, -1e-300)[k % 5]
    info = np.iinfo(NUMPY_TYPES[base])
    return int(info.min + 3 + k) if info.min < 0 else int(info.max - 3 - k)


def _value_tree(store: Any, node: tuple, k: int) -> Any:
    """Values for one field: dicts for messages, lists for arrays/sequences."""
    kind, detail = node
    if kind == Nodetype.BASE:
        return _base_value(detail[0], k)
    if kind == Nodetype.NAME:
        return {name: _value_tree(store, sub, k + i) for i, (name, sub) in enumerate(store.fielddefs[detail][1])}
    element, size = detail
    if kind == Nodetype.SEQUENCE:
        # 2 nested messages (e.g. 2 trajectory points), odd lengths for the rest
        size = min(size or 99, 2 if element[0] == Nodetype.NAME else 27 if element[1][0] in OCTETS else 3)
    return [_value_tree(store, element, k + i) for i in range(size)]


def _ours(type_name: str, distro: str, tree: dict) -> Any:
    store = get_typestore(STORES[distro])
    fields = {}
    for name, (kind, detail) in store.fielddefs[type_name][1]:
        value = tree[name]
        if kind == Nodetype.NAME:
            value = _ours(detail, distro, value)
        elif kind != Nodetype.BASE and detail[0][0] == Nodetype.NAME:
            value = [_ours(detail[0][1], distro, v) for v in value]
        elif kind != Nodetype.BASE and detail[0][1][0] in OCTETS:
            value = bytes(value)
        fields[name] = value
    return messages.new_message(type_name, distro, **fields)


def _rosbags(store: Any, type_name: str, tree: dict) -> Any:
    fields = {}
    for name, (kind, detail) in store.fielddefs[type_name][1]:
        value = tree[name]
        if kind == Nodetype.NAME:
            value = _rosbags(store, detail, value)
        elif kind != Nodetype.BASE and detail[0][0] == Nodetype.NAME:
            value = [_rosbags(store, detail[0][1], v) for v in value]
        elif kind != Nodetype.BASE and detail[0][1][0] != "string":
            value = np.array(value, dtype=NUMPY_TYPES[detail[0][1][0]])  # rosbags wants numpy
        fields[name] = value
    return store.types[type_name](**fields)


@pytest.mark.parametrize("distro", sorted(STORES))
@pytest.mark.parametrize("type_name", messages.PROJECT_MESSAGE_TYPES)
def test_golden_bytes_match_rosbags(type_name: str, distro: str) -> None:
    store = get_typestore(STORES[distro])
    tree = _value_tree(store, (Nodetype.NAME, type_name), 0)
    ours = messages.serialize(_ours(type_name, distro, tree))
    reference = bytes(store.serialize_cdr(_rosbags(store, type_name, tree), type_name))
    assert ours[:4] == b"\x00\x01\x00\x00"  # CDR_LE (XCDR1), options 0
    assert ours == reference
    # round trips: ours → ours, and rosbags reads what we write
    assert messages.serialize(messages.deserialize(type_name, ours, distro)) == ours
    assert bytes(store.serialize_cdr(store.deserialize_cdr(ours, type_name), type_name)) == reference


def test_generated_classes() -> None:
    for distro in STORES:
        for type_name in messages.PROJECT_MESSAGE_TYPES:
            cls = messages.message_class(type_name, distro)
            assert cls is messages.message_class(type_name, distro)  # cached
            assert messages.deserialize(type_name, messages.serialize(cls()), distro) == cls()
    image = messages.new_message("sensor_msgs/msg/Image")
    assert image.data == b"" and image.header.stamp.sec == 0
    assert messages.new_message("geometry_msgs/msg/Pose").orientation.w == 1.0  # .msg default
    js = messages.new_message("sensor_msgs/msg/JointState", position=np.array([1.0, 2.0]))
    assert messages.deserialize("sensor_msgs/msg/JointState", messages.serialize(js)).position == [1.0, 2.0]
    with pytest.raises(ValueError, match="no_pkg/msg/Nothing"):
        messages.message_class("no_pkg/msg/Nothing")
    with pytest.raises(ValueError, match="distro"):
        messages.message_class("std_msgs/msg/Bool", "kinetic")


def test_image_bytes_fast() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    image = messages.new_message("sensor_msgs/msg/Image", height=128, width=128, encoding="rgb8", step=384,
                                 data=pixels)  # numpy is accepted, bytes come back
    data = messages.serialize(image)
    received = messages.deserialize("sensor_msgs/msg/Image", data)
    assert received.data == pixels.tobytes()
    seconds = min(timeit.repeat(lambda: messages.deserialize("sensor_msgs/msg/Image", messages.serialize(image)),
                                number=20, repeat=5)) / 20
    assert seconds < 1e-3, f"128x128x3 image serialise+deserialise took {seconds * 1e3:.2f} ms"


def test_stamps() -> None:
    for seconds, expected in [(1.5, (1, 500_000_000)), (-0.25, (-1, 750_000_000)), (2.9999999999, (3, 0)),
                              (1700000000.123456789, (1700000000, 123456717))]:
        assert messages.split_seconds(seconds) == expected
        time_msg = messages.stamp(seconds)
        assert (time_msg.sec, time_msg.nanosec) == expected
        assert messages.seconds_of(time_msg) == pytest.approx(seconds, rel=1e-15, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

def test_type_and_topic_names() -> None:
    from robot_rl.hardware.transport.dds import dds_topic_name

    assert messages.dds_type_name("sensor_msgs/msg/JointState") == "sensor_msgs::msg::dds_::JointState_"
    assert messages.dds_type_name("std_msgs/String") == "std_msgs::msg::dds_::String_"
    assert messages.message_class("rosgraph_msgs/msg/Clock").__idl_typename__ == "rosgraph_msgs::msg::dds_::Clock_"
    with pytest.raises(ValueError, match="sensor_msgs/srv/X"):
        messages.dds_type_name("sensor_msgs/srv/X")
    assert dds_topic_name("/arm1/joint_states") == "rt/arm1/joint_states"
    assert dds_topic_name("/clock") == "rt/clock"


@pytest.mark.parametrize(("topic", "namespace", "expected"), [
    ("joint_states", "", "/joint_states"),
    ("joint_states", "/arm1", "/arm1/joint_states"),
    ("camera/image", "/lab/arm1", "/lab/arm1/camera/image"),
    ("/clock", "/arm1", "/clock"),
    ("~/status", "/arm1", "/arm1/robot_rl/status"),
    ("~", "", "/robot_rl"),
    ("{node}/events", "/arm1", "/arm1/robot_rl/events"),
    ("{ns}/x", "/arm1", "/arm1/x"),
    ("{ns}/x", "", "/x"),
])
def test_topic_resolution(topic: str, namespace: str, expected: str) -> None:
    assert resolve_topic(topic, namespace) == expected


@pytest.mark.parametrize("topic", ["", "/", "a//b", "a/", "1abc", "a/2b", "a b", "a-b", "~x", "a/~/b", "{bad}",
                                   "x" * MAX_TOPIC_NAME_LENGTH])
def test_invalid_topics(topic: str) -> None:
    with pytest.raises(ValueError, match="topic") as error:
        resolve_topic(topic, "/arm1")
    if topic:
        assert repr(topic) in str(error.value)


def test_config_validation() -> None:
    for bad in [{"namespace": "arm1"}, {"namespace": "/arm1/"}, {"node_name": "1x"}, {"domain_id": 233},
                {"backend": "ros1"}, {"network": "lan"}]:
        with pytest.raises(ValueError):
            TransportConfig(**bad)
    with pytest.raises(ValueError):
        QoS(depth=0)


# ---------------------------------------------------------------------------------------------
# DDS in this process (loopback configuration forced)
# ---------------------------------------------------------------------------------------------

DOMAIN = 117  # away from ROS' default 0, in case anything else on this host's loopback uses DDS


def test_loopback_config_in_force_before_participant(monkeypatch: pytest.MonkeyPatch) -> None:
    from robot_rl.hardware.transport import dds

    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    seen: dict[str, Any] = {}
    real_participant = dds.DomainParticipant

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen["uri"] = os.environ.get("CYCLONEDDS_URI")
        seen["domain_created"] = DOMAIN in dds._domains
        return real_participant(*args, **kwargs)

    monkeypatch.setattr(dds, "DomainParticipant", spy)
    transport = make_transport(TransportConfig(backend="dds", network="loopback", domain_id=DOMAIN))
    try:
        assert seen["domain_created"]  # explicit Domain with the XML, before the participant
        config = ET.fromstring(seen["uri"])
        assert seen["uri"] == os.environ["CYCLONEDDS_URI"]
        namespace = {"c": "https://cdds.io/config"}
        assert config.find("c:Domain", namespace).get("id") == "any"
        interfaces = config.findall(".//c:Interfaces/c:NetworkInterface", namespace)
        assert [i.get("address") for i in interfaces] == ["127.0.0.1"]
        assert config.find(".//c:AllowMulticast", namespace).text == "false"
        assert [p.get("address") for p in config.findall(".//c:Peers/c:Peer", namespace)] == ["127.0.0.1"]
    finally:
        transport.close()
    assert DOMAIN not in dds._domains


def test_in_process_pubsub(caplog: pytest.LogCaptureFixture) -> None:
    from cyclonedds.core import Policy

    before = set(threading.enumerate())
    config = TransportConfig(backend="dds", domain_id=DOMAIN, namespace="/arm1", distro="jazzy")
    with make_transport(config) as transport:
        received: list[Any] = []
        threads: set[str] = set()
        done = threading.Event()

        def on_string(msg: Any) -> None:
            threads.add(threading.current_thread().name)
            if msg.data == "boom":
                raise RuntimeError("callback failure")
            received.append(msg.data)
            if msg.data == "last":
                done.set()

        subscription = transport.subscribe("chatter", "std_msgs/msg/String", on_string,
                                           QoS(transient_local=True, depth=100))
        publisher = transport.publisher("chatter", "std_msgs/msg/String", QoS(transient_local=True, depth=100))
        for data in ["a", "boom", "b", "last"]:
            publisher.publish(transport.message("std_msgs/msg/String", data=data))
        assert done.wait(5.0)
        assert received == ["a", "b", "last"]
        assert threads == {"robot_rl-dds-delivery"}
        assert "callback for /arm1/chatter raised" in caplog.text
        # ROS 2 conventions on the endpoints
        user_data = publisher._writer.get_qos()[Policy.Userdata].data
        assert user_data == f"typehash={messages.type_hash('std_msgs/msg/String')};".encode()
        assert publisher._writer.topic.name == "rt/arm1/chatter"
        with pytest.raises(ValueError, match="already used"):
            transport.publisher("chatter", "std_msgs/msg/Bool")
        with pytest.raises(TypeError):
            publisher.publish(transport.message("std_msgs/msg/Bool"))
        subscription.close()
        subscription.close()  # idempotent
        publisher.publish(transport.message("std_msgs/msg/String", data="after close"))
        time.sleep(0.2)
        assert received[-1] == "last"
    assert set(threading.enumerate()) == before
    transport.close()  # idempotent


# ---------------------------------------------------------------------------------------------
# DDS between processes (private network namespace)
# ---------------------------------------------------------------------------------------------

JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"
NAMESPACE = "/arm1"


def _joint_state(transport: Any, i: int) -> Any:
    return transport.message(
        JOINT_STATE, header=transport.message("std_msgs/msg/Header", stamp=messages.stamp(1000 + i / 100),
                                              frame_id=f"seq{i}"),
        name=["shoulder", "elbow"], position=[float(i), -float(i)], velocity=[i / 2], effort=[])


def _publish_child(rate: float, count: int, depth: int) -> int:
    """Child: prove the data path with warm-ups until acked, publish ``count`` at ``rate``, await "done"."""
    with make_transport(TransportConfig(backend="dds", namespace=NAMESPACE)) as transport:
        acks: dict[str, threading.Event] = {"ready": threading.Event(), "done": threading.Event()}
        transport.subscribe("ack", STRING, lambda msg: acks[msg.data].set())
        publisher = transport.publisher("joint_states", JOINT_STATE, QoS(depth=depth))
        warmup = transport.message(JOINT_STATE, name=["warmup"])
        deadline = time.monotonic() + 10
        while not acks["ready"].wait(0.02):
            publisher.publish(warmup)
            if time.monotonic() > deadline:
                return 2
        period, next_time = 1.0 / rate, time.perf_counter()
        for i in range(count):
            publisher.publish(_joint_state(transport, i))
            next_time += period
            time.sleep(max(0.0, next_time - time.perf_counter()))
        return 0 if acks["done"].wait(10) else 3


def _stream_orchestrator(rate: str, count: str, depth: str) -> dict[str, Any]:
    """Subscriber side of the streaming scenario; also reads the raw CDR of every sample."""
    from cyclonedds._clayer import ddspy_take
    from cyclonedds.core import InstanceState, SampleState, ViewState
    from cyclonedds.sub import DataReader
    from robot_rl.hardware.transport.dds import _endpoint_qos

    n = int(count)
    with make_transport(TransportConfig(backend="dds", namespace=NAMESPACE)) as transport:
        raw = DataReader(transport._participant, transport._topic(f"{NAMESPACE}/joint_states", JOINT_STATE),
                         qos=_endpoint_qos(QoS(depth=n + 100), None))
        ack = transport.publisher("ack", STRING)
        received: list[Any] = []
        complete = threading.Event()

        def on_joint_state(msg: Any) -> None:
            if msg.name == ["warmup"]:
                ack.publish(transport.message(STRING, data="ready"))
                return
            received.append(msg)
            if len(received) == n:
                complete.set()

        transport.subscribe("joint_states", JOINT_STATE, on_joint_state, QoS(depth=int(depth)))
        child = subprocess.Popen([sys.executable, __file__, "publish", rate, count, depth])
        try:
            complete.wait(30)
            ack.publish(transport.message(STRING, data="done"))
            child_code = child.wait(30)
        finally:
            child.kill()
        mask = SampleState.Any | ViewState.Any | InstanceState.Any
        payloads = [data for data, info in ddspy_take(raw._ref, mask, 10 * n) if info.valid_data]
        # What the wire carried: XCDR1 LE header, our CDR, zero padding to a multiple of 4
        expected = [messages.serialize(_joint_state(transport, i)) for i in range(n)]
        expected_padded = [e + b"\0" * (-len(e) % 4) for e in expected]
        result = {
            "seqs": [int(msg.header.frame_id[3:]) for msg in received],
            "values_ok": all(
                msg.name == ["shoulder", "elbow"] and msg.position == [float(i), -float(i)]
                and msg.velocity == [i / 2] and msg.effort == [] and msg.header.frame_id == f"seq{i}"
                and msg.header.stamp.sec == 1000 + i // 100 for i, msg in enumerate(received)),
            "wire_headers": sorted({p[:4].hex() for p in payloads}),
            "wire_matches": [p for p in payloads if p in set(expected_padded)] == expected_padded,
            "child_code": child_code,
        }
    result["threads_left"] = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    return result


def _latch_child() -> int:
    """Child: publish 5 messages transient-local (depth 1), say so, stay until stdin closes."""
    with make_transport(TransportConfig(backend="dds", namespace=NAMESPACE)) as transport:
        publisher = transport.publisher("latched", STRING, QoS(transient_local=True, depth=1))
        for i in range(5):
            publisher.publish(transport.message(STRING, data=f"state {i}"))
        print("published", flush=True)
        sys.stdin.read()
    return 0


def _latch_orchestrator() -> dict[str, Any]:
    child = subprocess.Popen([sys.executable, __file__, "latch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "published"
        with make_transport(TransportConfig(backend="dds", namespace=NAMESPACE)) as transport:
            received: list[str] = []
            first = threading.Event()
            transport.subscribe("latched", STRING, lambda msg: (received.append(msg.data), first.set()),
                                QoS(transient_local=True, depth=1))
            first.wait(10)
            time.sleep(0.3)  # anything else would arrive now
        child.stdin.close()
        child_code = child.wait(10)
    finally:
        child.kill()
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    return {"received": received, "child_code": child_code, "threads_left": threads}


def _run_scenario(*args: str) -> dict[str, Any]:
    done = netns.run_python(Path(__file__), *args, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("rate", "count", "depth"), [
    ("100", "50", "10"),  # JointState at 100 Hz, ROS' default QoS (reliable, volatile, keep-last 10)
    # 1 kHz for 1 s, reliable: nothing may be lost. The reader history must absorb scheduling
    # hiccups of the delivery thread on a loaded machine (keep-last drops the oldest on overflow).
    ("1000", "1000", "1000"),
])
def test_stream_between_processes(rate: str, count: str, depth: str) -> None:
    result = _run_scenario("stream", rate, count, depth)
    assert result["seqs"] == list(range(int(count)))  # all, in order
    assert result["values_ok"]
    assert result["wire_headers"] == ["00010000"]  # CDR_LE = XCDR1 little endian, warm-ups included
    assert result["wire_matches"]
    assert result["child_code"] == 0
    assert result["threads_left"] == []


def test_transient_local_late_joiner() -> None:
    result = _run_scenario("latched")
    assert result["received"] == ["state 4"]
    assert result["child_code"] == 0
    assert result["threads_left"] == []


# ---------------------------------------------------------------------------------------------
# rclpy backend (needs a sourced ROS 2)
# ---------------------------------------------------------------------------------------------

def _wait_for(condition: Any, action: Any, timeout: float = 15.0) -> bool:
    """Repeat ``action`` every 50 ms until ``condition()`` (discovery across stacks takes a while)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        action()
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("direction", ["rclpy_to_dds", "dds_to_rclpy"])
def test_rclpy_and_dds_backends_interoperate(direction: str) -> None:
    pytest.importorskip("rclpy")
    from robot_rl.hardware.transport import DdsTransport, RclpyTransport

    dds_transport = DdsTransport(TransportConfig(backend="dds", namespace=NAMESPACE))  # first: sets the config
    ros_transport = RclpyTransport(TransportConfig(backend="rclpy", namespace=NAMESPACE))
    source, sink = (ros_transport, dds_transport) if direction == "rclpy_to_dds" else (dds_transport, ros_transport)
    try:
        received: list[Any] = []
        sink.subscribe("image", "sensor_msgs/msg/Image", received.append)
        publisher = source.publisher("image", "sensor_msgs/msg/Image")
        image = source.message("sensor_msgs/msg/Image", header=source.message(
            "std_msgs/msg/Header", stamp=messages.stamp(12.25), frame_id="cam"), height=1, width=3,
            encoding="rgb8", step=9, data=bytes(range(9)))
        assert _wait_for(lambda: received, lambda: publisher.publish(image))
        msg = received[0]
        assert bytes(msg.data) == bytes(range(9)) and msg.encoding == "rgb8" and msg.header.frame_id == "cam"
        assert messages.seconds_of(msg.header.stamp) == 12.25
    finally:
        ros_transport.close()
        dds_transport.close()


if __name__ == "__main__":
    logging.basicConfig()
    role, *arguments = sys.argv[1:]
    if role == "publish":
        sys.exit(_publish_child(float(arguments[0]), int(arguments[1]), int(arguments[2])))
    if role == "latch":
        sys.exit(_latch_child())
    outcome = _stream_orchestrator(*arguments) if role == "stream" else _latch_orchestrator()
    print(json.dumps(outcome))
