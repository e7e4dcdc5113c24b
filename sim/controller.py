"""Inner controller of the simulated arm, evaluated by MuJoCo at every physics step.

The arm model carries two actuator groups (see ``assets/arm.xml``):

* **joint servos**: PD on joint positions, for :class:`~robot_rl.robot.JointCommand`;
* **Cartesian impedance**: site-transmission actuators on the tool centre point relative to
  the ``ee_ref`` frame, i.e. operational-space control τ = Jᵀ(K_p e − K_d ẋ) computed in C,
  for :class:`~robot_rl.robot.EndEffectorCommand`.

Both run at the physics rate (500 Hz with the default 2 ms timestep) without a Python call per
step, which keeps the simulator's cost dominated by physics. This class enables one group at a
time (by zeroing the other's gains) and converts world-frame targets into actuator controls.
"""

from __future__ import annotations

import mujoco
import numpy as np

CARTESIAN_ACTUATORS = ("ee_x", "ee_y", "ee_z", "ee_rx", "ee_ry", "ee_rz")


class InnerController:
    """Switches between joint and Cartesian servoing and writes their set-points."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, joint_actuators: list[str]) -> None:
        self.model, self.data = model, data
        self.joint_ids = np.array([model.actuator(name).id for name in joint_actuators])
        self.cartesian_ids = np.array([model.actuator(name).id for name in CARTESIAN_ACTUATORS])
        self._gains = {
            group: (model.actuator_gainprm[ids].copy(), model.actuator_biasprm[ids].copy())
            for group, ids in (("joint", self.joint_ids), ("cartesian", self.cartesian_ids))
        }
        ref = model.site("ee_ref").id
        self._ref_site = ref
        self._ref_quat_inv = np.empty(4)
        self._relative = np.empty(4)
        self._rotvec = np.empty(3)
        self.mode = ""
        self.use("joint")

    def use(self, mode: str) -> None:
        """Enable the ``"joint"`` or ``"cartesian"`` actuator group and silence the other."""
        if mode == self.mode:
            return
        for group, ids in (("joint", self.joint_ids), ("cartesian", self.cartesian_ids)):
            gain, bias = self._gains[group]
            active = group == mode
            self.model.actuator_gainprm[ids] = gain if active else 0.0
            self.model.actuator_biasprm[ids] = bias if active else 0.0
        self.mode = mode

    def set_joint_target(self, positions: np.ndarray) -> None:
        self.use("joint")
        self.data.ctrl[self.joint_ids] = positions

    def set_pose_target(self, position: np.ndarray, quat: np.ndarray) -> None:
        """World-frame tool pose → Cartesian actuator set-points in the ``ee_ref`` frame."""
        self.use("cartesian")
        d = self.data
        ref_rot = d.site_xmat[self._ref_site].reshape(3, 3)
        ctrl = d.ctrl
        ctrl[self.cartesian_ids[:3]] = ref_rot.T @ (position - d.site_xpos[self._ref_site])
        mujoco.mju_mat2Quat(self._ref_quat_inv, d.site_xmat[self._ref_site])
        mujoco.mju_negQuat(self._ref_quat_inv, self._ref_quat_inv)
        mujoco.mju_mulQuat(self._relative, self._ref_quat_inv, quat)
        if self._relative[0] < 0:  # same rotation, shorter way round
            self._relative *= -1
        mujoco.mju_quat2Vel(self._rotvec, self._relative, 1.0)
        ctrl[self.cartesian_ids[3:]] = self._rotvec
