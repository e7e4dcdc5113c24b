"""``Ros2Arm``: the :class:`~robot_rl.robot.Robot` protocol as a client of an arm bridge node.

``ArmEnv`` runs over ROS 2 unchanged::

    env = gymnasium.make("RobotRL/ArmPickCube-v0", robot="ros2")

finds the bridge (``robot-rl bridge --robot sim`` or a real arm's bridge) through its latched
``robot_rl/spec`` topic, then each ``env.step`` publishes one command and waits for the first
state stamped at least one control period after the state the command was based on. Stamps are
the robot's clock (sim time for the MuJoCo twin), so the control rate is exact in robot time and
the wait ends as soon as that state arrives. No such state within ``state_timeout`` beyond the
period raises :class:`~robot_rl.robot.StaleStateError` after asking the arm to hold; the bridge's
own watchdogs hold the arm independently if this client dies or stalls.

Safety stops: the client follows the bridge's ``robot_rl/safety_events`` (transient-local, so a
client that connects late still hears the recent ones). While the bridge reports its e-stop
engaged (an ``estop_engaged`` event not yet followed by ``estop_released``, whoever sent it;
releasing takes a local action on the bridge's host, see :meth:`Ros2Arm.estop`),
``advance`` and ``reset`` raise :class:`~robot_rl.robot.SafetyStopError`; ``advance`` first asks
the arm to hold where it is, so releasing the e-stop does not resume an old target. The event
follows the state of the tick that applied the stop, so the error comes at the first step that
ends after the client heard it (at most one step late). Transient holds that end by themselves
(stale state or command, clipping, rate limits) are not stops: they are logged, no error.

Units: metres, radians, seconds; quaternions ``(w, x, y, z)``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import random
import threading
import time
from typing import Any, Mapping

import numpy as np

from robot_rl.envs.config import EnvConfig, Ros2ArmConfig, TransportConfig
from robot_rl.envs.robots import requested_cameras
from robot_rl.hardware import conversions as conv
from robot_rl.hardware import topics
from robot_rl.hardware.transport import Transport, make_transport
from robot_rl.robot import (
    Command,
    EndEffectorCommand,
    JointCommand,
    ResetRequest,
    RobotState,
    SafetyStopError,
    StaleStateError,
)

log = logging.getLogger(__name__)

RESET_RESEND_PERIOD = 0.5  # s
ALARMS = {"estop_engaged", "state_stale", "command_stale", "rejected", "clipped", "step_error",
          "deadline_missed", "estop_release_refused"}  # logged as warnings


class Ros2Arm:
    """A ROS 2 client of an arm bridge node implementing the ``Robot`` protocol.

    Args:
        config: transport (backend, domain, namespace, network) and deadlines.
        cameras: camera name → (height, width) expected in ``RobotState.images``; the bridge
            must publish those cameras at that size.
        transport: an existing transport to share (default: a new one from ``config``).
    """

    def __init__(self, config: Ros2ArmConfig = Ros2ArmConfig(),
                 cameras: Mapping[str, tuple[int, int]] | None = None, transport: Transport | None = None) -> None:
        self.config = config
        self.transport = transport if transport is not None else make_transport(config.transport)
        self._cond = threading.Condition()
        self._spec_text: str | None = None
        self._latest: dict[str, tuple[float, Any]] = {}
        self._reset_done: dict[int, dict[str, Any]] = {}
        self._counts = {"states_received": 0, "states_lost": 0, "commands_sent": 0}
        self._estop_engaged = False  # as last reported by the bridge's safety events
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        t = self.transport
        self._subscriptions = [t.subscribe(topics.SPEC, "std_msgs/msg/String", self._on_spec, topics.LATCHED)]
        try:
            self._await(lambda: self._spec_text is not None, config.connect_timeout, ConnectionError(
                f"no arm bridge answered on {_where(config.transport, topics.SPEC)} within {config.connect_timeout} s; "
                f"start one (`robot-rl bridge --robot sim`) with the same domain id, namespace and network"))
        except ConnectionError:
            self.close()
            raise
        spec, self.objects, self.bridge_control = conv.spec_from_json(self._spec_text)
        # The cameras this client can show are those the bridge publishes (not every camera of
        # the arm behind it).
        self.spec = dataclasses.replace(spec, cameras=tuple(self.bridge_control.get("cameras", [])))
        self.tick = 1.0 / float(self.bridge_control["state_hz"])
        self.cameras = dict(cameras or {})
        self._check_cameras()
        self._state_streams = ("joints", "tool", "gripper") + (("objects",) if self.objects else ())
        self._image_streams = tuple(f"image/{camera}" for camera in self.cameras)
        self._subscriptions += [
            t.subscribe(topics.JOINT_STATES, "sensor_msgs/msg/JointState", self._on_joints, topics.SENSOR),
            t.subscribe(topics.TOOL_POSE, "geometry_msgs/msg/PoseStamped", self._on_tool, topics.SENSOR),
            t.subscribe(topics.GRIPPER_STATE, "sensor_msgs/msg/JointState", self._on_gripper, topics.SENSOR),
            t.subscribe(topics.RESET_DONE, "std_msgs/msg/String", self._on_reset_done, topics.DEFAULT),
            t.subscribe(topics.SAFETY_EVENTS, "std_msgs/msg/String", self._on_event, topics.EVENTS),
        ]
        if self.objects:
            self._subscriptions.append(t.subscribe(topics.OBJECT_POSES, "geometry_msgs/msg/PoseArray",
                                                   self._on_objects, topics.SENSOR))
        for camera in self.cameras:
            self._subscriptions.append(t.subscribe(topics.image_topic(camera), "sensor_msgs/msg/Image",
                                                   lambda msg, camera=camera: self._on_image(camera, msg), topics.DEFAULT))
        self._pub = {
            "joints": t.publisher(topics.JOINT_POSITION_COMMAND, "std_msgs/msg/Float64MultiArray"),
            "tool": t.publisher(topics.TOOL_TARGET, "geometry_msgs/msg/PoseStamped"),
            "gripper": t.publisher(topics.GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray"),
            "reset": t.publisher(topics.RESET, "std_msgs/msg/String", topics.DEFAULT),
            "estop": t.publisher(topics.ESTOP, "std_msgs/msg/Bool"),
        }
        # Reset ids unique across clients: the bridge answers every client on one topic.
        self._reset_id = random.getrandbits(31) << 20
        self._command_stamp = -np.inf
        self._state = self._wait_state(-np.inf, config.connect_timeout)

    # ------------------------------------------------------------------ Robot protocol
    def reset(self, request: ResetRequest) -> RobotState:
        """Raises SafetyStopError while the bridge's e-stop is engaged (also if it engages during
        the reset), StaleStateError if no state follows the reset in time."""
        self._raise_if_stopped("cannot reset")
        self._reset_id += 1
        request_id = self._reset_id
        message = self.transport.message("std_msgs/msg/String", data=conv.reset_to_json(request_id, request))
        # Re-sent until answered: the first one may go out before discovery has matched this
        # publisher with the bridge (the bridge ignores ids it has seen).
        deadline = time.monotonic() + self.config.reset_timeout
        done: dict[str, Any] | None = None
        while done is None:
            self._pub["reset"].publish(message)
            with self._cond:
                if self._cond.wait_for(lambda: request_id in self._reset_done or self._estop_engaged,
                                       RESET_RESEND_PERIOD):
                    if request_id not in self._reset_done:  # the e-stop engaged (flag read under the lock)
                        self._raise_if_stopped(f"reset {request_id} interrupted")
                    done = self._reset_done.pop(request_id)
            if done is None and time.monotonic() > deadline:
                # a RobotError like a stale state: a training run retries the reset with backoff
                raise StaleStateError(f"the bridge did not finish reset {request_id} within "
                                      f"{self.config.reset_timeout} s")
        self._raise_if_stopped(f"reset {request_id} interrupted")  # engaged while the arm was placed
        if "error" in done:
            raise ValueError(f"the bridge refused the reset: {done['error']}")
        self._command_stamp = float(done["stamp"])
        self._state = self._wait_state(self._command_stamp, self.config.state_timeout + self.tick)
        return self._state

    def command(self, command: Command) -> None:
        gripper = conv.float_array(self.transport, [command.gripper_width])
        if isinstance(command, JointCommand):
            self._pub["joints"].publish(conv.float_array(self.transport, command.positions))
        elif isinstance(command, EndEffectorCommand):
            pose = np.concatenate([command.position, command.quat])
            self._pub["tool"].publish(conv.pose_stamped(self.transport, self._state.timestamp, pose))
        else:
            raise TypeError(f"unsupported command {type(command).__name__}")
        self._pub["gripper"].publish(gripper)
        self._counts["commands_sent"] += 2
        with self._cond:
            self._command_stamp = self._latest["joints"][0]

    def advance(self, duration: float) -> RobotState:
        # Half a tick of slack: the bridge's stamps are sums of ticks and need not hit the exact
        # float; the first state at or after the period is the right one either way.
        due = self._command_stamp + duration - 0.5 * self.tick
        try:
            self._state = self._wait_state(due, duration + self.config.state_timeout)
        except StaleStateError:
            self.stop()
            raise
        if self.safety_stopped:
            self.stop()
            raise SafetyStopError(self._stop_message("step not carried out"))
        return self._state

    def read_state(self) -> RobotState:
        with self._cond:
            return self._assemble()

    def stop(self) -> None:
        """Ask the bridge to hold the last measured joint positions."""
        state = self.read_state()
        self.command(JointCommand(state.joint_pos, state.gripper_width))

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions = []
        self.transport.close()

    # ------------------------------------------------------------------ extras
    def estop(self, engaged: bool = True) -> None:
        """Engage (latched) the bridge's e-stop, from anywhere; or release it, which works only on
        the bridge's host as its user: through its local channel (hardware/estop.py), since the
        bridge refuses releases on the public topic. Releasing raises ``ConnectionError`` if no
        bridge for this domain and namespace listens on this host (or it refused)."""
        if engaged:
            self._pub["estop"].publish(self.transport.message("std_msgs/msg/Bool", data=True))
            return
        from robot_rl.hardware.estop import control_socket_path, request

        request(control_socket_path(self.config.transport), "release")

    @property
    def safety_stopped(self) -> bool:
        """True while the bridge reports its e-stop engaged (``advance``/``reset`` raise
        SafetyStopError)."""
        with self._cond:
            return self._estop_engaged

    def traffic(self) -> dict[str, int]:
        """Joint states received, joint states lost (gaps in the bridge's tick stamps) and
        command messages sent, since construction."""
        with self._cond:
            return dict(self._counts)

    def render(self, camera: str, height: int, width: int) -> np.ndarray:
        """Latest image of a camera the bridge publishes (its own size; ``height``/``width`` are
        checked, not resampled)."""
        if camera not in self.cameras:
            raise ValueError(f"camera {camera!r} is not subscribed; pass cameras={{'{camera}': (h, w)}}")
        image = self._state.images[camera]
        if image.shape[:2] != (height, width):
            raise ValueError(f"camera {camera!r} publishes {image.shape[:2]}, not ({height}, {width})")
        return image

    # ------------------------------------------------------------------ internals
    def _check_cameras(self) -> None:
        published = self.bridge_control.get("cameras", [])
        size = tuple(self.bridge_control["image_size"])
        for camera, shape in self.cameras.items():
            if camera not in published:
                raise ValueError(f"the bridge publishes no camera {camera!r} (it publishes {published or 'none'}); "
                                 f"start it with --cameras {camera}")
            if tuple(shape) != size:
                raise ValueError(f"camera {camera!r}: the bridge publishes {size}, the env wants {tuple(shape)}")

    def _raise_if_stopped(self, what: str) -> None:
        if self.safety_stopped:
            raise SafetyStopError(self._stop_message(what))

    def _stop_message(self, what: str) -> str:
        return (f"{what}: the bridge's e-stop is engaged ({_where(self.config.transport, topics.ESTOP)}); "
                f"the arm holds until it is released on the bridge's host: robot-rl bridge estop --release "
                f"--domain-id {self.config.transport.domain_id}"
                + (f" --namespace {self.config.transport.namespace}" if self.config.transport.namespace else ""))

    def _await(self, ready, timeout: float, error: Exception) -> None:
        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                raise error

    def _wait_state(self, due: float, timeout: float) -> RobotState:
        # Images may be up to one image period older than the state (they come at image_hz).
        image_due = due - 1.0 / float(self.bridge_control["image_hz"])
        needed = [(key, due) for key in self._state_streams] + [(key, image_due) for key in self._image_streams]

        def fresh() -> bool:  # evaluated at every incoming message: keep it a flat scan
            return all(key in self._latest and self._latest[key][0] >= stamp for key, stamp in needed)

        with self._cond:
            if not self._cond.wait_for(fresh, timeout):
                have = {key: round(value[0], 4) for key, value in self._latest.items()}
                raise StaleStateError(f"no robot state stamped >= {due:.4f} s within {timeout:.3f} s "
                                      f"(latest stamps: {have}); the arm was asked to hold")
            return self._assemble()

    def _assemble(self) -> RobotState:
        stamp, (position, velocity) = self._latest["joints"]
        tool = self._latest["tool"][1]
        objects = dict(zip(self.objects, self._latest["objects"][1])) if self.objects else {}
        return RobotState(timestamp=stamp, joint_pos=position, joint_vel=velocity, ee_pos=tool[:3],
                          ee_quat=tool[3:], gripper_width=self._latest["gripper"][1], objects=objects,
                          images={c: self._latest[f"image/{c}"][1] for c in self.cameras})

    def _store(self, key: str, stamp: float, value: Any) -> None:
        with self._cond:
            if key == "joints":  # one joint state per bridge tick: stamp gaps are lost states
                if key in self._latest:
                    self._counts["states_lost"] += max(0, round((stamp - self._latest[key][0]) / self.tick) - 1)
                self._counts["states_received"] += 1
            self._latest[key] = (stamp, value)
            self._cond.notify_all()

    # ------------------------------------------------------------------ callbacks (transport threads)
    def _on_spec(self, message: Any) -> None:
        with self._cond:
            self._spec_text = message.data
            self._cond.notify_all()

    def _on_joints(self, message: Any) -> None:
        names = self.spec.joint_names
        self._store("joints", conv.time_of(message),
                    (conv.joint_values(message, names), conv.joint_values(message, names, "velocity")))

    def _on_tool(self, message: Any) -> None:
        self._store("tool", conv.time_of(message), conv.pose_of(message.pose))

    def _on_gripper(self, message: Any) -> None:
        self._store("gripper", conv.time_of(message), float(conv.joint_values(message, [conv.GRIPPER_JOINT])[0]))

    def _on_objects(self, message: Any) -> None:
        self._store("objects", conv.time_of(message), [conv.pose_of(pose) for pose in message.poses])

    def _on_image(self, camera: str, message: Any) -> None:
        image = np.frombuffer(bytes(message.data), dtype=np.uint8).reshape(message.height, message.width, 3)
        self._store(f"image/{camera}", conv.time_of(message), image)

    def _on_reset_done(self, message: Any) -> None:
        body = json.loads(message.data)
        with self._cond:
            self._reset_done[int(body["id"])] = body
            self._cond.notify_all()

    def _on_event(self, message: Any) -> None:
        event = json.loads(message.data)
        if event["kind"] in ("estop_engaged", "estop_released"):
            with self._cond:  # before the event is visible in self.events
                self._estop_engaged = event["kind"] == "estop_engaged"
                self._cond.notify_all()
        self.events.append(event)
        level = logging.WARNING if event["kind"] in ALARMS else logging.INFO
        log.log(level, "bridge safety event %s at t=%.3f s: %s", event["kind"], event["time"], event["detail"])


def make_ros2_arm(config: EnvConfig) -> Ros2Arm:
    """Robot kind ``ros2`` (entry point ``robot_rl.robots: ros2``): a client of the bridge
    reached with ``robot.ros2``, subscribed to the env's cameras."""
    return Ros2Arm(config.robot.ros2, cameras=requested_cameras(config))


def _where(transport: TransportConfig, topic: str) -> str:
    namespace = transport.namespace.rstrip("/")
    return f"{namespace}/{topic} (domain {transport.domain_id}, {transport.network} network)"
