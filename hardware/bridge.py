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

Deadlines (``real_time``: the loop paces itself). Tick *k* is due at the loop's start + *k* /
``state_hz`` (divided by ``time_scale``, below): the loop sleeps until then (an absolute-deadline sleep; with ``spin`` > 0 the last
``spin`` s are spun instead) and keeps each tick's lateness (start minus due time) in
:class:`BridgeStats`. A tick that starts more than half a period late takes the nearest slot and
the slots before it are skipped (``overruns``, ``ticks_skipped``): ticks are never run back to back
to catch up (two ticks always start at least half a period apart), so a stall never becomes a burst
of commands. (The twin's clock advances one tick per tick, so the simulation just runs behind the
wall clock for that moment.) A tick more than ``hold_after_late_periods`` periods late (5: 10 ms at
500 Hz) is a deadline miss: the command source is dropped, so the arm holds its measured pose until
the next command message and no trajectory or twist is continued across the gap; misses are counted
and reported as ``deadline_missed`` safety events, at most one a second with the count since the
last. To keep the due times under load: ``realtime_scheduling`` (``robot-rl bridge --realtime``)
runs the loop thread SCHED_FIFO where permitted (else a nice boost, else as is; logged,
``BridgeStats.scheduling``) and then puts the camera and parser threads back at normal priority
(lowered, they would hold the GIL the loop waits for while other processes have their CPU);
``gc_freeze`` takes the start-up heap out of garbage collection (a full collection holds the GIL
~20 ms otherwise); ``switch_interval`` bounds how long another thread holding the GIL delays a
tick; ``loop_cpu`` pins the thread to a CPU. When the arm paces the loop (a real arm; ``real_time``
off) there is no schedule: a late joint state is the stale-state watchdog's business.

Time scale (``time_scale``, simulation only): the paced loop runs ``time_scale`` robot seconds per
wall second, so its wall period is ``1 / (state_hz * time_scale)``; above 1 the twin runs faster than
real time (benchmarks; ``publish_clock`` gives clients its clock). Lateness, skipped slots and
``hold_after_late_periods`` are counted in those wall periods. The watchdogs keep their meaning in
robot time: the command heartbeat (``safety.command_timeout``) was always measured on the robot's
clock (tick stamps), and the age of the latest state is measured on the wall clock and multiplied by
``time_scale`` before it is held against ``safety.state_timeout``, so both limits mean seconds of the
arm's time whatever the scale. Camera frames are due on the robot clock (``image_hz``), so at a
scale of 4 the camera thread has four times the frames to render per wall second (it drops what it
cannot keep up with). A real arm paces itself: its ``time_scale`` is 1.

The loop thread does only control. Camera images (simulation) are rendered, JPEG-encoded and
published by a camera thread of their own at ``image_hz``: when a frame is due, the loop only
takes a cheap snapshot from the :class:`FrameSource` (the MuJoCo twin copies its integration
state, ~2 µs) and hands it over; the camera thread renders every camera of the newest snapshot
and stamps the images with the tick the snapshot was taken at. If rendering falls behind, older
snapshots are dropped, never the ticks.

Every command message is checked at the edge, before it reaches the inbox, by the one validator
of its type in :mod:`robot_rl.hardware.validation`: size (on the serialised bytes, before anything
is deserialised), type, length, finiteness and range. A refused message is counted
(``BridgeStats.commands_rejected``, ``rejected_by_kind``), logged (rate-limited) and reported as a
``rejected`` safety event at the next tick; the command in force stays in force, and callbacks
never raise. Command topics are subscribed ``raw`` for that: small messages are deserialised and
checked on the transport's delivery thread; trajectories (up to 10,000 points, ~0.1-0.3 s to
deserialise) on a parser thread of the bridge's own, so the delivery thread, which also brings the
e-stop, is never blocked by them. Arrival order decides which arm command is in force, however
long each took to check: a trajectory checked late never replaces a command (or a reset) that
arrived after it.

E-stop authority (:mod:`robot_rl.hardware.estop`): ``true`` on ``robot_rl/estop`` engages the
stop, whoever sent it; ``false`` there is refused and reported (``estop_release_refused``) unless
``estop.release_from_topic`` is on. Releases come through :meth:`ArmBridge.local_estop`, which
``robot-rl bridge`` serves on a local Unix socket (``robot-rl bridge estop --release``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import io
import itertools
import json
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Protocol

import numpy as np

from robot_rl.config import ConfigError
from robot_rl.geometry import quat_from_axis_angle, quat_multiply
from robot_rl.hardware import conversions as conv
from robot_rl.hardware import topics, validation
from robot_rl.hardware.estop import EstopConfig, PendingRequest, security_enforced
from robot_rl.hardware.safety import SafetyConfig, SafetyEvent, SafetySupervisor, ToolPosition
from robot_rl.hardware.transport import Transport, TransportConfig
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
MAX_TRAJECTORY_POINTS = validation.MAX_TRAJECTORY_POINTS
#: Trajectories waiting for the parser thread beyond which further ones are refused (a flood).
MAX_TRAJECTORIES_WAITING = 8
#: ``rejected`` events published per tick at most; more refusals in one tick are summed up in one
#: event (a flood of bad messages must not make the tick publish thousands of events).
MAX_REJECTED_EVENTS_PER_TICK = 100
#: The command topics and the inbox kind each feeds; each kind's checks: ``validation.COMMANDS``.
COMMAND_TOPICS = {
    "joint_positions": topics.JOINT_POSITION_COMMAND,
    "trajectory": topics.JOINT_TRAJECTORY,
    "tool_target": topics.TOOL_TARGET,
    "tool_twist": topics.TOOL_TWIST,
    "gripper_width": topics.GRIPPER_COMMAND,
    "reset": topics.RESET,
}
#: How much lower than the loop's the camera thread's scheduling priority is (Linux nice steps;
#: the GL rasteriser threads it starts inherit it), so a busy CPU delays frames, not ticks.
CAMERA_THREAD_NICENESS = 5
#: Least wall time (s) between two ``deadline_missed`` safety events (misses in between are counted
#: and reported together in the next one).
DEADLINE_REPORT_INTERVAL = 1.0
#: Nice levels the loop thread is raised by when ``realtime_scheduling`` cannot have SCHED_FIFO.
REALTIME_NICE_BOOST = 10


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


@dataclass(frozen=True)
class BridgeConfig:
    """How the bridge node runs (``robot-rl bridge`` flags map onto these)."""

    state_hz: float = 500.0  # ticks per second: commands applied and state published
    real_time: bool = True  # pace the loop to the wall clock (simulation; a real arm paces itself)
    time_scale: float = 1.0  # robot (sim) seconds per wall second of the paced loop; > 1: faster than real time
    publish_clock: bool = False  # sim time on /clock, for nodes run with use_sim_time
    cameras: tuple[str, ...] = ()  # simulated cameras to publish
    image_height: int = 128
    image_width: int = 128
    image_hz: float = 10.0
    compressed_images: bool = False  # also publish JPEG on .../image_raw/compressed
    reset_mode: Literal["teleport", "move"] = "teleport"  # simulation places the arm; hardware drives there
    reset_tolerance: float = 0.01  # rad, "move" resets end when every joint is this close
    events_log: str | None = None  # JSON-lines file of safety events (appended)
    # Timing of the loop thread (see "Deadlines" in the module docstring).
    realtime_scheduling: bool = False  # SCHED_FIFO for the loop thread where permitted, else a nice boost (logged)
    realtime_priority: int = 50  # SCHED_FIFO priority (1-99) with realtime_scheduling
    loop_cpu: int | None = None  # pin the loop thread to this CPU (None: any CPU)
    spin: float = 0.0  # s: the wait for a tick's start ends with this much spinning instead of sleeping
    hold_after_late_periods: float = 5.0  # a tick starting this many periods late holds the arm (deadline_missed)
    gc_freeze: bool = True  # freeze start-up objects, so a full garbage collection takes µs, not ~20 ms
    switch_interval: float | None = 5e-4  # s, GIL switch interval while the loop runs (None: Python's 5 ms)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    estop: EstopConfig = field(default_factory=EstopConfig)  # who may release the e-stop (hardware/estop.py)
    transport: TransportConfig = field(default_factory=TransportConfig)

    def __post_init__(self) -> None:
        for name in ("state_hz", "image_hz", "reset_tolerance", "time_scale"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) > 0):  # NaN fails both
                raise ConfigError(f"bridge.{name}: must be finite and positive, got {getattr(self, name)}")
        if self.time_scale != 1.0 and not self.real_time:
            raise ConfigError(f"bridge.time_scale: {self.time_scale} needs the paced loop (real_time: true); an "
                              f"unpaced loop runs as fast as it can anyway")
        if not 1 <= self.realtime_priority <= 99:
            raise ConfigError(f"bridge.realtime_priority: must be in 1..99, got {self.realtime_priority}")
        if self.loop_cpu is not None and self.loop_cpu < 0:
            raise ConfigError(f"bridge.loop_cpu: must be a CPU number (0, 1, ...), got {self.loop_cpu}")
        wall_tick = 1.0 / (self.state_hz * self.time_scale)
        if not 0 <= self.spin < wall_tick:
            raise ConfigError(f"bridge.spin: must be in [0, one tick = {wall_tick} s of wall time), got {self.spin}")
        if not self.hold_after_late_periods >= 1:
            raise ConfigError(f"bridge.hold_after_late_periods: must be at least 1, got {self.hold_after_late_periods}")
        if self.switch_interval is not None and not self.switch_interval > 0:
            raise ConfigError(f"bridge.switch_interval: must be positive (or null), got {self.switch_interval}")


@dataclass
class _Inbox:
    """Newest message of each kind since the last tick (written by transport threads)."""

    # The newest arm command by arrival: (arrival number, kind, checked value), kind one of
    # joint_positions ((n,) rad), trajectory ((times from start, positions)), tool_target ((7,)
    # pose, unit quaternion) or tool_twist ((6,) linear m/s, angular rad/s).
    arm: tuple[int, str, Any] | None = None
    gripper_width: float | None = None
    estops: list[bool] = field(default_factory=list)  # from the topic, in arrival order (false only if trusted)
    local_estops: list[PendingRequest] = field(default_factory=list)  # from the local channel
    refused_releases: int = 0  # "false" on the topic while estop.release_from_topic is off
    resets: list[tuple[int, int, ResetRequest]] = field(default_factory=list)  # (arrival number, id, request)
    refused_resets: list[tuple[int, str]] = field(default_factory=list)  # answered with an error
    rejected: list[str] = field(default_factory=list)  # details, for rejected events (at most MAX_REJECTED_EVENTS_PER_TICK)
    rejected_unlisted: int = 0  # refusals beyond that


@dataclass
class BridgeStats:
    ticks: int = 0
    overruns: int = 0  # ticks that started over half a period after their scheduled start (slots skipped)
    ticks_skipped: int = 0  # schedule slots skipped after late ticks (the loop never runs ticks back to back)
    deadline_misses: int = 0  # ticks late by more than hold_after_late_periods: arm held, deadline_missed event
    worst_lateness: float = 0.0  # s, the latest start of a tick after its scheduled start
    scheduling: str = "default"  # how the loop thread was scheduled (realtime_scheduling's outcome)
    stale_ticks: int = 0
    commands_received: int = 0  # arm and gripper command messages
    resets_received: int = 0  # reset request messages
    commands_rejected: int = 0  # command and reset messages refused before reaching the arm
    rejected_by_kind: dict[str, int] = field(default_factory=dict)  # commands_rejected by COMMAND_TOPICS kind
    received_by_kind: dict[str, int] = field(default_factory=dict)  # commands_received + resets_received by kind
    step_errors: int = 0  # ticks that raised (logged; the arm was told to hold)
    frames_published: int = 0  # camera snapshots rendered and published (one image per camera)
    frames_dropped: int = 0  # snapshots replaced by a newer one before the camera thread took them
    camera_errors: int = 0  # snapshots whose rendering or publishing raised (logged)
    _durations: np.ndarray = field(default_factory=lambda: np.zeros(TICK_WINDOW), repr=False, compare=False)
    _lateness: np.ndarray = field(default_factory=lambda: np.zeros(TICK_WINDOW), repr=False, compare=False)
    _timed: int = field(default=0, repr=False, compare=False)

    def record_tick(self, seconds: float, lateness: float = 0.0) -> None:
        """Note how long one tick's work took (sleeping excluded) and how late (s) it started after
        its scheduled start (``ArmBridge.run`` calls this; lateness is 0 when the arm paces the loop)."""
        slot = self._timed % TICK_WINDOW
        self._durations[slot], self._lateness[slot] = seconds, lateness
        self._timed += 1

    def tick_durations(self) -> np.ndarray:
        """Work time (s) of the last ticks ``run`` made (at most :data:`TICK_WINDOW`), oldest first."""
        return self._window(self._durations)

    def tick_lateness(self) -> np.ndarray:
        """Start minus scheduled start (s) of the last ticks ``run`` made, oldest first."""
        return self._window(self._lateness)

    def tick_ms(self) -> dict[str, float]:
        """p50 / p99 / max of :meth:`tick_durations` in ms (zeros before the first tick)."""
        return _percentiles_ms(self.tick_durations())

    def lateness_ms(self) -> dict[str, float]:
        """p50 / p99 / max of :meth:`tick_lateness` in ms (zeros before the first tick)."""
        return _percentiles_ms(self.tick_lateness())

    def _window(self, values: np.ndarray) -> np.ndarray:
        if self._timed <= TICK_WINDOW:
            return values[:self._timed].copy()
        return np.roll(values, -(self._timed % TICK_WINDOW))


def _percentiles_ms(seconds: np.ndarray) -> dict[str, float]:
    if seconds.size == 0:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ms = seconds * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(ms.max()), 3)}


class ArmBridge:
    """Serves ``robot`` on ROS 2 through ``transport``.

    Args:
        robot: the arm (``SimArm`` or ``Ros2ControlArm``); the bridge's loop thread owns it.
        transport: publish/subscribe backend (rclpy or DDS).
        config: rates, cameras, reset mode, safety limits.
        tool_position: forward kinematics for the workspace checks of joint targets (supervisor)
            and of reset poses (at the edge); without it neither is checked (logged).
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
        if config.estop.release_from_topic and not security_enforced():
            log.warning("estop.release_from_topic is on but DDS Security is not enforced (ROS_SECURITY_ENABLE=true, "
                        "ROS_SECURITY_STRATEGY=Enforce): any participant of DDS domain %d can release the e-stop",
                        config.transport.domain_id)
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
        self._misses_unreported, self._worst_unreported = 0, 0.0  # deadline misses since the last event
        self._next_miss_report = -np.inf  # wall time (perf_counter) the next deadline_missed event may go out
        self._events_file = open(config.events_log, "a") if config.events_log else None  # noqa: SIM115
        # What incoming messages are checked against (validation.py); objects are placed only by
        # a teleporting (simulated) arm, a moving one ignores the ones a reset names.
        self._limits = validation.ArmLimits(
            robot.spec, config.safety.workspace_low, config.safety.workspace_high, config.safety.max_tool_speed,
            config.safety.max_tool_rotation_speed, tuple(self._objects) if config.reset_mode == "teleport" else None,
            tool_position)
        if tool_position is None:
            log.warning("no forward kinematics for %s: reset poses and joint targets are not checked against "
                        "the workspace box", robot.spec.name)
        self._arrivals = itertools.count()  # arrival numbers of command messages (any transport thread)
        self._arm_seq = -1  # arrival number of the arm command (or reset) in force
        self._rejection_log = validation.RateLimitedLog(log)
        self._parser = _Parser(self._check, MAX_TRAJECTORIES_WAITING)

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
            t.subscribe(topics.ESTOP, "std_msgs/msg/Bool", self._on_estop),
        ]
        # Serialised (raw), so that their size is checked before anything is deserialised.
        self._subscriptions += [
            t.subscribe(topic, validation.COMMANDS[kind].type_name, functools.partial(self._on_command, kind), raw=True)
            for kind, topic in COMMAND_TOPICS.items()
        ]
        control = {"state_hz": config.state_hz, "cameras": list(config.cameras), "reset_mode": config.reset_mode,
                   "command_timeout": config.safety.command_timeout, "image_hz": config.image_hz,
                   "time_scale": config.time_scale,
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
                self._parser.close()
                raise

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, max_ticks: int | None = None) -> BridgeStats:
        """Tick until ``stop`` is set (or ``max_ticks`` ticks); returns loop statistics.

        The calling thread becomes the loop thread: for the duration of the call it gets the
        scheduling of ``config`` (``realtime_scheduling``, ``loop_cpu``, ``switch_interval``,
        ``gc_freeze``), restored when it returns."""
        nice = _thread_nice()
        with _loop_thread(self.config, self.stats):
            if self.config.realtime_scheduling and not self.stats.scheduling.startswith("default"):
                self._unlower_helper_threads(nice)
            return self._loop(stop, max_ticks)

    def _unlower_helper_threads(self, nice: int | None) -> None:
        """Once the loop thread is above every normal thread (SCHED_FIFO, or the nice boost), the
        camera and parser threads go back to the loop's former nice value. Lowered, they lose the
        CPU to other processes while holding the GIL, and the loop thread waits for the GIL
        meanwhile (priority inversion; with cameras and two CPU burners: 12 → 2 ticks late by a
        period or more in 6 s, benchmarks/results/control_loop_cameras.json). Their GL worker
        threads, which do not hold the GIL, stay lowered."""
        helpers = (self._camera_stream, getattr(self, "_parser", None))
        for thread in (getattr(helper, "_thread", None) for helper in helpers):
            if nice is None or thread is None or thread.native_id is None or not thread.is_alive():
                continue
            try:
                os.setpriority(os.PRIO_PROCESS, thread.native_id, nice)
            except OSError as exc:
                log.debug("could not restore the %s thread's priority: %s", thread.name, exc)

    def _loop(self, stop: threading.Event, max_ticks: int | None) -> BridgeStats:
        # Every tick advances the robot by self.tick; the wall period is shorter by time_scale.
        stats, period, paced = self.stats, self.tick / self.config.time_scale, self.config.real_time
        spin, hold_after = self.config.spin, self.config.hold_after_late_periods * period
        scheduled = self._last_fresh = time.perf_counter()  # start of the next tick's slot
        while not stop.is_set() and (max_ticks is None or stats.ticks < max_ticks):
            lateness = 0.0
            if paced:
                _sleep_until(scheduled, spin)
                lateness = time.perf_counter() - scheduled
                if lateness > 0.5 * period:  # take the nearest slot, skip those before it: never a burst
                    skipped = int(lateness / period + 0.5)
                    stats.overruns += 1
                    stats.ticks_skipped += skipped
                    scheduled += skipped * period
                stats.worst_lateness = max(stats.worst_lateness, lateness)
                if lateness > hold_after:
                    self._deadline_missed(lateness)
            started, ticks = time.perf_counter(), stats.ticks
            if self._misses_unreported and started >= self._next_miss_report:
                self._report_deadline_misses(started)
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - one failed tick must not end the node
                stats.ticks = ticks + 1
                self._step_failed(exc)
            stats.record_tick(time.perf_counter() - started, lateness)
            scheduled += period
        return stats

    def _deadline_missed(self, lateness: float) -> None:
        """A tick starts more than ``hold_after_late_periods`` late (the machine or the process
        stalled): the arm holds where it is measured until the next command message, so no
        command source (a trajectory, a twist) is continued across the gap; a reset motion in
        progress carries on (its target does not depend on time). Counted, logged and reported
        as a ``deadline_missed`` safety event, at most one per :data:`DEADLINE_REPORT_INTERVAL`."""
        self.stats.deadline_misses += 1
        self._misses_unreported += 1
        self._worst_unreported = max(self._worst_unreported, lateness)
        if self._pending_move is None and self._arm_request is not None:
            self._arm_request, self._request_time = None, -np.inf
            self.supervisor.reset(self._state)  # the supervisor holds the measured pose until a new command
        now = time.perf_counter()
        if now >= self._next_miss_report:
            self._report_deadline_misses(now)

    def _report_deadline_misses(self, now: float) -> None:
        count, worst = self._misses_unreported, self._worst_unreported
        self._misses_unreported, self._worst_unreported = 0, 0.0
        self._next_miss_report = now + DEADLINE_REPORT_INTERVAL
        detail = (f"{count} tick(s) started late (worst {worst * 1e3:.1f} ms, {worst / self.tick:.1f} periods; "
                  f"{self.stats.deadline_misses} in all); slots skipped, the arm held until the next command")
        log.warning("bridge loop missed its deadline: %s", detail)
        self._bridge_events.append(SafetyEvent(float(self._now), "deadline_missed", detail))

    def step(self) -> None:
        """One tick: commands in, physics/hardware advanced, state out."""
        with self._lock:
            inbox, self._inbox = self._inbox, _Inbox()
        now = self._now
        self._report_rejections(inbox, now)
        for request_id, problem in inbox.refused_resets:
            self._publish_reset_done(request_id, error=problem)
        self._apply_estops(inbox, now)
        teleported = False
        for seq, request_id, request in inbox.resets:
            if request_id not in self._seen_resets:  # clients re-send until answered
                self._seen_resets.append(request_id)
                self._arm_seq = max(self._arm_seq, seq)  # arm commands that arrived before it are for the old episode
                teleported |= self._reset(request_id, request)
        if teleported:  # the reset pose is this tick's state; commands that came with it were for the old episode
            self.stats.ticks += 1
            self._publish_state()
            return
        self._take_commands(inbox, now)
        if self._arm_request is not None:
            self.supervisor.submit(self._arm_request(now), self._request_time)
        # In robot seconds, like the command heartbeat: at time_scale 4 a wall second is 4 s of the arm's.
        state_age = (time.perf_counter() - self._last_fresh) * self.config.time_scale
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
        self._parser.close()
        if self._camera_stream is not None:
            self._camera_stream.close()
        if self._events_file is not None:
            self._events_file.close()

    # ------------------------------------------------------------------ e-stop authority
    def local_estop(self, command: str, source: str, timeout: float = 2.0) -> dict[str, Any]:
        """Engage, release or report the e-stop for the local channel (any thread; see
        :mod:`robot_rl.hardware.estop`): the request is applied at the next tick and answered
        once it has been, as ``{"ok", "estop_engaged", "detail"}``. ``source`` names the caller in
        the safety event."""
        if command in ("engage", "release"):
            request = PendingRequest(command == "engage", source)
            with self._lock:
                self._inbox.local_estops.append(request)
            if not request.wait(timeout):
                return {"ok": False, "error": f"the bridge loop did not apply the {command} within {timeout} s "
                                              f"(is it running?); nothing was changed"}
        engaged = self.supervisor.estop_engaged
        return {"ok": True, "estop_engaged": engaged,
                "detail": "e-stop engaged: the arm holds" if engaged else "e-stop released: commands accepted"}

    def _apply_estops(self, inbox: _Inbox, now: float) -> None:
        """This tick's e-stop requests, releases before engages: a stop arriving in the same tick
        as a release is never undone by it. Refused topic releases are reported."""
        local = [request for request in inbox.local_estops if request.take()]
        requests = [(engaged, f"{topics.ESTOP} topic") for engaged in inbox.estops]
        requests += [(request.engaged, request.source) for request in local]
        for engaged, source in sorted(requests, key=lambda r: r[0]):  # False (release) first; stable
            self.supervisor.set_estop(engaged, now, source)
        if inbox.refused_releases:
            self.supervisor.refuse_release(inbox.refused_releases, now, topics.ESTOP)
        for request in local:
            request.done()

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
        """Turn the newest arm message into a per-tick command source. The newest by arrival wins:
        one that arrived before the command (or reset) in force -- a trajectory whose check on the
        parser thread finished late -- is dropped."""
        if inbox.gripper_width is not None:
            self._gripper_target = inbox.gripper_width
            if self._arm_request is None:  # a gripper command alone holds the arm where it is
                held = self._state.joint_pos.copy()
                self._use(lambda _now: JointCommand(held, self._gripper_target), now)
            else:
                self._request_time = now
        if inbox.arm is None:
            return
        seq, kind, value = inbox.arm
        if seq < self._arm_seq:
            log.debug("dropped a %s that arrived before the command in force", kind)
            return
        self._arm_seq = seq
        if kind == "joint_positions":
            self._use(lambda _now: JointCommand(value, self._gripper_target), now)
        elif kind == "trajectory":
            self._use(self._trajectory_request(*value, now), now)
        elif kind == "tool_target":
            self._use(lambda _now: EndEffectorCommand(value[:3], value[3:], self._gripper_target), now)
        else:
            self._use(self._twist_request(value, now), now)

    def _use(self, request: Callable[[float], Command], now: float) -> None:
        """Make ``request`` the arm's command source if the supervisor accepts its first command
        (a rejected one leaves the previous source in force and counts as rejected; with every
        message checked at the edge this is a second line of defence, not expected to trigger)."""
        if self.supervisor.submit(request(now), now):
            self._arm_request, self._request_time = request, now
        else:
            with self._lock:
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
        if self.config.reset_mode == "move":  # joint limits and the tool's workspace were checked at the edge
            self._pending_move = (request_id, request)
            target = JointCommand(np.asarray(request.joint_positions), request.gripper_width)
            self._use(lambda _now: target, self._now)
            self._request_time = np.inf  # a reset motion is not subject to the heartbeat
            return False
        try:
            self._set_state(self.robot.reset(request))
        except ValueError as exc:  # what only the robot can tell (SimArm: an object it cannot grasp); nothing changed
            detail = f"reset request {request_id}: {exc}"[:500]
            with self._lock:
                self._count_rejection("reset")
            self._rejection_log.warning(f"refused a reset message: {detail}")
            self._bridge_events.append(SafetyEvent(float(self._now), "rejected", detail))
            self._publish_reset_done(request_id, error=detail)
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
    # Each command message is checked at the edge by its validator (validation.COMMANDS) and goes
    # into the inbox only if it passes; a refused one is counted, logged (rate-limited) and
    # reported as a ``rejected`` safety event at the next tick, and the command in force stays in
    # force. Callbacks never raise.
    def _on_command(self, kind: str, data: bytes) -> None:
        """A serialised command message of ``kind`` (a transport thread): its size is checked at
        once; then it is deserialised and checked here, or, if large (trajectories), on the parser
        thread."""
        seq, check = next(self._arrivals), validation.COMMANDS[kind]
        try:
            check.screen(data, self._limits)
        except validation.RejectedMessage as exc:
            self._settle(kind, seq, exc)
            return
        if not check.large:
            self._check((kind, seq, data))
        elif not self._parser.offer((kind, seq, data)):
            self._settle(kind, seq, validation.RejectedMessage(
                f"{MAX_TRAJECTORIES_WAITING} trajectories are already waiting to be checked; this one is dropped"))

    def _check(self, item: tuple[str, int, bytes]) -> None:
        """Deserialise and check a screened message (a transport thread, or the parser thread)."""
        kind, seq, data = item
        try:
            outcome = validation.COMMANDS[kind].parse(data, self._limits, self.transport.deserialize)
        except validation.RejectedMessage as exc:
            outcome = exc
        self._settle(kind, seq, outcome)

    def _settle(self, kind: str, seq: int, outcome: Any) -> None:
        """Count a checked message and put it in the inbox, or refuse it (``outcome`` is then the
        :class:`~robot_rl.hardware.validation.RejectedMessage`)."""
        refused = isinstance(outcome, validation.RejectedMessage)
        detail = f"{kind.replace('_', ' ')}: {outcome}"[:500] if refused else ""
        with self._lock:
            if kind == "reset":
                self.stats.resets_received += 1
            else:
                self.stats.commands_received += 1
            self.stats.received_by_kind[kind] = self.stats.received_by_kind.get(kind, 0) + 1
            inbox = self._inbox
            if refused:
                self._count_rejection(kind)
                if len(inbox.rejected) < MAX_REJECTED_EVENTS_PER_TICK:
                    inbox.rejected.append(detail)
                else:
                    inbox.rejected_unlisted += 1
                if outcome.request_id is not None:  # answer, so the client does not wait for its timeout
                    inbox.refused_resets.append((outcome.request_id, str(outcome)[:500]))
            elif kind == "reset":
                inbox.resets.append((seq, *outcome))
            elif kind == "gripper_width":
                inbox.gripper_width = outcome
            elif inbox.arm is None or seq > inbox.arm[0]:  # the newest by arrival (trajectories are checked late)
                inbox.arm = (seq, kind, outcome)
        if refused:
            self._rejection_log.warning(f"refused a {detail}")

    def _count_rejection(self, kind: str) -> None:
        """Count one refused message of ``kind`` (call with ``self._lock`` held)."""
        self.stats.commands_rejected += 1
        self.stats.rejected_by_kind[kind] = self.stats.rejected_by_kind.get(kind, 0) + 1

    def _report_rejections(self, inbox: _Inbox, now: float) -> None:
        """This tick's ``rejected`` safety events (loop thread)."""
        self._bridge_events += [SafetyEvent(float(now), "rejected", detail) for detail in inbox.rejected]
        if inbox.rejected_unlisted:
            self._bridge_events.append(SafetyEvent(float(now), "rejected", (
                f"{inbox.rejected_unlisted} more messages refused since the last tick (more than "
                f"{MAX_REJECTED_EVENTS_PER_TICK} in one tick are not listed one by one; counted in the bridge's statistics)")))

    def wait_until_checked(self, timeout: float = 10.0) -> bool:
        """Wait until every message handed to the parser thread has been checked and settled
        (tests, before they tick); False if ``timeout`` (s) passed first."""
        return self._parser.wait_idle(timeout)

    def _on_estop(self, message: Any) -> None:
        try:
            engaged = bool(message.data)
        except Exception:  # noqa: BLE001 - cannot happen with a Bool; never raise into the transport
            log.exception("unreadable e-stop message: engaging the e-stop")
            engaged = True
        with self._lock:
            if engaged or self.config.estop.release_from_topic:
                self._inbox.estops.append(engaged)
            else:  # anyone on the DDS domain can publish here: releasing needs the local channel
                self._inbox.refused_releases += 1


class _Parser:
    """Deserialises and checks large messages (trajectories) on a thread of its own, so that the
    transport's delivery thread, which also brings the e-stop, is never blocked for the 0.1-0.3 s a
    10,000-point trajectory takes. At most ``depth`` wait; :meth:`offer` refuses more (a flood).
    The thread runs a few nice levels below the loop thread, like the camera thread."""

    def __init__(self, work: Callable[[Any], None], depth: int) -> None:
        self._work = work
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bridge-parser", daemon=True)
        self._thread.start()

    def offer(self, item: Any) -> bool:
        """Queue ``item`` for ``work``; False if ``depth`` items wait already (or closed)."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return False

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every offered item has been worked on; False after ``timeout`` s."""
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after the items queued so far."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout)  # there is room as soon as the thread takes an item
        except queue.Full:
            log.warning("the parser thread is still busy after %.0f s; leaving it (daemon)", timeout)
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        _lower_thread_priority(CAMERA_THREAD_NICENESS)
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._work(item)
            except Exception:  # noqa: BLE001 - work refuses what it cannot check; this is a bug, logged
                log.exception("checking a message on the parser thread failed")
            finally:
                self._queue.task_done()


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


def _sleep_until(deadline: float, spin: float) -> None:
    """Wait until ``deadline`` (``time.perf_counter`` s): sleep until ``spin`` s before it, then
    spin, so the thread's wake-up latency (timer slack, the scheduler) is spent before the deadline
    rather than after it. (Python's ``time.sleep`` is an absolute-deadline ``clock_nanosleep``.)"""
    remaining = deadline - time.perf_counter()
    if remaining > spin:
        time.sleep(remaining - spin)
    while time.perf_counter() < deadline:
        pass


@contextlib.contextmanager
def _loop_thread(config: BridgeConfig, stats: BridgeStats) -> Iterator[None]:
    """The calling thread's scheduling while it runs the loop; everything is undone on exit.

    * ``gc_freeze``: collect once, then freeze every object that exists (the robot, MuJoCo, the
      transport, the message classes), so a full collection, which runs on whichever thread
      allocates and holds the GIL throughout, walks only what was made since (µs, not ~20 ms);
    * ``switch_interval``: how long another thread holding the GIL (a transport callback, the
      camera thread) may keep the loop thread waiting for it;
    * ``realtime_scheduling``: SCHED_FIFO at ``realtime_priority`` (needs CAP_SYS_NICE or an
      RLIMIT_RTPRIO); refused, the thread's nice value is lowered by :data:`REALTIME_NICE_BOOST`;
      refused too, it stays as it was. The outcome is logged and kept in ``stats.scheduling``;
    * ``loop_cpu``: the thread runs on that CPU only.
    """
    undo: list[Callable[[], Any]] = []
    try:
        if config.gc_freeze:
            gc.collect()
            gc.freeze()
            undo.append(gc.unfreeze)
        if config.switch_interval is not None:
            previous_interval = sys.getswitchinterval()
            sys.setswitchinterval(config.switch_interval)
            undo.append(lambda: sys.setswitchinterval(previous_interval))
        if config.realtime_scheduling:
            stats.scheduling = _raise_thread_priority(config.realtime_priority, undo)
        if config.loop_cpu is not None:
            _pin_thread(config.loop_cpu, undo)
        yield
    finally:
        for action in reversed(undo):
            try:
                action()
            except OSError as exc:  # e.g. a CPU taken offline meanwhile
                log.warning("could not restore the loop thread's scheduling: %s", exc)


def _raise_thread_priority(priority: int, undo: list[Callable[[], Any]]) -> str:
    """SCHED_FIFO for the calling thread, else a nice boost, else nothing; says which."""
    if not hasattr(os, "sched_setscheduler"):
        log.warning("realtime scheduling of the bridge loop asked for, but this platform has no SCHED_FIFO; "
                    "running with default scheduling")
        return "default (no SCHED_FIFO on this platform)"
    try:  # pid 0: the calling thread (Linux schedules threads, not processes)
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        undo.append(lambda: os.sched_setscheduler(0, policy, param))
        log.info("bridge loop thread: SCHED_FIFO priority %d", priority)
        return f"SCHED_FIFO {priority}"
    except OSError as exc:
        refused = f"SCHED_FIFO refused: {exc.strerror or exc}"
    tid = threading.get_native_id()
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(-20, nice - REALTIME_NICE_BOOST))
        undo.append(lambda: os.setpriority(os.PRIO_PROCESS, tid, nice))
        outcome = f"nice {max(-20, nice - REALTIME_NICE_BOOST)} ({refused})"
    except OSError as exc:
        outcome = f"default ({refused}; raising the nice priority refused: {exc.strerror or exc})"
    log.warning("realtime scheduling of the bridge loop asked for but not permitted; running with %s. Grant "
                "CAP_SYS_NICE (setcap cap_sys_nice+ep on the interpreter) or an rtprio limit "
                "(/etc/security/limits.conf) to get it", outcome)
    return outcome


def _thread_nice() -> int | None:
    """The calling thread's nice value (None where threads have none of their own)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return None


def _pin_thread(cpu: int, undo: list[Callable[[], Any]]) -> None:
    if not hasattr(os, "sched_setaffinity"):
        log.warning("bridge.loop_cpu=%d ignored: no CPU affinity on this platform", cpu)
        return
    previous = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("could not pin the bridge loop thread to CPU %d (%s); it runs on any CPU", cpu, exc)
        return
    undo.append(lambda: os.sched_setaffinity(0, previous))


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

