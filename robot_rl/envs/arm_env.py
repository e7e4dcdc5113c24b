"""``ArmEnv``: a gymnasium environment over any :class:`~robot_rl.robot.Robot`.

ArmEnv = robot + task + command limits + control rate. It never imports MuJoCo or ROS: the
robot is passed in, or built by :func:`~robot_rl.envs.robots.make_robot` from the registered kind
named by ``robot.kind`` (the simulator and the ROS 2 client register through entry points).

Action (``ee_delta``, default): ``[dx, dy, dz, (dyaw,) gripper]`` in ``[-1, 1]``. The tool target
moves by ``position_scale · (dx, dy, dz)``, clipped to the workspace box; the tool points down,
with yaw (rad about world z) changed by ``yaw_scale · dyaw``. Deltas accumulate on the previous
target while the arm tracks it within ``target_anchor_tolerance`` (so a zero action holds still
despite the controller's static sag) and restart from the measured pose otherwise (so a target
blocked by contact never winds up).
``gripper`` −1 opens fully, +1 closes fully (an absolute width command).
Action (``joint_delta``): 7 joint-position deltas scaled by ``joint_scale`` rad, then gripper.

Action checks (:func:`checked_action`): an action of the wrong shape, of a dtype that is not
real numbers (complex, strings, objects) or with a NaN/inf entry raises ``ValueError`` before
anything is commanded; casting would silently drop an imaginary part and NaN has no meaning
as a motion. A finite action outside ``[-1, 1]`` is clipped, as gymnasium's ``Box`` convention
expects (a Gaussian policy's sample may overshoot a little), and ``info["action_clipped"]`` says
so at every step (``run_episode`` counts such steps per episode).

Observation: a ``Dict`` of float32 vectors (``joint_pos``, ``joint_vel``, ``ee_pos``,
``ee_quat`` (w, x, y, z), ``gripper_width`` and the task's keys) plus ``image_<camera>``
uint8 (H, W, 3) arrays when ``observation.images`` is on. ``observation.privileged: false``
leaves out the task's ``privileged_keys`` (object poses), which no real arm reports. ``FlattenState``
turns the vectors into one vector for learners that want it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.envs.config import EnvConfig
from robot_rl.envs.robots import make_robot
from robot_rl.envs.tasks import make_task
from robot_rl.geometry import top_down_quat, wrap_angle, yaw_of_top_down
from robot_rl.robot import CameraRobot, EndEffectorCommand, JointCommand, Robot, RobotError, RobotState


class NonFiniteStateError(RuntimeError):
    """The robot reported NaN/inf (sensor fault or simulation blow-up)."""


class NonFiniteRobotStateError(NonFiniteStateError, RobotError):
    """An arm's state was NaN/inf: a sensor fault, or a simulation whose contacts blew up (MuJoCo
    can, under some randomised physics). A :class:`~robot_rl.robot.RobotError`, so a training
    run drops the episode, logs it and resets the arm, as for any other fault of the arm."""


class RenderingNotSupportedError(RuntimeError):
    """``render()`` was asked of an env whose robot has no cameras."""


def checked_action(action: Any, space: spaces.Box, step: int | None = None) -> np.ndarray:
    """``action`` as a float64 array, after checking it has ``space``'s shape, real-number dtype
    (bool, complex, strings and objects are refused) and only finite entries; not clipped.
    ``step`` is named in the error. Raises ``ValueError``."""
    at = "" if step is None else f" at step {step}"
    array = np.asarray(action)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"action{at} must be real numbers, got dtype {array.dtype}: {action!r}")
    if array.shape != space.shape:
        raise ValueError(f"action must have shape {space.shape}, got {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"non-finite action{at}: {array}")
    return array


class ArmEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    #: Index of the gripper command in the action (every other entry moves the arm); wrappers that
    #: treat motion and gripper differently (latency hold, fine-tuning's action ramp) read it here.
    gripper_action_index = -1

    def __init__(self, config: EnvConfig, robot: Robot | None = None, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self.robot = robot if robot is not None else make_robot(config)
        self.task = make_task(config.task)
        self.metadata = {**self.metadata, "render_fps": config.control.control_hz}
        control = config.control
        self._workspace_low = np.array(control.workspace_low)
        self._workspace_high = np.array(control.workspace_high)
        spec = self.robot.spec
        if control.action_mode == "ee_delta":
            n_action = 3 + int(control.use_yaw) + 1
        else:
            n_action = spec.n_joints + 1
        self.action_space = spaces.Box(-1.0, 1.0, shape=(n_action,), dtype=np.float32)
        n = spec.n_joints
        vectors: dict[str, spaces.Space] = {
            "joint_pos": spaces.Box(spec.joint_lower.astype(np.float32), spec.joint_upper.astype(np.float32)),
            "joint_vel": spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32),
            "ee_pos": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32),
            "ee_quat": spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32),
            "gripper_width": spaces.Box(0.0, spec.gripper_max_width, shape=(1,), dtype=np.float32),
        }
        obs_cfg = config.observation
        self._hidden_keys = () if obs_cfg.privileged else self.task.privileged_keys
        vectors.update({key: space for key, space in self.task.observation_space().items()
                        if key not in self._hidden_keys})
        if obs_cfg.images:
            missing = [cam for cam in obs_cfg.cameras if cam not in spec.cameras]
            if missing:
                if robot is None:  # built here: release it
                    self.robot.close()
                raise ValueError(f"observation.cameras: the robot {spec.name!r} has no camera {missing[0]!r} "
                                 f"(it has {', '.join(spec.cameras) or 'none'})")
            for cam in obs_cfg.cameras:
                vectors[f"image_{cam}"] = spaces.Box(0, 255, shape=(obs_cfg.image_height, obs_cfg.image_width,
                                                                    3 * obs_cfg.frame_stack), dtype=np.uint8)
        self.observation_space = spaces.Dict(vectors)
        self._yaw_target = 0.0
        self._position_target = np.zeros(3)
        self._state: RobotState | None = None
        self._steps = 0
        self._next_step_duration: float | None = None

    @property
    def dt(self) -> float:
        """Control period in seconds (gymnasium convention)."""
        return 1.0 / self.config.control.control_hz

    def set_next_step_duration(self, seconds: float) -> None:
        """Let the next :meth:`step` advance the robot by ``seconds`` instead of :attr:`dt` (the
        control-rate jitter of domain randomisation: a real control loop is never exactly periodic)."""
        if not (np.isfinite(seconds) and seconds > 0):
            raise ValueError(f"a step duration must be finite and positive, got {seconds}")
        self._next_step_duration = float(seconds)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        request = self.task.sample_reset(self.np_random, self.robot.spec.home, self.config.robot.home_noise)
        self._frames: dict[str, deque[np.ndarray]] = {}  # the episode's last frames per camera
        self._stacked_step = 0
        self._state = self._checked(self.robot.reset(request))
        self._yaw_target = yaw_of_top_down(self._state.ee_quat) if self.config.control.use_yaw else 0.0
        self._position_target = self._state.ee_pos.copy()
        self._steps = 0
        _, success = self.task.progress(self._state)
        return self._observe(self._state), {"is_success": success}

    def step(self, action):
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        requested = checked_action(action, self.action_space, self._steps)
        action = np.clip(requested, self.action_space.low, self.action_space.high)
        clipped = bool(np.any(action != requested))
        self.robot.command(self._command_from(action))
        duration, self._next_step_duration = self._next_step_duration or self.dt, None
        self._state = self._checked(self.robot.advance(duration))
        self._steps += 1
        reward, success = self.task.reward(self._state)
        terminated = bool(success and self.config.task.terminate_on_success)
        return self._observe(self._state), reward, terminated, False, {"is_success": success, "action_clipped": clipped}

    def render(self):
        """``rgb_array`` mode: an RGB frame of size ``observation.render_height × render_width``
        from the robot's ``scene`` camera (else its first camera).

        Raises:
            RenderingNotSupportedError: the robot has no cameras (it is not a
                :class:`~robot_rl.robot.CameraRobot`, or its ``spec.cameras`` is empty).
        """
        if self.render_mode != "rgb_array":
            return None
        cameras = self.robot.spec.cameras
        if not isinstance(self.robot, CameraRobot) or not cameras:
            raise RenderingNotSupportedError(
                f"cannot render: the robot {self.robot.spec.name!r} ({type(self.robot).__name__}) has no cameras "
                f"(it does not implement robot_rl.robot.CameraRobot's render(camera, height, width), or its "
                f"spec lists no cameras); make the env with render_mode=None")
        obs = self.config.observation
        return self.robot.render("scene" if "scene" in cameras else cameras[0], obs.render_height, obs.render_width)

    def close(self):
        self.robot.close()

    # ------------------------------------------------------------------ internals
    def _command_from(self, action: np.ndarray):
        control = self.config.control
        spec = self.robot.spec
        gripper_width = float((1.0 - action[-1]) / 2.0 * spec.gripper_max_width)
        state = self._state
        if control.action_mode == "joint_delta":
            target = np.clip(state.joint_pos + control.joint_scale * action[:-1], spec.joint_lower, spec.joint_upper)
            return JointCommand(target, gripper_width)
        tolerance = control.target_anchor_tolerance
        anchor = (self._position_target if np.linalg.norm(self._position_target - state.ee_pos) <= tolerance
                  else state.ee_pos)
        self._position_target = np.clip(anchor + control.position_scale * action[:3],
                                        self._workspace_low, self._workspace_high)
        if control.use_yaw:
            measured = yaw_of_top_down(state.ee_quat)
            yaw_anchor = (self._yaw_target if abs(wrap_angle(self._yaw_target - measured)) <= 10 * tolerance
                          else measured)
            self._yaw_target = float(np.clip(wrap_angle(yaw_anchor + control.yaw_scale * action[3]),
                                             -control.yaw_limit, control.yaw_limit))
        return EndEffectorCommand(self._position_target, top_down_quat(self._yaw_target), gripper_width)

    def _checked(self, state: RobotState) -> RobotState:
        arrays = [state.joint_pos, state.joint_vel, state.ee_pos, state.ee_quat, [state.gripper_width],
                  *state.objects.values()]
        for values in arrays:
            if not np.all(np.isfinite(values)):
                self.robot.stop()
                raise NonFiniteRobotStateError(
                    f"robot state is not finite at step {self._steps} (t={state.timestamp:.3f}s): "
                    f"joint_pos={state.joint_pos}, ee_pos={state.ee_pos}; the arm was told to hold position"
                )
        return state

    def privileged_observation(self) -> dict[str, np.ndarray]:
        """The task's entries that ``observation.privileged: false`` leaves out of the observation
        (empty when none are), for the current state: what scripted experts and the virtual
        operator, the project's stand-ins for a person who can see the scene, look at."""
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before privileged_observation()")
        return {key: value for key, value in self.task.observe(self._state).items() if key in self._hidden_keys}

    def _observe(self, state: RobotState) -> dict[str, np.ndarray]:
        obs = {
            "joint_pos": np.clip(state.joint_pos, self.robot.spec.joint_lower, self.robot.spec.joint_upper).astype(np.float32),
            "joint_vel": state.joint_vel.astype(np.float32),
            "ee_pos": state.ee_pos.astype(np.float32),
            "ee_quat": state.ee_quat.astype(np.float32),
            "gripper_width": np.array([state.gripper_width], dtype=np.float32).clip(0.0, self.robot.spec.gripper_max_width),
        }
        obs.update({key: value for key, value in self.task.observe(state).items() if key not in self._hidden_keys})
        if self.config.observation.images:
            stack = self.config.observation.frame_stack
            for cam in self.config.observation.cameras:
                if stack == 1:
                    obs[f"image_{cam}"] = state.images[cam]
                    continue
                frames = self._frames.get(cam)
                if frames is None:  # the episode's first frame fills the stack
                    frames = self._frames[cam] = deque([state.images[cam]] * stack, maxlen=stack)
                elif self._stacked_step != self._steps:
                    frames.append(state.images[cam])
                obs[f"image_{cam}"] = np.concatenate(frames, axis=-1)
            self._stacked_step = self._steps
        return obs
