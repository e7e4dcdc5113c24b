"""3Dconnexion SpaceMouse teleoperation over raw HID (hidapi; no 3Dconnexion driver needed).

The device's HID reports are parsed by a pure function, :func:`parse_report`, so the byte
layouts are tested on recorded reports without hardware:

* report 1, 7 bytes: translation ``x, y, z`` (int16 little endian each; SpaceNavigator,
  SpaceMouse Compact, SpaceMouse Pro and other older or cabled models);
* report 2, 7 bytes: rotation ``rx, ry, rz`` (same models);
* report 1, 13 bytes: translation and rotation together (SpaceMouse Wireless, Pro Wireless,
  Enterprise and the Universal Receiver);
* report 3: buttons, one bit each, little endian (bit 0 = left, bit 1 = right on two-button
  models);
* anything else (LED 4, battery 0x17…) leaves the state unchanged.

Axes are in the device's HID frame (x right, y towards the operator, z down) and reach about
±350 at full deflection (:data:`FULL_SCALE`); they are divided by that and saturated to ±1
(pressing harder is not a fault). The built-in ``spacemouse`` mapping turns them into the robot
frame; the puck springs back to zero, so it needs no deadman button (``deadman: active``).

The device sends a report when its state changes (and a zero report when the puck is let go),
so an absent report means "unchanged", not silence: a connected SpaceMouse reports the poll time
as its timestamp. A read error means it was unplugged: ``connected=False`` until it is back
(looked for again at most every :data:`REOPEN_INTERVAL`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import DeviceUnavailableError, TeleopCommand
from robot_rl.teleop.mapping import RawInput, load_mapping

#: (vendor id, product id) → model, for the devices this backend opens.
KNOWN_DEVICES: dict[tuple[int, int], str] = {
    (0x046D, 0xC625): "SpacePilot",
    (0x046D, 0xC626): "SpaceNavigator",
    (0x046D, 0xC627): "SpaceExplorer",
    (0x046D, 0xC628): "SpaceNavigator for Notebooks",
    (0x046D, 0xC629): "SpacePilot Pro",
    (0x046D, 0xC62B): "SpaceMouse Pro",
    (0x256F, 0xC62E): "SpaceMouse Wireless (cable)",
    (0x256F, 0xC62F): "SpaceMouse Wireless (receiver)",
    (0x256F, 0xC631): "SpaceMouse Pro Wireless (cable)",
    (0x256F, 0xC632): "SpaceMouse Pro Wireless (receiver)",
    (0x256F, 0xC633): "SpaceMouse Enterprise",
    (0x256F, 0xC635): "SpaceMouse Compact",
    (0x256F, 0xC638): "SpaceMouse Pro Wireless (Bluetooth)",
    (0x256F, 0xC63A): "SpaceMouse Wireless",
    (0x256F, 0xC641): "SpaceMouse",
    (0x256F, 0xC652): "3Dconnexion Universal Receiver",
}
FULL_SCALE = 350.0  # raw value of a fully deflected axis
REOPEN_INTERVAL = 0.5  # s between looks for an unplugged SpaceMouse
_MAX_REPORTS_PER_POLL = 256  # bounds one poll's work if the device floods
_REPORT_SIZE = 64
_AXES = struct.Struct("<3h")


@dataclass(frozen=True)
class SpaceMouseState:
    """What the reports so far say: raw HID axes and the button bits."""

    translation: tuple[int, int, int] = (0, 0, 0)
    rotation: tuple[int, int, int] = (0, 0, 0)
    buttons: int = 0  # bit i set: button i held
    button_count: int = 0  # bits the last button report carried

    def axes(self) -> list[float]:
        """``x, y, z, rx, ry, rz`` divided by :data:`FULL_SCALE`, saturated to ±1."""
        return [max(-1.0, min(1.0, value / FULL_SCALE)) for value in (*self.translation, *self.rotation)]

    def button_list(self) -> list[bool]:
        return [bool(self.buttons >> bit & 1) for bit in range(max(self.button_count, 2))]


def parse_report(report: bytes, state: SpaceMouseState = SpaceMouseState()) -> SpaceMouseState:
    """The state after HID input report ``report`` (report id first, as hidapi returns it).

    Raises:
        ValueError: a translation, rotation or button report too short for its id.
    """
    if not report:
        raise ValueError("empty HID report")
    report_id, body = report[0], bytes(report[1:])
    if report_id == 1:
        if len(body) >= 12:  # the combined report of newer models
            return SpaceMouseState(_AXES.unpack_from(body, 0), _AXES.unpack_from(body, 6), state.buttons,
                                   state.button_count)
        if len(body) >= 6:
            return SpaceMouseState(_AXES.unpack_from(body, 0), state.rotation, state.buttons, state.button_count)
        raise ValueError(f"translation report too short: {report.hex(' ')}")
    if report_id == 2:
        if len(body) < 6:
            raise ValueError(f"rotation report too short: {report.hex(' ')}")
        return SpaceMouseState(state.translation, _AXES.unpack_from(body, 0), state.buttons, state.button_count)
    if report_id == 3:
        if not body:
            raise ValueError(f"button report without data: {report.hex(' ')}")
        return SpaceMouseState(state.translation, state.rotation, int.from_bytes(body, "little"), 8 * len(body))
    return state


def import_hid() -> Any:
    """The ``hid`` module of the ``hidapi`` package, or :class:`DeviceUnavailableError`."""
    try:
        import hid
    except ImportError as exc:
        raise DeviceUnavailableError(f"the spacemouse device needs hidapi: pip install 'robot_rl[teleop]' "
                                     f"(hidapi) ({exc})") from exc
    if not hasattr(hid, "device"):
        raise DeviceUnavailableError("the 'hid' module found is not hidapi's (pip uninstall hid; "
                                     "pip install hidapi)")
    return hid


class SpaceMouseDevice:
    """:class:`~robot_rl.teleop.device.TeleopDevice` for SpaceMouse number ``config.device_index``
    (``hid``: the hidapi module, replaceable for tests of the polling logic)."""

    def __init__(self, config: TeleopConfig, *, clock: Callable[[], float] = time.monotonic, hid: Any = None) -> None:
        self.config = config
        self._clock = clock
        self._hid = hid if hid is not None else import_hid()
        self._mapping = load_mapping(config.mapping, "spacemouse")
        self._device: Any = None
        self._model = ""
        self._state = SpaceMouseState()
        self._next_look = 0.0
        if not self._open():
            raise DeviceUnavailableError(
                f"no 3Dconnexion SpaceMouse number {config.device_index} found (vendor ids 046d, 256f); on Linux "
                f"check that your user may read /dev/hidraw* (a udev rule for the device), and that spacenavd "
                f"does not hold it")

    @property
    def help(self) -> str:
        return f"{self._model or 'SpaceMouse'}: {self._mapping.describe()}"

    def poll(self) -> TeleopCommand:
        now = self._clock()
        if self._device is None:
            if now < self._next_look:
                return TeleopCommand.idle(now, connected=False)
            if not self._open():
                self._next_look = now + REOPEN_INTERVAL
                return TeleopCommand.idle(now, connected=False)
        pressed = 0
        try:
            for _ in range(_MAX_REPORTS_PER_POLL):
                data = self._device.read(_REPORT_SIZE)
                if not data:
                    break
                before = self._state.buttons
                try:
                    self._state = parse_report(bytes(data), self._state)
                except ValueError:
                    continue  # a damaged report: the next one carries the full axis state again
                pressed |= self._state.buttons & ~before
        except OSError:  # unplugged (hidapi: "read error")
            self._forget()
            self._next_look = now + REOPEN_INTERVAL
            return TeleopCommand.idle(now, connected=False)
        buttons = self._state.button_list()
        raw = RawInput(self._state.axes(), buttons, [bool(pressed >> bit & 1) for bit in range(len(buttons))])
        return self._mapping.command(raw, self.config, now)

    def close(self) -> None:
        """Close the HID handle (idempotent)."""
        self._forget()

    def __enter__(self) -> SpaceMouseDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> bool:
        found = [info for info in self._hid.enumerate()
                 if (info.get("vendor_id"), info.get("product_id")) in KNOWN_DEVICES]
        # Receivers expose several HID interfaces; the motion data is on the multi-axis
        # controller one (usage page 1, usage 8) where the platform reports usages.
        axes = [info for info in found if (info.get("usage_page"), info.get("usage")) == (1, 8)]
        found = axes or found
        if self.config.device_index >= len(found):
            return False
        info = found[self.config.device_index]
        device = self._hid.device()
        try:
            device.open_path(info["path"])
            device.set_nonblocking(True)
        except OSError:
            return False  # e.g. no permission yet (udev still applying rules after a re-plug)
        self._device = device
        self._model = KNOWN_DEVICES[(info["vendor_id"], info["product_id"])]
        self._state = SpaceMouseState()  # a re-plugged device starts at rest
        return True

    def _forget(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            except OSError:
                pass
            self._device = None


def make_spacemouse_device(config: TeleopConfig) -> SpaceMouseDevice:
    """Device factory ``spacemouse``."""
    return SpaceMouseDevice(config)
