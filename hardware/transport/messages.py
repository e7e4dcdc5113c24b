"""ROS 2 message classes for the ``cyclonedds`` wheel, generated from rosbags' type definitions.

Nothing here is written per message type: :func:`message_class` reads the field definitions of a
ROS 2 distribution from ``rosbags`` (``typestore.fielddefs``) and builds a
``cyclonedds.idl.IdlStruct`` dataclass whose DDS type name (``pkg::msg::dds_::Name_``), field
names, field order and CDR encoding are exactly what ``rmw_cyclonedds_cpp`` / ``rmw_fastrtps``
use, so the bytes interoperate with real ROS 2 nodes. Nested messages are generated recursively;
classes are cached per ``(type, distro)``.

Python values of the generated fields:

* integers (``int8``..``uint64``, ``char``, ``byte``) → ``int``; ``bool`` → ``bool``;
  ``float32``/``float64`` → ``float``; ``string`` (bounded or not) → ``str``;
* ``uint8[]`` / ``byte[]`` sequences (``Image.data``, ``CompressedImage.data``) → ``bytes``.
  Anything ``bytes()`` accepts may be assigned (``bytearray``, ``memoryview``, a C-contiguous
  ``numpy.uint8`` array, a list of ints); received messages carry ``bytes``. This goes through
  a bytes-copying CDR path instead of cyclonedds' per-element ``struct`` path, which is ~100×
  faster for images (see :class:`_OctetSequenceMachine`);
* fixed ``uint8``/``byte`` arrays → ``bytes`` of that length; other fixed arrays and sequences
  → ``list`` (numpy arrays are accepted for numeric ones when publishing).

Every field has a default (zero, empty, or a default nested message) so ``cls()`` works.

On the wire: :func:`serialize` returns plain CDR (XCDR1), little endian, with the 4-byte
encapsulation header ``00 01 00 00`` and no trailing padding, byte-for-byte what
``rosbags``' ``serialize_cdr`` produces. A DDS writer (cyclonedds' ``DataWriter`` as well as
``rmw_cyclonedds_cpp``) additionally pads the payload with zero bytes to a multiple of 4 and
leaves the encapsulation options at 0; readers ignore those bytes.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import types as pytypes
from typing import Any

from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as idl
from cyclonedds.idl._machinery import BytesMachine, PlainCdrV2SequenceOfPrimitiveMachine
from cyclonedds.idl._support import Endianness
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.base import Nodetype

DISTROS: dict[str, Stores] = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}

#: Every message type the project publishes or subscribes to.
PROJECT_MESSAGE_TYPES: tuple[str, ...] = (
    "builtin_interfaces/msg/Time",
    "std_msgs/msg/Header",
    "std_msgs/msg/Bool",
    "std_msgs/msg/String",
    "std_msgs/msg/Float64",
    "std_msgs/msg/Float64MultiArray",
    "sensor_msgs/msg/JointState",
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/Joy",
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseArray",
    "geometry_msgs/msg/Twist",
    "geometry_msgs/msg/TwistStamped",
    "trajectory_msgs/msg/JointTrajectory",
    "rosgraph_msgs/msg/Clock",
)

# ROS 2 base type → (cyclonedds annotation, default). ROS 2 maps ``char`` to uint8 and ``byte`` to
# octet (rosidl), both one unsigned byte on the wire and an int in rclpy.
_BASE_TYPES: dict[str, tuple[Any, Any]] = {
    "bool": (bool, False),
    "byte": (idl.byte, 0),
    "octet": (idl.byte, 0),
    "char": (idl.uint8, 0),
    "int8": (idl.int8, 0),
    "uint8": (idl.uint8, 0),
    "int16": (idl.int16, 0),
    "uint16": (idl.uint16, 0),
    "int32": (idl.int32, 0),
    "uint32": (idl.uint32, 0),
    "int64": (idl.int64, 0),
    "uint64": (idl.uint64, 0),
    "float32": (idl.float32, 0.0),
    "float64": (idl.float64, 0.0),
    "string": (str, ""),
}
_OCTET_TYPES = frozenset({"uint8", "byte", "octet", "char"})
_NUMBERS = frozenset(annotation for annotation, _ in _BASE_TYPES.values() if annotation is not str)
# Default values written in .msg files, which rosbags' definitions drop. Among the messages ROS 2's
# common_interfaces define, only the identity quaternion needs one (rclpy: Quaternion().w == 1.0).
_MSG_DEFAULTS: dict[tuple[str, str], Any] = {("geometry_msgs/msg/Quaternion", "w"): 1.0}

# Generation is recursive (nested types) and must yield exactly one class per key: two threads
# racing on a first use would otherwise produce two classes, and a DataWriter rejects instances
# of the "other" one.
_lock = threading.RLock()
_classes: dict[tuple[str, str], type[IdlStruct]] = {}


class _OctetSequenceMachine(BytesMachine):
    """CDR ``sequence<uint8>`` carried as ``bytes``.

    cyclonedds serialises ``sequence[uint8]`` element by element through ``struct`` into a list
    of ints (~1.6 ms to write and ~0.6 ms to read a 128×128×3 image); its ``bytes`` machine
    writes the identical encoding (4-aligned uint32 length, then the raw bytes) with one copy.
    The field stays annotated ``sequence[uint8]`` so the XTypes type information cyclonedds
    announces remains ROS 2's ``sequence<uint8>``; only the (de)serialiser is swapped.
    """

    def serialize(self, buffer, value, *args) -> None:
        super().serialize(buffer, value if isinstance(value, (bytes, bytearray)) else bytes(value), *args)


class _NumberSequenceMachine(PlainCdrV2SequenceOfPrimitiveMachine):
    """cyclonedds' machine for sequences of numbers/bools, also taking numpy and array.array
    (the stock one tests ``if value:``, which numpy arrays refuse)."""

    def serialize(self, buffer, value, *args) -> None:
        super().serialize(buffer, value.tolist() if hasattr(value, "tolist") else value, *args)


def split_seconds(seconds: float) -> tuple[int, int]:
    """``seconds`` → ROS ``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (negative times too)."""
    sec = math.floor(seconds)
    nanosec = round((seconds - sec) * 1e9)
    if nanosec >= 1_000_000_000:  # rounding carried into the next second
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return int(sec), int(nanosec)


def stamp(seconds: float, distro: str = "humble") -> Any:
    """A ``builtin_interfaces/msg/Time`` (generated class) for ``seconds`` since the epoch."""
    sec, nanosec = split_seconds(seconds)
    return message_class("builtin_interfaces/msg/Time", distro)(sec=sec, nanosec=nanosec)


def seconds_of(time_msg: Any) -> float:
    """Seconds of any object with ``sec``/``nanosec`` (Time of any backend, Duration)."""
    return time_msg.sec + time_msg.nanosec * 1e-9


def normalize_type_name(type_name: str) -> str:
    """``pkg/msg/Name`` (also accepts ``pkg/Name``); ValueError for anything else."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts.insert(1, "msg")
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise ValueError(f"not a ROS 2 message type name: {type_name!r} (expected 'pkg/msg/Name')")
    return "/".join(parts)


def dds_type_name(type_name: str) -> str:
    """ROS 2's DDS type name: ``sensor_msgs/msg/Image`` → ``sensor_msgs::msg::dds_::Image_``."""
    pkg, _, name = normalize_type_name(type_name).split("/")
    return f"{pkg}::msg::dds_::{name}_"


def type_hash(type_name: str, distro: str = "jazzy") -> str:
    """ROS 2 (Iron+) type hash ``RIHS01_<sha256>`` of a message type, as the RMWs announce it."""
    return _typestore(distro).hash_rihs01(normalize_type_name(type_name))


def _typestore(distro: str) -> Any:
    if distro not in DISTROS:
        raise ValueError(f"unknown ROS 2 distro {distro!r}; known: {sorted(DISTROS)}")
    return get_typestore(DISTROS[distro])


def message_class(type_name: str, distro: str = "humble") -> type[IdlStruct]:
    """The generated ``IdlStruct`` dataclass of ROS 2 message ``type_name`` in ``distro``."""
    key = (normalize_type_name(type_name), distro)
    cls = _classes.get(key)
    if cls is None:
        with _lock:
            cls = _classes.get(key) or _generate(*key)
    return cls


def new_message(type_name: str, distro: str = "humble", **fields: Any) -> Any:
    """An instance of :func:`message_class` with ``fields`` set (others default)."""
    return message_class(type_name, distro)(**fields)


def serialize(msg: IdlStruct) -> bytes:
    """CDR (XCDR1, little endian, encapsulation header, no trailing padding) of a generated msg."""
    return msg.serialize(use_version_2=False, endianness=Endianness.Little)


def deserialize(type_name: str, data: bytes, distro: str = "humble") -> Any:
    """Inverse of :func:`serialize` (the encapsulation header selects the endianness)."""
    return message_class(type_name, distro).deserialize(data)


def _generate(type_name: str, distro: str) -> type[IdlStruct]:
    store = _typestore(distro)
    try:
        consts, fielddefs = store.fielddefs[type_name]
    except KeyError:
        raise ValueError(f"unknown message type {type_name!r} in ROS 2 {distro}") from None
    annotations: dict[str, Any] = {}
    defaults: dict[str, dataclasses.Field] = {}
    for name, node in fielddefs:
        annotations[name], defaults[name] = _field(type_name, name, node, distro)

    def body(namespace: dict[str, Any]) -> None:
        namespace["__annotations__"].update(annotations)
        namespace.update(defaults)
        namespace.update({const_name: value for const_name, _, value in consts})
        namespace["__module__"] = __name__
        namespace["__doc__"] = f"ROS 2 {distro} {type_name} (generated from rosbags' definition)."

    short_name = type_name.rsplit("/", 1)[1]
    cls = dataclasses.dataclass(
        pytypes.new_class(short_name, (IdlStruct,), {"typename": dds_type_name(type_name)}, body)
    )
    _use_own_sequence_machines(cls, annotations)
    _classes[(type_name, distro)] = cls  # published only when complete (lock-free readers)
    return cls


def _use_own_sequence_machines(cls: type[IdlStruct], annotations: dict[str, Any]) -> None:
    """Swap cyclonedds' (de)serialisers of number sequences for the two above (same encoding)."""
    replacements = {}
    for name, annotation in annotations.items():
        # idl.sequence[T, n] is Annotated[Sequence[T], sequence(T, n)]
        sequence = next((m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, idl.sequence)), None)
        if sequence is not None and sequence.subtype in _NUMBERS:
            if sequence.subtype in (idl.uint8, idl.byte):
                replacements[name] = _OctetSequenceMachine(sequence.max_length)
            else:
                replacements[name] = _NumberSequenceMachine(sequence.subtype, sequence.max_length)
    if not replacements:
        return
    idl_info = cls.__idl__
    idl_info.populate()  # builds the XCDR1 and XCDR2 machines now, so they can be patched
    for machine in (idl_info.v1_machine, idl_info.v2_machine):
        for name, replacement in replacements.items():
            # Fails loudly if a cyclonedds release changes how it encodes these sequences.
            assert type(machine.members_machines[name]) is PlainCdrV2SequenceOfPrimitiveMachine
            machine.members_machines[name] = replacement


def _base(owner: str, field: str, detail: tuple[str, int]) -> tuple[Any, Any]:
    base_name, bound = detail
    if base_name not in _BASE_TYPES:
        raise TypeError(f"{owner}.{field}: ROS type {base_name!r} is not supported")
    annotation, default = _BASE_TYPES[base_name]
    if base_name == "string" and bound:
        annotation = idl.bounded_str[bound]
    return annotation, default


def _element(owner: str, field: str, node: tuple, distro: str) -> tuple[Any, Any]:
    """(annotation, default factory) of one array/sequence element."""
    kind, detail = node
    if kind == Nodetype.BASE:
        annotation, default = _base(owner, field, detail)
        return annotation, lambda: default
    if kind == Nodetype.NAME:
        nested = message_class(detail, distro)
        return nested, nested
    raise TypeError(f"{owner}.{field}: nested arrays/sequences do not exist in ROS 2 messages")


def _field(owner: str, field: str, node: tuple, distro: str) -> tuple[Any, dataclasses.Field]:
    """(annotation, dataclass field with default) of one message field."""
    kind, detail = node
    if kind == Nodetype.BASE:
        annotation, default = _base(owner, field, detail)
        return annotation, dataclasses.field(default=_MSG_DEFAULTS.get((owner, field), default))
    if kind == Nodetype.NAME:
        nested = message_class(detail, distro)
        return nested, dataclasses.field(default_factory=nested)
    element_node, size = detail
    element, make_element = _element(owner, field, element_node, distro)
    octets = element_node[0] == Nodetype.BASE and element_node[1][0] in _OCTET_TYPES
    if kind == Nodetype.ARRAY:
        if octets:  # cyclonedds encodes uint8[n] from/to bytes already
            return idl.array[element, size], dataclasses.field(default=bytes(size))
        return idl.array[element, size], dataclasses.field(
            default_factory=lambda: [make_element() for _ in range(size)]
        )
    annotation = idl.sequence[element, size] if size else idl.sequence[element]
    if octets:
        return annotation, dataclasses.field(default=b"")
    return annotation, dataclasses.field(default_factory=list)

