"""Keyboard teleoperation in the terminal ``robot-rl`` runs in (no X server, no extra library).

The terminal is switched to cbreak mode with the standard library (:mod:`termios`, :mod:`tty`):
keys arrive one by one, unechoed, without waiting for Enter. It is restored by :meth:`close`,
by leaving a ``with`` block (also on an exception or Ctrl-C) and, as a last resort, at
interpreter exit. Cbreak rather than full raw mode keeps two things of the terminal: Ctrl-C
still becomes SIGINT (so ``KeyboardInterrupt`` reaches the caller, whose clean-up then runs),
and output newlines still return the carriage, so progress and log lines print normally.

Terminals send key presses, never releases; a held key repeats after the keyboard's repeat
delay. So a key counts as held for ``first_hold`` seconds after its first byte and
``repeat_hold`` after each repeat: hold to move, release to stop within ``repeat_hold`` (a tap
moves for ``first_hold``). Motion keys combine (e.g. ``w`` then ``a`` while both are held within
their windows), but terminals repeat only the last key pressed, so a long diagonal means
alternating taps. Label keys (success, failure, reset) count once per press, not per repeat.
The deadman of the keyboard is implicit: the operator is engaged while any motion or gripper
key is held.
"""

from __future__ import annotations

import atexit
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable

import numpy as np

from robot_rl.teleop.config import TeleopConfig
from robot_rl.teleop.device import AXES, DeviceUnavailableError, TeleopCommand, shape_twist

#: Key → (twist axis, direction). Arrow keys are named ``up``, ``down``, ``left``, ``right``.
MOTION_KEYS: dict[str, tuple[str, float]] = {
    "w": ("x", 1.0), "s": ("x", -1.0), "up": ("x", 1.0), "down": ("x", -1.0),
    "a": ("y", 1.0), "d": ("y", -1.0), "left": ("y", 1.0), "right": ("y", -1.0),
    "r": ("z", 1.0), "f": ("z", -1.0),
    "l": ("roll", 1.0), "j": ("roll", -1.0),
    "i": ("pitch", 1.0), "k": ("pitch", -1.0),
    "q": ("yaw", 1.0), "e": ("yaw", -1.0),
}
GRIPPER_KEYS: dict[str, float] = {"c": 1.0, "o": -1.0}  # hold to close / open
LABEL_KEYS: dict[str, str] = {"y": "success", "\n": "success", "n": "failure", "\x7f": "failure", "b": "reset"}
#: A label key's first byte hides its repeats for this long (s): longer than any keyboard's
#: repeat delay, so holding "y" a little too long still labels one episode, not two.
LABEL_REPEAT_GUARD = 1.0

KEY_MAP = """\
keyboard teleop (hold a key to move, release to stop; operator behind the robot):
  w/s or up/down  forward/back (x)     a/d or left/right  left/right (y)     r/f  up/down (z)
  q/e  turn left/right (yaw)           i/k  pitch             j/l  roll
  c  close gripper (hold)              o  open gripper (hold)
  y or Enter  success   n or Backspace  failure   b  reset   Ctrl-C  quit"""

# Escape sequences of the arrow keys (normal and application cursor mode).
_ARROWS = {b"A": "up", b"B": "down", b"C": "right", b"D": "left"}


def decode_keys(data: bytes) -> tuple[list[str], bytes]:
    """Key names in ``data`` and the unfinished escape sequence at its end (to prepend to the
    next read). Letters are lower-cased (Shift or Caps Lock do not change the meaning); escape
    sequences other than the arrows (function keys, Ctrl-arrows…) are skipped whole."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        byte = data[i:i + 1]
        if byte != b"\x1b":
            keys.append(byte.decode("latin-1").lower())
            i += 1
            continue
        if i + 1 >= len(data):
            return keys, data[i:]  # a lone ESC so far: maybe the start of a sequence
        kind = data[i + 1:i + 2]
        if kind not in (b"[", b"O"):
            i += 2  # Alt+key: ignored
            continue
        end = i + 2  # CSI / SS3: parameters, then one final byte in 0x40..0x7e
        while end < len(data) and not 0x40 <= data[end] <= 0x7E:
            end += 1
        if end >= len(data):
            return keys, data[i:]
        if end == i + 2 and data[end:end + 1] in _ARROWS:
            keys.append(_ARROWS[data[end:end + 1]])
        i = end + 1
    return keys, b""


class TerminalMode:
    """Puts terminal ``fd`` into cbreak mode; :meth:`restore` (idempotent, also run at exit)
    puts back exactly the settings it found."""

    def __init__(self, fd: int) -> None:
        if not os.isatty(fd):
            raise DeviceUnavailableError(
                "the keyboard device reads keys from the terminal robot-rl runs in, but its standard input "
                "is not a terminal (run it in a terminal, not with input redirected, or choose another device)")
        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        tty.setcbreak(fd, termios.TCSANOW)
        atexit.register(self.restore)  # the last resort if nobody closes the device

    def restore(self) -> None:
        if self.saved is None:
            return
        try:
            termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)
        except termios.error:
            pass  # the terminal is gone: nothing left to restore
        self.saved = None
        atexit.unregister(self.restore)


class KeyboardDevice:
    """:class:`~robot_rl.teleop.device.TeleopDevice` reading keys from terminal ``fd`` (default:
    standard input). See the module docstring for the hold-to-move rules; :data:`KEY_MAP` is
    the on-screen help (also :attr:`help`)."""

    help = KEY_MAP

    def __init__(self, config: TeleopConfig, fd: int | None = None, *, first_hold: float = 0.25,
                 repeat_hold: float = 0.15, clock: Callable[[], float] = time.monotonic) -> None:
        if config.mapping:
            raise DeviceUnavailableError(f"teleop.mapping: the keyboard device has a fixed key map, "
                                         f"it takes no mapping (got {config.mapping!r})")
        self.config = config
        self.first_hold, self.repeat_hold = first_hold, repeat_hold
        self._clock = clock
        self._terminal = TerminalMode(sys.stdin.fileno() if fd is None else fd)
        self._held_until: dict[str, float] = {}  # key → time it stops counting as held
        self._pending = b""  # an escape sequence split across reads
        self._connected = True

    def poll(self) -> TeleopCommand:
        now = self._clock()
        pressed = self._read_keys(now)
        held = {key for key, until in self._held_until.items() if until >= now}
        axes = np.zeros(len(AXES))
        for key in held & MOTION_KEYS.keys():
            axis, direction = MOTION_KEYS[key]
            axes[AXES.index(axis)] += direction
        grip = [GRIPPER_KEYS[key] for key in held & GRIPPER_KEYS.keys()]
        labels = {LABEL_KEYS[key] for key in pressed if key in LABEL_KEYS}
        return TeleopCommand(
            shape_twist(np.clip(axes, -1.0, 1.0), self.config, deadband=False),
            gripper=grip[0] if len(grip) == 1 else None,  # both at once: ambiguous, hold
            deadman=bool(held & (MOTION_KEYS.keys() | GRIPPER_KEYS.keys())),
            success="success" in labels, failure="failure" in labels, reset="reset" in labels,
            timestamp=now, connected=self._connected)

    def _read_keys(self, now: float) -> list[str]:
        """Read what the terminal has (never blocks); update the hold windows; return the keys
        newly pressed (not repeats)."""
        data = b""
        while self._connected and self._terminal.saved is not None:
            try:
                ready, _, _ = select.select([self._terminal.fd], [], [], 0)
                if not ready:
                    break
                chunk = os.read(self._terminal.fd, 1024)
            except OSError:  # EIO: the terminal was hung up
                chunk = b""
            if not chunk:
                self._connected = False
                break
            data += chunk
        if not data and self._pending:
            self._pending = b""  # a lone ESC that nothing followed: the Esc key, ignored
        keys, self._pending = decode_keys(self._pending + data)
        if "\x03" in keys:  # the terminal does not turn Ctrl-C into SIGINT (ISIG off): do it here
            raise KeyboardInterrupt
        new = []
        for key in keys:
            repeating = self._held_until.get(key, -1.0) >= now
            if not repeating:
                new.append(key)
            first = LABEL_REPEAT_GUARD if key in LABEL_KEYS else self.first_hold
            self._held_until[key] = now + (self.repeat_hold if repeating else first)
        return new

    def close(self) -> None:
        """Restore the terminal (idempotent)."""
        self._terminal.restore()

    def __enter__(self) -> KeyboardDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_keyboard_device(config: TeleopConfig) -> KeyboardDevice:
    """Device factory ``keyboard``: the terminal on standard input."""
    return KeyboardDevice(config)
