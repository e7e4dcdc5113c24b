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
A tick that raises is logged and counted, the arm is told to hold, and the loop goes on.

The loop thread does only control. Camera images (simulation) are rendered, JPEG-encoded and
published by a camera thread of their own at ``image_hz``: when a frame is due, the loop only
takes a cheap snapshot from the :class:`FrameSource` (the MuJoCo twin copies its integration
state, ~2 µs) and hands it over; the camera thread renders every camera of the newest snapshot
and stamps the images with the tick the snapshot was taken at. If rendering falls behind, older
snapshots are dropped, never the ticks.

Every command path checks its message at the edge (in the subscription callback): wrong length,
non-finite values or an unreadable message are refused, counted (``BridgeStats.commands_rejected``)
and reported as a ``rejected`` safety event at the next tick; nothing refused reaches the inbox,
and callbacks never raise.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import numpy as np

from robot_rl.config import ConfigError
from robot_rl.geometry import quat_from_axis_angle, quat_multiply
from robot_rl.hardware import conversions as conv
from robot_rl.hardware import topics
from robot_rl.hardware.safety import SafetyConfig, SafetyEvent, SafetySupervisor, ToolPosition
from robot_rl.hardware.transport import Transport, TransportConfig, seconds_of
from robot_rl.robot import (
    Command,
    EndEffectorCommand,
    JointCommand,
    ResetRequest,
    Robot,
    RobotState,
    StaleStateError,
)

log = logging.getLogger(__name__)

#: Tick durations kept for :meth:`BridgeStats.tick_ms` (the last ~65 s at 500 Hz).
TICK_WINDOW = 1 << 15
#: Longest trajectory accepted, in points (its interpolation runs on every tick).
MAX_TRAJECTORY_POINTS = 10_000
#: How much lower than the loop's the camera thread's scheduling priority is (Linux nice steps;
#: the GL rasteriser threads it starts inherit it), so a busy CPU delays frames, not ticks.
CAMERA_THREAD_NICENESS = 5


class FrameSource(Protocol):
    """Camera images for the bridge, split so that the loop thread only takes a cheap copy.

    ``snapshot`` runs on the loop thread (which owns the robot) when a frame is due and must be
    cheap; ``render`` and ``close`` run only on the bridge's camera thread, which therefore owns
    whatever rendering needs (an OpenGL context belongs to the thread that made it current).
    """

    def snapshot(self) -> Any:
        """What the cameras see now (loop thread; microseconds, not a render)."""

    def render(self, snapshot: Any, camera: str, height: int, width: int) -> np.ndarray:
        """RGB ``(height, width, 3)`` uint8 image of ``camera`` at ``snapshot`` (camera thread)."""

    def close(self) -> None:
        """Release rendering resources (camera thread, when it ends)."""


class _Refused(ValueError):
    """A command message refused at the edge; the text says why."""


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
    refused_resets: list[tuple[int, str]] = field(default_factory=list)  # answered with an error
    rejected: list[str] = field(default_factory=list)


@dataclass
class BridgeStats:
    ticks: int = 0
    overruns: int = 0  # ticks that ended after their wall-clock deadline
    worst_lateness: float = 0.0  # s
    stale_ticks: int = 0
    commands_received: int = 0  # arm and gripper command messages
    commands_rejected: int = 0  # command and reset messages refused before reaching the arm
    step_errors: int = 0  # ticks that raised (logged; the arm was told to hold)
    frames_published: int = 0  # camera snapshots rendered and published (one image per camera)
    frames_dropped: int = 0  # snapshots replaced by a newer one before the camera thread took them
    camera_errors: int = 0  # snapshots whose rendering or publishing raised (logged)
    _durations: np.ndarray = field(default_factory=lambda: np.zeros(TICK_WINDOW), repr=False, compare=False)
    _timed: int = field(default=0, repr=False, compare=False)

    def record_tick(self, seconds: float) -> None:
        """Note how long one tick's work took (``ArmBridge.run`` calls this; sleeping excluded)."""
        self._durations[self._timed % TICK_WINDOW] = seconds
        self._timed += 1

    def tick_durations(self) -> np.ndarray:
        """Work time (s) of the last ticks ``run`` made (at most :data:`TICK_WINDOW`), oldest first."""
        if self._timed <= TICK_WINDOW:
            return self._durations[:self._timed].copy()
        return np.roll(self._durations, -(self._timed % TICK_WINDOW))

    def tick_ms(self) -> dict[str, float]:
        """p50 / p99 / max of :meth:`tick_durations` in ms (zeros before the first tick)."""
        durations = self.tick_durations() * 1e3
        if durations.size == 0:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        p50, p99 = np.percentile(durations, [50, 99])
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(durations.max()), 3)}


class ArmBridge:
    """Serves ``robot`` on ROS 2 through ``transport``.

    Args:
        robot: the arm (``SimArm`` or ``Ros2ControlArm``); the bridge's loop thread owns it.
        transport: publish/subscribe backend (rclpy or DDS).
        config: rates, cameras, reset mode, safety limits.
        tool_position: forward kinematics for the supervisor's workspace check of joint targets.
        frames: camera images for ``config.cameras`` (the simulated arm's, see
            :class:`~robot_rl.hardware.node.SimFrames`), rendered on the bridge's camera thread.
    """

    def __init__(self, robot: Robot, transport: Transport, config: BridgeConfig = BridgeConfig(),
                 tool_position: ToolPosition | None = None, frames: FrameSource | None = None) -> None:
        if config.cameras and frames is None:
            raise ValueError("cameras were asked for but this robot cannot render; real cameras publish "
                             "through their own drivers")
        self.robot, self.transport, self.config = robot, transport, config
        self.tick = 1.0 / config.state_hz
        self.supervisor = SafetySupervisor(robot.spec, config.safety, tool_position)
        self.stats = BridgeStats()
        self._frames = frames if config.cameras else None
        self._camera_stream: _CameraStream | None = None
        self._bridge_events: list[SafetyEvent] = []  # the loop's own events (failed ticks)
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
        if self._frames is not None:
            self._camera_stream = _CameraStream(self._frames, t, self._pub, config, self.stats)
        self._publish_state()
        if self._camera_stream is not None:
            try:  # the first frame: a machine that cannot render fails here, loudly, not later
                self._camera_stream.wait_first_frame(timeout=60.0)
            except BaseException:
                self._camera_stream.close()
                raise

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, max_ticks: int | None = None) -> BridgeStats:
        """Tick until ``stop`` is set (or ``max_ticks`` ticks); returns loop statistics."""
        deadline = self._last_fresh = time.perf_counter()
        while not stop.is_set() and (max_ticks is None or self.stats.ticks < max_ticks):
            started, ticks = time.perf_counter(), self.stats.ticks
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - one failed tick must not end the node
                self.stats.ticks = ticks + 1
                self._step_failed(exc)
            self.stats.record_tick(time.perf_counter() - started)
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
        for request_id, problem in inbox.refused_resets:
            self._publish_reset_done(request_id, error=problem)
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
        if self._camera_stream is not None:
            self._camera_stream.close()
        if self._events_file is not None:
            self._events_file.close()

    def _step_failed(self, exc: Exception) -> None:
        """A tick raised: log it (rate-limited), report a ``step_error`` safety event, give up the
        command source and any move-reset in progress, and tell the arm to hold where it was
        last measured. The next tick starts afresh; the arm holds until a new command arrives."""
        self.stats.step_errors += 1
        count = self.stats.step_errors
        if count <= 10 or count % 1000 == 0:
            log.error("bridge tick %d raised (%d so far); holding the arm", self.stats.ticks, count, exc_info=exc)
        self._bridge_events.append(SafetyEvent(float(self._now), "step_error",
                                               f"{type(exc).__name__}: {exc}; holding position"[:500]))
        self._arm_request, self._request_time = None, -np.inf
        try:
            if self._pending_move is not None:
                request_id, self._pending_move = self._pending_move[0], None
                self._publish_reset_done(request_id, error=f"the bridge failed during the reset ({type(exc).__name__})")
            self.supervisor.reset(self._state)  # forget the command; hold until the next one
            self.robot.command(JointCommand(self._state.joint_pos.copy(), float(self._state.gripper_width)))
        except Exception:  # noqa: BLE001 - the loop goes on; the supervisor holds at the next tick
            log.exception("could not tell the arm to hold after a failed tick")

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
        (a rejected one leaves the previous source in force and counts as rejected)."""
        if self.supervisor.submit(request(now), now):
            self._arm_request, self._request_time = request, now
        else:
            self.stats.commands_rejected += 1

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
        the twist's arrival, so a silent teleop device stops the arm after ``command_timeout``.
        Integration stops then too, so a later gripper command (which renews the heartbeat)
        does not send the arm after a target that kept moving while the device was silent."""
        pose = np.concatenate([self._state.ee_pos, self._state.ee_quat])
        last = [start]
        until = start + self.config.safety.command_timeout

        def request(tick_time: float) -> EndEffectorCommand:
            tick_time = min(tick_time, until)
            dt, last[0] = max(0.0, tick_time - last[0]), tick_time
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
        if self._camera_stream is not None:
            self._offer_frame(now)
        events = self.supervisor.drain_events()
        if self._bridge_events:
            events, self._bridge_events = events + self._bridge_events, []
        for event in events:
            self._pub["events"].publish(t.message("std_msgs/msg/String", data=event.to_json()))
            if self._events_file is not None:
                self._events_file.write(event.to_json() + "\n")
                self._events_file.flush()

    def _offer_frame(self, now: float) -> None:
        """Hand a snapshot to the camera thread when a new frame is due (``image_hz`` slots of the
        robot clock); the images are stamped ``now``."""
        slot = int(now * self.config.image_hz)
        if slot == self._last_image_slot:
            return
        self._last_image_slot = slot
        self._camera_stream.offer(now, self._frames.snapshot())

    # ------------------------------------------------------------------ callbacks (transport threads)
    # Each command message is checked here, at the edge. A malformed one (unreadable, wrong
    # length, non-finite values) is refused: counted in ``stats.commands_rejected``, reported as a
    # ``rejected`` safety event at the next tick, and it never reaches the inbox (the previous
    # command stays in force). Callbacks never raise.
    def _accept(self, kind: str, message: Any, parse: Callable[[Any], Any]) -> None:
        """Parse an arm/gripper command message and put it in the inbox as ``kind``, or refuse it."""
        try:
            value, problem = parse(message), None
        except _Refused as exc:
            value, problem = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a message we cannot read is refused, not raised
            value, problem = None, f"malformed {kind.replace('_', ' ')} message ({type(exc).__name__}: {exc})"
        with self._lock:
            self.stats.commands_received += 1
            if problem is None:
                setattr(self._inbox, kind, value)
            else:
                self._refuse(problem)

    def _refuse(self, problem: str) -> None:
        """Count and report a refused message (call with ``self._lock`` held)."""
        self.stats.commands_rejected += 1
        self._inbox.rejected.append(problem)

    def _on_joint_positions(self, message: Any) -> None:
        self._accept("joint_positions", message,
                     lambda m: _finite_vector(m.data, self.robot.spec.n_joints, "joint command", "positions"))

    def _on_trajectory(self, message: Any) -> None:
        self._accept("trajectory", message, self._parse_trajectory)

    def _parse_trajectory(self, message: Any) -> tuple[np.ndarray, np.ndarray]:
        names, spec = list(message.joint_names), self.robot.spec
        if len(names) != spec.n_joints or sorted(names) != sorted(spec.joint_names):
            raise _Refused(f"trajectory joints {names} are not this arm's {list(spec.joint_names)}")
        if not message.points:
            raise _Refused("trajectory has no points")
        if len(message.points) > MAX_TRAJECTORY_POINTS:
            raise _Refused(f"trajectory has {len(message.points)} points, more than {MAX_TRAJECTORY_POINTS}")
        order = [names.index(name) for name in spec.joint_names]
        times = np.array([seconds_of(point.time_from_start) for point in message.points], dtype=float)
        positions = np.empty((len(message.points), spec.n_joints))
        for i, point in enumerate(message.points):
            values = np.asarray(point.positions, dtype=float)
            if values.shape != (len(names),):
                raise _Refused(f"trajectory point {i} has {values.size} positions for {len(names)} joints")
            positions[i] = values[order]
        if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0) or times[0] <= 0:
            raise _Refused(f"trajectory times must increase from above 0, got {times.tolist()[:20]}")
        if not np.all(np.isfinite(positions)):
            raise _Refused("non-finite trajectory positions")
        return times, positions

    def _on_tool_target(self, message: Any) -> None:
        self._accept("tool_target", message, lambda m: _finite_vector(conv.pose_of(m.pose), 7, "tool target", "values"))

    def _on_tool_twist(self, message: Any) -> None:
        def parse(m: Any) -> np.ndarray:
            lin, ang = m.twist.linear, m.twist.angular
            return _finite_vector([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], 6, "tool twist", "values")

        self._accept("tool_twist", message, parse)

    def _on_gripper(self, message: Any) -> None:
        def parse(m: Any) -> float:
            values = list(m.data)
            if len(values) != 1 or not np.isfinite(values[0]):
                raise _Refused(f"gripper command needs one finite opening in m, got {values[:10]}")
            return float(values[0])

        self._accept("gripper_width", message, parse)

    def _on_estop(self, message: Any) -> None:
        try:
            engaged = bool(message.data)
        except Exception:  # noqa: BLE001 - cannot happen with a Bool; never raise into the transport
            log.exception("unreadable e-stop message: engaging the e-stop")
            engaged = True
        with self._lock:
            self._inbox.estops.append(engaged)

    def _on_reset(self, message: Any) -> None:
        try:
            request = conv.reset_from_json(message.data, self.robot.spec.n_joints)
        except Exception as exc:  # noqa: BLE001 - MalformedResetError, or a message we cannot read
            request_id = getattr(exc, "request_id", None)
            with self._lock:
                self._refuse(str(exc))
                if request_id is not None:  # answer, so the client does not wait for its timeout
                    self._inbox.refused_resets.append((request_id, str(exc)))
            return
        with self._lock:
            self._inbox.resets.append(request)


def _finite_vector(values: Any, size: int, what: str, unit: str) -> np.ndarray:
    """``values`` as a float vector of ``size`` finite numbers, else :class:`_Refused`."""
    array = np.asarray(values, dtype=float)
    if array.shape != (size,):
        raise _Refused(f"{what} needs {size} {unit}, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise _Refused(f"non-finite {what} {array.tolist()}")
    return array


class _CameraStream:
    """Renders, JPEG-encodes and publishes camera frames on a thread of its own.

    The loop thread hands over ``(stamp, snapshot)`` with :meth:`offer` (a swap under a lock; it
    never waits for rendering). The camera thread renders every camera of the newest snapshot
    and publishes the images (raw, and JPEG with ``compressed_images``) stamped ``stamp``, the
    tick the snapshot was taken at. A snapshot replaced before the thread took it is dropped
    (``stats.frames_dropped``). Rendering or publishing errors are logged and counted
    (``stats.camera_errors``) and the thread goes on; :meth:`wait_first_frame` re-raises the
    first frame's error, so a machine that cannot render fails at start-up.
    """

    def __init__(self, source: FrameSource, transport: Transport, publishers: dict[str, Any],
                 config: BridgeConfig, stats: BridgeStats) -> None:
        self._source, self._transport, self._pub = source, transport, publishers
        self._config, self._stats = config, stats
        self._cond = threading.Condition()
        self._pending: tuple[float, Any] | None = None
        self._closing = False
        self._first_done = threading.Event()
        self._first_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="bridge-cameras", daemon=True)
        self._thread.start()

    def offer(self, stamp: float, snapshot: Any) -> None:
        with self._cond:
            if self._pending is not None:
                self._stats.frames_dropped += 1
            self._pending = (stamp, snapshot)
            self._cond.notify()

    def wait_first_frame(self, timeout: float) -> None:
        if not self._first_done.wait(timeout):
            raise RuntimeError(f"the camera thread published no frame within {timeout} s")
        if self._first_error is not None:
            raise self._first_error

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("camera thread still busy %.0f s after close; leaving it (daemon)", timeout)

    def _loop(self) -> None:
        _lower_thread_priority(CAMERA_THREAD_NICENESS)
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending is not None or self._closing)
                    if self._closing:
                        return
                    (stamp, snapshot), self._pending = self._pending, None
                try:
                    self._publish(stamp, snapshot)
                    self._stats.frames_published += 1
                except Exception as exc:  # noqa: BLE001 - a bad frame must not end the stream
                    self._stats.camera_errors += 1
                    if not self._first_done.is_set():
                        self._first_error = exc
                    elif self._stats.camera_errors <= 10 or self._stats.camera_errors % 1000 == 0:
                        log.exception("camera frame at t=%.3f s failed (%d so far)", stamp, self._stats.camera_errors)
                self._first_done.set()
        finally:
            try:
                self._source.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the camera renderer failed")

    def _publish(self, stamp: float, snapshot: Any) -> None:
        cfg, t = self._config, self._transport
        for camera in cfg.cameras:
            image = self._source.render(snapshot, camera, cfg.image_height, cfg.image_width)
            self._pub[f"image/{camera}"].publish(t.message(
                "sensor_msgs/msg/Image", header=conv.header(t, stamp, camera), height=image.shape[0],
                width=image.shape[1], encoding="rgb8", is_bigendian=0, step=image.shape[1] * 3, data=image.tobytes()))
            if cfg.compressed_images:
                self._pub[f"jpeg/{camera}"].publish(t.message(
                    "sensor_msgs/msg/CompressedImage", header=conv.header(t, stamp, camera),
                    format="jpeg", data=_jpeg(image)))


def _lower_thread_priority(steps: int) -> None:
    """Make the calling thread ``steps`` nice levels nicer (Linux, where nice is per thread and
    threads it starts inherit it); elsewhere, or if refused, leave it."""
    if not sys.platform.startswith("linux") or steps <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except OSError as exc:
        log.debug("could not lower the camera thread's priority: %s", exc)


def _jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()

