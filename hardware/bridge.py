"""The arm bridge node: any :class:`~robot_rl.robot.Robot` behind standard ROS 2 topics.

``robot-rl bridge --robot sim`` wraps the MuJoCo arm (the digital twin);
``robot-rl bridge --robot hardware/configs/<arm>.yaml`` wraps a real ros2_control arm reached
through its own topics (:class:`~robot_rl.hardware.ros2_control_arm.Ros2ControlArm`). Either way
clients see the interface in :mod:`robot_rl.hardware.topics`, and every command passes the
:class:`~robot_rl.hardware.safety.SafetySupervisor` once per tick.

One loop thread owns the robot and the supervisor. Subscription callbacks (transport threads)
only drop the newest message of each kind into an inbox; the loop takes the inbox at the start of
each tick, so an e-stop or a command takes effect at the next tick (``1 / state_hz`` s, 2 ms by
default), well within one control period of the policy.

A tick: apply e-stop/reset/commands → supervisor picks the command → ``robot.command`` →
``robot.advance(tick)`` → publish the state stamped with the robot's clock. The MuJoCo twin is
paced to the wall clock; a real arm paces itself (``advance`` waits for its next joint state).
"""

from __future__ import annotations

import collections
import io
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from robot_rl.config import ConfigError
from robot_rl.geometry import quat_from_axis_angle, quat_multiply
from robot_rl.hardware import conversions as conv
from robot_rl.hardware import topics
from robot_rl.hardware.safety import SafetyConfig, SafetySupervisor, ToolPosition
from robot_rl.hardware.transport import Transport, TransportConfig, seconds_of
from robot_rl.robot import Command, EndEffectorCommand, JointCommand, ResetRequest, Robot, RobotState

log = logging.getLogger(__name__)

Renderer = Callable[[str, int, int], np.ndarray]  # (camera, height, width) -> RGB uint8 image


class StaleStateError(RuntimeError):
    """No fresh robot state arrived within the deadline."""


@dataclass(frozen=True)
class BridgeConfig:
    """How the bridge node runs (``robot-rl bridge`` flags map onto these)."""

    state_hz: float = 500.0  # ticks per second: commands applied and state published
    real_time: bool = True  # pace the loop to the wall clock (simulation; a real arm paces itself)
    publish_clock: bool = False  # sim time on /clock, for nodes run with use_sim_time
    cameras: tuple[str, ...] = ()  # simulated cameras to publish
    image_height: int = 128
    image_width: int = 128
    image_hz: float = 10.0
    compressed_images: bool = False  # also publish JPEG on .../image_raw/compressed
    reset_mode: Literal["teleport", "move"] = "teleport"  # simulation places the arm; hardware drives there
    reset_tolerance: float = 0.01  # rad, "move" resets end when every joint is this close
    events_log: str | None = None  # JSON-lines file of safety events (appended)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)

    def __post_init__(self) -> None:
        for name in ("state_hz", "image_hz"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"bridge.{name}: must be positive, got {getattr(self, name)}")


@dataclass
class _Inbox:
    """Newest message of each kind since the last tick (written by transport threads)."""

    joint_positions: np.ndarray | None = None
    trajectory: tuple[np.ndarray, np.ndarray] | None = None  # (times from start, positions)
    tool_target: np.ndarray | None = None  # (7,) pose
    tool_twist: np.ndarray | None = None  # (6,) linear m/s, angular rad/s
    gripper_width: float | None = None
    estops: list[bool] = field(default_factory=list)  # in arrival order
    resets: list[tuple[int, ResetRequest]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


@dataclass
class BridgeStats:
    ticks: int = 0
    overruns: int = 0  # ticks that ended after their wall-clock deadline
    worst_lateness: float = 0.0  # s
    stale_ticks: int = 0
    commands_received: int = 0  # arm and gripper command messages


class ArmBridge:
    """Serves ``robot`` on ROS 2 through ``transport``.

    Args:
        robot: the arm (``SimArm`` or ``Ros2ControlArm``); the bridge's loop thread owns it.
        transport: publish/subscribe backend (rclpy or DDS).
        config: rates, cameras, reset mode, safety limits.
        tool_position: forward kinematics for the supervisor's workspace check of joint targets.
        render: camera renderer for ``config.cameras`` (the simulated arm's ``render``).
    """

    def __init__(self, robot: Robot, transport: Transport, config: BridgeConfig = BridgeConfig(),
                 tool_position: ToolPosition | None = None, render: Renderer | None = None) -> None:
        if config.cameras and render is None:
            raise ValueError("cameras were asked for but this robot cannot render; real cameras publish "
                             "through their own drivers")
        self.robot, self.transport, self.config = robot, transport, config
        self.tick = 1.0 / config.state_hz
        self.supervisor = SafetySupervisor(robot.spec, config.safety, tool_position)
        self.stats = BridgeStats()
        self._render = render
        self._tool_position = tool_position
        self._lock = threading.Lock()
        self._inbox = _Inbox()
        self._state = robot.read_state()
        self._time_offset = 0.0
        self._now = self._state.timestamp
        self._last_fresh = time.perf_counter()
        self._objects = sorted(self._state.objects)
        self._gripper_target = self._state.gripper_width
        self._arm_request: Callable[[float], Command] | None = None  # tick time -> requested command
        self._request_time = -np.inf  # heartbeat of the current request
        self._pending_move: tuple[int, ResetRequest] | None = None
        self._seen_resets: collections.deque[int] = collections.deque(maxlen=1000)
        self._last_image_slot = -1
        self._events_file = open(config.events_log, "a") if config.events_log else None  # noqa: SIM115

        t = transport
        self._pub = {
            "joints": t.publisher(topics.JOINT_STATES, "sensor_msgs/msg/JointState", topics.SENSOR),
            "tool": t.publisher(topics.TOOL_POSE, "geometry_msgs/msg/PoseStamped", topics.SENSOR),
            "gripper": t.publisher(topics.GRIPPER_STATE, "sensor_msgs/msg/JointState", topics.SENSOR),
            "spec": t.publisher(topics.SPEC, "std_msgs/msg/String", topics.LATCHED),
            "events": t.publisher(topics.SAFETY_EVENTS, "std_msgs/msg/String", topics.EVENTS),
            "reset_done": t.publisher(topics.RESET_DONE, "std_msgs/msg/String", topics.DEFAULT),
        }
        if self._objects:
            self._pub["objects"] = t.publisher(topics.OBJECT_POSES, "geometry_msgs/msg/PoseArray", topics.SENSOR)
        if config.publish_clock:
            self._pub["clock"] = t.publisher(topics.CLOCK, "rosgraph_msgs/msg/Clock", topics.DEFAULT)
        for camera in config.cameras:
            self._pub[f"image/{camera}"] = t.publisher(topics.image_topic(camera), "sensor_msgs/msg/Image", topics.DEFAULT)
            if config.compressed_images:
                self._pub[f"jpeg/{camera}"] = t.publisher(topics.compressed_image_topic(camera),
                                                          "sensor_msgs/msg/CompressedImage", topics.DEFAULT)
        self._subscriptions = [
            t.subscribe(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray", self._on_joint_positions),
            t.subscribe(topics.JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory", self._on_trajectory),
            t.subscribe(topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped", self._on_tool_target),
            t.subscribe(topics.TOOL_TWIST, "geometry_msgs/msg/TwistStamped", self._on_tool_twist),
            t.subscribe(topics.GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray", self._on_gripper),
            t.subscribe(topics.ESTOP, "std_msgs/msg/Bool", self._on_estop),
            t.subscribe(topics.RESET, "std_msgs/msg/String", self._on_reset),
        ]
        control = {"state_hz": config.state_hz, "cameras": list(config.cameras), "reset_mode": config.reset_mode,
                   "command_timeout": config.safety.command_timeout, "image_hz": config.image_hz,
                   "image_size": [config.image_height, config.image_width]}
        self._pub["spec"].publish(t.message("std_msgs/msg/String",
                                            data=conv.spec_to_json(robot.spec, self._objects, control)))
        self.supervisor.reset(self._state)
        self._publish_state()

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, max_ticks: int | None = None) -> BridgeStats:
        """Tick until ``stop`` is set (or ``max_ticks`` ticks); returns loop statistics."""
        deadline = self._last_fresh = time.perf_counter()
        while not stop.is_set() and (max_ticks is None or self.stats.ticks < max_ticks):
            self.step()
            if not self.config.real_time:
                continue
            deadline += self.tick
            delay = deadline - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                self.stats.overruns += 1
                self.stats.worst_lateness = max(self.stats.worst_lateness, -delay)
                if -delay > 0.1:  # far behind (machine stalled): restart the schedule, no catch-up burst
                    deadline = time.perf_counter()
        return self.stats

    def step(self) -> None:
        """One tick: commands in, physics/hardware advanced, state out."""
        with self._lock:
            inbox, self._inbox = self._inbox, _Inbox()
        now = self._now
        for problem in inbox.rejected:
            self.supervisor.record_rejection(problem, now)
        for engaged in inbox.estops:
            self.supervisor.set_estop(engaged, now)
        teleported = False
        for request_id, request in inbox.resets:
            if request_id not in self._seen_resets:  # clients re-send until answered
                self._seen_resets.append(request_id)
                teleported |= self._reset(request_id, request)
        if teleported:  # the reset pose is this tick's state; commands that came with it were for the old episode
            self.stats.ticks += 1
            self._publish_state()
            return
        self._take_commands(inbox, now)
        if self._arm_request is not None:
            self.supervisor.submit(self._arm_request(now), self._request_time)
        state_age = time.perf_counter() - self._last_fresh
        self.robot.command(self.supervisor.command_for_tick(self._state, now, state_age, self.tick))
        try:
            self._set_state(self.robot.advance(self.tick))
            self._last_fresh = time.perf_counter()
        except StaleStateError as exc:
            self.stats.stale_ticks += 1
            log.debug("stale state: %s", exc)
        self.stats.ticks += 1
        self._check_move_reset()
        self._publish_state()

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        if self._events_file is not None:
            self._events_file.close()

    # ------------------------------------------------------------------ commands
    def _take_commands(self, inbox: _Inbox, now: float) -> None:
        """Turn the newest arm message into a per-tick command source; the newest kind wins."""
        if inbox.gripper_width is not None:
            self._gripper_target = inbox.gripper_width
            if self._arm_request is None:  # a gripper command alone holds the arm where it is
                held = self._state.joint_pos.copy()
                self._use(lambda _now: JointCommand(held, self._gripper_target), now)
            else:
                self._request_time = now
        if inbox.joint_positions is not None:
            positions = inbox.joint_positions
            self._use(lambda _now: JointCommand(positions, self._gripper_target), now)
        if inbox.trajectory is not None:
            self._use(self._trajectory_request(*inbox.trajectory, now), now)
        if inbox.tool_target is not None:
            pose = inbox.tool_target
            self._use(lambda _now: EndEffectorCommand(pose[:3], pose[3:], self._gripper_target), now)
        if inbox.tool_twist is not None:
            self._use(self._twist_request(inbox.tool_twist, now), now)

    def _use(self, request: Callable[[float], Command], now: float) -> None:
        """Make ``request`` the arm's command source if the supervisor accepts its first command
        (a rejected one leaves the previous source in force)."""
        if self.supervisor.submit(request(now), now):
            self._arm_request, self._request_time = request, now

    def _trajectory_request(self, times: np.ndarray, positions: np.ndarray, start: float) -> Callable[[float], Command]:
        """Follow the points by linear interpolation from the current pose; the trajectory counts
        as a live command until its last point is due."""
        times = np.concatenate([[0.0], times])
        positions = np.vstack([self._state.joint_pos, positions])

        def request(tick_time: float) -> JointCommand:
            self._request_time = min(tick_time, start + times[-1])
            target = np.array([np.interp(tick_time - start, times, column) for column in positions.T])
            return JointCommand(target, self._gripper_target)

        return request

    def _twist_request(self, twist: np.ndarray, start: float) -> Callable[[float], Command]:
        """Integrate the tool velocity into a pose target at every tick; the heartbeat stays at
        the twist's arrival, so a silent teleop device stops the arm after ``command_timeout``."""
        pose = np.concatenate([self._state.ee_pos, self._state.ee_quat])
        last = [start]

        def request(tick_time: float) -> EndEffectorCommand:
            dt, last[0] = tick_time - last[0], tick_time
            pose[:3] += twist[:3] * dt
            angle = float(np.linalg.norm(twist[3:])) * dt
            if angle > 0:
                pose[3:] = quat_multiply(quat_from_axis_angle(twist[3:], angle), pose[3:])
            return EndEffectorCommand(pose[:3].copy(), pose[3:].copy(), self._gripper_target)

        return request

    # ------------------------------------------------------------------ resets
    def _reset(self, request_id: int, request: ResetRequest) -> bool:
        """Start a reset; True if the arm was placed at once (simulation)."""
        self._arm_request, self._request_time = None, -np.inf
        self._gripper_target = request.gripper_width
        if self.config.reset_mode == "move":
            if self._tool_position is not None and not self.supervisor.in_workspace(
                    self._tool_position(np.asarray(request.joint_positions))):
                self._publish_reset_done(request_id, error="the start pose puts the tool outside the safety workspace box")
                return False
            self._pending_move = (request_id, request)
            target = JointCommand(np.asarray(request.joint_positions), request.gripper_width)
            self._use(lambda _now: target, self._now)
            self._request_time = np.inf  # a reset motion is not subject to the heartbeat
            return False
        try:
            self._set_state(self.robot.reset(request))
        except ValueError as exc:
            self._publish_reset_done(request_id, error=str(exc))
            return False
        self.supervisor.reset(self._state)
        self._publish_reset_done(request_id)
        return True

    def _check_move_reset(self) -> None:
        if self._pending_move is None:
            return
        request_id, request = self._pending_move
        if np.max(np.abs(self._state.joint_pos - request.joint_positions)) <= self.config.reset_tolerance:
            self._pending_move = None
            self._arm_request, self._request_time = None, -np.inf
            self.supervisor.reset(self._state)
            self._publish_reset_done(request_id)

    def _publish_reset_done(self, request_id: int, error: str | None = None) -> None:
        body: dict[str, Any] = {"id": request_id, "stamp": self._now}
        if error is not None:
            body["error"] = error
        self._pub["reset_done"].publish(self.transport.message("std_msgs/msg/String", data=json.dumps(body)))

    # ------------------------------------------------------------------ state out
    def _set_state(self, state: RobotState) -> None:
        """Keep stamps strictly increasing although a simulated reset restarts sim time at 0."""
        if state.timestamp + self._time_offset <= self._now:
            self._time_offset = self._now + self.tick - state.timestamp
        self._state = state
        self._now = state.timestamp + self._time_offset

    def _publish_state(self) -> None:
        t, s, now = self.transport, self._state, self._now
        spec = self.robot.spec
        # Joint states last: clients treat it as "this tick is complete".
        self._pub["tool"].publish(conv.pose_stamped(t, now, np.concatenate([s.ee_pos, s.ee_quat])))
        self._pub["gripper"].publish(conv.joint_state(t, now, [conv.GRIPPER_JOINT], [s.gripper_width]))
        if self._objects:
            self._pub["objects"].publish(conv.pose_array(t, now, [s.objects[name] for name in self._objects]))
        self._pub["joints"].publish(conv.joint_state(t, now, spec.joint_names, s.joint_pos, s.joint_vel))
        if "clock" in self._pub:
            self._pub["clock"].publish(t.message("rosgraph_msgs/msg/Clock", clock=conv.time_message(t, now)))
        if self.config.cameras:
            self._publish_images(now)
        for event in self.supervisor.drain_events():
            self._pub["events"].publish(t.message("std_msgs/msg/String", data=event.to_json()))
            if self._events_file is not None:
                self._events_file.write(event.to_json() + "\n")
                self._events_file.flush()

    def _publish_images(self, now: float) -> None:
        slot = int(now * self.config.image_hz)
        if slot == self._last_image_slot:
            return
        self._last_image_slot = slot
        cfg = self.config
        for camera in cfg.cameras:
            image = self._render(camera, cfg.image_height, cfg.image_width)
            self._pub[f"image/{camera}"].publish(self.transport.message(
                "sensor_msgs/msg/Image", header=conv.header(self.transport, now, camera), height=image.shape[0],
                width=image.shape[1], encoding="rgb8", is_bigendian=0, step=image.shape[1] * 3, data=image.tobytes()))
            if cfg.compressed_images:
                self._pub[f"jpeg/{camera}"].publish(self.transport.message(
                    "sensor_msgs/msg/CompressedImage", header=conv.header(self.transport, now, camera),
                    format="jpeg", data=_jpeg(image)))

    # ------------------------------------------------------------------ callbacks (transport threads)
    def _on_joint_positions(self, message: Any) -> None:
        positions = np.asarray(message.data, dtype=float)
        with self._lock:
            self.stats.commands_received += 1
            if positions.shape != (self.robot.spec.n_joints,):
                self._inbox.rejected.append(f"joint command needs {self.robot.spec.n_joints} positions, "
                                            f"got {positions.size}")
            else:
                self._inbox.joint_positions = positions

    def _on_trajectory(self, message: Any) -> None:
        names = list(message.joint_names)
        problem = None
        if sorted(names) != sorted(self.robot.spec.joint_names):
            problem = f"trajectory joints {names} are not this arm's {list(self.robot.spec.joint_names)}"
        elif not message.points:
            problem = "trajectory has no points"
        if problem is None:
            order = [names.index(name) for name in self.robot.spec.joint_names]
            times = np.array([seconds_of(point.time_from_start) for point in message.points])
            positions = np.array([np.asarray(point.positions, dtype=float)[order] for point in message.points])
            if np.any(np.diff(times) <= 0) or times[0] <= 0:
                problem = f"trajectory times must increase from above 0, got {times.tolist()}"
            elif not np.all(np.isfinite(positions)):
                problem = "non-finite trajectory positions"
        with self._lock:
            self.stats.commands_received += 1
            if problem is None:
                self._inbox.trajectory = (times, positions)
            else:
                self._inbox.rejected.append(problem)

    def _on_tool_target(self, message: Any) -> None:
        pose = conv.pose_of(message.pose)
        with self._lock:
            self.stats.commands_received += 1
            self._inbox.tool_target = pose

    def _on_tool_twist(self, message: Any) -> None:
        lin, ang = message.twist.linear, message.twist.angular
        twist = np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=float)
        with self._lock:
            self.stats.commands_received += 1
            if np.all(np.isfinite(twist)):
                self._inbox.tool_twist = twist
            else:
                self._inbox.rejected.append(f"non-finite twist {twist.tolist()}")

    def _on_gripper(self, message: Any) -> None:
        values = list(message.data)
        with self._lock:
            self.stats.commands_received += 1
            if len(values) == 1 and np.isfinite(values[0]):
                self._inbox.gripper_width = float(values[0])
            else:
                self._inbox.rejected.append(f"gripper command needs one finite opening in m, got {values}")

    def _on_estop(self, message: Any) -> None:
        with self._lock:
            self._inbox.estops.append(bool(message.data))

    def _on_reset(self, message: Any) -> None:
        try:
            request = conv.reset_from_json(message.data)
        except ValueError as exc:
            with self._lock:
                self._inbox.rejected.append(str(exc))
            return
        with self._lock:
            self._inbox.resets.append(request)


def _jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()

