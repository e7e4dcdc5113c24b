"""Gamepad teleoperation through SDL 2 (PySDL2; the ``pysdl2-dll`` wheel ships SDL itself).

SDL's GameController API maps the pads in its database (Xbox 360/One/Series, PlayStation 3/4/5,
Switch Pro, Logitech F310/F710, 8BitDo and many more) onto one layout with named axes and
buttons (``leftx``, ``righttrigger``, ``a``, ``leftshoulder``…), so the built-in ``gamepad``
mapping (:data:`robot_rl.teleop.mapping.BUILTIN`) is the default for all of them:

* hold ``leftshoulder`` (LB / L1) to move: the deadman;
* left stick: x (forward/back) and y (left/right); right stick: z (up/down) and yaw;
  d-pad: roll and pitch;
* ``righttrigger`` (RT / R2): squeeze to close the gripper;
* ``a`` (south button): success, ``b`` (east): failure, ``back`` / select: reset.

A ``teleop.mapping`` YAML file overrides it (names as above or indices in SDL's order,
:data:`CONTROLLER_AXES`, :data:`CONTROLLER_BUTTONS`). A joystick SDL does not know as a game
controller is read raw (its axes, then its buttons followed by four per hat: up, right, down,
left) and then needs a mapping file with indices; alternatively teach SDL the pad with the
``SDL_GAMECONTROLLERCONFIG`` environment variable (a line of SDL's gamecontrollerdb).

Nothing here opens a window: SDL reads the pad without focus
(``SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS``) and without a video driver. A pad that is unplugged
reports ``connected=False`` and is opened again when it comes back (same index). Button presses
shorter than a poll period are not lost: SDL's button-down events are read each poll.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import DeviceUnavailableError, TeleopCommand
from robot_rl.teleop.mapping import AxisMapping, InputNames, RawInput, load_mapping

#: SDL_GameControllerAxis and SDL_GameControllerButton, in SDL's order (index = SDL's value).
CONTROLLER_AXES = ("leftx", "lefty", "rightx", "righty", "lefttrigger", "righttrigger")
CONTROLLER_BUTTONS = ("a", "b", "x", "y", "back", "guide", "start", "leftstick", "rightstick", "leftshoulder",
                      "rightshoulder", "dpup", "dpdown", "dpleft", "dpright", "misc1", "paddle1", "paddle2",
                      "paddle3", "paddle4", "touchpad")
CONTROLLER_NAMES = InputNames({name: i for i, name in enumerate(CONTROLLER_AXES)},
                              {name: i for i, name in enumerate(CONTROLLER_BUTTONS)})
AXIS_FULL_SCALE = 32767.0  # SDL axes are int16; triggers use 0..32767
# SDL's joystick and game-controller events occupy this type range; only these are taken from
# the queue, so events another part of the program waits for stay queued.
_FIRST_EVENT, _LAST_EVENT = 0x600, 0x6FF
_EVENT_BATCH = 64


def import_sdl() -> Any:
    """The ``sdl2`` module, or :class:`DeviceUnavailableError` saying what to install."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pysdl2-dll announces which binaries it uses
            import sdl2
    except (ImportError, RuntimeError) as exc:  # RuntimeError: PySDL2 found no SDL2 library
        raise DeviceUnavailableError(
            f"the gamepad device needs PySDL2 and the SDL2 library: pip install 'robot_rl[teleop]' "
            f"(pysdl2, pysdl2-dll) ({type(exc).__name__}: {exc})") from exc
    return sdl2


class GamepadDevice:
    """:class:`~robot_rl.teleop.device.TeleopDevice` for pad number ``config.device_index``."""

    def __init__(self, config: TeleopConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._sdl = sdl = import_sdl()
        sdl.SDL_SetHint(sdl.SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS, b"1")
        if sdl.SDL_InitSubSystem(sdl.SDL_INIT_GAMECONTROLLER) != 0:  # reference-counted by SDL
            raise DeviceUnavailableError(f"SDL could not start its game controller support: {_error(sdl)}")
        self._controller: Any = None  # SDL_GameController*, for pads SDL knows
        self._joystick: Any = None  # SDL_Joystick* (of the controller, or a raw joystick)
        self._instance = -1
        self._mapping: AxisMapping | None = None
        self._last_seen = clock()
        try:
            if not self._open():
                raise DeviceUnavailableError(
                    f"no gamepad number {config.device_index} (SDL sees {sdl.SDL_NumJoysticks()} joystick(s)); "
                    f"plug one in, or check the permissions of /dev/input/event* on Linux")
        except BaseException:
            self.close()
            raise

    @property
    def help(self) -> str:
        name = self._name or "gamepad"
        return f"{name}: " + (self._mapping.describe() if self._mapping else "not connected")

    def poll(self) -> TeleopCommand:
        sdl = self._sdl
        sdl.SDL_GameControllerUpdate()  # reads the pads (and hot-plugs), queues their events
        pressed = self._drain_presses()
        now = self._clock()
        if self._joystick is not None and not sdl.SDL_JoystickGetAttached(self._joystick):
            self._release()
        if self._joystick is None and not self._open():
            return TeleopCommand.idle(self._last_seen, connected=False)
        self._last_seen = now
        return self._mapping.command(self._read(pressed), self.config, now)

    def close(self) -> None:
        """Close the pad and release SDL's game controller support (idempotent)."""
        if self._sdl is None:
            return
        self._release()
        self._sdl.SDL_QuitSubSystem(self._sdl.SDL_INIT_GAMECONTROLLER)
        self._sdl = None

    def __enter__(self) -> GamepadDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _open(self) -> bool:
        """Open pad ``device_index`` if it is there; choose its mapping. False if absent."""
        sdl, index = self._sdl, self.config.device_index
        if index >= sdl.SDL_NumJoysticks():
            return False
        if sdl.SDL_IsGameController(index):
            self._controller = sdl.SDL_GameControllerOpen(index)
            self._joystick = sdl.SDL_GameControllerGetJoystick(self._controller) if self._controller else None
            names = CONTROLLER_NAMES
        else:
            if not self.config.mapping:
                name = (sdl.SDL_JoystickNameForIndex(index) or b"?").decode(errors="replace")
                raise DeviceUnavailableError(
                    f"SDL does not know joystick {index} ({name!r}) as a game controller, so there is no default "
                    f"mapping: give teleop.mapping (a YAML file with axis and button indices) or describe the pad "
                    f"to SDL with SDL_GAMECONTROLLERCONFIG")
            self._joystick = sdl.SDL_JoystickOpen(index)
            names = None
        if not self._joystick:
            self._release()
            return False
        self._instance = sdl.SDL_JoystickInstanceID(self._joystick)
        if self._mapping is None:  # a file is read once; a re-plugged pad keeps it
            self._mapping = load_mapping(self.config.mapping, "gamepad", names)
        return True

    def _release(self) -> None:
        sdl = self._sdl
        if self._controller is not None:
            sdl.SDL_GameControllerClose(self._controller)
        elif self._joystick is not None:
            sdl.SDL_JoystickClose(self._joystick)
        self._controller = self._joystick = None
        self._instance = -1

    @property
    def _name(self) -> str:
        if self._joystick is None:
            return ""
        return (self._sdl.SDL_JoystickName(self._joystick) or b"").decode(errors="replace")

    def _drain_presses(self) -> set[int]:
        """Buttons of our pad pressed since the last poll (from SDL's button-down events)."""
        sdl = self._sdl
        events = (sdl.SDL_Event * _EVENT_BATCH)()
        pressed: set[int] = set()
        while True:
            count = sdl.SDL_PeepEvents(events, _EVENT_BATCH, sdl.SDL_GETEVENT, _FIRST_EVENT, _LAST_EVENT)
            for event in events[:max(count, 0)]:
                if event.type == sdl.SDL_CONTROLLERBUTTONDOWN and event.cbutton.which == self._instance:
                    pressed.add(event.cbutton.button)
                elif (event.type == sdl.SDL_JOYBUTTONDOWN and self._controller is None
                      and event.jbutton.which == self._instance):
                    pressed.add(event.jbutton.button)
            if count < _EVENT_BATCH:
                return pressed

    def _read(self, pressed: set[int]) -> RawInput:
        sdl = self._sdl
        if self._controller is not None:
            axes = [sdl.SDL_GameControllerGetAxis(self._controller, i) / AXIS_FULL_SCALE
                    for i in range(len(CONTROLLER_AXES))]
            buttons = [bool(sdl.SDL_GameControllerGetButton(self._controller, i)) for i in range(len(CONTROLLER_BUTTONS))]
        else:
            joystick = self._joystick
            axes = [sdl.SDL_JoystickGetAxis(joystick, i) / AXIS_FULL_SCALE for i in range(sdl.SDL_JoystickNumAxes(joystick))]
            buttons = [bool(sdl.SDL_JoystickGetButton(joystick, i)) for i in range(sdl.SDL_JoystickNumButtons(joystick))]
            for hat in range(sdl.SDL_JoystickNumHats(joystick)):
                value = sdl.SDL_JoystickGetHat(joystick, hat)
                buttons += [bool(value & bit) for bit in (sdl.SDL_HAT_UP, sdl.SDL_HAT_RIGHT, sdl.SDL_HAT_DOWN,
                                                          sdl.SDL_HAT_LEFT)]
        axes = [max(-1.0, min(1.0, value)) for value in axes]  # int16's -32768 is a hair past -1
        return RawInput(axes, buttons, [i in pressed for i in range(len(buttons))])


def _error(sdl: Any) -> str:
    return (sdl.SDL_GetError() or b"").decode(errors="replace")


def make_gamepad_device(config: TeleopConfig) -> GamepadDevice:
    """Device factory ``gamepad``."""
    return GamepadDevice(config)

