"""The keyboard device on a real pseudo-terminal: the device reads the slave side, the test types
on the master side. Hold-to-move timing runs on an injected clock (no sleeps); the terminal
settings are checked to come back exactly after ``close``, after an exception, after Ctrl-C
(a child process whose controlling terminal is the pty gets a real SIGINT from the line
discipline) and when a program exits without closing the device."""

from __future__ import annotations

import os
import subprocess
import sys
import termios
import textwrap

import pytest
from robot_rl.teleop import DeviceUnavailableError, TeleopConfig
from robot_rl.teleop.keyboard import KEY_MAP, KeyboardDevice, decode_keys

CONFIG = TeleopConfig(linear_speed=0.1, angular_speed=0.5)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def cbreak(fd: int) -> bool:
    lflag = termios.tcgetattr(fd)[3]
    return not lflag & termios.ICANON and not lflag & termios.ECHO


def test_hold_to_move_and_release(pty_pair) -> None:
    master, slave = pty_pair
    clock = Clock()
    with KeyboardDevice(CONFIG, fd=slave, first_hold=0.25, repeat_hold=0.15, clock=clock) as keyboard:
        assert cbreak(slave)
        idle = keyboard.poll()
        assert not idle.deadman and not any(idle.twist) and idle.connected and idle.timestamp == 50.0
        os.write(master, b"w")
        first = keyboard.poll()
        assert first.deadman and list(first.twist) == pytest.approx([0.1, 0, 0, 0, 0, 0])
        clock.now += 0.24  # a tap moves for first_hold …
        assert keyboard.poll().deadman
        clock.now += 0.02  # … then stops
        released = keyboard.poll()
        assert not released.deadman and not any(released.twist)
        # Held: the terminal repeats the key; each repeat extends the hold by repeat_hold.
        os.write(master, b"a")
        keyboard.poll()
        for _ in range(10):
            clock.now += 0.03
            os.write(master, b"a")
            held = keyboard.poll()
            assert list(held.twist) == pytest.approx([0, 0.1, 0, 0, 0, 0])
        clock.now += 0.14
        assert keyboard.poll().deadman
        clock.now += 0.02  # released: stops within repeat_hold of the last repeat
        assert not keyboard.poll().deadman


def test_keys_combine_and_map(pty_pair) -> None:
    master, slave = pty_pair
    with KeyboardDevice(CONFIG, fd=slave, clock=Clock()) as keyboard:
        os.write(master, b"W\x1b[Dqc")  # Shift+w, left arrow, yaw left, close the gripper
        command = keyboard.poll()
        assert list(command.twist) == pytest.approx([0.1, 0.1, 0, 0, 0, 0.5])
        assert command.gripper == 1.0 and command.deadman
        os.write(master, b"o")  # open and close held together: ambiguous, the gripper holds
        assert keyboard.poll().gripper is None


def test_escape_sequence_split_across_reads(pty_pair) -> None:
    master, slave = pty_pair
    with KeyboardDevice(CONFIG, fd=slave, clock=Clock()) as keyboard:
        os.write(master, b"\x1b[")
        assert not keyboard.poll().deadman
        os.write(master, b"B")  # the rest of "down arrow"
        assert list(keyboard.poll().twist) == pytest.approx([-0.1, 0, 0, 0, 0, 0])


def test_label_keys_count_once_per_press(pty_pair) -> None:
    master, slave = pty_pair
    clock = Clock()
    with KeyboardDevice(CONFIG, fd=slave, clock=clock) as keyboard:
        os.write(master, b"y")
        pressed = keyboard.poll()
        assert pressed.success and pressed.label() == "success" and not pressed.deadman
        for _ in range(30):  # held past the keyboard's repeat delay: still one press
            clock.now += 0.03
            os.write(master, b"y")
            assert not keyboard.poll().success
        clock.now += 2.0
        os.write(master, b"\n")  # Enter: success again, a new press
        assert keyboard.poll().success
        os.write(master, b"\x7fb")  # Backspace and b
        command = keyboard.poll()
        assert command.failure and command.reset


def test_decode_keys() -> None:
    assert decode_keys(b"aB\x1b[A\x1bOC\x1b[15~x") == (["a", "b", "up", "right", "x"], b"")
    assert decode_keys(b"w\x1b[1;5") == (["w"], b"\x1b[1;5")  # unfinished: kept for the next read
    assert decode_keys(b"\x1b") == ([], b"\x1b")
    assert decode_keys(b"\x1bxq") == (["q"], b"")  # Alt+x ignored


def test_terminal_restored_after_close_and_after_an_exception(pty_pair) -> None:
    master, slave = pty_pair
    original = termios.tcgetattr(slave)
    keyboard = KeyboardDevice(CONFIG, fd=slave)
    assert termios.tcgetattr(slave) != original
    keyboard.close()
    keyboard.close()  # idempotent
    assert termios.tcgetattr(slave) == original
    with pytest.raises(RuntimeError, match="boom"), KeyboardDevice(CONFIG, fd=slave) as keyboard:
        os.write(master, b"w")
        keyboard.poll()
        raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == original


def test_hangup_reports_disconnected(pty_pair) -> None:
    master, slave = pty_pair
    with KeyboardDevice(CONFIG, fd=slave, clock=Clock()) as keyboard:
        os.close(master)
        command = keyboard.poll()
        assert not command.connected and not command.deadman


def test_not_a_terminal_is_a_clear_error() -> None:
    read, write = os.pipe()
    try:
        with pytest.raises(DeviceUnavailableError, match="standard input is not a terminal"):
            KeyboardDevice(CONFIG, fd=read)
    finally:
        os.close(read)
        os.close(write)


def test_keyboard_takes_no_mapping() -> None:
    with pytest.raises(DeviceUnavailableError, match="fixed key map"):
        KeyboardDevice(TeleopConfig(mapping="gamepad"), fd=0)


def test_key_map_mentions_every_key() -> None:
    for key in ("w/s", "a/d", "r/f", "q/e", "i/k", "j/l", "c ", "o ", "Enter", "Backspace", "b ", "Ctrl-C"):
        assert key in KEY_MAP, key


# The child: the pty is its standard input and controlling terminal; it polls until interrupted.
CHILD = textwrap.dedent("""
    import sys, time
    from robot_rl.teleop import TeleopConfig
    from robot_rl.teleop.keyboard import KeyboardDevice
    keyboard = KeyboardDevice(TeleopConfig())
    if sys.argv[1] == "exit":  # a key, then leave without closing: the atexit hook restores the terminal
        print("ready", flush=True)
        while not keyboard.poll().deadman:
            time.sleep(0.01)
        sys.exit(0)
    try:
        with keyboard:
            print("ready", flush=True)  # inside the try: Ctrl-C may come at once
            while True:
                keyboard.poll()
                time.sleep(0.01)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
""")


def _make_controlling_terminal() -> None:
    import fcntl

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the child is a session leader (start_new_session)


@pytest.mark.parametrize("how", ["ctrl_c", "exit"])
def test_terminal_restored_on_ctrl_c_and_at_exit(pty_pair, how: str) -> None:
    master, slave = pty_pair
    original = termios.tcgetattr(slave)
    child = subprocess.Popen([sys.executable, "-c", CHILD, how], stdin=slave, stdout=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=_make_controlling_terminal)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert cbreak(slave)  # the child switched the shared terminal
        # Ctrl-C: the line discipline turns it into SIGINT for the child; "w": the child exits.
        os.write(master, b"\x03" if how == "ctrl_c" else b"w")
        code = child.wait(timeout=30)
        output = child.stdout.read()
    finally:
        child.kill()
    assert code == (130 if how == "ctrl_c" else 0)
    assert ("interrupted" in output) == (how == "ctrl_c")
    assert termios.tcgetattr(slave) == original
