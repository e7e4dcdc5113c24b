"""Environment configuration: what a task YAML under ``robot_rl/configs/tasks`` may contain.

Load with :func:`load_env_config`, which layers built-in defaults, the task's YAML, an optional
user YAML and ``--set``-style overrides, and reports unknown keys or wrong types with the key
and the file they came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from robot_rl.config import (
    CheckedConfig,
    ConfigError,
    FieldError,
    bounded,
    deep_merge,
    from_dict,
    merge_layers,
    read_yaml,
)

TASKS = ("reach", "push", "pick", "peg", "lift")
ENV_IDS = {
    "reach": "RobotRL/ArmReach-v0",
    "push": "RobotRL/ArmPush-v0",
    "pick": "RobotRL/ArmPickCube-v0",
    "peg": "RobotRL/ArmPegInsert-v0",
    "lift": "RobotRL/ArmLift-v0",
}


@dataclass(frozen=True)
class TaskConfig(CheckedConfig):
    name: Literal["reach", "push", "pick", "peg", "lift"] = "reach"
    reward_type: Literal["dense", "sparse"] = "dense"
    max_episode_steps: int = bounded(50, ge=1)
    terminate_on_success: bool = False
    success_threshold: float = bounded(0.02, gt=0)  # m; meaning per task (see robot_rl.envs.tasks)
    # Cube tasks (push, pick, lift): the cube starts at a random place and yaw, or always at the
    # centre of its area with yaw 0 (fixed-start benchmarks); the other tasks accept only random.
    object_start: Literal["random", "fixed"] = "random"


@dataclass(frozen=True)
class ControlConfig(CheckedConfig):
    control_hz: float = bounded(10.0, gt=0)  # policy rate; env.unwrapped.dt = 1 / control_hz
    action_mode: Literal["ee_delta", "joint_delta"] = "ee_delta"
    use_yaw: bool = False  # ee_delta: add a yaw-rate action dimension
    position_scale: float = bounded(0.03, gt=0)  # m of tool motion per step at action 1
    yaw_scale: float = bounded(0.25, ge=0)  # rad per step at action 1
    yaw_limit: float = bounded(1.57, gt=0)  # |yaw| of the tool target, rad
    joint_scale: float = bounded(0.1, gt=0)  # rad per step at action 1 (joint_delta)
    target_anchor_tolerance: float = bounded(0.005, ge=0)  # m (and 10× that in rad for yaw); see ArmEnv
    workspace_low: tuple[float, float, float] = (0.25, -0.35, 0.005)
    workspace_high: tuple[float, float, float] = (0.75, 0.35, 0.45)

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high)):
            raise ConfigError(f"workspace_low must be below workspace_high on every axis, got "
                              f"{self.workspace_low} and {self.workspace_high}")


@dataclass(frozen=True)
class ObservationConfig(CheckedConfig):
    images: bool = False
    # False: leave out what only a simulator knows (object poses and what is computed from them,
    # each task's ``privileged_keys``), so a policy sees what a real arm gives: proprioception,
    # the commanded goal and camera images.
    privileged: bool = True
    cameras: tuple[str, ...] = ("scene", "wrist")
    image_height: int = bounded(128, ge=1)  # pixels
    image_width: int = bounded(128, ge=1)
    # the last k frames of each camera, oldest first, on the channel axis: (H, W, 3k); the first
    # frame of an episode repeats until k exist. Stores and replay then hold each frame k times.
    frame_stack: int = bounded(1, ge=1)
    render_height: int = bounded(360, ge=1)  # env.render() frames
    render_width: int = bounded(480, ge=1)


@dataclass(frozen=True)
class SimConfig(CheckedConfig):
    """Physics settings of the simulated arm."""

    timestep: float = bounded(0.002, gt=0)  # s; the inner controller runs at every physics step (500 Hz)
    wall_hz: float = bounded(100.0, gt=0)  # workspace-wall checks per second under joint commands
    settle_time: float = bounded(0.3, ge=0)  # s of physics after a reset, so objects come to rest
    # Commands through the arm bridge's safety supervisor with its default limits (tool, joint and
    # gripper rate limits), ticking at supervisor_hz, as a policy deployed over `robot-rl bridge`
    # meets them (robot_rl/sim/supervised.py). Train with it for anything that goes to a bridge.
    supervised: bool = False
    supervisor_hz: float = bounded(100.0, gt=0)


#: Highest ROS domain id: the UDP ports of higher ids overflow (ROS 2 docs, "The ROS_DOMAIN_ID").
MAX_DOMAIN_ID = 232
_ROS_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
_ROS_NAMESPACE = re.compile(rf"(/{_ROS_TOKEN})*")
_ROS_NODE_NAME = re.compile(_ROS_TOKEN)


@dataclass(frozen=True)
class TransportConfig:
    """Which ROS 2 transport backend, domain, network scope, message distro and namespace to use.

    Plain settings, validated here; ``robot_rl.hardware.transport`` (which the core never
    imports) builds the transport from them.
    """

    backend: Literal["auto", "dds", "rclpy"] = "auto"  # auto: rclpy if importable, else dds
    domain_id: int = 0
    # loopback: force the loopback-only network config (hardware/transport/network.py); system:
    # whatever CYCLONEDDS_URI / ROS_* settings the environment has (to reach a robot on the LAN).
    network: Literal["loopback", "system"] = "loopback"
    distro: Literal["humble", "jazzy"] = "humble"  # message definitions of the DDS backend
    node_name: str = "robot_rl"
    namespace: str = ""  # e.g. "/arm1": relative topic names are resolved under it

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "dds", "rclpy"):
            raise ConfigError(f"unknown transport backend {self.backend!r}")
        if self.network not in ("loopback", "system"):
            raise ConfigError(f"unknown network {self.network!r}")
        if not 0 <= self.domain_id <= MAX_DOMAIN_ID:
            raise ConfigError(f"ROS domain id must be in 0..{MAX_DOMAIN_ID}, got {self.domain_id}")
        if not _ROS_NODE_NAME.fullmatch(self.node_name):
            raise ConfigError(f"invalid ROS node name {self.node_name!r}")
        if not _ROS_NAMESPACE.fullmatch(self.namespace):
            raise ConfigError(f"invalid ROS namespace {self.namespace!r} (e.g. '' or '/arm1')")


@dataclass(frozen=True)
class Ros2ArmConfig(CheckedConfig):
    """How ``Ros2Arm`` reaches an arm bridge node (``robot-rl bridge``) over ROS 2."""

    transport: TransportConfig = field(default_factory=TransportConfig)
    connect_timeout: float = bounded(10.0, gt=0)  # s to wait for the bridge's spec
    state_timeout: float = bounded(0.25, gt=0)  # s past a step's period before the state counts as stale
    reset_timeout: float = bounded(30.0, gt=0)  # s for the bridge to finish a reset (a real arm drives home)


@dataclass(frozen=True)
class RobotConfig(CheckedConfig):
    # A registered robot kind (robot_rl.envs.robots), checked when the robot is made. Built in:
    # sim: MuJoCo in process; ros2: a client of a bridge node (`robot-rl bridge`) over ROS 2.
    kind: str = "sim"
    home_noise: float = bounded(0.02, ge=0)  # rad, uniform noise on the home posture at reset
    sim: SimConfig = field(default_factory=SimConfig)
    ros2: Ros2ArmConfig = field(default_factory=Ros2ArmConfig)


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class GymEnvConfig(CheckedConfig):
    """Any gymnasium environment instead of this project's arm (``robot-rl train --env ID``).

    ``id`` empty (the default) means the arm task of the other sections. When ``id`` is set, the
    env is ``gymnasium.make(id, **kwargs)`` after importing ``imports`` (packages that register
    their ids on import, e.g. ``gymnasium_robotics``), wrapped by each of ``wrappers``
    (``"module:callable"``, called as ``callable(env) -> env``, in order) and then adapted for the
    learners (:mod:`robot_rl.envs.gym_env`); the ``task``, ``control``, ``observation`` and
    ``robot`` sections are then ignored for making the env.
    """

    id: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of gymnasium.make
    imports: tuple[str, ...] = ()  # modules imported before gymnasium.make
    wrappers: tuple[str, ...] = ()  # "module:callable", applied in order after gymnasium.make

    def __post_init__(self) -> None:
        super().__post_init__()
        for index, name in enumerate(self.imports):
            if not _MODULE.fullmatch(name):
                raise FieldError(f"imports[{index}]",
                                 f"expected a module name such as gymnasium_robotics, got {name!r}")
        for index, spec in enumerate(self.wrappers):
            module, sep, attr = spec.partition(":")
            if not sep or not _MODULE.fullmatch(module) or not _MODULE.fullmatch(attr):
                raise FieldError(f"wrappers[{index}]", f"expected MODULE:CALLABLE such as "
                                                       f"gymnasium.wrappers:FlattenObservation, got {spec!r}")
        if any(not isinstance(key, str) for key in self.kwargs):
            raise FieldError("kwargs", f"keyword names must be strings, got {list(self.kwargs)}")


PROPRIO_KEYS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper_width")

# Ranges of RandomizationConfig whose parameters the robot applies (RandomizableRobot.set_dynamics):
# config field → robot parameter names (one value drawn per name) and their nominal value.
ROBOT_RANGES: dict[str, tuple[tuple[str, ...], float]] = {
    "friction": (("friction",), 1.0),
    "object_mass": (("object_mass",), 1.0),
    "object_size": (("object_size",), 1.0),
    "joint_damping": (("joint_damping",), 1.0),
    "joint_armature": (("joint_armature",), 1.0),
    "controller_kp": (("controller_kp",), 1.0),
    "controller_kd": (("controller_kd",), 1.0),
    "camera_fovy": (("camera_fovy",), 1.0),
    "camera_position": (("camera_x", "camera_y", "camera_z"), 0.0),
    "light": (("light",), 1.0),
    "object_color": (("object_r", "object_g", "object_b"), 1.0),
}


def _scale(low: float, high: float) -> Any:
    return bounded((low, high), gt=0)


@dataclass(frozen=True)
class RandomizationConfig(CheckedConfig):
    """Domain randomisation, one draw per episode (:mod:`robot_rl.envs.randomization`).

    Every range is an explicit ``[low, high]``, drawn uniformly at each reset (``[v, v]``: always
    ``v``). Physics and looks are *scale factors* of the robot's nominal model (``[1, 1]``: off)
    except ``camera_position`` (metres added to each axis of every camera's position); they
    need a robot with the ``RandomizableRobot`` capability (the MuJoCo arm; not a physical arm,
    where they must stay ``[1, 1]``/``[0, 0]``). The defaults are a moderate ±30 % on physics,
    ±20 % on controller gains, small camera/light/colour jitter, 0–1 control periods of latency
    and noise of a few mm / mrad; ``object_size`` is off because the tasks' success checks
    assume the nominal cube and peg sizes. A mapping given for ``observation_noise`` or
    ``observation_bias`` replaces the default one (list every key to be noised; ``{}``: none).
    """

    enabled: bool = False
    # Physics (scales).
    friction: tuple[float, float] = _scale(0.7, 1.3)  # sliding friction of every contact
    object_mass: tuple[float, float] = _scale(0.7, 1.3)  # mass and inertia of the free objects
    object_size: tuple[float, float] = _scale(1.0, 1.0)  # size of the free objects (off)
    joint_damping: tuple[float, float] = _scale(0.7, 1.3)  # arm joints
    joint_armature: tuple[float, float] = _scale(0.7, 1.3)  # arm joints
    controller_kp: tuple[float, float] = _scale(0.8, 1.2)  # inner controller stiffness
    controller_kd: tuple[float, float] = _scale(0.8, 1.2)  # inner controller damping
    # Looks, for pixel runs (scales, except camera_position in metres per axis).
    camera_fovy: tuple[float, float] = _scale(0.95, 1.05)
    camera_position: tuple[float, float] = bounded((-0.01, 0.01), ge=-0.1, le=0.1)  # jitter, not a new view
    light: tuple[float, float] = _scale(0.7, 1.3)  # diffuse light intensity
    object_color: tuple[float, float] = _scale(0.8, 1.2)  # each RGB channel of the objects
    # Actions: latency in whole control periods (a FIFO; the first k steps execute the hold
    # action) and Gaussian noise of the given standard deviation in action units (clipped to [-1, 1]).
    action_latency: tuple[int, int] = bounded((0, 1), ge=0)
    action_noise: tuple[float, float] = bounded((0.0, 0.05), ge=0)
    # Control-rate jitter j, drawn per episode: every step then lasts dt · (1 + u), u ~ U(−j, j)
    # (a fraction of the control period; off by default, e.g. [0, 0.2] for a loop over a network).
    control_jitter: tuple[float, float] = bounded((0.0, 0.0), ge=0, lt=1)
    # Observations, per key (proprioception by default; task keys only if listed here, images
    # never): the standard deviation of per-step Gaussian noise, and a per-episode bias drawn
    # element-wise, both in the key's units.
    observation_noise: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "joint_pos": (0.0, 0.002), "joint_vel": (0.0, 0.02), "ee_pos": (0.0, 0.002),
        "ee_quat": (0.0, 0.002), "gripper_width": (0.0, 0.001)})
    observation_bias: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "joint_pos": (-0.005, 0.005), "joint_vel": (-0.01, 0.01), "ee_pos": (-0.003, 0.003),
        "ee_quat": (-0.005, 0.005), "gripper_width": (-0.002, 0.002)})

    def __post_init__(self) -> None:
        super().__post_init__()
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            ranges = value.items() if isinstance(value, dict) else [(None, value)] if isinstance(value, tuple) else []
            for key, pair in ranges:
                name = spec.name if key is None else f"{spec.name}.{key}"
                if len(pair) != 2:
                    raise FieldError(name, f"expected [low, high], got {list(pair)}")
                if not all(math.isfinite(v) for v in pair):
                    raise FieldError(name, f"must be finite numbers, got {list(pair)}")
                if pair[0] > pair[1]:
                    raise FieldError(name, f"low must be <= high, got {list(pair)}")
                if spec.name == "observation_noise" and pair[0] < 0:
                    raise FieldError(name, f"a noise standard deviation must be >= 0, got {list(pair)}")


@dataclass(frozen=True)
class EnvConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    # Per-episode domain randomisation (off by default); see RandomizationConfig.
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    # A gymnasium env id (and how to make it); when set, the sections above are ignored for
    # making the env (robot_rl.training.loop.make_env).
    gym: GymEnvConfig = field(default_factory=GymEnvConfig)


def task_config_path(task: str) -> Path:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return Path(str(resources.files("robot_rl") / "configs" / "tasks" / f"{task}.yaml"))


def _task_name(layer: Mapping[str, Any]) -> Any:
    """``task.name`` of a config layer, or None (a malformed ``task`` section is reported by the
    type check of that layer, naming its source)."""
    section = layer.get("task")
    return section.get("name") if isinstance(section, Mapping) else None


def load_env_config(
    task: str | None = None,
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EnvConfig:
    """Defaults ← ``tasks/<task>.yaml`` ← ``path`` ← ``overrides`` (nested dicts).

    The task is taken from ``task``, else from ``task.name`` in the user file or overrides.
    """
    user = read_yaml(path) if path is not None else {}
    overrides = dict(overrides or {})
    name = task or _task_name(overrides) or _task_name(user) or "reach"
    layers = [(str(task_config_path(name)), read_yaml(task_config_path(name)))]
    if path is not None:
        layers.append((str(path), user))
    if overrides:
        layers.append(("overrides", overrides))
    merged = deep_merge(merge_layers(EnvConfig, layers), {"task": {"name": name}})
    return from_dict(EnvConfig, merged, layers[-1][0])
