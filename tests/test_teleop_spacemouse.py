"""SpaceMouse: the HID report parser on recorded report bytes of both report layouts, the default
mapping into the robot frame, and the polling logic (draining, button edges, unplug and
re-plug) on a stand-in for hidapi's handle. No SpaceMouse exists on CI machines; the real hidapi
is only asked whether one is plugged in (it is not, and the error says what to check)."""

from __future__ import annotations

import struct
from collections import deque

import pytest
from robot_rl.teleop import DeviceUnavailableError, TeleopConfig
from robot_rl.teleop.spacemouse import FULL_SCALE, SpaceMouseDevice, SpaceMouseState, import_hid, parse_report

# Reports as a SpaceNavigator (report ids 1, 2, 3; 7-byte axis reports) sends them: the puck
# pushed away from the operator (HID -y) and a little to the right, then twisted, then buttons.
NAVIGATOR_PUSH_AWAY = bytes.fromhex("01 78 00 a2 fe 00 00")  # x = 120, y = -350, z = 0
NAVIGATOR_TWIST = bytes.fromhex("02 00 00 e2 ff 5e 01")  # rx = 0, ry = -30, rz = 350
NAVIGATOR_LEFT_DOWN = bytes.fromhex("03 01 00")
NAVIGATOR_BOTH_DOWN = bytes.fromhex("03 03 00")
NAVIGATOR_RELEASED = bytes.fromhex("03 00 00")
# A SpaceMouse Wireless sends translation and rotation in one 13-byte report 1.
WIRELESS_COMBINED = bytes.fromhex("01 0a 00 ec ff 1e 00 d8 ff 32 00 c4 ff")  # 10, -20, 30, -40, 50, -60
BATTERY = bytes.fromhex("17 64")  # battery level 100 %: not motion


def test_parse_recorded_reports() -> None:
    state = parse_report(NAVIGATOR_PUSH_AWAY)
    assert (state.translation, state.rotation, state.buttons) == ((120, -350, 0), (0, 0, 0), 0)
    state = parse_report(NAVIGATOR_TWIST, state)
    assert (state.translation, state.rotation) == ((120, -350, 0), (0, -30, 350))  # translation kept
    state = parse_report(NAVIGATOR_LEFT_DOWN, state)
    assert state.buttons == 1 and state.button_list() == [True] + [False] * 15
    assert parse_report(NAVIGATOR_BOTH_DOWN, state).button_list()[:2] == [True, True]
    assert parse_report(NAVIGATOR_RELEASED, state).buttons == 0
    combined = parse_report(WIRELESS_COMBINED, state)
    assert (combined.translation, combined.rotation) == ((10, -20, 30), (-40, 50, -60))
    assert combined.buttons == 1  # buttons untouched by an axis report
    assert parse_report(BATTERY, combined) == combined


def test_axes_are_normalised_and_saturated() -> None:
    state = parse_report(b"\x01" + struct.pack("<6h", 175, -350, 700, 0, -1000, 35))
    assert state.axes() == pytest.approx([0.5, -1.0, 1.0, 0.0, -1.0, 35 / FULL_SCALE])


@pytest.mark.parametrize("report", [b"", b"\x01\x00\x00", b"\x02\x01\x02\x03", b"\x03"])
def test_malformed_reports_are_errors(report: bytes) -> None:
    with pytest.raises(ValueError):
        parse_report(report, SpaceMouseState())


class FakeHandle:
    """hidapi's ``device`` as far as the backend uses it: queued reports, then a read error
    once "unplugged"."""

    def __init__(self, hid: FakeHid) -> None:
        self.hid = hid

    def open_path(self, path: bytes) -> None:
        assert path == b"/dev/hidraw7"

    def set_nonblocking(self, on: bool) -> None:
        assert on

    def read(self, size: int) -> list[int]:
        if not self.hid.plugged:
            raise OSError("read error")
        return list(self.hid.reports.popleft()) if self.hid.reports else []

    def close(self) -> None:
        self.hid.closed += 1


class FakeHid:
    def __init__(self) -> None:
        self.reports: deque[bytes] = deque()
        self.plugged = True
        self.closed = 0

    def enumerate(self) -> list[dict]:
        other = {"vendor_id": 0x046D, "product_id": 0xC52B, "path": b"/dev/hidraw1"}  # a Logitech receiver
        ours = {"vendor_id": 0x256F, "product_id": 0xC63A, "path": b"/dev/hidraw7", "usage_page": 1, "usage": 8}
        return [other, ours] if self.plugged else [other]

    def device(self) -> FakeHandle:
        return FakeHandle(self)


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_polling_maps_drains_and_reconnects(tmp_path) -> None:
    hid, clock = FakeHid(), Clock()
    config = TeleopConfig(linear_speed=0.2, angular_speed=1.0, deadband=0.05)
    with SpaceMouseDevice(config, hid=hid, clock=clock) as mouse:
        assert mouse.help.startswith("SpaceMouse Wireless: mapping built-in 'spacemouse'")
        assert not mouse.poll().deadman  # at rest
        hid.reports.extend([NAVIGATOR_TWIST, NAVIGATOR_PUSH_AWAY])  # two reports queued: both read
        command = mouse.poll()
        assert command.deadman and command.timestamp == 10.0
        # pushed away = +x (full), a little right = -y, twist: rz → yaw, ry → roll
        x, y = 1.0 * 0.2, -((120 / FULL_SCALE - 0.05) / 0.95) * 0.2
        roll = ((30 / FULL_SCALE - 0.05) / 0.95) * 1.0
        assert list(command.twist) == pytest.approx([x, y, 0.0, roll, 0.0, 1.0])
        hid.reports.extend([NAVIGATOR_LEFT_DOWN])
        assert mouse.poll().gripper == 1.0  # left button held: close
        hid.reports.extend([NAVIGATOR_RELEASED])
        assert mouse.poll().gripper is None  # released: the gripper holds where it is
        hid.plugged = False
        gone = mouse.poll()
        assert not gone.connected and not gone.deadman and hid.closed == 1
        hid.plugged = True
        clock.now += 0.1
        assert not mouse.poll().connected  # looked for again only after REOPEN_INTERVAL
        clock.now += 0.5
        back = mouse.poll()
        assert back.connected and not back.deadman  # a re-plugged device starts at rest


def test_button_edges_feed_labels(tmp_path) -> None:
    path = tmp_path / "pro.yaml"
    path.write_text("axes: {x: {axis: 1, invert: true}, y: {axis: 0, invert: true}, z: {axis: 2, invert: true},"
                    " roll: null, pitch: null, yaw: null}\ngripper: {buttons: [0, 1]}\n"
                    "buttons: {deadman: active, success: 12, failure: 13, reset: null}\n")
    hid, clock = FakeHid(), Clock()
    with SpaceMouseDevice(TeleopConfig(mapping=str(path)), hid=hid, clock=clock) as mouse:
        button_1 = bytes.fromhex("03 00 10 00 00")  # SpaceMouse Pro: BTN_1 is bit 4 of the second byte
        hid.reports.extend([button_1, bytes.fromhex("03 00 00 00 00")])  # pressed and released in one poll
        tapped = mouse.poll()
        assert tapped.success and not tapped.failure
        assert not mouse.poll().success


def test_no_spacemouse_is_a_clear_error() -> None:
    try:
        hid = import_hid()
    except DeviceUnavailableError as exc:
        pytest.skip(f"hidapi unavailable: {exc}")
    if any((d["vendor_id"], d["product_id"]) in {(0x256F, 0xC63A)} for d in hid.enumerate()):
        pytest.skip("a SpaceMouse is plugged in here")
    with pytest.raises(DeviceUnavailableError, match=r"no 3Dconnexion SpaceMouse number 5 found.*/dev/hidraw"):
        SpaceMouseDevice(TeleopConfig(device_index=5))
