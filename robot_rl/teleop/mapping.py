"""Axis and button mappings: a device's raw axes and buttons → a :class:`TeleopCommand`.

The gamepad, SpaceMouse and ROS 2 ``Joy`` backends all report plain arrays (axes as floats,
buttons as booleans) and share this one translation. A mapping says, for each twist component,
gripper and button, where it comes from. Built-in mappings (:data:`BUILTIN`) cover the common
devices; a YAML file with the same structure overrides them (``teleop.mapping: my_pad.yaml``)::

    axes:                      # all six must be given; null: the device does not drive that axis
      x: {axis: lefty, invert: true}       # an axis (index or, for SDL controllers, its name)
      y: {axis: leftx, invert: true}
      z: {axis: righty, invert: true}
      roll: {buttons: [dpright, dpleft]}   # a pair of buttons: the first gives +1, the second -1
      pitch: {buttons: [dpup, dpdown]}
      yaw: {axis: rightx, invert: true}
    gripper: {axis: righttrigger, released: 0.0, pressed: 1.0}   # squeeze to close
    # or: gripper: {buttons: [close_button, open_button]}         # hold to close / open
    # or: gripper: null
    buttons:
      deadman: leftshoulder    # hold to move; "active": any axis outside the deadband or a gripper control in use
      success: a               # null: the device has no such button
      failure: b
      reset: back

Raw axes are expected in ``[-1, 1]``; a value that is not finite or lies outside that range
(with a little tolerance) makes the command a fault, which holds the arm, instead of being
clipped: it means a broken driver or message, not a wish to go fast.

Frames of the built-in mappings: the operator stands behind the robot, looking along the base
+x axis: pushing a stick (or the SpaceMouse puck) forward moves the tool along +x (away), left
along +y, up along +z; yaw turns the tool anticlockwise seen from above. ``teleop.invert`` or a
mapping file fits other set-ups.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from robot_rl.config import ConfigError, read_yaml
from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import AXES, LABELS, TeleopCommand, shape_twist

#: Raw axes may exceed ±1 by this much (integer ranges like −32768..32767) before it is a fault.
RANGE_TOLERANCE = 1e-3
#: ``buttons.deadman: active``: the operator counts as engaged while using any control.
ACTIVE = "active"

BUILTIN: dict[str, dict[str, Any]] = {
    # SDL GameController layout: SDL maps Xbox 360/One/Series, PlayStation 3/4/5, Switch Pro,
    # Logitech F310/F710, 8BitDo and other pads in its database onto these names. Stick y axes
    # are positive downwards in SDL; triggers go from 0 (released) to 1.
    "gamepad": {
        "axes": {
            "x": {"axis": "lefty", "invert": True},
            "y": {"axis": "leftx", "invert": True},
            "z": {"axis": "righty", "invert": True},
            "roll": {"buttons": ["dpright", "dpleft"]},
            "pitch": {"buttons": ["dpup", "dpdown"]},
            "yaw": {"axis": "rightx", "invert": True},
        },
        "gripper": {"axis": "righttrigger", "released": 0.0, "pressed": 1.0},
        "buttons": {"deadman": "leftshoulder", "success": "a", "failure": "b", "reset": "back"},
    },
    # 3Dconnexion SpaceMouse HID axes 0-5 = x, y, z, rx, ry, rz as the device reports them
    # (x right, y towards the operator, z down; signs as in pyspacemouse's device table);
    # buttons are the bits of the button report (0 = left, 1 = right on two-button models).
    "spacemouse": {
        "axes": {
            "x": {"axis": 1, "invert": True},
            "y": {"axis": 0, "invert": True},
            "z": {"axis": 2, "invert": True},
            "roll": {"axis": 4, "invert": True},
            "pitch": {"axis": 3},
            "yaw": {"axis": 5},
        },
        "gripper": {"buttons": [0, 1]},
        "buttons": {"deadman": ACTIVE, "success": None, "failure": None, "reset": None},
    },
    # ROS 2 joy_node with an Xbox-layout pad (the joy package's README): axes 0/1 left stick,
    # 2 LT, 3/4 right stick, 5 RT, 6/7 d-pad; left and up positive; triggers rest at +1 and
    # read -1 fully pressed. Buttons: 0 A, 1 B, 2 X, 3 Y, 4 LB, 5 RB, 6 back, 7 start.
    "joy": {
        "axes": {
            "x": {"axis": 1},
            "y": {"axis": 0},
            "z": {"axis": 4},
            "roll": {"axis": 6, "invert": True},
            "pitch": {"axis": 7},
            "yaw": {"axis": 3},
        },
        "gripper": {"axis": 5, "released": 1.0, "pressed": -1.0},
        "buttons": {"deadman": 4, "success": 0, "failure": 1, "reset": 6},
    },
    # spacenav_node's sensor_msgs/Joy: axes already in ROS's frame (x forward, y left, z up,
    # then rotations about them); buttons 0 = left, 1 = right.
    "spacenav": {
        "axes": {name: {"axis": index} for index, name in enumerate(AXES)},
        "gripper": {"buttons": [0, 1]},
        "buttons": {"deadman": ACTIVE, "success": None, "failure": None, "reset": None},
    },
}


@dataclass(frozen=True)
class RawInput:
    """A device's state: ``axes`` (floats, nominally in ``[-1, 1]``), ``buttons`` held now, and
    ``pressed``: buttons pressed since the previous poll (edges; empty if the device has none)."""

    axes: Sequence[float]
    buttons: Sequence[bool]
    pressed: Sequence[bool] = ()


@dataclass(frozen=True)
class InputNames:
    """Names a device gives its axes and buttons (SDL's ``lefty``, ``a``…), index by name."""

    axes: Mapping[str, int]
    buttons: Mapping[str, int]


class _Fault(Exception):
    """Raised inside :meth:`AxisMapping.command` for input that must not move the arm."""


@dataclass(frozen=True)
class _Source:
    """Where one value comes from: ``axis`` (one index) or ``buttons`` (a +/− or close/open pair)."""

    kind: str
    indices: tuple[int, ...]
    invert: bool = False
    released: float = 0.0  # gripper axes only: raw value at rest …
    pressed: float = 1.0  # … and fully squeezed


@dataclass(frozen=True)
class AxisMapping:
    """A parsed, validated mapping (build with :func:`load_mapping`)."""

    source: str  # the built-in name or file it came from (for messages)
    axes: tuple[_Source | None, ...]
    gripper: _Source | None
    deadman: int | str
    labels: Mapping[str, int | None]
    names: InputNames | None = None

    def describe(self) -> str:
        """The controls, one per line (the device's on-screen help)."""

        def axis(index: int) -> str:
            return _name_of(index, None if self.names is None else self.names.axes, "axis")

        def button(index: int) -> str:
            return _name_of(index, None if self.names is None else self.names.buttons, "button")

        def source(entry: _Source) -> str:
            if entry.kind == "buttons":
                return f"{button(entry.indices[0])} + / {button(entry.indices[1])} -"
            return axis(entry.indices[0]) + (" (inverted)" if entry.invert else "")

        deadman = ("any control in use" if self.deadman == ACTIVE else f"hold {button(self.deadman)}")
        lines = [f"mapping {self.source}; move: {deadman}"]
        lines.append("  " + "   ".join(f"{name}: {source(entry)}" for name, entry in zip(AXES, self.axes) if entry))
        if self.gripper is not None:
            grip = self.gripper
            lines.append(f"  gripper: {button(grip.indices[0])} close / {button(grip.indices[1])} open"
                         if grip.kind == "buttons" else f"  gripper: squeeze {axis(grip.indices[0])} to close")
        labels = [f"{name}: {button(index)}" for name, index in self.labels.items() if index is not None]
        if labels:
            lines.append("  " + "   ".join(labels))
        return "\n".join(lines)

    def command(self, raw: RawInput, config: TeleopConfig, timestamp: float, connected: bool = True) -> TeleopCommand:
        """The command ``raw`` asks for; a :attr:`TeleopCommand.fault` (and no motion) if an axis
        it uses is missing, not finite or out of range."""
        try:
            normalized = [0.0 if source is None else self._value(source, raw) for source in self.axes]
            gripper, gripper_in_use = self._gripper(raw, config)
            if self.deadman == ACTIVE:
                deadman = gripper_in_use or any(abs(v) > config.deadband for v in normalized)
            else:
                deadman = _button(raw.buttons, self.deadman)
            labels = {name: index is not None and index < len(raw.pressed) and bool(raw.pressed[index])
                      for name, index in self.labels.items()}
        except _Fault as fault:
            return TeleopCommand.idle(timestamp, connected, fault=f"{fault} (mapping {self.source})")
        return TeleopCommand(shape_twist(normalized, config), gripper, deadman, timestamp=timestamp,
                             connected=connected, **labels)

    def _value(self, source: _Source, raw: RawInput) -> float:
        if source.kind == "buttons":
            plus, minus = source.indices
            return float(_button(raw.buttons, plus)) - float(_button(raw.buttons, minus))
        value = _axis(raw.axes, source.indices[0])
        return -value if source.invert else value

    def _gripper(self, raw: RawInput, config: TeleopConfig) -> tuple[float | None, bool]:
        """(target in [-1 open, +1 closed] or None for "hold", whether the control is in use)."""
        source = self.gripper
        if source is None:
            return None, False
        if source.kind == "buttons":
            close, open_ = (_button(raw.buttons, index) for index in source.indices)
            if close == open_:  # neither (hold) or both (ambiguous: hold too)
                return None, close
            return (1.0 if close else -1.0), True
        squeeze = (_axis(raw.axes, source.indices[0]) - source.released) / (source.pressed - source.released)
        squeeze = min(max(squeeze, 0.0), 1.0)
        return 2.0 * squeeze - 1.0, squeeze > config.deadband


def _axis(axes: Sequence[float], index: int) -> float:
    if index >= len(axes):
        raise _Fault(f"axis {index} is not reported by the device (it has {len(axes)})")
    value = axes[index]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _Fault(f"axis {index} is not a finite number: {value!r}")
    if abs(value) > 1.0 + RANGE_TOLERANCE:
        raise _Fault(f"axis {index} = {value:g} is outside [-1, 1]")
    return float(value)


def _button(buttons: Sequence[bool], index: int) -> bool:
    if index >= len(buttons):
        raise _Fault(f"button {index} is not reported by the device (it has {len(buttons)})")
    return bool(buttons[index])


# --------------------------------------------------------------------------- loading
def load_mapping(spec: str, default: str, names: InputNames | None = None) -> AxisMapping:
    """The mapping ``spec`` names: ``""`` → built-in ``default``; a :data:`BUILTIN` name; else a
    YAML file. ``names``: the device's axis/button names (None: indices only).

    Raises:
        ConfigError: the file cannot be read, or the mapping is incomplete or wrong; the message
            names the file and every missing axis or button, or the wrong entry.
    """
    name = spec or default
    if name in BUILTIN:
        return parse_mapping(BUILTIN[name], f"built-in {name!r}", names)
    path = Path(name)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        raise ConfigError(f"teleop.mapping: {name!r} is neither a built-in mapping ({', '.join(BUILTIN)}) "
                          f"nor a YAML file")
    return parse_mapping(read_yaml(path), str(path), names)


def parse_mapping(data: Mapping[str, Any], source: str, names: InputNames | None = None) -> AxisMapping:
    """Validate a mapping document (see the module docstring); errors name ``source``."""

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{source}: {problem}")

    _only_keys(data, ("axes", "gripper", "buttons"), "", fail)
    axes_data = data.get("axes")
    buttons_data = data.get("buttons")
    if not isinstance(axes_data, Mapping):
        raise fail("axes: expected a mapping of x, y, z, roll, pitch, yaw")
    if not isinstance(buttons_data, Mapping):
        raise fail("buttons: expected a mapping of deadman, success, failure, reset")
    missing = [axis for axis in AXES if axis not in axes_data]
    if missing:
        raise fail(f"missing axes: {', '.join(missing)} (give each of {', '.join(AXES)}; null for an axis "
                   f"the device should not drive)")
    button_keys = ("deadman", *LABELS)
    missing = [key for key in button_keys if key not in buttons_data]
    if "gripper" not in data:
        missing.insert(0, "gripper")
    if missing:
        raise fail(f"missing {', '.join(missing)} (null for a control the device does not have; "
                   f"deadman must be a button or '{ACTIVE}')")
    _only_keys(axes_data, AXES, "axes.", fail)
    _only_keys(buttons_data, button_keys, "buttons.", fail)

    axes = tuple(_parse_source(axes_data[axis], f"axes.{axis}", names, fail, gripper=False) for axis in AXES)
    gripper = _parse_source(data["gripper"], "gripper", names, fail, gripper=True)
    deadman = buttons_data["deadman"]
    if deadman != ACTIVE:
        if deadman is None:
            raise fail(f"buttons.deadman: must be a button or '{ACTIVE}', got null (every device needs a deadman)")
        deadman = _index(deadman, "button", "buttons.deadman", names, fail)
    labels = {key: None if buttons_data[key] is None else _index(buttons_data[key], "button", f"buttons.{key}", names, fail)
              for key in LABELS}
    return AxisMapping(source, axes, gripper, deadman, labels, names)


def _name_of(index: int, table: Mapping[str, int] | None, kind: str) -> str:
    names = [name for name, i in (table or {}).items() if i == index]
    return names[0] if names else f"{kind} {index}"


def _parse_source(entry: Any, where: str, names: InputNames | None, fail: Any, gripper: bool) -> _Source | None:
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise fail(f"{where}: expected {{axis: ...}} or {{buttons: [..., ...]}} or null, got {entry!r}")
    if "buttons" in entry:
        _only_keys(entry, ("buttons",), f"{where}.", fail)
        pair = entry["buttons"]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            order = "[close, open]" if gripper else "[plus, minus]"
            raise fail(f"{where}.buttons: expected two buttons {order}, got {pair!r}")
        return _Source("buttons", tuple(_index(b, "button", f"{where}.buttons", names, fail) for b in pair))
    if "axis" not in entry:
        raise fail(f"{where}: expected an 'axis' or 'buttons' entry, got keys {sorted(entry)}")
    allowed = ("axis", "released", "pressed") if gripper else ("axis", "invert")
    _only_keys(entry, allowed, f"{where}.", fail)
    index = _index(entry["axis"], "axis", f"{where}.axis", names, fail)
    if gripper:
        released, pressed = entry.get("released", 0.0), entry.get("pressed", 1.0)
        for key, value in (("released", released), ("pressed", pressed)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1:
                raise fail(f"{where}.{key}: expected a number in [-1, 1], got {value!r}")
        if released == pressed:
            raise fail(f"{where}: released and pressed must differ, both are {released!r}")
        return _Source("axis", (index,), released=float(released), pressed=float(pressed))
    invert = entry.get("invert", False)
    if not isinstance(invert, bool):
        raise fail(f"{where}.invert: expected true or false, got {invert!r}")
    return _Source("axis", (index,), invert=invert)


def _index(value: Any, kind: str, where: str, names: InputNames | None, fail: Any) -> int:
    """An axis/button given by index or (where the device names them) by name."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise fail(f"{where}: {kind} index must be >= 0, got {value}")
        return value
    table = None if names is None else (names.axes if kind == "axis" else names.buttons)
    if isinstance(value, str) and table is not None:
        if value in table:
            return table[value]
        plural = "axes" if kind == "axis" else "buttons"
        raise fail(f"{where}: unknown {kind} {value!r}; this device's {plural}: {', '.join(table)}")
    expected = f"a {kind} index" + ("" if table is None else " or name")
    raise fail(f"{where}: expected {expected}, got {value!r}")


def _only_keys(data: Mapping[str, Any], allowed: Sequence[str], prefix: str, fail: Any) -> None:
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise fail(f"{prefix}{unknown[0]}: unknown key (valid keys here: {', '.join(allowed)})")
