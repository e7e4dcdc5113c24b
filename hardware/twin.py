"""The reality-gap twin: the MuJoCo arm with physics and timing the learner never trained on.

``robot-rl bridge --twin PROFILE`` serves a :class:`TwinArm` over ROS 2 in its own process, exactly
like a real arm, so tests and benchmarks have a stand-in for the physical robot that is *not* the
training simulator: a policy that only works on the sim it was trained in fails here the way it
would fail on hardware. What differs is described by a :class:`TwinProfile` (YAML, shipped in
``hardware/twins/``; ``default`` is roughly a Franka/UR class arm on a real network, ``identical``
has no gap at all):

* ``dynamics``: fixed :meth:`SimArm.set_dynamics <robot_rl.sim.SimArm.set_dynamics>` scales
  (heavier objects, less friction, other joint damping and controller gains), chosen outside the
  training randomisation ranges of :class:`robot_rl.envs.config.RandomizationConfig`;
* ``latency``: every arm command takes effect a uniformly drawn time after it reached the twin
  (robot time), in arrival order, like commands through a network link and a driver;
* ``gripper``: a gripper that reacts later than the arm, closes at a limited speed and reports its
  width with a calibration offset;
* ``noise``: Gaussian noise on every measurement and fixed calibration biases; object poses are
  "perceived" (noisier, and now and then a frame is lost and the previous pose repeated);
* ``timing``: each state is published a random time after its tick (the loop's grid stays), so
  clients see irregular arrival;
* ``bridge``: bridge settings the profile implies (``state_hz``, ``time_scale``, ...), a layer
  under the command line's.

Frames: measurements are what the arm's sensors say. A joint bias is an encoder offset, so it
applies to joint targets too (a target is in the encoders' frame): holding "where the arm says it
is" holds it still, as on a real arm, while the tool pose the arm reports is off by the bias.

Every random draw comes from the profile's ``seed`` (separate streams for latency, noise and
timing, so the noise a run sees does not depend on how many commands it sent).

Units: metres, radians, seconds (robot time unless said otherwise); quaternions ``(w, x, y, z)``.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robot_rl.config import CheckedConfig, ConfigError, FieldError, bounded, from_dict, read_yaml
from robot_rl.geometry import quat_from_axis_angle, quat_multiply
from robot_rl.hardware.bridge import BridgeConfig
from robot_rl.robot import Command, JointCommand, ResetRequest, RobotState
from robot_rl.sim.sim_arm import DYNAMICS_DEFAULTS, DYNAMICS_OFFSETS, SimArm, check_command

#: Bridge settings a profile may not set: who can reach the arm and release its e-stop is the
#: operator's decision (command line, bridge config), not the arm's.
BRIDGE_KEYS_NOT_IN_PROFILES = frozenset({"transport", "estop"})


@dataclass(frozen=True)
class GripperGap(CheckedConfig):
    """How the twin's gripper differs from the training sim's."""

    delay: float = bounded(0.0, ge=0, le=1.0)  # s a width command takes effect after the arm part of its command
    max_speed: float | None = bounded(None, gt=0)  # m/s the opening changes at most (None: the sim servo's own speed)
    width_offset: float = bounded(0.0, ge=-0.01, le=0.01)  # m added to the reported width (calibration)


@dataclass(frozen=True)
class LatencyGap(CheckedConfig):
    """Actuation latency: each command takes effect after a delay drawn uniformly from ``command``."""

    command: tuple[float, float] = bounded((0.0, 0.0), ge=0, le=1.0)  # s, [low, high]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.command[0] > self.command[1]:
            raise FieldError("command", f"low must be <= high, got {list(self.command)}")


@dataclass(frozen=True)
class NoiseGap(CheckedConfig):
    """Sensor noise. ``*_std``: standard deviation of fresh Gaussian noise on every reading;
    ``*_bias``: each element's fixed offset is drawn once, from the seed, uniformly from
    ``[-bias, bias]`` (a calibration error that stays for the whole run). Rotations (``ee_rot``,
    ``object_rot``) are rotation vectors in rad. Object poses are those of the free objects (what
    a camera would perceive); fixed markers such as goals are reported exactly."""

    joint_pos_std: float = bounded(0.0, ge=0)  # rad
    joint_pos_bias: float = bounded(0.0, ge=0)  # rad, encoder offset (applies to joint targets too)
    joint_vel_std: float = bounded(0.0, ge=0)  # rad/s
    joint_vel_bias: float = bounded(0.0, ge=0)  # rad/s
    ee_pos_std: float = bounded(0.0, ge=0)  # m
    ee_pos_bias: float = bounded(0.0, ge=0)  # m
    ee_rot_std: float = bounded(0.0, ge=0)  # rad
    ee_rot_bias: float = bounded(0.0, ge=0)  # rad
    gripper_width_std: float = bounded(0.0, ge=0)  # m
    object_pos_std: float = bounded(0.0, ge=0)  # m
    object_rot_std: float = bounded(0.0, ge=0)  # rad
    object_dropout: float = bounded(0.0, ge=0, lt=1)  # chance a reading repeats the previous pose (lost frame)


@dataclass(frozen=True)
class TimingGap(CheckedConfig):
    """Irregular state arrival: each state is published an exponentially distributed extra time
    (this mean) after its tick's work, capped at half a tick so that the loop's schedule is kept
    (a delay is jitter, not a stall). Robot seconds, slept as wall seconds / ``time_scale``; the
    bridge's tick durations (``BridgeStats.tick_ms``) include it."""

    state_jitter: float = bounded(0.0, ge=0, le=0.1)  # s, mean extra delay of each state


@dataclass(frozen=True)
class TwinProfile(CheckedConfig):
    """A reality gap (see the module docstring); :func:`load_twin_profile` reads one from YAML."""

    name: str = "custom"  # the file's stem unless the file says otherwise
    seed: int = bounded(0, ge=0)  # every random draw of the twin comes from it
    dynamics: dict[str, float] = field(default_factory=dict)  # SimArm.set_dynamics values (scales; camera_* offsets)
    gripper: GripperGap = field(default_factory=GripperGap)
    latency: LatencyGap = field(default_factory=LatencyGap)
    noise: NoiseGap = field(default_factory=NoiseGap)
    timing: TimingGap = field(default_factory=TimingGap)
    bridge: dict[str, Any] = field(default_factory=dict)  # BridgeConfig keys, layered under the command line

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value in self.dynamics.items():
            if name not in DYNAMICS_DEFAULTS:
                raise FieldError(f"dynamics.{name}", f"unknown parameter (valid: {', '.join(DYNAMICS_DEFAULTS)})")
            if not np.isfinite(value) or (name not in DYNAMICS_OFFSETS and value <= 0):
                kind = "number" if name in DYNAMICS_OFFSETS else "scale > 0"
                raise FieldError(f"dynamics.{name}", f"must be a finite {kind}, got {value!r}")
        refused = sorted(BRIDGE_KEYS_NOT_IN_PROFILES & set(self.bridge))
        if refused:
            raise FieldError(f"bridge.{refused[0]}", "not settable by a twin profile (set it on the command line "
                                                     "or in a bridge config)")
        try:  # checked here, so a bad value names the profile's file rather than a later layer
            from_dict(BridgeConfig, self.bridge, "bridge")
        except ConfigError as exc:
            problem = str(exc).removeprefix("bridge: ")  # BridgeConfig's own range checks say "bridge." already
            raise ConfigError(problem if problem.startswith("bridge.") else f"bridge.{problem}") from None


def twin_profile_names() -> list[str]:
    """Names of the profiles shipped in ``hardware/twins``."""
    folder = resources.files("robot_rl.hardware") / "twins"
    return sorted(entry.name[:-len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_twin_profile(profile: str | Path) -> TwinProfile:
    """A shipped profile by name (``default``, ``identical``) or a YAML file by path; an unknown
    name, an unknown key or a bad value is a :class:`ConfigError` naming the key and the file."""
    path = Path(profile)
    if not path.is_file():
        if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
            raise ConfigError(f"twin profile {str(profile)!r}: no such file")
        if str(profile) not in twin_profile_names():
            raise ConfigError(f"twin profile {str(profile)!r}: not a shipped profile ({', '.join(twin_profile_names())}) "
                              f"nor a YAML file")
        path = Path(str(resources.files("robot_rl.hardware") / "twins" / f"{profile}.yaml"))
    return from_dict(TwinProfile, {"name": path.stem, **read_yaml(path)}, str(path))


class TwinArm:
    """A :class:`~robot_rl.robot.Robot` (and :class:`~robot_rl.robot.CameraRobot`): ``sim`` with
    the reality gap of ``profile`` (see the module docstring).

    Args:
        sim: the simulated arm; the twin owns it from now on: its dynamics are set here and again
            before every reset (so nothing else changes them for long), and it starts at home.
        profile: the gap.
        time_scale: robot seconds per wall second of the loop that runs the twin (the bridge's
            ``time_scale``), to turn the profile's state jitter into wall time; None when nothing
            paces the twin (no jitter is slept then).
    """

    def __init__(self, sim: SimArm, profile: TwinProfile, time_scale: float | None = 1.0) -> None:
        self.sim, self.profile, self.spec = sim, profile, sim.spec
        self._time_scale = time_scale
        latency, noise, timing = np.random.SeedSequence(profile.seed).spawn(3)
        self._latency_rng, self._noise_rng = np.random.default_rng(latency), np.random.default_rng(noise)
        self._timing_rng = np.random.default_rng(timing)
        n, joints = profile.noise, sim.spec.n_joints
        self._bias = {  # drawn once: a calibration error lasts the whole run
            "joint_pos": self._noise_rng.uniform(-n.joint_pos_bias, n.joint_pos_bias, joints),
            "joint_vel": self._noise_rng.uniform(-n.joint_vel_bias, n.joint_vel_bias, joints),
            "ee_pos": self._noise_rng.uniform(-n.ee_pos_bias, n.ee_pos_bias, 3),
            "ee_rot": _rotation(self._noise_rng.uniform(-n.ee_rot_bias, n.ee_rot_bias, 3)),
        }
        m = sim.model
        self._perceived = frozenset(m.body(m.jnt_bodyid[j]).name for j in range(m.njnt)
                                    if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE)
        # Commands on their way to the arm: (due robot time, command) in arrival order.
        self._arm_queue: collections.deque[tuple[float, Command]] = collections.deque()
        self._gripper_queue: collections.deque[tuple[float, float]] = collections.deque()
        self._arm_due = self._gripper_due = -np.inf
        self._arm_command: Command = JointCommand(sim.spec.home.copy(), sim.spec.gripper_max_width)
        self._gripper_target = self._gripper_width = sim.spec.gripper_max_width
        self._last_objects: dict[str, np.ndarray] = {}  # the poses last reported (a lost frame repeats them)
        self.reset(ResetRequest(sim.spec.home.copy(), sim.spec.gripper_max_width))

    # ------------------------------------------------------------------ Robot protocol
    def reset(self, request: ResetRequest) -> RobotState:
        """Reapply the profile's dynamics, place the arm (``request.joint_positions`` are in the
        encoders' frame, like any joint target) and drop the commands still on their way."""
        positions = np.asarray(request.joint_positions, dtype=float)
        if positions.shape != (self.spec.n_joints,):
            raise ValueError(f"reset needs {self.spec.n_joints} joint positions, got shape {positions.shape}")
        self.sim.set_dynamics(self.profile.dynamics)
        true_positions = np.clip(positions - self._bias["joint_pos"], self.spec.joint_lower, self.spec.joint_upper)
        state = self.sim.reset(dataclasses.replace(request, joint_positions=true_positions))
        self._drop_pending()
        self._arm_command = JointCommand(true_positions, float(request.gripper_width))
        self._gripper_target = self._gripper_width = float(request.gripper_width)
        self._last_objects.clear()
        return self._measured(state)

    def command(self, command: Command) -> None:
        """Queue ``command``: its arm part takes effect after a latency drawn from
        ``latency.command``, its gripper width ``gripper.delay`` later still; never before a
        command that arrived earlier (a network link and a driver keep the order). Malformed
        commands raise ``ValueError``/``TypeError`` now, as on the training sim."""
        check_command(command, self.spec.n_joints)
        if isinstance(command, JointCommand):  # the encoder offset also shifts where targets put the arm
            command = JointCommand(np.asarray(command.positions, dtype=float) - self._bias["joint_pos"],
                                   command.gripper_width)
        low, high = self.profile.latency.command
        now = self.sim.data.time
        self._arm_due = max(now + (self._latency_rng.uniform(low, high) if high > low else low), self._arm_due)
        self._gripper_due = max(self._arm_due + self.profile.gripper.delay, self._gripper_due)
        self._arm_queue.append((self._arm_due, command))
        self._gripper_queue.append((self._gripper_due, float(command.gripper_width)))

    def advance(self, duration: float) -> RobotState:
        """Integrate ``duration`` s, applying each queued command at the physics step nearest its
        due time; then (paced) wait the state's jitter before returning it."""
        timestep = self.sim.config.timestep
        steps, state = max(1, round(duration / timestep)), None
        while steps > 0:
            self._take_due(timestep)
            chunk = min(steps, self._steps_to_next_due(timestep))
            self._move_gripper(chunk * timestep)
            self.sim.command(dataclasses.replace(self._arm_command, gripper_width=self._gripper_width))
            state = self.sim.advance(chunk * timestep)
            steps -= chunk
        self._delay_publication(duration)
        return self._measured(state)

    def read_state(self) -> RobotState:
        """The arm's measurements now (fresh noise on every call)."""
        return self._measured(self.sim.read_state())

    def stop(self) -> None:
        """Hold where the arm is, at once: a stop acts in the arm's own controller, not through the
        command path, so commands still on their way are dropped rather than delayed."""
        self._drop_pending()
        self.sim.stop()  # unchecked, like the training sim's: a stop must work even on a diverged state
        self._arm_command = JointCommand(self.sim.read_state().joint_pos, self._gripper_width)
        self._gripper_target = self._gripper_width

    def close(self) -> None:
        self.sim.close()

    def tool_position(self, joint_positions: np.ndarray) -> np.ndarray:
        """Tool centre point (m) with the encoders reading ``joint_positions`` (any thread): the
        bridge's workspace checks of joint targets see where the tool would really go."""
        return self.sim.tool_position(np.asarray(joint_positions, dtype=float) - self._bias["joint_pos"])

    def render(self, camera: str, height: int, width: int) -> np.ndarray:
        """The sim's camera image (no image noise: looks belong in ``dynamics``, e.g. ``light``)."""
        return self.sim.render(camera, height, width)

    # ------------------------------------------------------------------ internals
    def _drop_pending(self) -> None:
        self._arm_queue.clear()
        self._gripper_queue.clear()
        self._arm_due = self._gripper_due = -np.inf

    def _take_due(self, timestep: float) -> None:
        """Make the commands due by the current physics step (within half a step) the ones in force."""
        now = self.sim.data.time + 0.5 * timestep
        while self._arm_queue and self._arm_queue[0][0] <= now:
            self._arm_command = self._arm_queue.popleft()[1]
        while self._gripper_queue and self._gripper_queue[0][0] <= now:
            self._gripper_target = self._gripper_queue.popleft()[1]

    def _steps_to_next_due(self, timestep: float) -> int:
        heads = [queue[0][0] for queue in (self._arm_queue, self._gripper_queue) if queue]
        if not heads:
            return 1 << 30
        return max(1, round((min(heads) - self.sim.data.time) / timestep))

    def _move_gripper(self, seconds: float) -> None:
        """The commanded opening moves toward the target at ``gripper.max_speed`` at most."""
        speed = self.profile.gripper.max_speed
        if speed is None:
            self._gripper_width = self._gripper_target
        else:
            step = speed * seconds
            self._gripper_width = float(np.clip(self._gripper_target, self._gripper_width - step,
                                                self._gripper_width + step))

    def _delay_publication(self, duration: float) -> None:
        mean = self.profile.timing.state_jitter
        if mean <= 0 or self._time_scale is None:
            return
        time.sleep(min(self._timing_rng.exponential(mean), 0.5 * duration) / self._time_scale)

    def _measured(self, state: RobotState) -> RobotState:
        """``state`` as the sensors report it: noise, biases, lost object frames."""
        n, bias = self.profile.noise, self._bias
        ee_quat = quat_multiply(bias["ee_rot"], state.ee_quat)
        if n.ee_rot_std > 0:
            ee_quat = quat_multiply(_rotation(self._noise_rng.normal(0.0, n.ee_rot_std, 3)), ee_quat)
        objects = dict(state.objects)
        for name in sorted(self._perceived & set(objects)):
            if n.object_dropout > 0 and name in self._last_objects and self._noise_rng.random() < n.object_dropout:
                objects[name] = self._last_objects[name].copy()
                continue
            pose = objects[name].copy()
            pose[:3] = self._noisy(pose[:3], n.object_pos_std)
            if n.object_rot_std > 0:
                pose[3:] = quat_multiply(_rotation(self._noise_rng.normal(0.0, n.object_rot_std, 3)), pose[3:])
            objects[name] = pose
            self._last_objects[name] = pose.copy()
        width = self._noisy(state.gripper_width + self.profile.gripper.width_offset, n.gripper_width_std)
        return dataclasses.replace(
            state,
            joint_pos=self._noisy(state.joint_pos + bias["joint_pos"], n.joint_pos_std),
            joint_vel=self._noisy(state.joint_vel + bias["joint_vel"], n.joint_vel_std),
            ee_pos=self._noisy(state.ee_pos + bias["ee_pos"], n.ee_pos_std),
            ee_quat=ee_quat,
            gripper_width=max(0.0, float(width)),  # a gripper driver never reports a negative opening
            objects=objects,
        )

    def _noisy(self, value: Any, std: float) -> Any:
        """``value`` plus Gaussian noise (no draw at all when ``std`` is 0, so a profile without
        noise reports the sim's values exactly)."""
        return value + self._noise_rng.normal(0.0, std, np.shape(value)) if std > 0 else value


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of the rotation vector ``rotvec`` (rad)."""
    angle = float(np.linalg.norm(rotvec))
    if angle == 0.0:
        return np.array([1.0, 0.0, 0.0, 0.0])
    return quat_from_axis_angle(rotvec / angle, angle)
