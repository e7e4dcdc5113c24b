"""SafetySupervisor on hand-checkable cases: clipping, rate limits, e-stop, watchdogs, rejection.

A unit test of one class: states are built by hand (no robot needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from robot_rl.config import ConfigError
from robot_rl.hardware.safety import ABSOLUTE_MAXIMA, SafetyConfig, SafetyMaxima, SafetySupervisor
from robot_rl.robot import EndEffectorCommand, JointCommand, RobotSpec, RobotState

DT = 0.002
SPEC = RobotSpec(name="two_joint", joint_names=("a", "b"), joint_lower=np.array([-1.0, -2.0]),
                 joint_upper=np.array([1.0, 2.0]), joint_velocity_limit=np.array([2.0, 4.0]),
                 home=np.zeros(2), gripper_max_width=0.08)
CONFIG = SafetyConfig(workspace_low=(0.0, -0.5, 0.0), workspace_high=(1.0, 0.5, 1.0), max_tool_speed=0.5,
                      max_tool_rotation_speed=1.0, max_joint_speed_fraction=0.5, max_gripper_speed=0.1,
                      state_timeout=0.05, command_timeout=0.2)
TOP_DOWN = np.array([0.0, 1.0, 0.0, 0.0])


def state(q=(0.0, 0.0), ee=(0.5, 0.0, 0.5), quat=TOP_DOWN, gripper=0.04) -> RobotState:
    return RobotState(timestamp=0.0, joint_pos=np.array(q, float), joint_vel=np.zeros(2), ee_pos=np.array(ee, float),
                      ee_quat=np.array(quat, float), gripper_width=gripper)


def kinds(supervisor: SafetySupervisor) -> list[str]:
    return [event.kind for event in supervisor.drain_events()]


def test_holds_until_the_first_command_then_follows_it():
    sup = SafetySupervisor(SPEC, CONFIG)
    held = sup.command_for_tick(state(q=(0.3, -0.2)), now=0.0, state_age=0.0, dt=DT)
    assert isinstance(held, JointCommand) and np.allclose(held.positions, [0.3, -0.2])
    assert held.gripper_width == pytest.approx(0.04)
    assert sup.submit(JointCommand(np.array([0.301, -0.2]), 0.04), now=0.01)
    out = sup.command_for_tick(state(q=(0.3, -0.2)), now=0.01, state_age=0.0, dt=DT)
    assert np.allclose(out.positions, [0.301, -0.2])


def test_joint_targets_are_clipped_to_limits_and_rate_limited_with_one_event_each():
    sup = SafetySupervisor(SPEC, CONFIG)
    sup.submit(JointCommand(np.array([5.0, -0.001]), 0.04), now=0.0)
    max_step = 0.5 * SPEC.joint_velocity_limit * DT  # 2 mrad and 4 mrad per tick
    q = np.zeros(2)
    for tick in range(3):
        out = sup.command_for_tick(state(q=q), now=tick * DT, state_age=0.0, dt=DT)
        assert np.allclose(out.positions, [(tick + 1) * max_step[0], -0.001])
    assert kinds(sup) == ["command_fresh", "clipped"]  # rate limiting is not news yet
    # Many ticks later the target is the joint limit exactly, never beyond.
    for tick in range(3, 600):
        sup.submit(JointCommand(np.array([5.0, -0.001]), 0.04), now=tick * DT)  # the source keeps asking
        out = sup.command_for_tick(state(q=q), now=tick * DT, state_age=0.0, dt=DT)
    assert np.allclose(out.positions, [1.0, -0.001])
    # Sustained limiting (500 ticks > 0.25 s) is reported once when it passes 0.25 s and once when
    # the output reached the limit; no per-tick events.
    assert kinds(sup) == ["rate_limited", "rate_limited_end"]
    sup.submit(JointCommand(np.array([0.999, 0.0]), 0.04), now=1.2)
    sup.command_for_tick(state(q=q), now=1.2, state_age=0.0, dt=DT)
    assert kinds(sup) == ["clipped_end"]


def test_tool_targets_are_clipped_to_the_box_and_speed_limited():
    sup = SafetySupervisor(SPEC, CONFIG)
    sup.submit(EndEffectorCommand(np.array([0.5, 2.0, 0.5]), TOP_DOWN, 0.04), now=0.0)
    out = sup.command_for_tick(state(), now=0.0, state_age=0.0, dt=DT)
    assert np.allclose(out.position, [0.5, 0.5 * DT, 0.5])  # 0.5 m/s for 2 ms toward y
    for tick in range(1, 1000):
        sup.submit(EndEffectorCommand(np.array([0.5, 2.0, 0.5]), TOP_DOWN, 0.04), now=tick * DT)
        out = sup.command_for_tick(state(), now=tick * DT, state_age=0.0, dt=DT)
    assert np.allclose(out.position, [0.5, 0.5, 0.5])  # the box edge, not y = 2
    assert {"clipped", "rate_limited"} <= set(kinds(sup))


def test_short_ramps_of_a_stepping_policy_are_not_events():
    sup = SafetySupervisor(SPEC, CONFIG)
    target = np.array([0.5, 0.0, 0.5])
    for step in range(20):  # a 10 Hz policy asking for 3 cm per step: 30 ticks of ramp each time
        target = target + [0.0, 0.03 if step % 2 == 0 else -0.03, 0.0]
        for tick in range(50):
            now = (step * 50 + tick) * DT
            sup.submit(EndEffectorCommand(target, TOP_DOWN, 0.04), now=now)
            sup.command_for_tick(state(), now=now, state_age=0.0, dt=DT)
    assert kinds(sup) == ["command_fresh"]


def test_tool_rotation_is_rate_limited():
    sup = SafetySupervisor(SPEC, CONFIG)
    quarter_turn_about_z = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
    sup.submit(EndEffectorCommand(np.array([0.5, 0.0, 0.5]), quarter_turn_about_z, 0.04), now=0.0)
    out = sup.command_for_tick(state(quat=(1.0, 0.0, 0.0, 0.0)), now=0.0, state_age=0.0, dt=DT)
    angle = 2 * np.arccos(np.clip(abs(out.quat[0]), -1, 1))
    assert angle == pytest.approx(1.0 * DT, rel=1e-6)


def test_joint_targets_with_the_tool_outside_the_box_are_refused():
    # Tool x = first joint angle: targets with a > 1 would leave the box x <= 1.
    sup = SafetySupervisor(SPEC, SafetyConfig(workspace_low=(-0.5, -1, -1), workspace_high=(0.5, 1, 1)),
                           tool_position=lambda q: np.array([q[0], 0.0, 0.0]))
    sup.submit(JointCommand(np.array([0.8, 0.0]), 0.04), now=0.0)
    out = sup.command_for_tick(state(q=(0.4, 0.0)), now=0.0, state_age=0.0, dt=DT)
    assert np.allclose(out.positions, [0.4, 0.0])
    assert "clipped" in kinds(sup)


@pytest.mark.parametrize("bad", [
    JointCommand(np.array([np.nan, 0.0]), 0.04),
    JointCommand(np.array([0.0, 0.0, 0.0]), 0.04),
    JointCommand(np.array([0.0, 0.0]), np.inf),
    EndEffectorCommand(np.array([0.5, np.inf, 0.5]), TOP_DOWN, 0.04),
    EndEffectorCommand(np.array([0.5, 0.0, 0.5]), np.array([2.0, 0.0, 0.0, 0.0]), 0.04),
])
def test_malformed_commands_are_rejected_and_the_previous_one_stays(bad):
    sup = SafetySupervisor(SPEC, CONFIG)
    sup.submit(JointCommand(np.array([0.001, 0.0]), 0.04), now=0.0)
    assert not sup.submit(bad, now=0.001)
    assert kinds(sup) == ["rejected"]
    out = sup.command_for_tick(state(), now=0.002, state_age=0.0, dt=DT)
    assert np.allclose(out.positions, [0.001, 0.0])


def test_estop_holds_at_the_next_tick_and_stays_latched_until_released():
    sup = SafetySupervisor(SPEC, CONFIG)
    sup.submit(JointCommand(np.array([0.5, 0.5]), 0.04), now=0.0)
    sup.command_for_tick(state(q=(0.1, 0.1)), now=0.0, state_age=0.0, dt=DT)
    sup.set_estop(True, now=0.002)
    out = sup.command_for_tick(state(q=(0.12, 0.13)), now=0.002, state_age=0.0, dt=DT)
    assert np.allclose(out.positions, [0.12, 0.13])  # hold where the arm was when the stop arrived
    sup.submit(JointCommand(np.array([0.9, 0.9]), 0.04), now=0.004)  # commands keep coming: ignored
    for tick in range(2, 10):
        out = sup.command_for_tick(state(q=(0.125, 0.135)), now=tick * DT, state_age=0.0, dt=DT)
        assert np.allclose(out.positions, [0.12, 0.13])
    sup.set_estop(False, now=0.02)
    sup.submit(JointCommand(np.array([0.9, 0.9]), 0.04), now=0.02)
    out = sup.command_for_tick(state(q=(0.125, 0.135)), now=0.02, state_age=0.0, dt=DT)
    assert out.positions[0] > 0.12  # moving again (rate-limited from the hold pose)
    assert [k for k in kinds(sup) if k.startswith("estop")] == ["estop_engaged", "estop_released"]


def test_stale_state_and_stale_commands_hold_and_recover():
    sup = SafetySupervisor(SPEC, CONFIG)
    sup.submit(JointCommand(np.array([0.5, 0.0]), 0.04), now=0.0)
    sup.command_for_tick(state(), now=0.0, state_age=0.0, dt=DT)
    out = sup.command_for_tick(state(q=(0.01, 0.0)), now=0.01, state_age=0.06, dt=DT)
    assert np.allclose(out.positions, [0.01, 0.0])
    assert "state_stale" in kinds(sup)
    out = sup.command_for_tick(state(q=(0.01, 0.0)), now=0.012, state_age=0.0, dt=DT)
    assert out.positions[0] > 0.01 and "state_fresh" in kinds(sup)
    # No command for longer than command_timeout (0.2 s): hold where the arm is.
    out = sup.command_for_tick(state(q=(0.05, 0.0)), now=0.25, state_age=0.0, dt=DT)
    assert np.allclose(out.positions, [0.05, 0.0]) and "command_stale" in kinds(sup)
    sup.submit(JointCommand(np.array([0.5, 0.0]), 0.04), now=0.26)
    out = sup.command_for_tick(state(q=(0.05, 0.0)), now=0.26, state_age=0.0, dt=DT)
    assert out.positions[0] > 0.05 and "command_fresh" in kinds(sup)


def test_gripper_is_clipped_and_rate_limited():
    sup = SafetySupervisor(SPEC, CONFIG)
    sup.submit(JointCommand(np.zeros(2), 1.0), now=0.0)
    out = sup.command_for_tick(state(gripper=0.04), now=0.0, state_age=0.0, dt=DT)
    assert out.gripper_width == pytest.approx(0.04 + 0.1 * DT)
    for tick in range(1, 500):
        sup.submit(JointCommand(np.zeros(2), 1.0), now=tick * DT)
        out = sup.command_for_tick(state(gripper=0.04), now=tick * DT, state_age=0.0, dt=DT)
    assert out.gripper_width == pytest.approx(0.08)


def test_config_is_validated():
    with pytest.raises(ConfigError, match="workspace_low"):
        SafetyConfig(workspace_low=(1, 0, 0), workspace_high=(0, 1, 1))
    with pytest.raises(ConfigError, match="command_timeout"):
        SafetyConfig(command_timeout=0.0)


# --------------------------------------------------------------------------- limits validated as a whole
LIMIT_KEYS = ("max_tool_speed", "max_tool_rotation_speed", "max_joint_speed_fraction", "max_gripper_speed",
              "state_timeout", "command_timeout", "rate_limit_report_after")


@pytest.mark.parametrize("key", LIMIT_KEYS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -0.1, 0.0, 1e6],
                         ids=["nan", "inf", "-inf", "negative", "zero", "too_large"])
def test_every_limit_must_be_finite_positive_and_within_the_absolute_maximum(key, bad):
    with pytest.raises(ConfigError) as info:
        SafetyConfig(**{key: bad})
    assert info.value.args[0].startswith(f"{key}: ") and repr(bad) in str(info.value)


@pytest.mark.parametrize("key, bad", [("workspace_low", (0.25, float("nan"), 0.005)),
                                      ("workspace_high", (0.75, 0.35, float("inf"))),
                                      ("workspace_low", (-5.0, -0.35, 0.005))])
def test_the_workspace_box_must_be_finite_and_bounded(key, bad):
    with pytest.raises(ConfigError, match=key):
        SafetyConfig(**{key: bad})


def test_the_joint_speed_fraction_is_at_most_one():
    with pytest.raises(ConfigError, match="max_joint_speed_fraction: must be at most 1"):
        SafetyConfig(max_joint_speed_fraction=1.01)
    assert SafetyConfig(max_joint_speed_fraction=1.0).max_joint_speed_fraction == 1.0


def test_limits_are_tightened_but_never_loosened_past_an_arms_maxima():
    maxima = SafetyMaxima(max_tool_speed=0.5, command_timeout=1.0, workspace_low=(0.0, -0.5, 0.0),
                          workspace_high=(1.0, 0.5, 1.0))
    tight = SafetyConfig(workspace_low=(0.3, -0.2, 0.1), workspace_high=(0.7, 0.2, 0.5), max_tool_speed=0.1,
                         max_joint_speed_fraction=0.2, command_timeout=0.2, state_timeout=0.01)
    tight.check_within(maxima, "test_arm")  # tighter everywhere: fine
    for change, key in (({"max_tool_speed": 0.6}, "max_tool_speed"), ({"command_timeout": 2.0}, "command_timeout"),
                        ({"workspace_high": (1.2, 0.2, 0.5)}, r"workspace_high\[0\]"),
                        ({"workspace_low": (0.3, -0.2, -0.1)}, r"workspace_low\[2\]")):
        loose = SafetyConfig(**{**dataclasses.asdict(tight), **change})
        with pytest.raises(ConfigError, match=rf"^safety\.{key}: must be .*\(.*test_arm maximum"):
            loose.check_within(maxima, "test_arm")


def test_an_arms_maxima_lie_within_the_absolute_ones():
    assert SafetyMaxima() == ABSOLUTE_MAXIMA
    for key, bad in (("max_tool_speed", 2.0), ("command_timeout", float("nan")), ("max_joint_speed_fraction", 1.5)):
        with pytest.raises(ConfigError, match=key):
            SafetyMaxima(**{key: bad})
