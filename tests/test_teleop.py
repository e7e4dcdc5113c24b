"""Teleoperation core: config and device registry errors, mappings, the safety filter, and a
device driving the real MuJoCo arm through ``TeleopActionSource`` with faults injected.

The faults (deadman release, silence, disconnect and reconnect, NaN axes) are injected with
:class:`~robot_rl.teleop.ScriptedDevice` on a simulated clock that advances one control period
per step, so every check is deterministic; the arm is the real simulated one, and what is
asserted is what the arm did (tool position, gripper opening), not only what was commanded.
The devices themselves are tested on real parts in ``test_teleop_keyboard.py`` (pseudo-terminal),
``test_teleop_gamepad.py`` (SDL virtual joystick), ``test_teleop_spacemouse.py`` (recorded HID
reports) and ``test_teleop_topics.py`` (ROS 2 over loopback DDS).
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest
from robot_rl.config import ConfigError
from robot_rl.envs import make_arm_env
from robot_rl.teleop import (
    ScriptedDevice,
    TeleopActionSource,
    TeleopCommand,
    TeleopConfig,
    TeleopSafety,
    TwistToAction,
    load_teleop_config,
    make_teleop_device,
    register_teleop_device,
    shape_twist,
    teleop_devices,
    unregister_teleop_device,
)
from robot_rl.teleop.mapping import RawInput, load_mapping
from robot_rl.training.rollout import run_episode

HOLD_TOLERANCE = 0.003  # m the tool may still drift after a hold starts (controller settling)
DT = 0.1  # the envs' default control period


# --------------------------------------------------------------------------- config & registry
def test_unknown_device_names_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown teleop device 'wiimote'; available devices: "
                                          r"gamepad, joy, keyboard, spacemouse, twist, twist_stamped, virtual"):
        make_teleop_device(TeleopConfig(device="wiimote"))


def test_registered_device_is_made_and_forgotten() -> None:
    device = ScriptedDevice()
    register_teleop_device("test_scripted", lambda config: device)
    try:
        assert "test_scripted" in teleop_devices()
        assert make_teleop_device(TeleopConfig(device="test_scripted")) is device
        with pytest.raises(ValueError, match="already registered"):
            register_teleop_device("test_scripted", lambda config: ScriptedDevice())
    finally:
        unregister_teleop_device("test_scripted")
    assert "test_scripted" not in teleop_devices()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"invert": ["y", "spin"]}, r"invert: unknown axis 'spin'; axes are x, y, z, roll, pitch, yaw"),
    ({"deadband": 1.0}, r"deadband: must be >= 0 and < 1, got 1.0"),
    ({"scale": [1, 1, -1, 1, 1, 1]}, r"scale\[2\]: must be >= 0"),
    ({"silence_timeout": 0}, r"silence_timeout: must be > 0"),
    ({"frame": "world"}, r"frame: expected one of 'base', 'tool'"),
    ({"speed": 1.0}, r"speed: unknown key"),
])
def test_config_errors_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_teleop_config(overrides=overrides)


def test_config_file_errors_name_the_file(tmp_path) -> None:
    path = tmp_path / "teleop.yaml"
    path.write_text("device: gamepad\nlinear_speed: fast\n")
    with pytest.raises(ConfigError, match=rf"{path}: linear_speed: expected float"):
        load_teleop_config(path)
    path.write_text("device: gamepad\nlinear_speed: 0.05\ninvert: [yaw]\n")
    config = load_teleop_config(path, overrides={"frame": "tool"})
    assert (config.device, config.linear_speed, config.invert, config.frame) == ("gamepad", 0.05, ("yaw",), "tool")


def test_core_teleop_loads_no_backend_library() -> None:
    """Importing robot_rl.teleop and listing devices loads neither SDL, hidapi, DDS nor hardware."""
    code = ("import json, sys, robot_rl.teleop as t; names = t.teleop_devices(); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sdl2', 'hid', 'cyclonedds', 'rclpy', "
            "'mujoco') or m.startswith('robot_rl.hardware')); print(json.dumps([names, bad]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    names, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"joy", "twist", "twist_stamped", "keyboard", "gamepad", "spacemouse"} <= set(names)
    assert loaded == []


# --------------------------------------------------------------------------- mappings
def test_mapping_file_with_missing_axes_names_them(tmp_path) -> None:
    path = tmp_path / "pad.yaml"
    path.write_text("axes: {x: {axis: 1}, y: {axis: 0}, z: null, yaw: {axis: 3}}\n"
                    "gripper: null\nbuttons: {deadman: 4, success: 0, failure: 1, reset: null}\n")
    with pytest.raises(ConfigError, match=rf"{path}: missing axes: roll, pitch"):
        load_mapping(str(path), "joy")
    path.write_text("axes: {x: null, y: null, z: null, roll: null, pitch: null, yaw: null}\n"
                    "buttons: {success: 0}\n")
    with pytest.raises(ConfigError, match="missing gripper, deadman, failure, reset"):
        load_mapping(str(path), "joy")


@pytest.mark.parametrize(("text", "message"), [
    ("buttons: {deadman: null, success: null, failure: null, reset: null}",
     "buttons.deadman: must be a button or 'active'"),
    ("buttons: {deadman: 4, success: null, failure: null, reset: null, jump: 2}", "buttons.jump: unknown key"),
    ("buttons: {deadman: -1, success: null, failure: null, reset: null}", "index must be >= 0"),
    ("buttons: {deadman: lb, success: null, failure: null, reset: null}", "expected a button index, got 'lb'"),
])
def test_mapping_file_errors(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "pad.yaml"
    path.write_text("axes: {x: {axis: 1}, y: {axis: 0}, z: null, roll: null, pitch: null, yaw: null}\n"
                    f"gripper: null\n{text}\n")
    with pytest.raises(ConfigError, match=message):
        load_mapping(str(path), "joy")


def test_unknown_mapping_name() -> None:
    with pytest.raises(ConfigError, match=r"'xbox' is neither a built-in mapping \(gamepad, spacemouse, joy, "
                                          r"spacenav\) nor a YAML file"):
        load_mapping("xbox", "joy")


def test_mapping_turns_bad_axes_into_faults_not_motion() -> None:
    config = TeleopConfig()
    joy = load_mapping("", "joy")
    axes, buttons = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [False] * 11
    buttons[4] = True  # deadman
    command = joy.command(RawInput(axes, buttons), config, timestamp=5.0)
    assert command.fault is None and command.deadman
    assert command.twist == pytest.approx([config.linear_speed, 0, 0, 0, 0, 0])
    assert command.gripper == pytest.approx(-1.0)  # RT at rest (+1 on joy_node) = open
    for bad, why in ((math.nan, "not a finite number"), (3.0, "outside"), (-1.5, "outside")):
        faulty = joy.command(RawInput([0.0, bad, *axes[2:]], buttons), config, timestamp=5.0)
        assert why in faulty.fault and not faulty.deadman and not np.any(faulty.twist), faulty
    short = joy.command(RawInput(axes[:4], buttons), config, timestamp=5.0)
    assert "axis 4 is not reported by the device (it has 4)" in short.fault


def test_shape_twist_deadband_inversion_scale() -> None:
    config = TeleopConfig(deadband=0.2, invert=("y",), scale=(1, 1, 0.5, 1, 1, 0), linear_speed=0.1, angular_speed=1.0)
    twist = shape_twist([0.1, 0.6, 1.0, -1.0, 0.2, 1.0], config)
    assert twist == pytest.approx([0.0, -0.05, 0.05, -1.0, 0.0, 0.0])


# --------------------------------------------------------------------------- the safety filter alone
class SimClock:
    """Simulated time: advanced by the test, shared by the device and the filter."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_safety_filter_rules_and_events() -> None:
    clock, events = SimClock(), []
    config = TeleopConfig(silence_timeout=0.25, gripper_rate=4.0)
    safety = TeleopSafety(config, DT, on_event=events.append)
    moving = np.array([0.1, 0, 0, 0, 0, 0.2])

    def step(command: TeleopCommand):
        out = safety.filter(command, clock.now, measured_gripper=-1.0)
        clock.now += DT
        return out

    out = step(TeleopCommand(moving, None, deadman=True, timestamp=clock.now))
    assert out.engaged and out.hold is None and out.twist == pytest.approx(moving)
    out = step(TeleopCommand(moving, None, deadman=False, timestamp=clock.now))
    assert (out.engaged, out.hold, list(out.twist)) == (False, "deadman", [0.0] * 6)
    stale = TeleopCommand(moving, None, deadman=True, timestamp=clock.now - 0.26)
    assert step(stale).hold == "silent"
    assert step(TeleopCommand(moving, None, deadman=True, timestamp=clock.now)).hold is None
    for twist, gripper, fault in ((np.array([math.nan, 0, 0, 0, 0, 0]), None, None), (moving, 1.5, None),
                                  (np.zeros(5), None, None), (moving, None, "axis 1 is not a finite number")):
        out = step(TeleopCommand(twist, gripper, True, timestamp=clock.now, fault=fault))
        assert out.hold == "bad_input" and not out.engaged and not np.any(out.twist), (twist, gripper, fault)
    out = step(TeleopCommand(moving, None, deadman=True, timestamp=clock.now, success=True))
    assert out.label == "success" and out.hold is None
    gone = step(TeleopCommand(moving, None, True, success=True, timestamp=clock.now, connected=False))
    assert gone.hold == "disconnected" and gone.label is None  # labels only from valid input
    assert step(TeleopCommand(moving, None, deadman=True, timestamp=clock.now)).hold is None
    assert [e.kind for e in events] == ["silent", "resumed", "bad_input", "resumed", "disconnected", "reconnected"]
    assert "no input for 0.260 s (silence_timeout = 0.25 s)" in events[0].detail
    assert events[2].detail.startswith("twist must be 6 finite numbers")


def test_gripper_ramps_and_needs_its_control_to_move_after_a_fault() -> None:
    clock = SimClock()
    safety = TeleopSafety(TeleopConfig(gripper_rate=4.0), DT)  # at most 0.4 per 0.1 s step

    def gripper(target, connected=True, deadman=True):
        command = TeleopCommand(np.zeros(6), target, deadman, timestamp=clock.now, connected=connected)
        clock.now += DT
        return safety.filter(command, clock.now - DT, measured_gripper=-1.0).gripper

    # A trigger squeezed before the episode started does nothing until it moves.
    assert [gripper(1.0) for _ in range(3)] == [-1.0] * 3
    ramp = [gripper(0.5)] + [gripper(1.0) for _ in range(5)]  # moved: taken over, ramps at 0.4 per step
    assert ramp == pytest.approx([-0.6, -0.2, 0.2, 0.6, 1.0, 1.0])
    assert gripper(-1.0, deadman=False) == 1.0  # deadman released: the gripper holds too
    # Unplugged and back reporting "open" while the gripper is closed: no change until the control moves.
    assert gripper(-1.0, connected=False) == 1.0
    assert [gripper(-1.0) for _ in range(3)] == [1.0] * 3
    assert gripper(-0.5) == pytest.approx(0.6)  # the operator works the trigger: ramps from where it was


# --------------------------------------------------------------------------- a device driving the real arm
@pytest.fixture
def pick_env():
    env = make_arm_env("pick", overrides={"task": {"max_episode_steps": 200}})
    yield env
    env.close()


class Drive:
    """Runs the real env one control step at a time with a scripted device on simulated time."""

    def __init__(self, env, config: TeleopConfig | None = None) -> None:
        self.env, self.clock, self.events = env, SimClock(), []
        self.device = ScriptedDevice(self.clock)
        self.source = TeleopActionSource(self.device, config or TeleopConfig(silence_timeout=0.25), env,
                                         clock=self.clock, pace=False, on_event=self.events.append)
        self.obs, _ = env.reset(seed=0)
        self.source.reset()
        self.positions, self.widths, self.actions, self.holds = [], [], [], []

    def step(self, count: int = 1) -> None:
        for _ in range(count):
            action = self.source.act(self.obs)
            assert action is not None
            self.obs, *_ = self.env.step(action)
            self.clock.now += DT
            self.positions.append(self.obs["ee_pos"].astype(float))
            self.widths.append(float(self.obs["gripper_width"][0]))
            self.actions.append(action)
            self.holds.append(self.source.last.hold)

    def drift_since(self, index: int) -> float:
        """Largest distance of the tool from where it was after step ``index``."""
        return max(float(np.linalg.norm(p - self.positions[index])) for p in self.positions[index:])


FORWARD = [0.15, 0.0, 0.0, 0.0, 0.0, 0.0]  # 0.15 m/s along +x: action 0.5, 1.5 cm per step


def test_deadman_release_holds_the_arm(pick_env) -> None:
    drive = Drive(pick_env)
    for _ in range(4):
        drive.device.set(FORWARD, deadman=True)
        drive.step()
    assert drive.positions[3][0] - drive.positions[0][0] > 0.04  # it moved ~1.5 cm per step
    for _ in range(6):
        drive.device.set(FORWARD, deadman=False)  # still pushing the stick, deadman let go
        drive.step()
    assert drive.holds[4:] == ["deadman"] * 6
    assert all(not np.any(a[:3]) for a in drive.actions[4:])
    assert drive.drift_since(4) < HOLD_TOLERANCE
    assert drive.events == []  # releasing the deadman is normal operation, not a fault


def test_silent_device_holds_within_one_control_period(pick_env) -> None:
    drive = Drive(pick_env)  # silence_timeout 0.25 s
    for _ in range(3):
        drive.device.set(FORWARD, deadman=True)
        drive.step()
    last_input = drive.clock.now - DT  # the device's last set(), stamped at the previous step
    drive.step(6)  # nothing new: the stale command still says "forward, deadman held"
    # The first step whose input is older than the timeout holds: steps at +0.1, +0.2 s still
    # move (the timeout has not passed), the one at +0.3 s holds.
    ages = [round(drive.clock.now - DT * (6 - i) - last_input, 3) for i in range(6)]
    assert ages == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert drive.holds[3:] == [None, None, "silent", "silent", "silent", "silent"]
    assert drive.drift_since(5) < HOLD_TOLERANCE
    assert [e.kind for e in drive.events] == ["silent"]  # logged once, not every step
    drive.device.set(FORWARD, deadman=True)
    drive.step()
    assert drive.holds[-1] is None and [e.kind for e in drive.events] == ["silent", "resumed"]


def test_nan_axes_hold_without_a_jump(pick_env, caplog) -> None:
    drive = Drive(pick_env)
    for _ in range(3):
        drive.device.set(FORWARD, deadman=True)
        drive.step()
    with caplog.at_level(logging.WARNING, logger="robot_rl.teleop"):
        for value in (math.nan, math.inf, -math.inf):
            drive.device.set([value, 0.0, 0.0, 0.0, 0.0, 0.0], deadman=True)
            drive.step()
    assert drive.holds[3:] == ["bad_input"] * 3
    assert drive.drift_since(3) < HOLD_TOLERANCE
    assert all(np.all(np.isfinite(a)) and not np.any(a[:3]) for a in drive.actions[3:])
    assert "teleop: arm holds (bad_input: twist must be 6 finite numbers" in caplog.text
    assert [e.kind for e in drive.events] == ["bad_input"]


def test_disconnect_and_reconnect_never_slams_or_drops_the_gripper(pick_env) -> None:
    drive = Drive(pick_env)
    step_limit = 4.0 * DT  # gripper_rate 4 units/s
    drive.device.set(None, gripper=None, deadman=True)
    drive.step()
    for _ in range(8):  # "close" held: the command ramps, the fingers close gradually
        drive.device.set(None, gripper=1.0, deadman=True)
        drive.step()
    grip = [float(a[-1]) for a in drive.actions]
    assert grip[-1] == 1.0 and max(abs(np.diff(grip))) <= step_limit + 1e-6
    assert grip[:4] == pytest.approx([-1.0, -0.6, -0.2, 0.2])
    width_steps = np.abs(np.diff(drive.widths))
    assert max(width_steps) < 0.5 * 0.08  # never more than half the stroke in one step
    closed_width = drive.widths[-1]

    drive.device.unplug()
    drive.step(3)
    assert drive.holds[-3:] == ["disconnected"] * 3
    # Back, with the pad's gripper control reporting "open" (a trigger at rest after re-plugging).
    drive.device.plug()
    for _ in range(4):
        drive.device.set([0.0, 0.15, 0.0, 0.0, 0.0, 0.0], gripper=-1.0, deadman=True)
        drive.step()
    assert [e.kind for e in drive.events] == ["disconnected", "reconnected"]
    assert [float(a[-1]) for a in drive.actions[-7:]] == [1.0] * 7  # held closed through it all
    assert max(abs(w - closed_width) for w in drive.widths[-7:]) < 0.002
    assert drive.positions[-1][1] - drive.positions[-4][1] > 0.03  # the arm itself moves again at once
    # The operator works the control: the gripper opens, at the rate limit.
    drive.device.set(None, gripper=None, deadman=True)
    drive.step()
    for _ in range(6):
        drive.device.set(None, gripper=-1.0, deadman=True)
        drive.step()
    opening = [float(a[-1]) for a in drive.actions[-7:]]
    assert opening == pytest.approx([1.0, 0.6, 0.2, -0.2, -0.6, -1.0, -1.0])


def test_label_button_ends_the_episode_through_run_episode(pick_env) -> None:
    clock = SimClock()
    device = ScriptedDevice(clock)
    source = TeleopActionSource(device, TeleopConfig(), pick_env, clock=clock, pace=False)
    device.press("success")  # pressed before the episode: dropped by reset()

    class Operator:  # advances time and presses success at step 5
        source = "human"

        def __init__(self) -> None:
            self.steps = 0

        def reset(self) -> None:
            source.reset()

        def act(self, obs):
            clock.now += DT
            device.set(FORWARD, deadman=True)
            if self.steps == 5:
                device.press("success")
            self.steps += 1
            return source.act(obs)

    rollout = run_episode(pick_env, Operator(), seed=1)
    assert rollout.steps == 5 and source.outcome == "success"


def test_twist_to_action_frames_and_limits(pick_env) -> None:
    to_action = TwistToAction(pick_env, frame="tool")
    top_down = np.array([0.0, 1.0, 0.0, 0.0])  # tool z points down (world -z), tool y = world -y
    action = to_action(np.array([0.0, 0.15, 0.3, 0.0, 0.0, 0.0]), 0.25, top_down)
    assert action == pytest.approx([0.0, -0.5, -1.0, 0.25])  # 0.3 m/s saturates at action 1
    base = TwistToAction(pick_env)(np.array([0.03, 0.0, 0.0, 0, 0, 5.0]), -1.0, top_down)
    assert base == pytest.approx([0.1, 0.0, 0.0, -1.0])  # no yaw action without control.use_yaw
    yaw_env = make_arm_env("reach", overrides={"control": {"use_yaw": True}})
    try:
        assert TwistToAction(yaw_env)(np.array([0, 0, 0, 0, 0, 1.25]), 0.0, top_down)[3] == pytest.approx(0.5)
    finally:
        yaw_env.close()
    joints = make_arm_env("reach", action_mode="joint_delta")
    try:
        with pytest.raises(ValueError, match="teleoperation needs control.action_mode = ee_delta"):
            TwistToAction(joints)
    finally:
        joints.close()


def test_a_poll_that_raises_holds_and_is_reported(pick_env) -> None:
    class Broken(ScriptedDevice):
        def poll(self):
            raise OSError("device vanished")

    drive = Drive(pick_env)
    drive.source.device = Broken(drive.clock)
    drive.step(2)
    assert drive.holds == ["disconnected"] * 2
    assert drive.events[0].detail == "poll failed: OSError: device vanished"


def test_act_runs_at_the_control_rate(pick_env) -> None:
    """A person acts in real time: ``act`` waits for the next control tick, so the fast simulator
    is stepped at 10 Hz, not as fast as the CPU allows."""
    import time

    device = ScriptedDevice()
    source = TeleopActionSource(device, TeleopConfig(), pick_env)
    obs, _ = pick_env.reset(seed=0)
    source.reset()
    started = time.monotonic()
    for _ in range(6):
        device.set(FORWARD, deadman=True)
        obs, *_ = pick_env.step(source.act(obs))
    assert time.monotonic() - started >= 5 * DT - 0.01
    assert source.last.engaged
