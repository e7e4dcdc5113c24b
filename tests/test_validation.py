"""The bridge's message validators (``robot_rl.hardware.validation``) on crafted messages.

Pure unit tests: real generated ROS 2 message classes and their real CDR bytes, the real MuJoCo
arm's spec and forward kinematics; no transport, no bridge.
"""

from __future__ import annotations

import json
import logging
import struct
import time

import numpy as np
import pytest
from cyclonedds.idl._support import Endianness

from robot_rl.hardware import validation as v
from robot_rl.hardware.safety import SafetyConfig
from robot_rl.hardware.transport import messages

NAN, INF = float("nan"), float("inf")
JOINTS = [f"joint{i}" for i in range(1, 8)]
HOME = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785]


def msg(type_name: str, **fields):
    return messages.new_message(type_name, **fields)


def duration(t: float):
    return msg("builtin_interfaces/msg/Duration", sec=int(t), nanosec=int(round((t % 1) * 1e9)))


def point(q, t, **fields):
    return msg("trajectory_msgs/msg/JointTrajectoryPoint", positions=[float(x) for x in q],
               time_from_start=duration(t), **fields)


def trajectory_msg(points, names=JOINTS):
    return msg("trajectory_msgs/msg/JointTrajectory", joint_names=list(names), points=points)


def pose_msg(xyz, wxyz, frame="base"):
    (x, y, z), (qw, qx, qy, qz) = xyz, wxyz
    return msg("geometry_msgs/msg/PoseStamped", header=msg("std_msgs/msg/Header", frame_id=frame), pose=msg(
        "geometry_msgs/msg/Pose", position=msg("geometry_msgs/msg/Point", x=x, y=y, z=z),
        orientation=msg("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw)))


def twist_msg(linear, angular, frame=""):
    vector = lambda xyz: msg("geometry_msgs/msg/Vector3", x=xyz[0], y=xyz[1], z=xyz[2])  # noqa: E731
    return msg("geometry_msgs/msg/TwistStamped", header=msg("std_msgs/msg/Header", frame_id=frame),
               twist=msg("geometry_msgs/msg/Twist", linear=vector(linear), angular=vector(angular)))


def array_msg(values):
    return msg("std_msgs/msg/Float64MultiArray", data=list(values))


def reset_msg(body):
    return msg("std_msgs/msg/String", data=body if isinstance(body, str) else json.dumps(body))


@pytest.fixture(scope="module")
def arm():
    from robot_rl.sim import SimArm

    arm = SimArm("pick")  # objects: a free cube (graspable) and mocap bodies
    yield arm
    arm.close()


@pytest.fixture(scope="module")
def limits(arm):
    safety = SafetyConfig()
    return v.ArmLimits(arm.spec, safety.workspace_low, safety.workspace_high, safety.max_tool_speed,
                       safety.max_tool_rotation_speed, tuple(sorted(arm.read_state().objects)), arm.tool_position)


def refused(validate, message, limits, match: str) -> v.RejectedMessage:
    with pytest.raises(v.RejectedMessage, match=match) as info:
        validate(message, limits)
    return info.value


# ---------------------------------------------------------------------------- joint commands
def test_joint_command_accepts_the_arm_s_joint_count_of_finite_values(limits):
    assert np.array_equal(v.joint_command(array_msg(HOME), limits), HOME)
    near = limits.spec.joint_upper + 0.5  # beyond the limits, but near: the supervisor clips and reports it
    assert np.array_equal(v.joint_command(array_msg(near), limits), near)


@pytest.mark.parametrize("values, match", [
    ([], "needs 7 values, got 0"),
    (HOME[:6], "needs 7 values, got 6"),
    (HOME + [0.0], "needs 7 values, got 8"),  # refused, not truncated
    (HOME[:6] + [NAN], "non-finite"),
    ([INF] + HOME[1:], "non-finite"),
    ([-INF] + HOME[1:], "non-finite"),
    ([90.0] + HOME[1:], "beyond the limits of joint1.*radians"),  # degrees
    ([1e300] * 7, "beyond the limits"),
])
def test_joint_command_refusals(limits, values, match):
    refused(v.joint_command, array_msg(values), limits, match)


# ---------------------------------------------------------------------------- trajectories
def test_trajectory_in_any_joint_order_comes_back_in_spec_order(limits):
    order = [6, 0, 3, 1, 2, 4, 5]
    goal = np.array(HOME) + 0.1
    message = trajectory_msg([point(goal[order], 0.5), point(goal[order] + 0.05, 1.25)], [JOINTS[i] for i in order])
    times, positions = v.trajectory(message, limits)
    assert times.tolist() == [0.5, 1.25]
    assert np.allclose(positions, [goal, goal + 0.05])


def test_trajectory_velocities_may_be_empty_or_one_per_joint(limits):
    points = [point(HOME, 0.5, velocities=[0.0] * 7), point(HOME, 1.0)]
    assert v.trajectory(trajectory_msg(points), limits)[1].shape == (2, 7)


@pytest.mark.parametrize("message, match", [
    (trajectory_msg([point(HOME, 0.5)], JOINTS[:6]), "not this arm's"),
    (trajectory_msg([point(HOME, 0.5)], JOINTS[:6] + ["joint1"]), "not this arm's"),  # a duplicate
    (trajectory_msg([point(HOME, 0.5)], JOINTS[:6] + ["elbow"]), "not this arm's"),
    (trajectory_msg([]), "0 points"),
    (trajectory_msg([point(HOME, 0.5), point(HOME[:3], 1.0)]), "point 1 has 3 positions"),
    (trajectory_msg([point(HOME + [0.0, 0.0], 0.5)]), "point 0 has 9 positions"),  # not truncated
    (trajectory_msg([point(HOME, 0.5, velocities=[0.0] * 3)]), "point 0 has 3 velocities"),
    (trajectory_msg([point(HOME, 0.5, effort=[0.0] * 8)]), "point 0 has 8 effort"),
    (trajectory_msg([point(HOME[:6] + [NAN], 0.5)]), "non-finite positions"),
    (trajectory_msg([point(HOME, 0.5, accelerations=[INF] * 7)]), "non-finite accelerations"),
    (trajectory_msg([point(HOME, 1.0), point(HOME, 0.5)]), "must increase"),
    (trajectory_msg([point(HOME, 1.0), point(HOME, 1.0)]), "must increase"),
    (trajectory_msg([point(HOME, 0.0)]), "must increase from above 0"),
    (trajectory_msg([point(HOME, 0.5), point([1e6] * 7, 1.0)]), "point 1 is more than"),
])
def test_trajectory_refusals(limits, message, match):
    refused(v.trajectory, message, limits, match)


def test_trajectory_point_limit(limits):
    refused(v.trajectory, trajectory_msg([point([], 1.0 + i) for i in range(v.MAX_TRAJECTORY_POINTS + 1)]),
            limits, "10001 points")


def test_trajectory_size_is_read_from_the_bytes_without_deserialising(limits):
    check = v.COMMANDS["trajectory"]
    two = messages.serialize(trajectory_msg([point(HOME, 0.5), point(HOME, 1.0)]))
    check.screen(two, limits)  # passes
    assert v._trajectory_counts(two, 7) == (7, 2)
    big_endian = trajectory_msg([point(HOME, 0.5)] * 3).serialize(use_version_2=False, endianness=Endianness.Big)
    assert v._trajectory_counts(big_endian, 7) == (7, 3)

    # Under the byte limit but 20k (empty) points: refused from the count in the bytes.
    many = messages.serialize(trajectory_msg([point([], 1.0)] * 20_000))
    assert len(many) < limits.max_trajectory_bytes
    with pytest.raises(v.RejectedMessage, match="20000 points"):
        check.screen(many, limits)
    # 200k points (16 MB): the same header and count, the points' bytes left as zeros; refused by
    # size, in microseconds (deserialising it would take seconds).
    header = bytearray(two)
    count_at = len(messages.serialize(trajectory_msg([]))) - 4
    header[count_at:count_at + 4] = struct.pack("<I", 200_000)
    huge = bytes(header) + bytes(200_000 * 80)
    started = time.perf_counter()
    with pytest.raises(v.RejectedMessage, match="bytes is larger than"):
        check.screen(huge, limits)
    assert time.perf_counter() - started < 0.05
    with pytest.raises(v.RejectedMessage, match="names 6 joints"):
        check.screen(messages.serialize(trajectory_msg([point(HOME[:6], 0.5)], JOINTS[:6])), limits)
    with pytest.raises(v.RejectedMessage, match="ends early"):
        check.screen(two[:20], limits)
    with pytest.raises(v.RejectedMessage, match="not plain CDR"):
        check.screen(b"\x00\x11\x00\x00" + two[4:], limits)


# ---------------------------------------------------------------------------- tool targets and twists
def test_tool_target_quaternions_are_normalised(limits):
    for wxyz in ([2.0, 0.0, 0.0, 0.0], [1e-300, 0.0, 0.0, 0.0], [1e300, 1e300, 0.0, 0.0], [1.7e308, 1.7e308, 0.0, 0.0]):
        pose = v.tool_target(pose_msg([0.5, 0.0, 0.3], wxyz), limits)
        assert np.all(np.isfinite(pose)) and np.linalg.norm(pose[3:]) == pytest.approx(1.0)
    assert np.allclose(v.tool_target(pose_msg([0.5, 0.0, 0.3], [0.0, 2.0, 0.0, 0.0], frame=""), limits)[3:],
                       [0.0, 1.0, 0.0, 0.0])
    outside = v.tool_target(pose_msg([0.9, 0.0, 0.3], [0.0, 1.0, 0.0, 0.0]), limits)  # near: clipped later
    assert outside[0] == 0.9


@pytest.mark.parametrize("message, match", [
    (pose_msg([0.5, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0]), "quaternion is zero"),
    (pose_msg([NAN, 0.0, 0.3], [0.0, 1.0, 0.0, 0.0]), "non-finite"),
    (pose_msg([0.5, 0.0, 0.3], [INF, 1.0, 0.0, 0.0]), "quaternion has non-finite"),
    (pose_msg([500.0, 0.0, 300.0], [0.0, 1.0, 0.0, 0.0]), "outside the workspace box.*metres"),  # millimetres
    (pose_msg([0.5, 0.0, 0.3], [0.0, 1.0, 0.0, 0.0], frame="world"), "frame 'world'"),
])
def test_tool_target_refusals(limits, message, match):
    refused(v.tool_target, message, limits, match)


def test_tool_twist(limits):
    assert np.array_equal(v.tool_twist(twist_msg([0.1, 0.0, 0.0], [0.0, 0.0, 0.5]), limits), [0.1, 0, 0, 0, 0, 0.5])
    assert v.tool_twist(twist_msg([1.0, 0.0, 0.0], [0.0, 0.0, 0.0]), limits)[0] == 1.0  # 2x the limit: rate-limited later


@pytest.mark.parametrize("message, match", [
    (twist_msg([NAN, 0.0, 0.0], [0.0, 0.0, 0.0]), "non-finite"),
    (twist_msg([0.0, 0.0, 0.0], [0.0, 0.0, -INF]), "non-finite"),
    (twist_msg([1e300, 1e300, 1e300], [0.0, 0.0, 0.0]), "m/s"),
    (twist_msg([0.0, 0.0, 0.0], [0.0, 0.0, 100.0]), "rad/s"),
    (twist_msg([0.1, 0.0, 0.0], [0.0, 0.0, 0.0], frame="tool0"), "frame 'tool0'"),
])
def test_tool_twist_refusals(limits, message, match):
    refused(v.tool_twist, message, limits, match)


# ---------------------------------------------------------------------------- gripper
def test_gripper_command(limits):
    assert v.gripper_command(array_msg([0.04]), limits) == 0.04
    assert v.gripper_command(array_msg([limits.spec.gripper_max_width + 0.01]), limits) > 0  # near: clipped later


@pytest.mark.parametrize("values, match", [
    ([], "needs 1 values, got 0"), ([0.01, 0.02], "got 2"), ([NAN], "non-finite"), ([40.0], "metres expected"),
    ([-1.0], "range"),
])
def test_gripper_command_refusals(limits, values, match):
    refused(v.gripper_command, array_msg(values), limits, match)


# ---------------------------------------------------------------------------- resets
RESET = {"id": 7, "joint_positions": HOME, "gripper_width": 0.04}


def test_reset_accepts_a_pose_inside_the_limits_and_normalises_object_quaternions(limits):
    request_id, request = v.reset(reset_msg({**RESET, "objects": {"cube": [0.5, 0.0, 0.02, 2.0, 0.0, 0.0, 0.0]},
                                             "grasped_object": "cube"}), limits)
    assert request_id == 7 and np.array_equal(request.joint_positions, HOME)
    assert np.array_equal(request.objects["cube"], [0.5, 0.0, 0.02, 1.0, 0.0, 0.0, 0.0])
    assert request.grasped_object == "cube"


@pytest.mark.parametrize("change, match", [
    ({"joint_positions": HOME[:3]}, "needs 7 joint positions"),
    ({"joint_positions": [NAN] + HOME[1:]}, "non-finite"),
    ({"joint_positions": [3.0] + HOME[1:]}, "outside the joint limits"),
    ({"joint_positions": [1.5] + HOME[1:]}, "^the start pose puts the tool outside the safety workspace box"),
    ({"gripper_width": 40.0}, "gripper opening"),
    ({"gripper_width": INF}, "non-finite gripper"),
    ({"objects": {"teapot": [0.5, 0.0, 0.1, 1.0, 0.0, 0.0, 0.0]}}, "no object 'teapot'"),
    ({"objects": {"cube": [0.5, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0]}}, "quaternion is zero"),
    ({"objects": {"cube": [500.0, 0.0, 0.1, 1.0, 0.0, 0.0, 0.0]}}, "outside the workspace box"),
    ({"grasped_object": "teapot"}, "cannot grasp 'teapot'"),
    ({"joint_positions": [[0.0] * 7]}, "shape"),
])
def test_reset_refusals_carry_the_request_id(limits, change, match):
    exc = refused(v.reset, reset_msg({**RESET, **change}), limits, match)
    assert exc.request_id == 7


@pytest.mark.parametrize("body", ["{not json", "[1, 2, 3]", json.dumps({"joint_positions": HOME}),
                                  "[" * 100_000 + "]" * 100_000])
def test_unreadable_resets_have_no_id_to_answer(limits, body):
    assert refused(v.reset, reset_msg(body), limits, "malformed reset").request_id is None


def test_reset_checks_that_need_what_the_bridge_cannot_know_are_skipped(arm, limits):
    import dataclasses

    moving = dataclasses.replace(limits, objects=None, tool_position=None)  # a real arm driven to the pose
    body = {**RESET, "joint_positions": [1.5] + HOME[1:], "objects": {"teapot": [0.5, 0, 0.1, 1, 0, 0, 0]}}
    request_id, request = v.reset(reset_msg(body), moving)
    assert request_id == 7 and "teapot" in request.objects
    refused(v.reset, reset_msg({**body, "joint_positions": [3.0] + HOME[1:]}), moving, "joint limits")


# ---------------------------------------------------------------------------- the table
def test_every_check_screens_size_before_deserialising_and_refuses_unreadable_bytes(limits):
    for kind, check in v.COMMANDS.items():
        limit = limits.max_trajectory_bytes if check.large else v.SMALL_MESSAGE_BYTES
        with pytest.raises(v.RejectedMessage, match="larger than"):
            check.screen(b"\x00\x01\x00\x00" + bytes(limit), limits)
        with pytest.raises(v.RejectedMessage, match="unreadable|malformed|ends early"):
            check.screen(b"\x00\x01\x00\x00\xff\xff\xff\x7f", limits)
            check.parse(b"\x00\x01\x00\x00\xff\xff\xff\x7f", limits, messages.deserialize)
    long_array = messages.serialize(array_msg([0.0] * 10_000))  # 80 kB: refused as too large, not truncated
    with pytest.raises(v.RejectedMessage, match="larger than"):
        v.COMMANDS["joint_positions"].screen(long_array, limits)
    ok = messages.serialize(array_msg(HOME))
    v.COMMANDS["joint_positions"].screen(ok, limits)
    assert np.array_equal(v.COMMANDS["joint_positions"].parse(ok, limits, messages.deserialize), HOME)


def test_rate_limited_log(caplog):
    log = v.RateLimitedLog(logging.getLogger("test.rate"), burst=3, period=0.2)
    with caplog.at_level(logging.WARNING, logger="test.rate"):
        for i in range(50):
            log.warning(f"bad {i}")
        time.sleep(0.25)
        log.warning("bad again")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["bad 0", "bad 1", "bad 2"] and len(lines) == 4
    assert lines[3] == "bad again (47 more not logged in the last 0.2 s)"
