"""``SimArm``: the MuJoCo arm implementing the :class:`robot_rl.robot.Robot` protocol (and its
:class:`~robot_rl.robot.CameraRobot` capability); :func:`make_sim_arm` is robot kind ``sim``."""

from __future__ import annotations

import os
import threading
from importlib import resources
from pathlib import Path
from typing import Mapping

import mujoco
import numpy as np

from robot_rl.envs.config import EnvConfig, SimConfig
from robot_rl.envs.robots import requested_cameras
from robot_rl.robot import (
    Command,
    EndEffectorCommand,
    JointCommand,
    ResetRequest,
    RobotSpec,
    RobotState,
)
from robot_rl.sim.controller import InnerController

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
# Panda datasheet joint velocity limits, rad/s.
VELOCITY_LIMITS = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
HOME = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
GRIPPER_MAX_WIDTH = 0.08
SCENES = ("reach", "push", "pick", "peg", "lift")  # lift: the pick scene (scene_lift.xml includes it)


class RenderingUnavailableError(RuntimeError):
    """MuJoCo could not create an offscreen OpenGL context, so no camera image can be rendered."""

    def __init__(self, cause: BaseException) -> None:
        backend = os.environ.get("MUJOCO_GL", "<unset>")
        super().__init__(
            f"cannot render camera images with MUJOCO_GL={backend} ({type(cause).__name__}: {cause}). "
            "Headless rendering needs an OpenGL backend: install Debian libegl1 and libgl1 (then "
            "MUJOCO_GL=egl) or libosmesa6 (then MUJOCO_GL=osmesa), set before Python imports MuJoCo"
        )


def make_sim_arm(config: EnvConfig) -> SimArm:
    """Robot kind ``sim`` (entry point ``robot_rl.robots: sim``): the task's scene, the env's
    cameras, the workspace box as the tool's wall."""
    workspace = (np.array(config.control.workspace_low), np.array(config.control.workspace_high))
    return SimArm(scene=config.task.name, config=config.robot.sim, cameras=requested_cameras(config),
                  workspace=workspace)


def scene_path(scene: str) -> Path:
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; choose one of {', '.join(SCENES)}")
    return Path(str(resources.files("robot_rl.sim") / "assets" / f"scene_{scene}.xml"))


class SimArm:
    """A simulated 7-DoF arm with a parallel gripper in a task scene.

    Args:
        scene: one of ``reach``, ``push``, ``pick``, ``peg``, ``lift`` (MJCF under ``sim/assets``).
        config: physics/controller settings.
        cameras: camera name → (height, width) rendered into ``RobotState.images`` at every
            :meth:`advance`; empty for state-only use (no OpenGL needed).
        workspace: optional ``(low, high)`` box for the tool centre point. End-effector targets
            are clipped to it; under joint commands it acts as a virtual wall checked at
            ``config.wall_hz`` (the arm is servoed back to the box surface and held there).
    """

    def __init__(
        self,
        scene: str = "reach",
        config: SimConfig = SimConfig(),
        cameras: Mapping[str, tuple[int, int]] | None = None,
        workspace: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.model = mujoco.MjModel.from_xml_path(str(scene_path(scene)))
        self.model.opt.timestep = config.timestep
        # MuJoCo silently resets the whole simulation when the state turns NaN/inf (the arm
        # teleports to qpos0 and time restarts); keep the bad state so read_state reports it and
        # ArmEnv raises NonFiniteStateError instead of continuing a corrupted episode.
        self.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_AUTORESET
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._qpos_idx = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self._dof_idx = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self._finger_qpos = np.array([m.jnt_qposadr[m.joint(f).id] for f in ("finger_left", "finger_right")])
        self._finger_dof = np.array([m.jnt_dofadr[m.joint(f).id] for f in ("finger_left", "finger_right")])
        self._arm_act = np.array([m.actuator(j).id for j in ARM_JOINTS])
        self._gripper_act = m.actuator("gripper").id
        self._tcp = m.site("tcp").id
        lower, upper = m.jnt_range[[m.joint(j).id for j in ARM_JOINTS]].T.copy()
        self.spec = RobotSpec(
            name="robot_rl_sim_arm",
            joint_names=ARM_JOINTS,
            joint_lower=lower,
            joint_upper=upper,
            joint_velocity_limit=VELOCITY_LIMITS.copy(),
            home=HOME.copy(),
            gripper_max_width=GRIPPER_MAX_WIDTH,
            cameras=tuple(m.camera(i).name for i in range(m.ncam)),
        )
        self.controller = InnerController(m, self.data, list(ARM_JOINTS))
        self._wall_substeps = max(1, round(1.0 / (config.wall_hz * config.timestep)))
        self.workspace = None if workspace is None else (np.asarray(workspace[0]), np.asarray(workspace[1]))
        # Objects whose pose is reported: free bodies and mocap bodies (goals, fixtures).
        self._free_objects: dict[str, int] = {}
        self._mocap_objects: dict[str, int] = {}
        for j in range(m.njnt):
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                self._free_objects[m.body(m.jnt_bodyid[j]).name] = m.jnt_qposadr[j]
        for b in range(m.nbody):
            if m.body_mocapid[b] >= 0:
                self._mocap_objects[m.body(b).name] = m.body_mocapid[b]
        self.cameras = dict(cameras or {})
        unknown = sorted(set(self.cameras) - set(self.spec.cameras))
        if unknown:
            raise ValueError(f"unknown camera {unknown[0]!r}; this scene has {', '.join(self.spec.cameras)}")
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._command: Command = JointCommand(HOME.copy(), GRIPPER_MAX_WIDTH)
        self._kinematics_lock = threading.Lock()  # guards the scratch data of tool_position
        self._kinematics_data: mujoco.MjData | None = None
        self.physics_steps = 0  # total mj_step calls, for benchmarks
        self.reset(ResetRequest(HOME.copy(), GRIPPER_MAX_WIDTH))

    # ------------------------------------------------------------------ Robot protocol
    def reset(self, request: ResetRequest) -> RobotState:
        """Place the arm, gripper and objects as ``request`` asks and let them settle; sim time
        restarts at 0. A request naming an unknown object, a misshapen pose or an object that
        cannot be grasped raises ``ValueError`` before anything is changed."""
        self._check_reset(request)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        q = np.clip(np.asarray(request.joint_positions, dtype=float), self.spec.joint_lower, self.spec.joint_upper)
        d.qpos[self._qpos_idx] = q
        half_opening = np.clip(request.gripper_width / 2, 0.0, GRIPPER_MAX_WIDTH / 2)
        d.qpos[self._finger_qpos] = half_opening
        for name, pose in request.objects.items():
            self._place(name, np.asarray(pose, dtype=float))
        mujoco.mj_forward(m, d)
        if request.grasped_object is not None:
            self._place_in_hand(request.grasped_object)
        self._command = JointCommand(q, float(request.gripper_width))
        self._run(self.config.settle_time)
        d.time = 0.0
        return self.read_state()

    def command(self, command: Command) -> None:
        if isinstance(command, JointCommand):
            positions = np.asarray(command.positions, dtype=float)
            if positions.shape != (self.spec.n_joints,):
                raise ValueError(f"joint command needs {self.spec.n_joints} positions, got shape {positions.shape}")
        elif isinstance(command, EndEffectorCommand):
            positions = np.concatenate([np.asarray(command.position, float), np.asarray(command.quat, float)])
        else:
            raise TypeError(f"unsupported command {type(command).__name__}")
        if not np.all(np.isfinite(positions)) or not np.isfinite(command.gripper_width):
            raise ValueError(f"non-finite command rejected: {command}")
        self._command = command

    def advance(self, duration: float) -> RobotState:
        self._run(duration)
        return self.read_state()

    def read_state(self) -> RobotState:
        d = self.data
        ee_quat = np.empty(4)
        mujoco.mju_mat2Quat(ee_quat, d.site_xmat[self._tcp])
        objects = {name: np.concatenate([d.qpos[adr:adr + 3], d.qpos[adr + 3:adr + 7]])
                   for name, adr in self._free_objects.items()}
        objects.update({name: np.concatenate([d.mocap_pos[i], d.mocap_quat[i]])
                        for name, i in self._mocap_objects.items()})
        return RobotState(
            timestamp=float(d.time),
            joint_pos=d.qpos[self._qpos_idx].copy(),
            joint_vel=d.qvel[self._dof_idx].copy(),
            ee_pos=d.site_xpos[self._tcp].copy(),
            ee_quat=ee_quat,
            gripper_width=float(d.qpos[self._finger_qpos].sum()),
            objects=objects,
            images={name: self.render(name, *size, shadows=False) for name, size in self.cameras.items()},
        )

    def tool_position(self, joint_positions: np.ndarray) -> np.ndarray:
        """Tool centre point (m, base frame) with the arm at ``joint_positions``: forward
        kinematics on a scratch copy of the state, so the simulation is not touched. Safe to call
        from any thread (the bridge's safety checks run on transport threads as well)."""
        q = np.asarray(joint_positions, dtype=float)
        if q.shape != (self.spec.n_joints,):
            raise ValueError(f"tool_position needs {self.spec.n_joints} joint positions, got shape {q.shape}")
        with self._kinematics_lock:
            if self._kinematics_data is None:
                self._kinematics_data = mujoco.MjData(self.model)
            data = self._kinematics_data
            data.qpos[self._qpos_idx] = q
            mujoco.mj_kinematics(self.model, data)
            return data.site_xpos[self._tcp].copy()

    def __getstate__(self) -> dict:
        # A copy (gymnasium deep-copies make() kwargs into env.spec, robot included) gets its own
        # kinematics scratch space; a lock cannot be copied.
        state = self.__dict__.copy()
        state["_kinematics_lock"], state["_kinematics_data"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._kinematics_lock = threading.Lock()

    def stop(self) -> None:
        self._command = JointCommand(self.data.qpos[self._qpos_idx].copy(), float(self._command.gripper_width))
        self._apply(self._command)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ------------------------------------------------------------------ simulation
    def render(self, camera: str, height: int, width: int, shadows: bool = True) -> np.ndarray:
        """RGB image (H, W, 3) uint8 from a named camera.

        Observation images are rendered without shadows: on a CPU-only OpenGL (EGL/OSMesa
        software rasteriser) the shadow pass costs ~40× the rest of a 128×128 frame.

        Raises:
            RenderingUnavailableError: no OpenGL context can be created (e.g. a headless
                machine without EGL/OSMesa).
        """
        key = (height, width)
        if key not in self._renderers:
            if self.model.vis.global_.offheight < height or self.model.vis.global_.offwidth < width:
                self.model.vis.global_.offheight = max(height, self.model.vis.global_.offheight)
                self.model.vis.global_.offwidth = max(width, self.model.vis.global_.offwidth)
            try:
                self._renderers[key] = mujoco.Renderer(self.model, height, width)
            except (ImportError, OSError, RuntimeError, AttributeError, mujoco.FatalError) as exc:
                raise RenderingUnavailableError(exc) from exc
        renderer = self._renderers[key]
        renderer.update_scene(self.data, camera=camera)
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
        return renderer.render()

    def _apply(self, command: Command) -> None:
        if isinstance(command, EndEffectorCommand):
            position = np.asarray(command.position, dtype=float)
            if self.workspace is not None:
                position = np.clip(position, *self.workspace)
            self.controller.set_pose_target(position, np.asarray(command.quat, dtype=float))
        else:
            self.controller.set_joint_target(np.clip(command.positions, self.spec.joint_lower, self.spec.joint_upper))
        self.data.ctrl[self._gripper_act] = np.clip(command.gripper_width / 2, 0.0, GRIPPER_MAX_WIDTH / 2)

    def _run(self, duration: float) -> None:
        """Integrate ``duration`` seconds of physics with the current command."""
        n_steps = max(1, round(duration / self.config.timestep))
        self._apply(self._command)
        if self.workspace is None or isinstance(self._command, EndEffectorCommand):
            mujoco.mj_step(self.model, self.data, nstep=n_steps)
            self.physics_steps += n_steps
            return
        # Joint commands can carry the tool out of the box: check it at wall_hz and, when the
        # tool would leave within two check periods at its current velocity (one period of
        # detection delay plus about one of braking), hold it at the nearest point of the box
        # with the Cartesian servo. Checking only the position let a fast tool (~1 m/s under
        # joint_delta actions) end up >1 cm outside.
        low, high = self.workspace
        lookahead = 2.0 * self._wall_substeps * self.config.timestep
        velocity = np.empty(6)
        done = 0
        while done < n_steps:
            chunk = min(self._wall_substeps, n_steps - done)
            mujoco.mj_step(self.model, self.data, nstep=chunk)
            done += chunk
            tcp = self.data.site_xpos[self._tcp]
            mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self._tcp, velocity, 0)
            ahead = tcp + lookahead * velocity[3:]
            if np.any(ahead < low) or np.any(ahead > high):
                quat = np.empty(4)
                mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._tcp])
                self._command = EndEffectorCommand(np.clip(tcp, low, high), quat, self._command.gripper_width)
                self._apply(self._command)
        self.physics_steps += n_steps

    def _check_reset(self, request: ResetRequest) -> None:
        """The checks of :meth:`_place` and :meth:`_place_in_hand`, made before a reset changes
        anything (so a refused request leaves the simulation as it was)."""
        known = sorted(self._free_objects) + sorted(self._mocap_objects)
        for name, pose in request.objects.items():
            if name not in known:
                raise ValueError(f"scene has no object {name!r} (objects: {', '.join(known) or 'none'})")
            if np.shape(pose) != (7,):
                raise ValueError(f"pose of {name!r} must be (x, y, z, qw, qx, qy, qz), got shape {np.shape(pose)}")
        if request.grasped_object is not None and request.grasped_object not in self._free_objects:
            raise ValueError(f"cannot grasp {request.grasped_object!r}: not a free object in this scene")

    def _place(self, name: str, pose: np.ndarray) -> None:
        if pose.shape != (7,):
            raise ValueError(f"pose of {name!r} must be (x, y, z, qw, qx, qy, qz), got shape {pose.shape}")
        if name in self._free_objects:
            adr = self._free_objects[name]
            self.data.qpos[adr:adr + 7] = pose
        elif name in self._mocap_objects:
            i = self._mocap_objects[name]
            self.data.mocap_pos[i] = pose[:3]
            self.data.mocap_quat[i] = pose[3:]
        else:
            known = sorted(self._free_objects) + sorted(self._mocap_objects)
            raise ValueError(f"scene has no object {name!r} (objects: {', '.join(known) or 'none'})")

    def _place_in_hand(self, name: str) -> None:
        """Put a free object's centre at the tool centre point, aligned with the hand, and
        close the fingers on it."""
        if name not in self._free_objects:
            raise ValueError(f"cannot grasp {name!r}: not a free object in this scene")
        d = self.data
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, d.site_xmat[self._tcp])
        self._place(name, np.concatenate([d.site_xpos[self._tcp], quat]))
        body = self.model.body(name).id
        geom = self.model.body_geomadr[body]
        half_width = float(self.model.geom_size[geom][0])  # box half-size x or cylinder radius
        d.qpos[self._finger_qpos] = half_width
        mujoco.mj_forward(self.model, d)
