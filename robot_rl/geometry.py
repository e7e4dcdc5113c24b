"""Small rigid-body helpers on numpy arrays.

Conventions: positions in metres, angles in radians, quaternions ``(w, x, y, z)`` (MuJoCo order),
rotation matrices act on column vectors.
"""

from __future__ import annotations

import numpy as np


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a ⊗ b`` of (w, x, y, z) quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_from_axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    half = 0.5 * angle
    return np.concatenate([[np.cos(half)], np.sin(half) * axis])


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vector (axis · angle, angle in [0, π]) of a unit quaternion."""
    q = q if q[0] >= 0 else -q
    sin_half = np.linalg.norm(q[1:])
    if sin_half < 1e-12:
        return 2.0 * q[1:]
    angle = 2.0 * np.arctan2(sin_half, q[0])
    return q[1:] / sin_half * angle


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector ``v`` by unit quaternion ``q``."""
    return quat_to_matrix(q) @ v


def top_down_quat(yaw: float) -> np.ndarray:
    """Gripper orientation pointing straight down (tool z = world −z) rotated by ``yaw`` about
    world z; yaw 0 puts the finger opening axis along world −y ... +y."""
    down = np.array([0.0, 1.0, 0.0, 0.0])  # 180° about x: tool z → world −z
    return quat_multiply(quat_from_axis_angle(np.array([0.0, 0.0, 1.0]), yaw), down)


def yaw_of_top_down(q: np.ndarray) -> float:
    """Yaw (about world z) of a tool orientation; exact when the tool points straight down."""
    x_axis = quat_to_matrix(q)[:, 0]
    return float(np.arctan2(x_axis[1], x_axis[0]))


def wrap_angle(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)
