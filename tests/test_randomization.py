"""Domain randomisation (robot_rl.envs.randomization) on the real MuJoCo arm: per-episode draws
within the configured ranges and reproducible from the reset seed, physics that really change
(and return to nominal), action latency and noise, observation noise on proprioception only,
and clear errors for robots that cannot randomise and for bad configs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.config import ConfigError, from_dict, to_dict
from robot_rl.envs import ArmEnv, DomainRandomization, EnvConfig, find_randomization, make_arm_env
from robot_rl.envs.config import PROPRIO_KEYS, ROBOT_RANGES, RandomizationConfig, load_env_config
from robot_rl.robot import RandomizableRobot, Robot
from gym_goal_env import GoalPointEnv  # tests/ is on sys.path under pytest

NOMINAL = {key: [nominal, nominal] for key, (_, nominal) in ROBOT_RANGES.items()}
QUIET = {"action_latency": [0, 0], "action_noise": [0.0, 0.0], "observation_noise": {}, "observation_bias": {}}


def randomized(task: str = "pick", robot=None, images: bool = False, **ranges) -> gym.Env:
    return make_arm_env(task, robot=robot, images=images,
                        overrides={"randomization": {"enabled": True, **ranges},
                                   "observation": {"cameras": ["scene"], "image_height": 16, "image_width": 16}})


class Spy(gym.Wrapper):
    """Records what the wrapper above it passes down (actions) and gets back (observations)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[np.ndarray] = []
        self.observations: list[dict] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.observations.append(obs)
        return obs, info

    def step(self, action):
        self.actions.append(np.array(action))
        obs, *rest = self.env.step(action)
        self.observations.append(obs)
        return (obs, *rest)


class PlainArm:
    """A Robot without the RandomizableRobot capability (as a physical arm): delegates to a SimArm."""

    def __init__(self, arm) -> None:
        self.arm, self.spec = arm, arm.spec

    def reset(self, request):
        return self.arm.reset(request)

    def command(self, command):
        self.arm.command(command)

    def advance(self, duration):
        return self.arm.advance(duration)

    def read_state(self):
        return self.arm.read_state()

    def stop(self):
        self.arm.stop()

    def close(self):
        self.arm.close()


def test_parameters_drawn_per_episode_within_ranges_and_reproducible():
    ranges = {"friction": [0.5, 0.6], "object_mass": [2.0, 3.0], "action_latency": [1, 3],
              "camera_position": [-0.02, 0.02], "observation_bias": {"ee_pos": [-0.01, 0.01]}}
    env, twin = randomized(**ranges), randomized(**ranges)
    _, info = env.reset(seed=7)
    first = info["randomization"]
    wrapper = find_randomization(env)
    assert first == wrapper.episode_parameters and tuple(first) == wrapper.parameter_names
    assert 0.5 <= first["friction"] <= 0.6 and 2.0 <= first["object_mass"] <= 3.0
    assert first["action_latency"] in (1.0, 2.0, 3.0)
    assert all(-0.02 <= first[f"camera_{axis}"] <= 0.02 for axis in "xyz")
    assert all(-0.01 <= first[f"obs_bias/ee_pos[{i}]"] <= 0.01 for i in range(3))
    assert not any(name.startswith("obs_bias/joint_pos") for name in first)  # the mapping replaced the default
    second = env.reset()[1]["randomization"]
    assert second != first and set(second) == set(first)
    assert twin.reset(seed=7)[1]["randomization"] == first  # same seed, same draws
    assert twin.reset()[1]["randomization"] == second
    vector = wrapper.parameter_vector()
    assert vector.dtype == np.float32 and vector.shape == wrapper.feature_spec()["shape"]
    np.testing.assert_allclose(vector, list(second.values()), rtol=1e-6)
    env.close(), twin.close()


def test_physics_change_per_episode_and_return_to_nominal(make_arm):
    arm = make_arm("pick")
    model, nominal = arm.model, arm._nominal
    cube, arm_dofs = nominal["object_bodies"], arm._dof_idx
    mass, damping, kp = model.body_mass[cube].copy(), model.dof_damping[arm_dofs].copy(), arm.controller._gains["joint"][0][:, 0].copy()
    assert isinstance(arm, RandomizableRobot)
    env = randomized(robot=arm, object_mass=[0.5, 2.0], joint_damping=[0.5, 2.0], controller_kp=[0.8, 1.2])
    masses = []
    for seed in (1, 2):
        params = env.reset(seed=seed)[1]["randomization"]
        np.testing.assert_allclose(model.body_mass[cube], mass * params["object_mass"])
        np.testing.assert_allclose(model.dof_damping[arm_dofs], damping * params["joint_damping"])
        np.testing.assert_allclose(model.actuator_gainprm[arm.controller.joint_ids, 0], kp * params["controller_kp"])
        env.step(np.zeros(4, np.float32))  # the Cartesian servo now runs with the scaled gains too
        masses.append(model.body_mass[cube].copy())
    assert not np.allclose(masses[0], masses[1])
    env.close()
    nominal_env = randomized(robot=arm, **NOMINAL)
    nominal_env.reset(seed=3)
    np.testing.assert_array_equal(model.body_mass[cube], mass)
    np.testing.assert_array_equal(model.dof_damping[arm_dofs], damping)
    np.testing.assert_array_equal(arm.controller._gains["joint"][0][:, 0], kp)
    np.testing.assert_array_equal(model.geom_friction[:, 0], nominal["geom_friction"])
    np.testing.assert_array_equal(model.cam_pos, nominal["cam_pos"])
    with pytest.raises(ValueError, match="unknown dynamics parameter 'gravity'"):
        arm.set_dynamics({"gravity": 2.0})
    with pytest.raises(ValueError, match="scale > 0"):
        arm.set_dynamics({"friction": 0.0})


def test_latency_delays_the_executed_action_by_k_steps():
    k = 2
    config = from_dict(RandomizationConfig, {**NOMINAL, **QUIET, "action_latency": [k, k]})
    spy = Spy(ArmEnv(load_env_config("reach")))
    env = DomainRandomization(spy, config)
    env.reset(seed=0)
    env.action_space.seed(0)
    requested = [env.action_space.sample() for _ in range(6)]
    executed = [env.step(action)[-1]["executed_action"] for action in requested]
    hold = np.array([0.0, 0.0, 0.0, -1.0])  # no motion, gripper kept open (as measured at reset)
    for t in range(k):
        np.testing.assert_allclose(spy.actions[t], hold, atol=1e-6)
    for t in range(k, len(requested)):
        np.testing.assert_array_equal(spy.actions[t], requested[t - k])
        np.testing.assert_array_equal(executed[t], spy.actions[t])
    env.close()


def test_action_noise_is_added_and_clipped():
    config = from_dict(RandomizationConfig, {**NOMINAL, **QUIET, "action_noise": [0.2, 0.2]})
    spy = Spy(ArmEnv(load_env_config("reach")))
    env = DomainRandomization(spy, config)
    env.reset(seed=0)
    action = np.array([0.0, 0.0, 0.0, 1.0], np.float32)
    for _ in range(3):
        env.step(action)
    sent = np.array(spy.actions)
    assert np.all(np.abs(sent) <= 1.0) and not np.allclose(sent[:, :3], 0.0)
    assert np.all(sent[:, 3] <= 1.0)
    env.close()


def test_control_jitter_varies_each_step_length_around_the_period():
    config = from_dict(RandomizationConfig, {**NOMINAL, **QUIET, "control_jitter": [0.3, 0.3]})
    base = ArmEnv(load_env_config("reach"))
    env = DomainRandomization(base, config)
    _, info = env.reset(seed=0)
    assert info["randomization"]["control_jitter"] == 0.3
    clock = [base.robot.read_state().timestamp]
    for _ in range(20):
        env.step(np.zeros(4, np.float32))
        clock.append(base.robot.read_state().timestamp)
    steps = np.diff(clock)
    assert np.all(steps >= 0.7 * base.dt - 1e-3) and np.all(steps <= 1.3 * base.dt + 1e-3)
    assert steps.std() > 0.05 * base.dt  # not the fixed period
    env.close()
    plain = from_dict(RandomizationConfig, {**NOMINAL, **QUIET})
    steady = DomainRandomization(ArmEnv(load_env_config("reach")), plain)
    steady.reset(seed=0)
    before = steady.unwrapped.robot.read_state().timestamp
    steady.step(np.zeros(4, np.float32))
    assert steady.unwrapped.robot.read_state().timestamp - before == pytest.approx(steady.unwrapped.dt, abs=1e-9)
    steady.close()


def test_control_jitter_needs_an_env_whose_step_length_can_vary():
    config = from_dict(RandomizationConfig, {**NOMINAL, **QUIET, "control_jitter": [0.0, 0.1]})
    with pytest.raises(ConfigError, match="randomization.control_jitter"):
        DomainRandomization(GoalPointEnv(), config)  # a Dict env whose steps have a fixed length


def test_observation_noise_touches_proprio_keys_only():
    config = from_dict(EnvConfig, {"task": {"name": "pick"}, "observation": {
        "images": True, "cameras": ["scene"], "image_height": 16, "image_width": 16}})
    spy = Spy(ArmEnv(config))
    env = DomainRandomization(spy, from_dict(RandomizationConfig, {**NOMINAL, "enabled": True}))
    noisy, _ = env.reset(seed=4)
    noisy = [noisy] + [env.step(np.zeros(4, np.float32))[0] for _ in range(2)]
    for seen, true in zip(noisy, spy.observations):
        assert set(seen) == set(true)
        for key in true:
            if key in PROPRIO_KEYS:
                assert not np.array_equal(seen[key], true[key]), key
                assert seen[key].dtype == np.float32 and env.observation_space[key].contains(seen[key])
                assert np.max(np.abs(seen[key] - true[key])) < 0.2
            else:  # task keys (cube_pos, goal_pos, ...) and images are untouched
                np.testing.assert_array_equal(seen[key], true[key], err_msg=key)
    assert "image_scene" in noisy[0]
    env.close()


def test_robot_without_the_capability(make_arm):
    plain = PlainArm(make_arm("pick"))
    assert isinstance(plain, Robot) and not isinstance(plain, RandomizableRobot)
    with pytest.raises(ConfigError, match=r"randomization\.friction: .*RandomizableRobot.*PlainArm.*\[1\.0, 1\.0\]"):
        randomized(robot=plain)
    env = randomized(robot=plain, **NOMINAL)  # noise and latency need no capability
    params = env.reset(seed=0)[1]["randomization"]
    assert params["friction"] == 1.0 and params["camera_x"] == 0.0
    env.step(np.zeros(4, np.float32))
    env.close()


@pytest.mark.parametrize("ranges, key", [
    ({"friction": [1.3, 0.7]}, "randomization.friction: low must be <= high"),
    ({"object_mass": [0.0, 1.0]}, r"randomization.object_mass\[0\]: must be > 0"),
    ({"action_latency": [0, 1.5]}, r"randomization.action_latency\[1\]: expected int"),
    ({"action_latency": [-1, 1]}, r"randomization.action_latency\[0\]: must be >= 0"),
    ({"action_noise": [-0.1, 0.1]}, r"randomization.action_noise\[0\]: must be >= 0"),
    ({"observation_noise": {"ee_pos": [-0.1, 0.0]}}, "randomization.observation_noise.ee_pos: .*>= 0"),
    ({"observation_bias": {"ee_pos": [0.1, -0.1]}}, "randomization.observation_bias.ee_pos: low must be <= high"),
    ({"jitter": [0.9, 1.1]}, "randomization.jitter: unknown key"),
])
def test_bad_config_values_name_the_key(ranges, key):
    with pytest.raises(ConfigError, match=key):
        load_env_config("reach", overrides={"randomization": ranges})


@pytest.mark.parametrize("section, key, problem", [
    ("observation_noise", "no_such_key", "no such observation key"),
    ("observation_bias", "image_scene", "images are never noised"),
])
def test_bad_observation_keys(section, key, problem):
    config = from_dict(EnvConfig, {"observation": {"images": True, "cameras": ["scene"],
                                                   "image_height": 8, "image_width": 8}})
    env = ArmEnv(config)
    with pytest.raises(ConfigError, match=f"randomization.{section}.{key}: {problem}"):
        DomainRandomization(env, from_dict(RandomizationConfig, {section: {key: [0.0, 0.1]}}))
    env.close()


def test_disabled_by_default_and_round_trips():
    env = make_arm_env("reach")
    assert find_randomization(env) is None
    env.close()
    config = load_env_config("reach", overrides={"randomization": {"enabled": True, "friction": [0.9, 1.1]}})
    assert from_dict(EnvConfig, to_dict(config)) == config


def test_a_randomised_run_stores_each_episodes_parameters(tmp_path):
    """The training loop records the draws with every step (constant within an episode), and a
    demonstration store recorded without randomisation still fits the randomised env."""
    from robot_rl.data import EpisodeStore
    from robot_rl.data.compat import check_compatible
    from robot_rl.training.config import load_train_config
    from robot_rl.training.loop import train

    config = load_train_config(overrides={
        "env": {"task": {"name": "reach", "max_episode_steps": 20}, "randomization": {"enabled": True}},
        "agent": {"batch_size": 16, "hidden_sizes": [32, 32]},
        "train": {"total_steps": 60, "warmup_steps": 40, "eval_every": 60, "eval_episodes": 1, "progress": False}})
    train(config, tmp_path / "run")
    with EpisodeStore.open(tmp_path / "run" / "seed_0" / "replay.zarr", "r") as store:
        spec = store.features["randomization"]
        steps = store.load(["randomization"])["randomization"]
        starts = np.concatenate(([0], store.episode_ends[:-1]))
        assert store.n_episodes == 3 and steps.shape == (60, *spec.shape) and spec.names
        for start, end in zip(starts, store.episode_ends):
            assert np.all(steps[start:end] == steps[start])  # one draw per episode
        assert not np.array_equal(steps[starts[0]], steps[starts[1]])
    env = make_arm_env("reach", overrides={"randomization": {"enabled": True}})
    demos = tmp_path / "plain.zarr"
    from robot_rl.data.recorder import ScriptedSource, open_recording_store
    from robot_rl.training.recorder import EpisodeRecorder

    plain = make_arm_env("reach")
    with open_recording_store(demos, plain) as store:
        EpisodeRecorder(plain, store, ScriptedSource(plain)).record(1)
    with EpisodeStore.open(demos, "r") as store:
        check_compatible(store, env)
    env.close()
    plain.close()
