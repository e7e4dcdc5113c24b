"""DH kinematics of the real arms: Jacobian against finite differences, the IK step, FRANKA_PANDA
against the MuJoCo sim arm (built from the same DH table), and UR5E against UR's published
geometry."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from robot_rl.geometry import quat_from_axis_angle, quat_multiply, quat_to_matrix
from robot_rl.hardware.kinematics import CHAINS, FRANKA_PANDA, UR5E, DHChain, matrix_to_quat
from robot_rl.robot import ResetRequest
from robot_rl.sim.sim_arm import ARM_JOINTS

from conftest import orientation_error

CHAIN_IDS = sorted(CHAINS)
# Well-conditioned postures, tool pointing down: the sim arm's home and the UR5e's elbow-up home.
START = {
    "franka_panda": np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785]),
    "ur5e": np.array([0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0]),
}


def random_q(chain: DHChain, rng: np.random.Generator, margin: float = 0.0) -> np.ndarray:
    # UR's ±2π ranges would make most samples redundant turns; ±π covers every pose.
    lower = np.maximum(np.asarray(chain.lower) + margin, -np.pi)
    upper = np.minimum(np.asarray(chain.upper) - margin, np.pi)
    return rng.uniform(lower, upper)


@pytest.mark.parametrize("name", CHAIN_IDS)
def test_jacobian_matches_finite_differences(name):
    chain = CHAINS[name]
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(20):
        q = random_q(chain, rng)
        J = chain.jacobian(q)
        assert J.shape == (6, chain.n_joints)
        numeric = np.empty_like(J)
        pos, quat = chain.forward(q)
        for i in range(chain.n_joints):
            dq = np.zeros(chain.n_joints)
            dq[i] = eps
            pos_i, quat_i = chain.forward(q + dq)
            numeric[:3, i] = (pos_i - pos) / eps
            # Angular velocity in the base frame: the rotation taking quat to quat_i, per radian.
            delta = quat_multiply(quat_i, quat * np.array([1.0, -1.0, -1.0, -1.0]))
            delta = delta if delta[0] >= 0 else -delta
            numeric[3:, i] = 2.0 * delta[1:] / eps
        np.testing.assert_allclose(J, numeric, atol=1e-5)


def test_matrix_to_quat_round_trips_including_half_turns():
    rng = np.random.default_rng(1)
    axes = [np.array(a, float) for a in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -2, 3))]
    angles = [0.0, 0.3, np.pi / 2, np.pi - 1e-9, np.pi]
    cases = [quat_from_axis_angle(a, t) for a in axes for t in angles]
    cases += [q / np.linalg.norm(q) for q in rng.normal(size=(50, 4))]
    for q in cases:
        R = quat_to_matrix(q)
        back = matrix_to_quat(R)
        assert back[0] >= 0
        assert min(np.abs(back - q).max(), np.abs(back + q).max()) < 1e-9


@pytest.mark.parametrize("name", CHAIN_IDS)
def test_ik_step_converges_from_nearby_starts(name):
    """Called once per control tick, as the bridge does, the IK step reaches reachable pose
    targets from starts up to 0.3 rad away per joint within 1 mm and 0.01 rad."""
    chain = CHAINS[name]
    rng = np.random.default_rng(2)
    max_step = 0.1
    for _ in range(30):
        q_goal = random_q(chain, rng, margin=0.1)
        target_pos, target_quat = chain.forward(q_goal)
        q = np.clip(q_goal + rng.uniform(-0.3, 0.3, chain.n_joints), chain.lower, chain.upper)
        for _tick in range(20):
            q_next = chain.ik_step(q, target_pos, target_quat, max_joint_step=max_step)
            assert np.all(np.abs(q_next - q) <= max_step + 1e-12)
            assert np.all(q_next >= chain.lower) and np.all(q_next <= chain.upper)
            q = q_next
        pos, quat = chain.forward(q)
        assert np.linalg.norm(pos - target_pos) < 1e-3
        assert orientation_error(quat, target_quat) < 0.01


@pytest.mark.parametrize("name", CHAIN_IDS)
def test_ik_step_respects_joint_limits_and_step_bound(name):
    """A target beyond the limits (here: the pose of a posture with one joint past its limit)
    leaves that joint clipped at the limit, and a far target is approached in bounded steps."""
    chain = CHAINS[name]
    q0 = START[name]
    beyond = q0.copy()
    beyond[0] = chain.upper[0] + 0.4
    target_pos, target_quat = chain.forward(beyond)
    q = q0
    per_joint_step = np.full(chain.n_joints, 0.05)
    per_joint_step[1] = 0.01
    for _ in range(200):
        q_next = chain.ik_step(q, target_pos, target_quat, max_joint_step=per_joint_step, iterations=2)
        assert np.all(np.abs(q_next - q) <= per_joint_step + 1e-12)
        assert np.all(q_next >= chain.lower) and np.all(q_next <= chain.upper)
        q = q_next
    assert np.all(np.isfinite(q))


def test_ik_step_brings_joints_reported_past_a_limit_inside():
    chain = FRANKA_PANDA
    pos, quat = chain.forward(START["franka_panda"])
    for offset in (-0.5, -0.01, 0.01, 0.5):
        q = START["franka_panda"].copy()
        q[3] = chain.lower[3] + offset if offset < 0 else chain.upper[3] + offset
        q_next = chain.ik_step(q, pos, quat, max_joint_step=0.05)
        assert chain.lower[3] <= q_next[3] <= chain.upper[3]


def test_ik_step_is_finite_at_singular_postures():
    """Stretched-out and wrist-aligned postures make J Jᵀ singular; the damping keeps the step
    finite and within its bound even for a target the arm cannot reach (beyond full reach)."""
    for chain, q in ((UR5E, np.zeros(6)), (UR5E, np.array([0.0, -1.0, 1.5, -0.5, 0.0, 0.0])),
                     (FRANKA_PANDA, np.array([0.0, 0.0, 0.0, -0.0698, 0.0, 0.0, 0.0]))):
        pos, quat = chain.forward(q)
        far = pos * 3.0
        q_next = chain.ik_step(q, far, quat, max_joint_step=0.05)
        assert np.all(np.isfinite(q_next)) and np.all(np.abs(q_next - q) <= 0.05 + 1e-12)


def test_franka_panda_matches_sim_arm(make_arm):
    """FRANKA_PANDA is the sim arm's kinematics exactly: the MJCF was built from the same
    modified-DH table (link0 at the world origin, so the DH base frame is the world frame), and
    its ``tcp`` site sits 0.1034 m along the z of a hand body mounted 0.107 m past joint 7's frame
    and turned -45° about z, which is the chain's flange row and flange→TCP transform."""
    arm = make_arm("reach")
    rng = np.random.default_rng(3)
    lower, upper = arm.spec.joint_lower, arm.spec.joint_upper
    assert np.allclose(lower, FRANKA_PANDA.lower) and np.allclose(upper, FRANKA_PANDA.upper)
    for _ in range(8):
        q = rng.uniform(lower, upper)
        # Through the Robot interface: reset settles physics for a while, so compare at the joint
        # positions the state reports (the site pose lags them by at most one physics step).
        state = arm.reset(ResetRequest(joint_positions=q, gripper_width=0.04))
        pos, quat = FRANKA_PANDA.forward(state.joint_pos)
        assert np.linalg.norm(pos - state.ee_pos) < 1e-3
        assert orientation_error(quat, state.ee_quat) < 1e-3
        # Exactly, with MuJoCo's own forward kinematics at the same joint positions.
        for name, value in zip(ARM_JOINTS, q):
            arm.data.joint(name).qpos[0] = value
        mujoco.mj_kinematics(arm.model, arm.data)
        exact = arm.read_state()
        pos, quat = FRANKA_PANDA.forward(q)
        assert np.linalg.norm(pos - exact.ee_pos) < 1e-9
        assert orientation_error(quat, exact.ee_quat) < 1e-6  # MJCF quaternions have 8 digits


def test_franka_panda_known_poses():
    # All joints at zero: the arm stands straight up with the flange pointing down, 0.088 m forward
    # (a7) and 0.333 + 0.316 + 0.384 - 0.107 = 0.926 m high; the TCP is 0.1034 m further down.
    pos, quat = FRANKA_PANDA.forward(np.zeros(7))
    np.testing.assert_allclose(pos, [0.088, 0.0, 0.926 - 0.1034], atol=1e-12)
    # Tool z points down (180° about x), hand turned -45° about the tool axis.
    expected = quat_multiply(np.array([0.0, 1.0, 0.0, 0.0]), quat_from_axis_angle(np.array([0, 0, 1.0]), -np.pi / 4))
    assert orientation_error(quat, expected) < 1e-12


def test_ur5e_zero_pose():
    """At the all-zero posture the UR5e lies stretched along -x of its Base frame (a2 + a3), at
    shoulder height d1 less d5 (wrist 2 hangs down), offset by d4 + d6 along -y; the flange faces
    -y (tool frame = 90° about the base x axis)."""
    pos, quat = UR5E.forward(np.zeros(6))
    np.testing.assert_allclose(pos, [-(0.425 + 0.3922), -(0.1333 + 0.0996), 0.1625 - 0.0997], atol=1e-12)
    assert orientation_error(quat, quat_from_axis_angle(np.array([1.0, 0, 0]), np.pi / 2)) < 1e-12


def test_ur5e_upright_pose():
    # Shoulder lift and wrist 1 at -90°: the arm points straight up, the flange at the full height
    # d1 + |a2| + |a3| + d5, facing -y at the d4 + d6 offset.
    pos, _ = UR5E.forward(np.array([0.0, -np.pi / 2, 0.0, -np.pi / 2, 0.0, 0.0]))
    np.testing.assert_allclose(pos, [0.0, -(0.1333 + 0.0996), 0.1625 + 0.425 + 0.3922 + 0.0997], atol=1e-12)


def _urdf_joint(xyz, rpy) -> np.ndarray:
    """URDF joint origin: translation, then fixed-axis roll-pitch-yaw (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    roll, pitch, yaw = rpy
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                          [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                          [-sp, cp * sr, cp * cr]])
    T[:3, 3] = xyz
    return T


def _rot_z(angle: float) -> np.ndarray:
    T = np.eye(4)
    T[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return T


# ur_description's config/ur5e/default_kinematics.yaml: the URDF joint origins (xyz, rpy) UR's
# ROS description derives from the same DH table, each followed by a rotation about the joint's z.
# The chain starts at ``base_link_inertia``, which coincides with UR's Base frame, and ends at the
# wrist_3_link frame, which is DH frame 6 (the flange).
UR5E_URDF = [
    ((0, 0, 0.1625), (0, 0, 0)),
    ((0, 0, 0), (1.570796327, 0, 0)),
    ((-0.425, 0, 0), (0, 0, 0)),
    ((-0.3922, 0, 0.1333), (0, 0, 0)),
    ((0, -0.0997, -2.044881182297852e-11), (1.570796327, 0, 0)),
    ((0, 0.0996, -2.042830148012698e-11), (1.570796326589793, 3.141592653589793, 3.141592653589793)),
]


def test_ur5e_matches_ur_description():
    """An independent parameterisation (URDF origins instead of DH rows) gives the same flange
    pose at random postures."""
    rng = np.random.default_rng(4)
    for _ in range(20):
        q = rng.uniform(-np.pi, np.pi, 6)
        T = np.eye(4)
        for (xyz, rpy), angle in zip(UR5E_URDF, q):
            T = T @ _urdf_joint(xyz, rpy) @ _rot_z(angle)
        pos, quat = UR5E.forward(q)
        np.testing.assert_allclose(pos, T[:3, 3], atol=1e-9)
        assert orientation_error(quat, matrix_to_quat(T[:3, :3])) < 1e-9


def test_tool_and_base_transforms():
    """with_tcp moves the TCP along the flange axes; base_pos/base_quat move every pose rigidly."""
    q = np.array([0.3, -0.8, 1.2, -1.5, -1.4, 0.5])
    flange = UR5E.forward_matrix(q)
    tool = UR5E.with_tcp((0.0, 0.0, 0.15), (1.0, 0.0, 0.0, 0.0)).forward_matrix(q)
    np.testing.assert_allclose(tool[:3, 3], flange[:3, 3] + 0.15 * flange[:3, 2], atol=1e-12)
    turn = quat_from_axis_angle(np.array([0, 0, 1.0]), np.pi)  # UR Base → ROS base_link
    moved = dataclasses.replace(UR5E, base_pos=(0.1, 0.2, 0.3), base_quat=tuple(turn))
    pos, _ = moved.forward(q)
    expected = np.array([-flange[0, 3], -flange[1, 3], flange[2, 3]]) + [0.1, 0.2, 0.3]
    np.testing.assert_allclose(pos, expected, atol=1e-12)
    np.testing.assert_allclose(moved.jacobian(q)[:3], np.diag([-1.0, -1.0, 1.0]) @ UR5E.jacobian(q)[:3], atol=1e-12)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="expected 7 joint positions"):
        FRANKA_PANDA.forward(np.zeros(6))
    with pytest.raises(ValueError, match="convention"):
        DHChain("x", "craig", (0.0,), (0.0,), (0.0,), (0.0,), (-1.0,), (1.0,))
    with pytest.raises(ValueError, match="d has 2 entries"):
        DHChain("x", "standard", (0.0,), (0.0, 1.0), (0.0,), (0.0,), (-1.0,), (1.0,))
