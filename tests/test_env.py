"""ArmEnv over the real MuJoCo arm: gymnasium API conformance, determinism, images, rewards,
input validation and non-finite state handling."""

from __future__ import annotations

import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robot_rl.envs import ENV_IDS, NonFiniteStateError
from robot_rl.robot import EndEffectorCommand, Robot
from robot_rl.geometry import top_down_quat

from conftest import TASKS


def run_checker(env: gym.Env) -> None:
    """gymnasium's checker on the unwrapped ArmEnv; infinite Box bounds are by design (positions
    and velocities are unbounded), so that warning is expected, every other warning fails."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert not unexpected, unexpected


# --------------------------------------------------------------------------- gymnasium checker
@pytest.mark.parametrize("task", TASKS)
def test_check_env_state_observations(make_env, task):
    env = make_env(task)
    run_checker(env)
    assert "image_scene" not in env.observation_space.spaces


@pytest.mark.parametrize("task", TASKS)
def test_check_env_with_images(make_env, task):
    env = make_env(ENV_IDS[task], images=True)
    assert env.observation_space["image_scene"].shape == (128, 128, 3)
    run_checker(env)


def test_check_env_joint_delta(make_env):
    env = make_env("pick", action_mode="joint_delta")
    assert env.action_space.shape == (8,)  # 7 joint deltas + gripper
    run_checker(env)


def test_check_env_with_yaw(make_env):
    env = make_env("pick", overrides={"control": {"use_yaw": True}})
    assert env.action_space.shape == (5,)  # dx, dy, dz, dyaw, gripper
    run_checker(env)


def test_check_env_with_render_mode(make_env):
    env = make_env("reach", render_mode="rgb_array")
    run_checker(env)


def test_action_space_shapes(make_env):
    assert make_env("reach").action_space.shape == (4,)
    assert make_env("reach").action_space.dtype == np.float32
    assert np.all(make_env("reach").action_space.low == -1) and np.all(make_env("reach").action_space.high == 1)


# --------------------------------------------------------------------------- basics
def test_dt_and_model(make_env):
    env = make_env("reach")
    assert env.unwrapped.dt == 0.1
    assert isinstance(env.unwrapped.robot.model, mujoco.MjModel)
    assert isinstance(env.unwrapped.robot, Robot)  # runtime-checkable protocol
    env.reset(seed=0)
    env.step(env.action_space.sample())
    # One env step is dt of simulated time.
    assert env.unwrapped.robot.data.time == pytest.approx(0.1)


@pytest.mark.parametrize("task, keys", [
    ("reach", {"goal_pos", "goal_offset"}),
    ("push", {"cube_pos", "cube_quat", "goal_pos", "cube_offset", "goal_offset"}),
    ("pick", {"cube_pos", "cube_quat", "goal_pos", "cube_offset", "goal_offset"}),
    ("peg", {"peg_pos", "peg_quat", "hole_pos", "hole_offset"}),
])
def test_observation_keys_and_reset_info(make_env, task, keys):
    env = make_env(task)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper_width"} | keys
    assert env.observation_space.contains(obs)
    assert info == {"is_success": False}
    # The task observation is the state the simulation reports (goal marker / object poses).
    state = env.unwrapped.robot.read_state()
    np.testing.assert_allclose(obs["ee_pos"], state.ee_pos, atol=1e-6)
    goal_key = "hole_pos" if task == "peg" else "goal_pos"
    marker = "hole" if task == "peg" else "goal"
    np.testing.assert_allclose(obs[goal_key][:2], state.objects[marker][:2], atol=1e-6)
    # Offsets are the differences of the reported positions.
    if task == "reach":
        np.testing.assert_allclose(obs["goal_offset"], obs["goal_pos"] - obs["ee_pos"], atol=1e-6)
    elif task in ("push", "pick"):
        np.testing.assert_allclose(obs["cube_offset"], obs["cube_pos"] - obs["ee_pos"], atol=1e-6)
        np.testing.assert_allclose(obs["goal_offset"], obs["goal_pos"] - obs["cube_pos"], atol=1e-6)
    else:
        np.testing.assert_allclose(obs["hole_offset"], obs["hole_pos"] - env.unwrapped.task.peg_tip(state), atol=1e-6)


def test_reset_starts_near_home_with_tool_down(make_env):
    env = make_env("reach")
    obs, _ = env.reset(seed=0)
    robot = env.unwrapped.robot
    noise = env.unwrapped.config.robot.home_noise
    assert np.all(np.abs(obs["joint_pos"] - robot.spec.home) <= noise + 0.02)
    # Tool z axis points down (world −z).
    from robot_rl.geometry import quat_to_matrix
    assert quat_to_matrix(obs["ee_quat"].astype(float))[2, 2] < -0.99


# --------------------------------------------------------------------------- determinism
def rollout(env: gym.Env, seed: int, steps: int = 30):
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(steps, env.action_space.shape[0])).astype(np.float32)
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, _, _, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
    return observations, rewards


def assert_bitwise_equal(a, b):
    assert len(a) == len(b)
    for obs_a, obs_b in zip(a, b):
        assert obs_a.keys() == obs_b.keys()
        for key in obs_a:
            assert obs_a[key].tobytes() == obs_b[key].tobytes(), key


@pytest.mark.parametrize("task", ["reach", "pick"])
def test_same_seed_same_trajectory(make_env, task):
    obs_a, rew_a = rollout(make_env(task), seed=7)
    env_b = make_env(task)
    rollout(env_b, seed=99)  # a different episode first: reset must clear all state
    obs_b, rew_b = rollout(env_b, seed=7)
    assert_bitwise_equal(obs_a, obs_b)
    assert np.array(rew_a).tobytes() == np.array(rew_b).tobytes()
    # The trajectory actually moved (determinism of a frozen arm would prove nothing).
    assert np.linalg.norm(obs_a[-1]["ee_pos"] - obs_a[0]["ee_pos"]) > 0.01


def test_joint_delta_is_deterministic(make_env):
    obs_a, rew_a = rollout(make_env("reach", action_mode="joint_delta"), seed=3)
    obs_b, rew_b = rollout(make_env("reach", action_mode="joint_delta"), seed=3)
    assert_bitwise_equal(obs_a, obs_b)
    assert rew_a == rew_b


@pytest.mark.parametrize("task", TASKS)
def test_different_seeds_different_resets(make_env, task):
    env = make_env(task)
    obs_0, _ = env.reset(seed=0)
    obs_1, _ = env.reset(seed=1)
    goal_key = {"peg": "hole_pos", "lift": "cube_pos"}.get(task, "goal_pos")  # lift: no goal, the cube moves
    assert np.linalg.norm(obs_0[goal_key] - obs_1[goal_key]) > 1e-3
    assert not np.array_equal(obs_0["joint_pos"], obs_1["joint_pos"])
    if "cube_pos" in obs_0:
        assert np.linalg.norm(obs_0["cube_pos"] - obs_1["cube_pos"]) > 1e-3


# --------------------------------------------------------------------------- step validation
def test_step_before_reset_raises(make_env):
    env = make_env("reach")
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(np.zeros(4, dtype=np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises(make_env, bad):
    env = make_env("reach")
    env.reset(seed=0)
    before = env.unwrapped.robot.read_state()
    action = np.array([0.1, bad, 0.0, 0.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"non-finite action"):
        env.step(action)
    # Rejected before anything was commanded: no simulated time passed.
    assert env.unwrapped.robot.read_state().timestamp == before.timestamp


@pytest.mark.parametrize("shape", [(3,), (5,), (1, 4), ()])
def test_wrong_action_shape_raises(make_env, shape):
    env = make_env("reach")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(4,\)"):
        env.step(np.zeros(shape, dtype=np.float32))


def test_out_of_range_actions_are_clipped_and_flagged(make_env):
    env_a, env_b = make_env("reach"), make_env("reach")
    env_a.reset(seed=0)
    env_b.reset(seed=0)
    obs_a, *_, info_a = env_a.step(np.array([1e9, -7.0, 3.0, 2.0]))
    obs_b, *_, info_b = env_b.step(np.array([1.0, -1.0, 1.0, 1.0]))
    assert obs_a["ee_pos"].tobytes() == obs_b["ee_pos"].tobytes()
    assert info_a["action_clipped"] is True and info_b["action_clipped"] is False


@pytest.mark.parametrize("action, message", [
    (np.array([0.1, 0.0, 0.0, 1j]), "must be real numbers, got dtype complex128"),
    ([0.1, 0.0, 0.0, 0.5 + 0.5j], "must be real numbers, got dtype complex128"),
    (np.array(["0.1", "0", "0", "0"]), "must be real numbers, got dtype <U3"),
    (np.array([0.1, None, 0.0, 0.0], dtype=object), "must be real numbers, got dtype object"),
    (np.array([True, False, False, True]), "must be real numbers, got dtype bool"),
])
def test_actions_that_are_not_real_numbers_raise(make_env, action, message):
    """Casting would silently drop an imaginary part or turn text into numbers: refuse instead."""
    env = make_env("reach")
    env.reset(seed=0)
    before = env.unwrapped.robot.read_state()
    with pytest.raises(ValueError, match=rf"action at step 0 {message}"):
        env.step(action)
    assert env.unwrapped.robot.read_state().timestamp == before.timestamp


def test_rollouts_count_clipped_steps_and_refuse_complex_actions(make_env):
    from robot_rl.training.rollout import run_episode

    class Constant:
        source = "policy"

        def __init__(self, action):
            self.action = action

        def reset(self):
            pass

        def act(self, observation):
            return self.action

    env = make_env("reach", overrides={"task": {"max_episode_steps": 3}})
    assert run_episode(env, Constant(np.array([1e9, 0.0, 0.0, 0.0])), seed=0).clipped_steps == 3
    assert run_episode(env, Constant(np.array([0.5, 0.0, 0.0, 0.0])), seed=0).clipped_steps == 0
    with pytest.raises(ValueError, match="must be real numbers"):
        run_episode(env, Constant(np.array([0.5, 0.0, 0.0, 1j])), seed=0)


# --------------------------------------------------------------------------- non-finite state
def test_non_finite_sim_state_raises_naming_the_step(make_env):
    env = make_env("reach")
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
    env.unwrapped.robot.data.qpos[:] = np.nan  # simulation blow-up
    with pytest.raises(NonFiniteStateError, match=r"not finite at step 3\b"):
        env.step(np.zeros(4, dtype=np.float32))
    # A reset recovers a usable, finite simulation.
    obs, _ = env.reset(seed=0)
    assert all(np.all(np.isfinite(v)) for v in obs.values())
    obs, *_ = env.step(np.zeros(4, dtype=np.float32))
    assert all(np.all(np.isfinite(v)) for v in obs.values())


def test_non_finite_velocity_raises(make_env):
    env = make_env("push")
    env.reset(seed=0)
    env.unwrapped.robot.data.qvel[0] = np.inf
    with pytest.raises(NonFiniteStateError, match=r"step 0"):
        env.step(np.zeros(4, dtype=np.float32))


class _FaultyRobot:
    """A real SimArm whose sensor reading goes NaN after ``fail_after`` advances (hardware fault)."""

    def __init__(self, arm, fail_after: int):
        self._arm, self._left = arm, fail_after
        self.spec = arm.spec
        self.stopped = False

    def reset(self, request):
        return self._arm.reset(request)

    def command(self, command):
        self._arm.command(command)

    def advance(self, duration):
        state = self._arm.advance(duration)
        self._left -= 1
        if self._left < 0:
            state.ee_pos = np.full(3, np.nan)
        return state

    def read_state(self):
        return self._arm.read_state()

    def stop(self):
        self.stopped = True
        self._arm.stop()

    def close(self):
        self._arm.close()


def test_non_finite_reading_stops_the_robot(make_env, make_arm):
    robot = _FaultyRobot(make_arm("reach"), fail_after=2)
    env = make_env("reach", robot=robot)
    env.reset(seed=0)
    env.step(np.zeros(4, dtype=np.float32))
    env.step(np.zeros(4, dtype=np.float32))
    with pytest.raises(NonFiniteStateError, match=r"(?s)step 2 .*hold position"):
        env.step(np.zeros(4, dtype=np.float32))
    assert robot.stopped


# --------------------------------------------------------------------------- images and rendering
def test_image_observations(make_env):
    env = make_env("pick", images=True)
    obs, _ = env.reset(seed=0)
    for key in ("image_scene", "image_wrist"):
        image = obs[key]
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert image.std() > 10.0, f"{key} looks blank (std {image.std():.2f})"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    first = obs["image_scene"].copy()
    # Move the arm down and to the side for a few steps: the scene image must change there.
    for _ in range(6):
        obs, *_ = env.step(np.array([0.0, 1.0, -1.0, -1.0], dtype=np.float32))
    diff = np.abs(obs["image_scene"].astype(int) - first.astype(int))
    assert diff.mean() > 0.5
    assert (diff.max(axis=-1) > 30).mean() > 0.005  # a visible region moved, not just noise
    # A new episode with another cube pose renders differently as well.
    other, _ = env.reset(seed=1)
    assert np.abs(other["image_scene"].astype(int) - first.astype(int)).mean() > 0.1


def test_images_show_the_commanded_scene(make_arm):
    """Both cameras see the arm move: render two distinct states of the same arm."""
    arm = make_arm("reach", cameras={"scene": (96, 96), "wrist": (96, 96)})
    before = arm.read_state().images
    arm.command(EndEffectorCommand(np.array([0.4, 0.2, 0.1]), top_down_quat(0.5), 0.0))
    after = arm.advance(1.0).images
    for camera in ("scene", "wrist"):
        assert before[camera].shape == (96, 96, 3)
        assert np.abs(after[camera].astype(int) - before[camera].astype(int)).mean() > 1.0, camera


def test_render_rgb_array(make_env):
    env = make_env("push", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    config = env.unwrapped.config.observation
    assert frame.shape == (config.render_height, config.render_width, 3)
    assert frame.dtype == np.uint8
    assert frame.std() > 10.0
    plain = make_env("push")
    plain.reset(seed=0)
    assert plain.render() is None  # no render_mode: nothing rendered


def test_unknown_render_mode_rejected(make_env):
    with pytest.raises(ValueError, match=r"render_mode"):
        make_env("reach", render_mode="human")


# --------------------------------------------------------------------------- rewards
@pytest.mark.parametrize("task", TASKS)
def test_sparse_reward_equals_success(make_env, task):
    env = make_env(task, reward_type="sparse")
    env.reset(seed=0)
    for _ in range(15):
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert reward in (0.0, 1.0)
        assert reward == float(info["is_success"])


@pytest.mark.parametrize("task", TASKS)
def test_dense_reward_in_unit_interval(make_env, task):
    env = make_env(task)
    env.reset(seed=1)
    rewards = []
    for _ in range(20):
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert 0.0 <= reward <= 1.0
        assert (reward == 1.0) == info["is_success"]
        rewards.append(reward)
    assert max(rewards) > 0.0  # dense: the signal is not identically zero


def move_tool_to(env: gym.Env, target: np.ndarray, steps: int = 40):
    """Drive the tool to ``target`` with ee_delta actions (proportional, saturated)."""
    scale = env.unwrapped.config.control.position_scale
    obs = reward = info = None
    for _ in range(steps):
        state = env.unwrapped.robot.read_state()
        delta = np.clip((target - state.ee_pos) / scale, -1.0, 1.0)
        obs, reward, terminated, truncated, info = env.step(np.array([*delta, 0.0], dtype=np.float32))
        if terminated:
            break
    return obs, reward, info


@pytest.mark.parametrize("reward_type", ["dense", "sparse"])
def test_reach_goal_gives_success_and_full_reward(make_env, reward_type):
    env = make_env("reach", reward_type=reward_type)
    obs, info = env.reset(seed=5)
    assert not info["is_success"]
    _, first_reward, _, _, _ = env.step(np.zeros(4, dtype=np.float32))
    assert first_reward < 1.0
    goal = obs["goal_pos"].astype(float)
    obs, reward, info = move_tool_to(env, goal)
    assert np.linalg.norm(obs["ee_pos"] - goal) < env.unwrapped.config.task.success_threshold
    assert info["is_success"]
    assert reward == 1.0


def test_dense_reach_reward_increases_towards_goal(make_env):
    env = make_env("reach")
    obs, _ = env.reset(seed=2)
    goal = obs["goal_pos"].astype(float)
    start = obs["ee_pos"].astype(float)
    threshold = env.unwrapped.config.task.success_threshold
    assert np.linalg.norm(goal - start) > 0.1  # a meaningful approach
    rewards = []
    for fraction in (0.0, 0.4, 0.75):
        obs, reward, info = move_tool_to(env, start + fraction * (goal - start), steps=15)
        assert np.linalg.norm(obs["ee_pos"] - goal) > threshold and not info["is_success"]
        rewards.append(reward)
    assert rewards[0] < rewards[1] < rewards[2] < 1.0


def test_terminate_on_success(make_env):
    env = make_env("reach", overrides={"task": {"terminate_on_success": True}})
    obs, _ = env.reset(seed=5)
    goal = obs["goal_pos"].astype(float)
    scale = env.unwrapped.config.control.position_scale
    for step in range(50):
        delta = np.clip((goal - env.unwrapped.robot.read_state().ee_pos) / scale, -1, 1)
        _, reward, terminated, truncated, info = env.step(np.array([*delta, 0.0], dtype=np.float32))
        assert terminated == info["is_success"]
        if terminated:
            break
    assert terminated and reward == 1.0


# --------------------------------------------------------------------------- wrappers
def test_flatten_state_wrapper(make_env):
    from robot_rl.envs import FlattenState

    inner = make_env("push")
    env = FlattenState(inner)
    obs, _ = env.reset(seed=0)
    vector_keys = [k for k in inner.observation_space.spaces if not k.startswith("image_")]
    size = sum(int(np.prod(inner.observation_space[k].shape)) for k in vector_keys)
    assert size >= 32  # joints 7 + 7, ee_pos 3, ee_quat 4, gripper 1, cube 3 + 4, goal 3, ...
    assert obs.shape == env.observation_space.shape == (size,)
    assert obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    raw = env.unwrapped._observe(env.unwrapped._state)
    assert env.keys == sorted(vector_keys)
    np.testing.assert_array_equal(obs, np.concatenate([raw[k].ravel() for k in env.keys]))


def test_flatten_state_keeps_images(make_env):
    from robot_rl.envs import FlattenState

    inner = make_env("reach", images=True)
    env = FlattenState(inner)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "image_scene", "image_wrist"}
    size = sum(int(np.prod(space.shape)) for key, space in inner.observation_space.spaces.items()
               if not key.startswith("image_"))
    assert obs["state"].shape == (size,) and obs["image_wrist"].shape == (128, 128, 3)
    assert env.observation_space.contains(obs)
