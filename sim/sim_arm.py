"""``SimArm``: the MuJoCo arm implementing the :class:`robot_rl.robot.Robot` protocol (and its
:class:`~robot_rl.robot.CameraRobot` and :class:`~robot_rl.robot.RandomizableRobot`
capabilities); :func:`make_sim_arm` is robot kind ``sim``."""

from __future__ import annotations

import os
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

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
# Parameters of SimArm.set_dynamics (RandomizableRobot) → nominal value. Scales multiply the
# model's nominal value; offsets (camera_x/y/z, metres) are added to it.
DYNAMICS_DEFAULTS: dict[str, float] = {
    "friction": 1.0,  # sliding friction of every geom (so of every contact: MuJoCo takes the max of a pair)
    "object_mass": 1.0,  # mass and inertia of the free objects (cube, peg)
    "object_size": 1.0,  # collision/visual size of the free objects (tasks assume nominal sizes)
    "joint_damping": 1.0,  # damping of the 7 arm joints
    "joint_armature": 1.0,  # armature (reflected rotor inertia) of the 7 arm joints
    "controller_kp": 1.0,  # stiffness of the inner controller's servos (joint and Cartesian)
    "controller_kd": 1.0,  # damping of the inner controller's servos (joint and Cartesian)
    "camera_fovy": 1.0,  # vertical field of view of every camera
    "camera_x": 0.0,  # m, offset of every camera's position in its parent body's frame
    "camera_y": 0.0,
    "camera_z": 0.0,
    "light": 1.0,  # diffuse intensity of every light and the headlight
    "object_r": 1.0,  # colour channels of the free objects (clipped to [0, 1])
    "object_g": 1.0,
    "object_b": 1.0,
}
DYNAMICS_OFFSETS = frozenset({"camera_x", "camera_y", "camera_z"})


class RenderingUnavailableError(RuntimeError):
    """MuJoCo could not create an offscreen OpenGL context, so no camera image can be rendered."""

    def __init__(self, cause: BaseException) -> None:
        backend = os.environ.get("MUJOCO_GL", "<unset>")
        super().__init__(
            f"cannot render camera images with MUJOCO_GL={backend} ({type(cause).__name__}: {cause}). "
            "Headless rendering needs an OpenGL backend: install Debian libegl1 and libgl1 (then "
            "MUJOCO_GL=egl) or libosmesa6 (then MUJOCO_GL=osmesa), set before Python imports MuJoCo"
        )


def check_command(command: Command, n_joints: int) -> None:
    """Raise ``ValueError`` for a misshapen or non-finite command, ``TypeError`` for another kind."""
    if isinstance(command, JointCommand):
        values = np.asarray(command.positions, dtype=float)
        if values.shape != (n_joints,):
            raise ValueError(f"joint command needs {n_joints} positions, got shape {values.shape}")
    elif isinstance(command, EndEffectorCommand):
        values = np.concatenate([np.asarray(command.position, float), np.asarray(command.quat, float)])
    else:
        raise TypeError(f"unsupported command {type(command).__name__}")
    if not np.all(np.isfinite(values)) or not np.isfinite(command.gripper_width):
        raise ValueError(f"non-finite command rejected: {command}")


def make_sim_arm(config: EnvConfig) -> Any:
    """Robot kind ``sim`` (entry point ``robot_rl.robots: sim``): the task's scene, the env's
    cameras, the workspace box as the tool's wall; behind the bridge's safety supervisor with
    ``robot.sim.supervised`` (:mod:`robot_rl.sim.supervised`)."""
    workspace = (np.array(config.control.workspace_low), np.array(config.control.workspace_high))
    arm = SimArm(scene=config.task.name, config=config.robot.sim, cameras=requested_cameras(config),
                 workspace=workspace)
    if not config.robot.sim.supervised:
        return arm
    from robot_rl.sim.supervised import supervised

    return supervised(arm, workspace, config.robot.sim.supervisor_hz)


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
        self._nominal = self._nominal_model()  # what set_dynamics restores before applying scales
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
        check_command(command, self.spec.n_joints)
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

    # ------------------------------------------------------------------ RandomizableRobot
    def dynamics_defaults(self) -> dict[str, float]:
        """Every :meth:`set_dynamics` parameter → its nominal value (:data:`DYNAMICS_DEFAULTS`)."""
        return dict(DYNAMICS_DEFAULTS)

    def set_dynamics(self, params: Mapping[str, float]) -> None:
        """Restore the nominal model, then apply ``params`` (see :data:`DYNAMICS_DEFAULTS`; names
        left out stay nominal). Takes effect at the next physics step; call it before
        :meth:`reset` so objects settle under the new physics. ``object_size`` changes collision
        geometry the tasks' success checks assume (cube half-size, peg length): keep it near 1.

        Raises ``ValueError`` for an unknown name, a non-finite value or a scale <= 0; the model
        is left unchanged then."""
        values = dict(DYNAMICS_DEFAULTS)
        for name, value in params.items():
            if name not in DYNAMICS_DEFAULTS:
                raise ValueError(f"unknown dynamics parameter {name!r}; SimArm accepts {', '.join(DYNAMICS_DEFAULTS)}")
            value = float(value)
            if not np.isfinite(value) or (name not in DYNAMICS_OFFSETS and value <= 0):
                raise ValueError(f"dynamics parameter {name!r} must be a finite "
                                 f"{'number' if name in DYNAMICS_OFFSETS else 'scale > 0'}, got {value!r}")
            values[name] = value
        m, n = self.model, self._nominal
        objects, arm_dofs = n["object_geoms"], self._dof_idx
        m.geom_friction[:, 0] = n["geom_friction"] * values["friction"]
        m.body_mass[n["object_bodies"]] = n["body_mass"] * values["object_mass"]
        m.body_inertia[n["object_bodies"]] = n["body_inertia"] * values["object_mass"]
        size = values["object_size"]
        m.geom_size[objects] = n["geom_size"] * size
        m.geom_rbound[objects] = n["geom_rbound"] * size
        m.geom_aabb[objects] = n["geom_aabb"] * size
        m.dof_damping[arm_dofs] = n["dof_damping"] * values["joint_damping"]
        m.dof_armature[arm_dofs] = n["dof_armature"] * values["joint_armature"]
        for group, (gain, bias) in n["gains"].items():
            gain, bias = gain.copy(), bias.copy()
            gain[:, 0] *= values["controller_kp"]
            bias[:, 1] *= values["controller_kp"]  # position servo: bias = -kp·q - kv·q̇
            bias[:, 2] *= values["controller_kd"]
            self.controller._gains[group] = (gain, bias)
        mode, self.controller.mode = self.controller.mode, ""
        self.controller.use(mode)  # write the active group's new gains into the model
        m.cam_fovy[:] = n["cam_fovy"] * values["camera_fovy"]
        m.cam_pos[:] = n["cam_pos"] + np.array([values["camera_x"], values["camera_y"], values["camera_z"]])
        m.light_diffuse[:] = n["light_diffuse"] * values["light"]
        m.vis.headlight.diffuse[:] = n["headlight_diffuse"] * values["light"]
        rgb = np.array([values["object_r"], values["object_g"], values["object_b"]])
        m.geom_rgba[objects, :3] = np.clip(n["geom_rgb"] * rgb, 0.0, 1.0)

    def _nominal_model(self) -> dict[str, object]:
        """Copies of the model values :meth:`set_dynamics` changes, as loaded."""
        m = self.model
        bodies = np.array([m.body(name).id for name in self._free_objects], dtype=int)
        geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in set(bodies.tolist())], dtype=int)
        return {
            "object_bodies": bodies, "object_geoms": geoms,
            "geom_friction": m.geom_friction[:, 0].copy(),
            "body_mass": m.body_mass[bodies].copy(), "body_inertia": m.body_inertia[bodies].copy(),
            "geom_size": m.geom_size[geoms].copy(), "geom_rbound": m.geom_rbound[geoms].copy(),
            "geom_aabb": m.geom_aabb[geoms].copy(), "geom_rgb": m.geom_rgba[geoms, :3].copy(),
            "dof_damping": m.dof_damping[self._dof_idx].copy(), "dof_armature": m.dof_armature[self._dof_idx].copy(),
            "gains": {group: (gain.copy(), bias.copy()) for group, (gain, bias) in self.controller._gains.items()},
            "cam_fovy": m.cam_fovy.copy(), "cam_pos": m.cam_pos.copy(),
            "light_diffuse": m.light_diffuse.copy(), "headlight_diffuse": m.vis.headlight.diffuse.copy(),
        }

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
