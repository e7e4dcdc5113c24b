"""The arm bridge's control loop: command checks at the edge, a failing tick, the camera thread.

Unit tests of :class:`ArmBridge` with the real MuJoCo arm behind it and an in-memory transport
(messages are the real generated ROS 2 classes; no DDS participant exists in this process). The
same checks over real DDS between processes, and the tick-timing test with cameras on and off,
run as scenarios of ``tests/bridge_scenarios.py`` in a private network namespace.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from netns import run_python
from robot_rl.hardware import conversions as conv
from robot_rl.hardware import topics
from robot_rl.hardware.bridge import ArmBridge, BridgeConfig
from robot_rl.hardware.transport import messages
from robot_rl.robot import JointCommand

SCENARIOS = Path(__file__).with_name("bridge_scenarios.py")
NAN, INF = float("nan"), float("inf")


class MemoryTransport:
    """Publish/subscribe in memory: publishers keep what they sent, tests call the callbacks
    (``raw`` subscriptions get the CDR bytes a DDS reader would, from the real serialiser)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[Any]] = defaultdict(list)
        self.callbacks: dict[str, Callable[[Any], None]] = {}
        self.raw: set[str] = set()
        self.deserialized: list[str] = []  # type names deserialize was called for
        self.deserialize_hook: Callable[[str], None] | None = None  # e.g. to make deserialising slow

    def message(self, type_name: str, **fields: Any) -> Any:
        return messages.new_message(type_name, **fields)

    def deserialize(self, type_name: str, data: bytes) -> Any:
        self.deserialized.append(type_name)
        if self.deserialize_hook is not None:
            self.deserialize_hook(type_name)
        return messages.deserialize(type_name, data)

    def publisher(self, topic: str, type_name: str, qos: Any = None) -> Any:
        sent = self.sent[topic]

        class Publisher:
            def publish(self, msg: Any) -> None:
                sent.append(msg)

        return Publisher()

    def subscribe(self, topic: str, type_name: str, callback: Callable[[Any], None], qos: Any = None,
                  raw: bool = False) -> Any:
        self.callbacks[topic] = callback
        if raw:
            self.raw.add(topic)

        class Subscription:
            def close(self) -> None:
                pass

        return Subscription()

    def deliver(self, topic: str, type_name: str, **fields: Any) -> None:
        message = self.message(type_name, **fields)
        self.callbacks[topic](messages.serialize(message) if topic in self.raw else message)

    def deliver_bytes(self, topic: str, data: bytes) -> None:
        assert topic in self.raw
        self.callbacks[topic](data)

    def events(self) -> list[dict]:
        return [json.loads(m.data) for m in self.sent[topics.SAFETY_EVENTS]]

    def close(self) -> None:
        pass


class RecordingArm:
    """The real SimArm, with every command it is given recorded (and optional injected faults)."""

    def __init__(self, arm: Any) -> None:
        self.arm, self.commands = arm, []
        self.fail_at: set[int] = set()  # advance calls that raise
        self.advances = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.arm, name)

    def command(self, command: Any) -> None:
        self.commands.append(command)
        self.arm.command(command)

    def advance(self, duration: float) -> Any:
        self.advances += 1
        if self.advances in self.fail_at:
            raise RuntimeError("injected fault")
        return self.arm.advance(duration)


@pytest.fixture
def bridge(make_arm):
    arm = RecordingArm(make_arm("reach"))
    transport = MemoryTransport()
    node = ArmBridge(arm, transport, BridgeConfig(real_time=False), tool_position=arm.tool_position)
    yield node
    node.close()


def point(q, t):
    return messages.new_message("trajectory_msgs/msg/JointTrajectoryPoint", positions=[float(v) for v in q],
                                time_from_start=messages.new_message("builtin_interfaces/msg/Duration", sec=int(t),
                                                                     nanosec=int((t % 1) * 1e9)))


def pose(values):
    return conv.pose_message(MemoryTransport(), np.asarray(values, float))


HOME_TOOL = [0.5, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]
JOINTS = [f"joint{i}" for i in range(1, 8)]
RESET_OK = {"id": 7, "joint_positions": [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785], "gripper_width": 0.04}

# (topic, type, fields) of messages that must be refused.
BAD_MESSAGES = {
    "tool_target_nan": (topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped",
                        {"pose": pose([NAN, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0])}),
    "tool_target_inf_quat": (topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped",
                             {"pose": pose([0.5, 0.0, 0.3, INF, 1.0, 0.0, 0.0])}),
    "tool_target_not_unit": (topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped",
                             {"pose": pose([0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0])}),
    "twist_nan": (topics.TOOL_TWIST, "geometry_msgs/msg/TwistStamped",
                  {"twist": messages.new_message("geometry_msgs/msg/Twist", linear=messages.new_message(
                      "geometry_msgs/msg/Vector3", x=NAN))}),
    "twist_inf": (topics.TOOL_TWIST, "geometry_msgs/msg/TwistStamped",
                  {"twist": messages.new_message("geometry_msgs/msg/Twist", angular=messages.new_message(
                      "geometry_msgs/msg/Vector3", z=-INF))}),
    "gripper_nan": (topics.GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray", {"data": [NAN]}),
    "gripper_empty": (topics.GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray", {"data": []}),
    "gripper_two": (topics.GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray", {"data": [0.01, 0.02]}),
    "joints_short": (topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", {"data": [0.0] * 6}),
    "joints_inf": (topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", {"data": [0.0] * 6 + [INF]}),
    "trajectory_nan": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                       {"joint_names": JOINTS, "points": [point([0.0] * 6 + [NAN], 0.5)]}),
    "trajectory_short_point": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                               {"joint_names": JOINTS, "points": [point([0.0] * 7, 0.5), point([0.0] * 3, 1.0)]}),
    "trajectory_long_point": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                              {"joint_names": JOINTS, "points": [point([0.0] * 9, 0.5)]}),
    "trajectory_times": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                         {"joint_names": JOINTS, "points": [point([0.0] * 7, 1.0), point([0.0] * 7, 0.5)]}),
    "trajectory_names": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                         {"joint_names": JOINTS[:6] + ["joint1"], "points": [point([0.0] * 7, 0.5)]}),
    "trajectory_no_points": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                             {"joint_names": JOINTS, "points": []}),
    "trajectory_far": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                       {"joint_names": JOINTS, "points": [point([-1e6] * 7, 0.5), point([1e6] * 7, 1.0)]}),
    "trajectory_velocity_nan": (topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                                {"joint_names": JOINTS, "points": [messages.new_message(
                                    "trajectory_msgs/msg/JointTrajectoryPoint", positions=[0.0] * 7,
                                    velocities=[NAN] * 7, time_from_start=messages.new_message(
                                        "builtin_interfaces/msg/Duration", sec=1))]}),
    "joints_long": (topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", {"data": [0.0] * 8}),
    "joints_degrees": (topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray",
                       {"data": [0.0, -17.0, 0.0, -126.0, 0.0, 109.0, 45.0]}),
    "tool_target_millimetres": (topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped",
                                {"pose": pose([500.0, 0.0, 300.0, 0.0, 1.0, 0.0, 0.0])}),
    "tool_target_other_frame": (topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped",
                                {"pose": pose(HOME_TOOL), "header": messages.new_message(
                                    "std_msgs/msg/Header", frame_id="tool0")}),
    "twist_huge": (topics.TOOL_TWIST, "geometry_msgs/msg/TwistStamped",
                   {"twist": messages.new_message("geometry_msgs/msg/Twist", linear=messages.new_message(
                       "geometry_msgs/msg/Vector3", x=1e300, y=1e300))}),
    "gripper_millimetres": (topics.GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray", {"data": [40.0]}),
}
BAD_RESETS = {
    "reset_nan": ({**RESET_OK, "joint_positions": [NAN] + RESET_OK["joint_positions"][1:]}, 7),
    "reset_short": ({**RESET_OK, "joint_positions": RESET_OK["joint_positions"][:5]}, 7),
    "reset_gripper_inf": ({**RESET_OK, "gripper_width": INF}, 7),
    "reset_object_pose": ({**RESET_OK, "objects": {"goal": [0.5, 0.0, 0.1]}}, 7),
    "reset_object_nan": ({**RESET_OK, "objects": {"goal": [0.5, 0.0, NAN, 1.0, 0.0, 0.0, 0.0]}}, 7),
    "reset_matrix": ({**RESET_OK, "joint_positions": [[0.0] * 7]}, 7),
    "reset_no_id": ({k: v for k, v in RESET_OK.items() if k != "id"}, None),
    "reset_not_json": ("{joint_positions: [", None),
    "reset_list": ([1, 2, 3], None),
}
# Readable resets that this arm cannot carry out as sent (checked by the bridge, not conversions).
BAD_RESET_POSES = {
    "reset_3_joints": ({**RESET_OK, "joint_positions": [0.0, 0.0, 0.0]}, 7),
    "reset_outside_joint_limits": ({**RESET_OK, "joint_positions": [3.5] + RESET_OK["joint_positions"][1:]}, 7),
    "reset_tool_outside_box": ({**RESET_OK, "joint_positions": [1.5] + RESET_OK["joint_positions"][1:]}, 7),
    "reset_unknown_object": ({**RESET_OK, "objects": {"teapot": [0.5, 0.0, 0.1, 1.0, 0.0, 0.0, 0.0]}}, 7),
    "reset_zero_quaternion": ({**RESET_OK, "objects": {"goal": [0.5, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0]}}, 7),
    "reset_gripper_millimetres": ({**RESET_OK, "gripper_width": 40.0}, 7),
    "reset_grasp_a_fixture": ({**RESET_OK, "grasped_object": "goal"}, 7),  # only SimArm knows goal is not free
}


def run_ticks(node: ArmBridge, n: int) -> None:
    assert node.wait_until_checked()  # trajectories are checked on the bridge's parser thread
    for _ in range(n):
        node.step()


def assert_held_still(node: ArmBridge) -> None:
    """The arm got nothing but the supervisor's hold (at the pose where the bridge started)."""
    arm = node.robot
    assert all(isinstance(c, JointCommand) for c in arm.commands), "a refused message reached the arm"
    hold = arm.commands[0].positions
    for command in arm.commands:
        assert np.array_equal(command.positions, hold), "a refused message reached the arm"
    assert np.allclose(arm.read_state().joint_pos, hold, atol=2e-3)


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_malformed_commands_are_refused_at_the_edge(bridge, name):
    topic, type_name, fields = BAD_MESSAGES[name]
    run_ticks(bridge, 5)
    bridge.transport.deliver(topic, type_name, **fields)  # must not raise
    run_ticks(bridge, 50)
    assert bridge.stats.commands_rejected == 1 and bridge.stats.commands_received == 1
    assert [e["kind"] for e in bridge.transport.events()].count("rejected") == 1
    assert bridge.stats.step_errors == 0
    assert_held_still(bridge)


@pytest.mark.parametrize("name", sorted(BAD_RESETS) + sorted(BAD_RESET_POSES))
def test_malformed_resets_are_refused_and_answered(bridge, name):
    body, request_id = BAD_RESETS.get(name) or BAD_RESET_POSES[name]
    run_ticks(bridge, 50)
    before = bridge.robot.read_state()
    bridge.transport.deliver(topics.RESET, "std_msgs/msg/String",
                             data=body if isinstance(body, str) else json.dumps(body))
    run_ticks(bridge, 5)
    assert bridge.stats.commands_rejected == 1
    assert [e["kind"] for e in bridge.transport.events()].count("rejected") == 1
    answers = [json.loads(m.data) for m in bridge.transport.sent[topics.RESET_DONE]]
    if request_id is None:  # nobody to answer
        assert answers == []
    else:
        assert [a["id"] for a in answers] == [request_id] and "error" in answers[0]
    after = bridge.robot.read_state()
    assert after.timestamp > before.timestamp  # not reset (sim time restarts at 0 on a reset)
    assert_held_still(bridge)


def test_a_good_command_after_refused_ones_is_followed(bridge):
    start = bridge.robot.read_state()
    for name in ("tool_target_nan", "twist_nan", "gripper_nan", "trajectory_short_point"):
        topic, type_name, fields = BAD_MESSAGES[name]
        bridge.transport.deliver(topic, type_name, **fields)
    target = start.joint_pos + np.array([0.05, 0, 0, 0, 0, 0, 0])
    bridge.transport.deliver(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", data=target.tolist())
    run_ticks(bridge, 300)
    assert bridge.stats.commands_rejected == 4 and bridge.stats.commands_received == 5
    assert np.allclose(bridge.robot.read_state().joint_pos, target, atol=5e-3)


def test_a_valid_reset_still_works(bridge):
    bridge.transport.deliver(topics.RESET, "std_msgs/msg/String", data=json.dumps(RESET_OK))
    run_ticks(bridge, 2)
    answers = [json.loads(m.data) for m in bridge.transport.sent[topics.RESET_DONE]]
    assert answers and answers[0]["id"] == 7 and "error" not in answers[0]
    assert bridge.stats.commands_rejected == 0


def test_a_huge_trajectory_is_refused_from_its_size_alone(bridge):
    """200k points (16 MB) are refused by their size; 20k empty points (under the byte limit) by the
    count read from the bytes: neither is deserialised, and nothing else is held up."""
    import struct

    empty = messages.serialize(messages.new_message("trajectory_msgs/msg/JointTrajectory", joint_names=JOINTS))
    huge = bytearray(empty) + bytes(200_000 * 80)
    huge[len(empty) - 4:len(empty)] = struct.pack("<I", 200_000)
    bridge.transport.deliver_bytes(topics.JOINT_TRAJECTORY, bytes(huge))
    bridge.transport.deliver(topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory", joint_names=JOINTS,
                             points=[point([], 1.0)] * 20_000)
    run_ticks(bridge, 3)
    assert bridge.transport.deserialized == []
    details = [e["detail"] for e in bridge.transport.events() if e["kind"] == "rejected"]
    assert "larger than" in details[0] and "20000 points" in details[1]
    assert bridge.stats.rejected_by_kind == {"trajectory": 2}
    assert_held_still(bridge)


def test_a_trajectory_checked_late_does_not_replace_a_newer_command(bridge):
    """Trajectories are checked on the parser thread: one that arrived first but was checked last
    must not replace the command that arrived after it."""
    import time

    start = bridge.robot.read_state().joint_pos
    bridge.transport.deserialize_hook = lambda type_name: time.sleep(0.3) if "Trajectory" in type_name else None
    far = start + np.array([0.3, 0, 0, 0, 0, 0, 0])
    bridge.transport.deliver(topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory", joint_names=JOINTS,
                             points=[point(far, 0.2)])
    near = start + np.array([0.05, 0, 0, 0, 0, 0, 0])
    bridge.transport.deliver(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", data=near.tolist())
    bridge.step()  # the joint command is in force; the trajectory is still being checked
    run_ticks(bridge, 300)
    assert bridge.stats.commands_received == 2 and bridge.stats.commands_rejected == 0
    assert np.allclose(bridge.robot.read_state().joint_pos, near, atol=5e-3)


def test_a_trajectory_checked_after_a_reset_is_dropped(bridge):
    import time

    bridge.transport.deserialize_hook = lambda type_name: time.sleep(0.3) if "Trajectory" in type_name else None
    start = bridge.robot.read_state().joint_pos
    bridge.transport.deliver(topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory", joint_names=JOINTS,
                             points=[point(start + 0.2, 0.2)])
    bridge.transport.deliver(topics.RESET, "std_msgs/msg/String", data=json.dumps(RESET_OK))
    bridge.step()  # the reset
    run_ticks(bridge, 200)
    assert np.allclose(bridge.robot.read_state().joint_pos, RESET_OK["joint_positions"], atol=5e-3)


def test_trajectories_beyond_the_parser_queue_are_refused(bridge):
    import threading

    busy, release = threading.Event(), threading.Event()
    bridge.transport.deserialize_hook = lambda type_name: (busy.set(), release.wait(10))
    start = bridge.robot.read_state().joint_pos
    for i in range(10):  # one being checked, MAX_TRAJECTORIES_WAITING (8) waiting, one refused
        bridge.transport.deliver(topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory",
                                 joint_names=JOINTS, points=[point(start, 0.5)])
        if i == 0:
            assert busy.wait(10)
    assert bridge.stats.commands_rejected == 1 and bridge.stats.rejected_by_kind == {"trajectory": 1}
    release.set()
    run_ticks(bridge, 2)
    assert bridge.stats.commands_received == 10
    assert "waiting to be checked" in [e for e in bridge.transport.events() if e["kind"] == "rejected"][0]["detail"]


def test_a_flood_of_bad_messages_is_counted_and_summed_up_in_one_tick(bridge):
    from robot_rl.hardware.bridge import MAX_REJECTED_EVENTS_PER_TICK

    for _ in range(MAX_REJECTED_EVENTS_PER_TICK + 150):
        bridge.transport.deliver(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", data=[NAN] * 7)
    run_ticks(bridge, 2)
    rejected = [e["detail"] for e in bridge.transport.events() if e["kind"] == "rejected"]
    assert len(rejected) == MAX_REJECTED_EVENTS_PER_TICK + 1 and rejected[-1].startswith("150 more messages refused")
    assert bridge.stats.commands_rejected == MAX_REJECTED_EVENTS_PER_TICK + 150


def test_a_non_unit_quaternion_is_normalised_and_followed(bridge):
    state = bridge.robot.read_state()
    target = state.ee_pos + np.array([0.0, 0.03, 0.0])
    bridge.transport.deliver(topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped",
                             pose=pose(np.concatenate([target, 3.0 * state.ee_quat])))
    run_ticks(bridge, 300)
    assert bridge.stats.commands_rejected == 0
    assert np.linalg.norm(bridge.robot.read_state().ee_pos - target) < 5e-3


def test_conversions_reset_checks():
    request_id, request = conv.reset_from_json(json.dumps(RESET_OK), n_joints=7)
    assert request_id == 7 and request.joint_positions.shape == (7,)
    for name, (body, request_id) in BAD_RESETS.items():
        with pytest.raises(conv.MalformedResetError) as info:
            conv.reset_from_json(body if isinstance(body, str) else json.dumps(body), n_joints=7)
        assert info.value.request_id == request_id, name
        assert isinstance(info.value, ValueError)


def test_a_failing_tick_is_logged_the_arm_holds_and_the_loop_goes_on(bridge):
    import threading

    arm = bridge.robot
    target = arm.read_state().joint_pos + np.array([0.3, 0, 0, 0, 0, 0, 0])
    bridge.transport.deliver(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", data=target.tolist())
    arm.fail_at = {20, 21, 22}
    stats = bridge.run(threading.Event(), max_ticks=200)
    assert stats.ticks == 200 and stats.step_errors == 3
    assert [e["kind"] for e in bridge.transport.events()].count("step_error") == 3
    # Right after the failure the arm was told to hold where it was; it stays there (the command
    # source was dropped; the supervisor holds until a new command arrives).
    held = arm.commands[20]
    assert isinstance(held, JointCommand)
    final = arm.read_state().joint_pos
    assert np.allclose(final, held.positions, atol=2e-2)
    assert abs(final[0] - target[0]) > 0.1  # it did not go on to the target
    assert stats.tick_durations().size == 200 and stats.tick_ms()["p99"] > 0


def test_tick_statistics_window():
    from robot_rl.hardware.bridge import TICK_WINDOW, BridgeStats

    stats = BridgeStats()
    assert stats.tick_ms() == {"p50": 0.0, "p99": 0.0, "max": 0.0}
    for i in range(TICK_WINDOW + 10):
        stats.record_tick(i * 1e-6)
    durations = stats.tick_durations()
    assert durations.size == TICK_WINDOW and durations[0] == pytest.approx(10e-6)
    assert durations[-1] == pytest.approx((TICK_WINDOW + 9) * 1e-6)


def test_camera_frames_come_from_the_camera_thread_with_tick_stamps(make_arm):
    from robot_rl.hardware.node import SimFrames
    from robot_rl.sim import RenderingUnavailableError

    arm = make_arm("reach")
    transport = MemoryTransport()
    config = BridgeConfig(real_time=True, cameras=("scene", "wrist"), image_height=64, image_width=64,
                          image_hz=20.0, compressed_images=True)
    try:
        node = ArmBridge(arm, transport, config, frames=SimFrames(arm))
    except RenderingUnavailableError as exc:
        pytest.skip(str(exc))
    import threading

    try:
        node.run(threading.Event(), max_ticks=250)  # 0.5 s: ~10 frames
    finally:
        node.close()
    raw = transport.sent[topics.image_topic("scene")]
    jpeg = transport.sent[topics.compressed_image_topic("wrist")]
    assert node.stats.frames_published >= 5 and node.stats.camera_errors == 0
    assert len(raw) == node.stats.frames_published and len(jpeg) == len(raw)
    image = raw[-1]
    assert (image.height, image.width, image.encoding, image.step) == (64, 64, "rgb8", 192)
    assert image.header.frame_id == "scene" and len(image.data) == 64 * 64 * 3
    assert np.asarray(bytearray(image.data)).std() > 1.0  # a picture, not a blank buffer
    stamps = {conv.time_of(m) for m in transport.sent[topics.JOINT_STATES]}
    assert all(conv.time_of(m) in stamps for m in raw)  # each frame is the state of one tick
    assert jpeg[-1].format == "jpeg" and bytes(jpeg[-1].data[:2]) == b"\xff\xd8"


def test_cameras_without_a_frame_source_are_refused(make_arm):
    with pytest.raises(ValueError, match="cannot render"):
        ArmBridge(make_arm("reach"), MemoryTransport(), BridgeConfig(cameras=("scene",)))


# ---------------------------------------------------------------------------- real DDS, processes
def run_scenario(name: str, timeout: float = 300.0) -> dict:
    result = run_python(SCENARIOS, name, timeout=timeout)
    assert result.returncode == 0, f"scenario {name} failed:\n{result.stderr[-6000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_malformed_commands_over_dds_are_refused_and_counted():
    findings = run_scenario("edge_checks")
    assert findings["bridge"]["commands_rejected"] == findings["sent_bad"]
    assert findings["bridge"]["step_errors"] == 0
    assert findings["rejected_events"] == findings["sent_bad"]
    assert findings["moved_rad"] < 2e-3 and findings["states_after"] > 100
    assert "non-finite" in findings["reset_error"]


@pytest.mark.slow
def test_tick_p99_does_not_grow_with_cameras_on():
    findings = run_scenario("camera_ticks")
    off, on = findings["off"], findings["on"]
    assert on["frames_published"] >= 0.8 * findings["expected_frames"] and on["camera_errors"] == 0
    # The tick's p99 as the loop thread lives it, minus the time it sat in the run queue while
    # other processes had the CPU (this machine's 2 cores are shared, and wall-time p99 there is
    # mostly other processes' time slices: 9-18 ms with cameras off at load 6-8). Rendering two
    # 128x128 frames and their JPEGs on the tick (the old bridge) put 8-14 ms into this p99
    # (1.6-2.2 ms without cameras); on the camera thread it measured 2.0-5.2 ms at load 6-8.
    assert on["p99_ms_own"] <= max(6.0, 1.5 * off["p99_ms_own"]), findings
    assert not math.isnan(on["p99_ms"]) and on["ticks"] == off["ticks"]
