"""The gamepad device on SDL's virtual joystick (no /dev/input needed): the test attaches a
virtual game controller to the same SDL instance the device uses (PySDL2 with the pysdl2-dll
wheel), sets its axes and buttons, and reads them back through the device. Skipped, with the
reason, where PySDL2 or an SDL2 library cannot be loaded (``pip install 'robot_rl[teleop]'``)."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # no display; SDL must never try to open one

import pytest  # noqa: E402
from robot_rl.config import ConfigError  # noqa: E402
from robot_rl.teleop import DeviceUnavailableError, TeleopConfig, make_teleop_device  # noqa: E402
from robot_rl.teleop.gamepad import CONTROLLER_AXES, CONTROLLER_BUTTONS, GamepadDevice, import_sdl  # noqa: E402

try:
    sdl2 = import_sdl()
except DeviceUnavailableError as exc:
    pytest.skip(f"SDL2 unavailable: {exc}", allow_module_level=True)
if not hasattr(sdl2, "SDL_JoystickAttachVirtual"):
    pytest.skip("this SDL2 has no virtual joysticks (needs SDL >= 2.0.14)", allow_module_level=True)

CONFIG = TeleopConfig(device="gamepad", linear_speed=0.2, angular_speed=1.0, deadband=0.1)
AXIS = {name: i for i, name in enumerate(CONTROLLER_AXES)}
BUTTON = {name: i for i, name in enumerate(CONTROLLER_BUTTONS)}


class VirtualPad:
    """A virtual SDL game controller with SDL's standard layout (6 axes, 15 buttons)."""

    def __init__(self) -> None:
        assert sdl2.SDL_InitSubSystem(sdl2.SDL_INIT_GAMECONTROLLER) == 0, sdl2.SDL_GetError()
        self.joystick = None
        self.plug()

    def plug(self) -> None:
        self.index = sdl2.SDL_JoystickAttachVirtual(sdl2.SDL_JOYSTICK_TYPE_GAMECONTROLLER, len(CONTROLLER_AXES),
                                                    15, 0)
        assert self.index >= 0, sdl2.SDL_GetError()
        self.joystick = sdl2.SDL_JoystickOpen(self.index)  # the handle virtual values are set on

    def unplug(self) -> None:
        sdl2.SDL_JoystickClose(self.joystick)
        assert sdl2.SDL_JoystickDetachVirtual(self.index) == 0, sdl2.SDL_GetError()
        self.joystick = None

    def axis(self, name: str, value: int) -> None:
        assert sdl2.SDL_JoystickSetVirtualAxis(self.joystick, AXIS[name], value) == 0

    def button(self, name: str, down: bool) -> None:
        assert sdl2.SDL_JoystickSetVirtualButton(self.joystick, BUTTON[name], int(down)) == 0

    def close(self) -> None:
        if self.joystick is not None:
            self.unplug()
        sdl2.SDL_QuitSubSystem(sdl2.SDL_INIT_GAMECONTROLLER)


@pytest.fixture
def pad():
    virtual = VirtualPad()
    yield virtual
    virtual.close()


def test_sticks_deadman_and_trigger_read_back(pad) -> None:
    with make_teleop_device(CONFIG) as gamepad:  # through the registry, as the CLI makes it
        assert isinstance(gamepad, GamepadDevice)
        assert "hold leftshoulder" in gamepad.help and "squeeze righttrigger to close" in gamepad.help
        rest = gamepad.poll()
        assert rest.connected and not rest.deadman and not any(rest.twist) and rest.gripper == -1.0
        pad.axis("lefty", -32768)  # left stick fully up: forward
        pad.axis("rightx", 16384)  # right stick half right: turn right
        moving = gamepad.poll()
        assert not moving.deadman  # sticks alone do not move the arm: the deadman is LB
        pad.button("leftshoulder", True)
        pad.axis("righttrigger", 32767)  # fully squeezed
        moving = gamepad.poll()
        assert moving.deadman and moving.fault is None
        # half deflection through a 0.1 deadband: (0.5 - 0.1) / 0.9 of full speed
        assert list(moving.twist) == pytest.approx([0.2, 0, 0, 0, 0, -(0.5 - 0.1) / 0.9], abs=1e-3)
        assert moving.gripper == pytest.approx(1.0)
        pad.button("dpleft", True)  # roll from the d-pad
        assert gamepad.poll().twist[3] == pytest.approx(-1.0)


def test_a_tap_between_polls_is_not_lost(pad) -> None:
    with GamepadDevice(CONFIG) as gamepad:
        gamepad.poll()
        pad.button("a", True)
        sdl2.SDL_GameControllerUpdate()  # SDL sees the press …
        pad.button("a", False)
        sdl2.SDL_GameControllerUpdate()  # … and the release, both before the device's next poll
        tapped = gamepad.poll()
        assert tapped.success and not tapped.failure
        assert not gamepad.poll().success  # one press, one label
        pad.button("b", True)
        held = [gamepad.poll().failure for _ in range(3)]
        assert held == [True, False, False]  # an edge, not a level


def test_unplug_and_replug(pad) -> None:
    with GamepadDevice(CONFIG) as gamepad:
        pad.button("leftshoulder", True)
        assert gamepad.poll().deadman
        seen = gamepad.poll().timestamp
        pad.unplug()
        gone = gamepad.poll()
        assert not gone.connected and not gone.deadman and gone.timestamp == seen
        pad.plug()
        pad.button("leftshoulder", True)
        pad.axis("leftx", 32767)  # right: -y
        back = gamepad.poll()
        assert back.connected and back.deadman and back.twist[1] == pytest.approx(-0.2)


def test_mapping_file_overrides_the_default(pad, tmp_path) -> None:
    path = tmp_path / "pad.yaml"
    path.write_text("""
axes:
  x: {axis: righty, invert: true}
  y: null
  z: {buttons: [y, a]}
  roll: null
  pitch: null
  yaw: null
gripper: {buttons: [rightshoulder, leftshoulder]}
buttons: {deadman: active, success: start, failure: null, reset: null}
""")
    with GamepadDevice(TeleopConfig(mapping=str(path), linear_speed=0.2)) as gamepad:
        pad.axis("righty", -32768)
        pad.button("y", True)
        command = gamepad.poll()
        assert command.deadman  # "active": any control in use
        assert list(command.twist) == pytest.approx([0.2, 0, 0.2, 0, 0, 0])
        pad.button("rightshoulder", True)
        assert gamepad.poll().gripper == 1.0
        pad.button("start", True)
        assert gamepad.poll().success


def test_mapping_errors_and_missing_pad(pad, tmp_path) -> None:
    path = tmp_path / "pad.yaml"
    path.write_text("axes: {x: {axis: lefty}, y: {axis: leftx}, z: {axis: rightz}, roll: null, pitch: null,"
                    " yaw: null}\ngripper: null\nbuttons: {deadman: leftshoulder, success: a, failure: b, reset: x}\n")
    with pytest.raises(ConfigError, match=r"axes.z.axis: unknown axis 'rightz'; this device's axes: leftx, lefty"):
        GamepadDevice(TeleopConfig(mapping=str(path)))
    with pytest.raises(DeviceUnavailableError, match=r"no gamepad number 3 \(SDL sees 1 joystick"):
        GamepadDevice(TeleopConfig(device_index=3))
