"""SimArm on real MuJoCo physics: inner-controller tracking, gripper, resets, and the safety
limits (joint range, workspace box) under random actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.geometry import top_down_quat, yaw_of_top_down
from robot_rl.robot import EndEffectorCommand, JointCommand, ResetRequest, Robot
from robot_rl.sim.sim_arm import HOME

from conftest import orientation_error

# Reachable tool poses (position m, yaw rad) inside the tasks' working volume, visited in this
# order; each is one step from the previous pose (up to ~0.3 m and 1.3 rad apart).
POSE_TARGETS = [
    ((0.50, 0.00, 0.20), 0.0),
    ((0.40, 0.20, 0.10), 0.5),
    ((0.60, -0.20, 0.30), -0.8),
    ((0.50, 0.10, 0.02), 0.3),
    ((0.45, -0.15, 0.25), -0.4),
    ((0.55, 0.05, 0.12), 0.8),
]


def test_simarm_is_a_robot(make_arm):
    arm = make_arm("reach")
    assert isinstance(arm, Robot)
    assert arm.spec.n_joints == 7
    assert set(arm.spec.cameras) == {"scene", "wrist"}
    assert np.all(arm.spec.joint_lower < arm.spec.home) and np.all(arm.spec.home < arm.spec.joint_upper)


def test_end_effector_tracking(make_arm):
    """Cartesian servo accuracy: after 1 s at each target the tool centre point is within 3 mm of
    the commanded position and the tool orientation within 0.02 rad of the commanded
    (top-down, yawed) orientation."""
    arm = make_arm("reach")
    for position, yaw in POSE_TARGETS:
        target_quat = top_down_quat(yaw)
        before = arm.read_state()
        arm.command(EndEffectorCommand(np.array(position), target_quat, 0.04))
        state = arm.advance(1.0)
        assert state.timestamp == pytest.approx(before.timestamp + 1.0)
        position_error = np.linalg.norm(state.ee_pos - np.array(position))
        angle_error = orientation_error(state.ee_quat, target_quat)
        assert position_error < 3e-3, f"target {position}, yaw {yaw}: position error {position_error * 1e3:.2f} mm"
        assert angle_error < 0.02, f"target {position}, yaw {yaw}: orientation error {angle_error:.4f} rad"
        assert abs(yaw_of_top_down(state.ee_quat) - yaw) < 0.02
        assert abs(state.gripper_width - 0.04) < 1e-3


def test_end_effector_target_is_held(make_arm):
    """Once converged, the tool stays put (< 0.5 mm drift over a further second, at rest)."""
    arm = make_arm("reach")
    arm.command(EndEffectorCommand(np.array([0.5, -0.1, 0.15]), top_down_quat(0.2), 0.08))
    settled = arm.advance(1.0)
    later = arm.advance(1.0)
    assert np.linalg.norm(later.ee_pos - settled.ee_pos) < 5e-4
    assert np.max(np.abs(later.joint_vel)) < 0.05


def test_end_effector_targets_are_clipped_to_workspace(make_arm):
    low, high = np.array([0.3, -0.2, 0.1]), np.array([0.6, 0.2, 0.4])
    arm = make_arm("reach", workspace=(low, high))
    arm.command(EndEffectorCommand(np.array([0.9, 0.5, 0.0]), top_down_quat(0.0), 0.08))
    state = arm.advance(1.5)
    np.testing.assert_allclose(state.ee_pos, [0.6, 0.2, 0.1], atol=3e-3)


def test_joint_tracking(make_arm):
    """Joint servo accuracy: after 1 s every joint is within 0.01 rad of its target."""
    arm = make_arm("reach")
    rng = np.random.default_rng(0)
    lower, upper = arm.spec.joint_lower + 0.05, arm.spec.joint_upper - 0.05
    for _ in range(5):
        target = np.clip(HOME + rng.uniform(-0.5, 0.5, size=7), lower, upper)
        arm.command(JointCommand(target, 0.08))
        state = arm.advance(1.0)
        assert np.max(np.abs(state.joint_pos - target)) < 0.01
    # The last target differs from home by up to 0.5 rad: the joints really moved.
    assert np.max(np.abs(state.joint_pos - HOME)) > 0.2


def test_joint_targets_outside_limits_are_clipped(make_arm):
    arm = make_arm("reach")
    target = HOME.copy()
    target[0] = 10.0  # far beyond joint1's upper limit
    arm.command(JointCommand(target, 0.08))
    state = arm.advance(2.0)
    assert state.joint_pos[0] <= arm.spec.joint_upper[0] + 1e-3
    assert state.joint_pos[0] > arm.spec.joint_upper[0] - 0.02


@pytest.mark.parametrize("width", [0.0, 0.02, 0.04, 0.08])
def test_gripper_reaches_commanded_width(make_arm, width):
    """Without an object the finger opening tracks the command within 1 mm."""
    arm = make_arm("reach")
    arm.command(JointCommand(HOME, 0.08 if width < 0.04 else 0.0))  # start from the other extreme
    start = arm.advance(0.5).gripper_width
    arm.command(JointCommand(HOME, width))
    state = arm.advance(1.0)
    assert abs(state.gripper_width - width) < 1e-3
    assert abs(start - width) > 0.03
    # Both fingers move together (equality constraint): symmetric opening.
    left, right = arm.data.qpos[arm._finger_qpos]
    assert abs(left - right) < 5e-4


def test_gripper_closes_on_a_cube_and_lifts_it(make_arm):
    """Closing on the 4 cm cube stops at the cube's width and the grasp survives a lift."""
    arm = make_arm("pick")
    cube = np.array([0.5, 0.0, 0.02, 1.0, 0.0, 0.0, 0.0])
    arm.reset(ResetRequest(HOME, 0.08, objects={"cube": cube}))
    down = top_down_quat(0.0)
    arm.command(EndEffectorCommand(np.array([0.5, 0.0, 0.12]), down, 0.08))
    arm.advance(1.0)
    arm.command(EndEffectorCommand(np.array([0.5, 0.0, 0.02]), down, 0.08))
    arm.advance(1.0)
    arm.command(EndEffectorCommand(np.array([0.5, 0.0, 0.02]), down, 0.0))
    state = arm.advance(0.5)
    assert abs(state.gripper_width - 0.04) < 2e-3
    arm.command(EndEffectorCommand(np.array([0.5, 0.0, 0.15]), down, 0.0))
    state = arm.advance(1.0)
    assert state.objects["cube"][2] > 0.1
    assert np.linalg.norm(state.objects["cube"][:3] - state.ee_pos) < 0.02


# --------------------------------------------------------------------------- resets and errors
def test_reset_places_objects_and_restarts_time(make_arm):
    arm = make_arm("push")
    arm.advance(0.5)
    cube = np.array([0.55, -0.1, 0.025, 1.0, 0.0, 0.0, 0.0])
    goal = np.array([0.45, 0.12, 0.001, 1.0, 0.0, 0.0, 0.0])
    q0 = HOME + 0.01
    state = arm.reset(ResetRequest(q0, 0.0, objects={"cube": cube, "goal": goal}))
    assert state.timestamp == 0.0
    np.testing.assert_allclose(state.objects["cube"][:3], cube[:3], atol=2e-3)  # settled on the table
    np.testing.assert_allclose(state.objects["goal"], goal, atol=1e-9)  # mocap: exact
    np.testing.assert_allclose(state.joint_pos, q0, atol=0.01)
    assert state.gripper_width < 1e-3


def test_reset_with_grasped_peg(make_arm):
    arm = make_arm("peg")
    state = arm.reset(ResetRequest(HOME, 0.0, objects={"hole": np.array([0.5, 0.0, 0.04, 1, 0, 0, 0])},
                                   grasped_object="peg"))
    peg = state.objects["peg"]
    assert np.linalg.norm(peg[:3] - state.ee_pos) < 0.01  # held at the tool centre point
    assert abs(state.gripper_width - 0.024) < 2e-3  # fingers closed on the 24 mm peg
    # Still held after moving the hand.
    arm.command(EndEffectorCommand(state.ee_pos + [0.05, 0.05, -0.1], state.ee_quat, 0.0))
    moved = arm.advance(1.0)
    assert np.linalg.norm(moved.objects["peg"][:3] - moved.ee_pos) < 0.01


def test_simarm_argument_errors(make_arm):
    with pytest.raises(ValueError, match=r"unknown scene 'kitchen'"):
        make_arm("kitchen")
    with pytest.raises(ValueError, match=r"unknown camera 'top'"):
        make_arm("reach", cameras={"top": (64, 64)})
    arm = make_arm("reach")
    with pytest.raises(ValueError, match=r"scene has no object 'cube'"):
        arm.reset(ResetRequest(HOME, 0.08, objects={"cube": np.zeros(7)}))
    with pytest.raises(ValueError, match=r"needs 7 positions"):
        arm.command(JointCommand(np.zeros(6), 0.08))
    with pytest.raises(ValueError, match=r"non-finite command"):
        arm.command(JointCommand(np.full(7, np.nan), 0.08))
    with pytest.raises(ValueError, match=r"non-finite command"):
        arm.command(EndEffectorCommand(np.array([0.5, 0.0, np.inf]), top_down_quat(0.0), 0.08))
    with pytest.raises(ValueError, match=r"non-finite command"):
        arm.command(JointCommand(HOME, float("nan")))
    with pytest.raises(TypeError, match=r"unsupported command"):
        arm.command("home")


def test_stop_holds_position(make_arm):
    arm = make_arm("reach")
    arm.command(JointCommand(HOME + 0.4, 0.08))
    moving = arm.advance(0.1)
    assert np.max(np.abs(moving.joint_vel)) > 0.1
    arm.stop()
    held = arm.advance(1.0)
    # Stopped within a short braking distance of where stop() was called, not at the target.
    assert np.max(np.abs(held.joint_pos - moving.joint_pos)) < 0.1
    assert np.max(np.abs(held.joint_pos - (HOME + 0.4))) > 0.1


# --------------------------------------------------------------------------- safety limits
def random_rollout_limits(env: gym.Env, seed: int, steps: int = 300):
    """Worst joint-limit and workspace-box violations (m, rad; ≤ 0 means inside) over
    ``steps`` uniformly random actions, measured on the raw simulator state (the observation
    clips joint positions to their limits, so it cannot show a violation)."""
    unwrapped = env.unwrapped
    robot = unwrapped.robot
    low = np.array(unwrapped.config.control.workspace_low)
    high = np.array(unwrapped.config.control.workspace_high)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    worst_joint = worst_box = -np.inf
    start = robot.read_state().ee_pos
    travelled = 0.0
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        state = robot.read_state()
        worst_joint = max(worst_joint, np.max(state.joint_pos - robot.spec.joint_upper),
                          np.max(robot.spec.joint_lower - state.joint_pos))
        worst_box = max(worst_box, np.max(state.ee_pos - high), np.max(low - state.ee_pos))
        travelled = max(travelled, float(np.linalg.norm(state.ee_pos - start)))
    return worst_joint, worst_box, travelled


# The workspace box bounds the tool *targets* (ee_delta) or acts as a virtual wall checked at
# 100 Hz with a velocity look-ahead (joint_delta); either way the arm is a dynamic system, so
# momentum and contacts (table, objects) can carry the tool centre point slightly past the box
# surface before the servo stops it. 1 cm is the allowed overshoot; the measured worst case over
# 12 seeds of 300 random actions is about 4 mm (joint_delta) and 6.5 mm (ee_delta).
WORKSPACE_TOLERANCE = 0.01
JOINT_TOLERANCE = 1e-3


@pytest.mark.parametrize("task, action_mode, seed", [
    ("reach", "ee_delta", 0), ("reach", "ee_delta", 1), ("reach", "ee_delta", 2),
    ("reach", "joint_delta", 0), ("reach", "joint_delta", 1), ("reach", "joint_delta", 4),
    ("pick", "ee_delta", 3), ("pick", "joint_delta", 3),
])
def test_random_actions_respect_joint_limits_and_workspace(make_env, task, action_mode, seed):
    """Under 300 random actions: joint positions stay within their limits (1e-3 rad) and the tool
    centre point within the configured workspace box (1 cm, see WORKSPACE_TOLERANCE)."""
    env = make_env(task, action_mode=action_mode, overrides={"task": {"max_episode_steps": 1000}})
    worst_joint, worst_box, travelled = random_rollout_limits(env, seed)
    assert worst_joint < JOINT_TOLERANCE, f"joint limit exceeded by {worst_joint:.4f} rad"
    assert worst_box < WORKSPACE_TOLERANCE, f"tool left the workspace by {worst_box * 1e3:.1f} mm"
    assert travelled > 0.1  # random actions really explored (and hit the walls)


@pytest.mark.parametrize("joint, sign", [(0, 1.0), (1, -1.0), (3, 1.0), (3, -1.0)])
def test_joint_delta_pushing_into_a_wall_is_stopped(make_env, joint, sign):
    """Driving one joint persistently carries the tool into the box surface; the wall holds it."""
    env = make_env("reach", action_mode="joint_delta")
    unwrapped = env.unwrapped
    low = np.array(unwrapped.config.control.workspace_low)
    high = np.array(unwrapped.config.control.workspace_high)
    env.reset(seed=0)
    action = np.zeros(8, dtype=np.float32)
    action[joint] = sign
    touched = False
    for _ in range(40):
        env.step(action)
        tcp = unwrapped.robot.read_state().ee_pos
        assert np.all(tcp > low - WORKSPACE_TOLERANCE) and np.all(tcp < high + WORKSPACE_TOLERANCE), tcp
        touched |= bool(np.any(np.minimum(tcp - low, high - tcp) < 0.02))
    assert touched, "the tool never came near the box surface; the test did not exercise the wall"


@pytest.mark.parametrize("direction", range(6))
def test_ee_delta_saturates_at_workspace_faces(make_env, direction):
    env = make_env("reach")
    unwrapped = env.unwrapped
    low = np.array(unwrapped.config.control.workspace_low)
    high = np.array(unwrapped.config.control.workspace_high)
    env.reset(seed=0)
    axis, sign = divmod(direction, 2)
    action = np.zeros(4, dtype=np.float32)
    action[axis] = 1.0 if sign == 0 else -1.0
    for _ in range(30):
        env.step(action)
        tcp = unwrapped.robot.read_state().ee_pos
        assert np.all(tcp > low - WORKSPACE_TOLERANCE) and np.all(tcp < high + WORKSPACE_TOLERANCE), tcp
    face = high[axis] if sign == 0 else low[axis]
    if axis == 2 and sign == 1:
        face = 0.016  # the fingertips touch the table (z = 0) before the tool reaches z_low
    assert abs(tcp[axis] - face) < 0.01
