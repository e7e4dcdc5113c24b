"""Serial-arm kinematics from Denavit–Hartenberg tables, in numpy only (no MuJoCo).

The arm bridge needs kinematics for real arms without a simulator: forward kinematics of the tool
centre point (TCP) for the safety supervisor's workspace box and for the end-effector pose it
publishes, and a small damped-least-squares IK step that turns an end-effector target into a
joint position target for ros2_control joint-level controllers.

Conventions: metres, radians; quaternions ``(w, x, y, z)``; every pose is expressed in the
chain's *base frame* (the DH frame 0, moved by ``base_pos``/``base_quat``). Two DH conventions:

* ``"modified"`` (Craig; Franka's published table): link transform
  ``RotX(alpha) · TransX(a) · RotZ(theta + q) · TransZ(d)``; joint ``i`` turns about the z axis
  of the frame the transform leads *to*.
* ``"standard"`` (Denavit–Hartenberg; Universal Robots' published table): link transform
  ``RotZ(theta + q) · TransZ(d) · TransX(a) · RotX(alpha)``; joint ``i`` turns about the z axis
  of the frame the transform starts *from*.

After the last joint frame come an optional fixed ``flange`` DH row (same convention, no joint;
Franka publishes its flange this way) and the fixed flange→TCP transform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from robot_rl.geometry import (
    quat_conjugate,
    quat_multiply,
    quat_to_matrix,
    quat_to_rotvec,
)

Convention = Literal["modified", "standard"]


def _transform(pos: tuple[float, ...], quat: tuple[float, ...]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.asarray(quat, dtype=float) / np.linalg.norm(quat))
    T[:3, 3] = pos
    return T


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix (Shepperd's method:
    divide by the largest of the four squared components, so it stays accurate near 180°)."""
    m00, m11, m22 = R[0, 0], R[1, 1], R[2, 2]
    trace = m00 + m11 + m22
    if trace > max(m00, m11, m22):
        s = 2.0 * np.sqrt(1.0 + trace)
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    elif m00 >= m11 and m00 >= m22:
        s = 2.0 * np.sqrt(1.0 + m00 - m11 - m22)
        q = np.array([(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s])
    elif m11 >= m22:
        s = 2.0 * np.sqrt(1.0 + m11 - m00 - m22)
        q = np.array([(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + m22 - m00 - m11)
        q = np.array([(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


@dataclass(frozen=True)
class DHChain:
    """A serial revolute arm described by a DH table, plus its fixed base and tool transforms.

    Args:
        name: label, e.g. ``"franka_panda"``.
        convention: ``"modified"`` (Craig) or ``"standard"``; see the module docstring.
        a, d, alpha, theta_offset: one entry per joint (m, m, rad, rad); the joint angle enters
            as ``theta_offset + q``.
        lower, upper: joint position limits (rad) that :meth:`ik_step` keeps to.
        flange: ``(a, d, alpha)`` of a fixed DH row from the last joint frame to the flange
            (zeros when the last joint frame already is the flange, as in UR's table).
        tcp_pos, tcp_quat: flange→TCP translation (m, flange frame) and rotation ``(w, x, y, z)``.
        base_pos, base_quat: pose of DH frame 0 in the base frame poses are reported in.
    """

    name: str
    convention: Convention
    a: tuple[float, ...]
    d: tuple[float, ...]
    alpha: tuple[float, ...]
    theta_offset: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    flange: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tcp_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tcp_quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    base_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    base_quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    # Derived constants, computed once so forward() only builds the joint-dependent parts.
    _base: np.ndarray = field(init=False, repr=False, compare=False)
    _tool: np.ndarray = field(init=False, repr=False, compare=False)
    _a: np.ndarray = field(init=False, repr=False, compare=False)
    _d: np.ndarray = field(init=False, repr=False, compare=False)
    _theta_offset: np.ndarray = field(init=False, repr=False, compare=False)
    _cos_alpha: np.ndarray = field(init=False, repr=False, compare=False)
    _sin_alpha: np.ndarray = field(init=False, repr=False, compare=False)
    _lower: np.ndarray = field(init=False, repr=False, compare=False)
    _upper: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.convention not in ("modified", "standard"):
            raise ValueError(f"{self.name}: convention must be 'modified' or 'standard', got {self.convention!r}")
        n = len(self.a)
        for key in ("d", "alpha", "theta_offset", "lower", "upper"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"{self.name}: {key} has {len(getattr(self, key))} entries, a has {n}")
        if not np.all(np.asarray(self.lower) < np.asarray(self.upper)):
            raise ValueError(f"{self.name}: every lower joint limit must be below the upper one")
        fa, fd, falpha = self.flange
        flange = self._links(np.zeros(1), np.array([fa]), np.array([fd]),
                             np.array([np.cos(falpha)]), np.array([np.sin(falpha)]))[0]
        object.__setattr__(self, "_base", _transform(self.base_pos, self.base_quat))
        object.__setattr__(self, "_tool", flange @ _transform(self.tcp_pos, self.tcp_quat))
        for key in ("a", "d", "theta_offset", "lower", "upper"):
            object.__setattr__(self, f"_{key}", np.asarray(getattr(self, key), dtype=float))
        object.__setattr__(self, "_cos_alpha", np.cos(np.asarray(self.alpha, dtype=float)))
        object.__setattr__(self, "_sin_alpha", np.sin(np.asarray(self.alpha, dtype=float)))

    @property
    def n_joints(self) -> int:
        return len(self.a)

    def with_tcp(self, pos: tuple[float, float, float], quat: tuple[float, float, float, float]) -> DHChain:
        """The same arm with another flange→TCP transform (e.g. the tool mounted on it)."""
        return dataclasses.replace(self, tcp_pos=tuple(pos), tcp_quat=tuple(quat))

    def with_limits(self, lower: tuple[float, ...], upper: tuple[float, ...]) -> DHChain:
        """The same arm with other joint limits (e.g. FR3's instead of Panda's)."""
        return dataclasses.replace(self, lower=tuple(lower), upper=tuple(upper))

    # ------------------------------------------------------------------ kinematics
    def _links(self, theta: np.ndarray, a: np.ndarray, d: np.ndarray, ca: np.ndarray, sa: np.ndarray) -> np.ndarray:
        """(n, 4, 4) link transforms for joint angles ``theta`` (closed forms of the products in
        the module docstring, built for all joints at once)."""
        ct, st = np.cos(theta), np.sin(theta)
        T = np.zeros((len(theta), 4, 4))
        T[:, 3, 3] = 1.0
        if self.convention == "modified":
            T[:, 0, 0], T[:, 0, 1], T[:, 0, 3] = ct, -st, a
            T[:, 1, 0], T[:, 1, 1], T[:, 1, 2], T[:, 1, 3] = st * ca, ct * ca, -sa, -sa * d
            T[:, 2, 0], T[:, 2, 1], T[:, 2, 2], T[:, 2, 3] = st * sa, ct * sa, ca, ca * d
        else:
            T[:, 0, 0], T[:, 0, 1], T[:, 0, 2], T[:, 0, 3] = ct, -st * ca, st * sa, a * ct
            T[:, 1, 0], T[:, 1, 1], T[:, 1, 2], T[:, 1, 3] = st, ct * ca, -ct * sa, a * st
            T[:, 2, 1], T[:, 2, 2], T[:, 2, 3] = sa, ca, d
        return T

    def _frames(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """TCP transform (4, 4), joint axes (n, 3) and points on them (n, 3), in the base frame."""
        q = np.asarray(q, dtype=float)
        if q.shape != (self.n_joints,):
            raise ValueError(f"{self.name}: expected {self.n_joints} joint positions, got shape {q.shape}")
        links = self._links(self._theta_offset + q, self._a, self._d, self._cos_alpha, self._sin_alpha)
        # Modified DH: joint i's axis is z of the frame *after* link i; standard: *before* it.
        joint_frames = np.empty((self.n_joints, 4, 4))
        T = self._base
        for i in range(self.n_joints):
            if self.convention == "standard":
                joint_frames[i] = T
            T = T @ links[i]
            if self.convention == "modified":
                joint_frames[i] = T
        return T @ self._tool, joint_frames[:, :3, 2], joint_frames[:, :3, 3]

    def forward_matrix(self, q: np.ndarray) -> np.ndarray:
        """TCP pose as a 4×4 homogeneous transform in the base frame (m)."""
        return self._frames(q)[0]

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position (3,) in m and orientation ``(w, x, y, z)`` (4,), both in the base frame,
        at joint positions ``q`` (rad)."""
        T = self._frames(q)[0]
        return T[:3, 3].copy(), matrix_to_quat(T[:3, :3])

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Geometric Jacobian (6, n) of the TCP in the base frame: rows 0–2 map joint velocities
        (rad/s) to TCP linear velocity (m/s), rows 3–5 to angular velocity (rad/s)."""
        T, axes, points = self._frames(q)
        return self._jacobian(T[:3, 3], axes, points)

    @staticmethod
    def _jacobian(tcp: np.ndarray, axes: np.ndarray, points: np.ndarray) -> np.ndarray:
        J = np.empty((6, len(axes)))
        r = tcp - points
        # axes × r written out: np.cross costs several times more on arrays this small.
        J[0] = axes[:, 1] * r[:, 2] - axes[:, 2] * r[:, 1]
        J[1] = axes[:, 2] * r[:, 0] - axes[:, 0] * r[:, 2]
        J[2] = axes[:, 0] * r[:, 1] - axes[:, 1] * r[:, 0]
        J[3:] = axes.T
        return J

    def ik_step(self, q: np.ndarray, target_pos: np.ndarray, target_quat: np.ndarray, max_joint_step: float | np.ndarray,
                damping: float = 0.05, iterations: int = 4) -> np.ndarray:
        """Joint positions (rad) that move the TCP toward a pose target, within one bounded step.

        Damped least squares, ``dq = Jᵀ (J Jᵀ + damping² I)⁻¹ e``, iterated ``iterations`` times
        from ``q``; ``e`` stacks the position error (m) and the orientation error as a rotation
        vector (rad), both in the base frame. The damping keeps steps finite near singularities
        at the cost of slower convergence there. Each iterate is clipped to ``q ± max_joint_step``
        (rad, scalar or per joint: the bound on the whole call, so a far target moves the arm
        gradually, one call per control tick) and to the joint limits; the limits win when ``q``
        itself lies outside them (a joint reported past its limit is brought back inside).

        Args:
            q: current joint positions (rad).
            target_pos: TCP position target (m, base frame).
            target_quat: TCP orientation target ``(w, x, y, z)``, base frame.
            max_joint_step: largest change of any joint in this call (rad).
            damping: DLS damping factor (m or rad); larger is smoother and slower.
            iterations: Gauss–Newton iterations per call.
        """
        q0 = np.asarray(q, dtype=float)
        target_pos = np.asarray(target_pos, dtype=float)
        target_quat = np.asarray(target_quat, dtype=float)
        target_quat = target_quat / np.linalg.norm(target_quat)
        # Step window inside the limits; when q lies more than a step outside them the window
        # collapses onto the nearest limit.
        low = np.minimum(np.maximum(self._lower, q0 - max_joint_step), self._upper)
        high = np.maximum(np.minimum(self._upper, q0 + max_joint_step), self._lower)
        damping_sq = np.eye(6) * damping**2
        error = np.empty(6)
        q_new = np.clip(q0, self._lower, self._upper)
        for _ in range(iterations):
            T, axes, points = self._frames(q_new)
            error[:3] = target_pos - T[:3, 3]
            # World-frame rotation taking the current orientation to the target, matching the
            # Jacobian's angular rows (also expressed in the base frame).
            error[3:] = quat_to_rotvec(quat_multiply(target_quat, quat_conjugate(matrix_to_quat(T[:3, :3]))))
            J = self._jacobian(T[:3, 3], axes, points)
            dq = J.T @ np.linalg.solve(J @ J.T + damping_sq, error)
            q_new = np.clip(q_new + dq, low, high)
        return q_new


_PI_2 = np.pi / 2

# Franka Emika Panda / Franka Research 3: modified DH from Franka's "Robot and interface
# specifications" (FCI docs); FR3 shares this table. Limits are the Panda's datasheet limits (the
# same as the sim arm's MJCF); FR3 configs replace them with with_limits(). The flange row is
# Franka's published "Flange" (d = 0.107); the TCP is franka_description's hand TCP: the hand is
# mounted turned -45° about z and the TCP lies 0.1034 m along the hand's z (fingertip centre).
FRANKA_PANDA = DHChain(
    name="franka_panda",
    convention="modified",
    a=(0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088),
    d=(0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0),
    alpha=(0.0, -_PI_2, _PI_2, _PI_2, -_PI_2, _PI_2, _PI_2),
    theta_offset=(0.0,) * 7,
    lower=(-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
    upper=(2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    flange=(0.0, 0.107, 0.0),
    tcp_pos=(0.0, 0.0, 0.1034),
    tcp_quat=(float(np.cos(-np.pi / 8)), 0.0, 0.0, float(np.sin(-np.pi / 8))),
)

# Universal Robots UR5e: standard DH from UR's "DH parameters for calculations of kinematics and
# dynamics" support article. The base frame is UR's controller/teach-pendant "Base" frame (ROS
# ur_description's ``base``, i.e. ``base_link`` turned 180° about z); frame 6 is the tool flange
# (``tool0``), so the TCP is the flange until a tool is set with with_tcp(). Limits: ±360° per the
# UR5e datasheet, except the elbow at ±180° (the upper arm blocks it beyond; ur_description
# limits it the same way).
UR5E = DHChain(
    name="ur5e",
    convention="standard",
    a=(0.0, -0.425, -0.3922, 0.0, 0.0, 0.0),
    d=(0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996),
    alpha=(_PI_2, 0.0, 0.0, _PI_2, -_PI_2, 0.0),
    theta_offset=(0.0,) * 6,
    lower=(-2 * np.pi, -2 * np.pi, -np.pi, -2 * np.pi, -2 * np.pi, -2 * np.pi),
    upper=(2 * np.pi, 2 * np.pi, np.pi, 2 * np.pi, 2 * np.pi, 2 * np.pi),
)

CHAINS: dict[str, DHChain] = {chain.name: chain for chain in (FRANKA_PANDA, UR5E)}
