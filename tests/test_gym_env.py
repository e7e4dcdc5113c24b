"""Any gymnasium env in ``robot-rl train --env ID``: real gymnasium envs this project did not write
(classic-control ``Pendulum-v1``; a goal-dict env registered by ``tests/gym_goal_env.py`` through
``--env-import``), the real CLI, real stores on disk. Box and Dict observations, rescaled actions,
hindsight relabelling through the env's own ``compute_reward``, resume, ``robot-rl eval``, and the
one-line errors for what is not supported."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest

import gym_goal_env  # tests/ is on sys.path under pytest; registers RobotRLTest/GoalPoint-v0
from robot_rl.cli import main
from robot_rl.config import ConfigError
from robot_rl.data import EpisodeStore
from robot_rl.envs.config import GymEnvConfig
from robot_rl.envs.gym_env import UnsupportedEnvError, goal_task_of, make_gym_env

SMALL = ["train.progress=false", "train.torch_threads=1", "agent.hidden_sizes=[32,32]", "agent.batch_size=64",
         "train.warmup_steps=100"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_box_observation_becomes_a_dict_and_actions_are_rescaled():
    env = make_gym_env(GymEnvConfig(id="Pendulum-v1"))
    plain = gym.make("Pendulum-v1")
    assert set(env.observation_space.spaces) == {"state"} and env.observation_space["state"].dtype == np.float32
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)  # Pendulum's own is [-2, 2]
    assert env.max_episode_steps == 200 and env.control_hz == pytest.approx(20.0)
    obs, _ = env.reset(seed=3)
    expected, _ = plain.reset(seed=3)
    np.testing.assert_allclose(obs["state"], expected, rtol=1e-6)
    for action in (1.0, -0.5):  # [-1, 1] maps linearly onto [-2, 2]
        obs, reward, *_ = env.step(np.array([action], np.float32))
        expected, expected_reward, *_ = plain.step(np.array([2.0 * action], np.float32))
        np.testing.assert_allclose(obs["state"], expected, rtol=1e-5)
        assert reward == pytest.approx(expected_reward)
    env.close()
    plain.close()


def test_goal_env_keeps_its_keys_and_relabels_with_its_own_compute_reward():
    env = make_gym_env(GymEnvConfig(id=gym_goal_env.ENV_ID, wrappers=("gym_goal_env:episode_statistics",)))
    assert sorted(env.observation_space.spaces) == ["achieved_goal", "desired_goal", "observation"]
    wrapped, found = env, False
    while isinstance(wrapped, gym.Wrapper):  # the --wrapper is in the chain
        found |= isinstance(wrapped, gym.wrappers.RecordEpisodeStatistics)
        wrapped = wrapped.env
    assert found
    task = goal_task_of(env)
    rng = np.random.default_rng(0)
    achieved, desired = rng.uniform(-1, 1, (64, 2)), rng.uniform(-1, 1, (64, 2))
    desired[:8] = achieved[:8]  # some reached
    np.testing.assert_array_equal(task.compute_reward(achieved, desired, {}),
                                  env.unwrapped.compute_reward(achieved, desired, {}))
    assert not task.compute_terminated(achieved, desired, {}).any()
    env.close()
    pendulum = make_gym_env(GymEnvConfig(id="Pendulum-v1"))
    with pytest.raises(ConfigError, match="no goal env"):
        goal_task_of(pendulum)
    pendulum.close()


def test_pendulum_trains_evaluates_records_and_resumes(tmp_path, capsys):
    run = tmp_path / "pendulum"
    steps = ["train.total_steps=400", "train.eval_every=200", "train.eval_episodes=2", "train.checkpoint_every=200"]
    assert main(["train", "--env", "Pendulum-v1", "--run-dir", str(run), "--set", *SMALL, *steps]) == 0
    final = last_json(capsys.readouterr().out)["final_eval"]["0"]
    assert final["success_rate"] is None and np.isfinite(final["return_mean"])  # no is_success: return only
    logs = run / "seed_0" / "logs"
    evals = rows(logs / "eval.csv")
    assert [int(r["env_step"]) for r in evals] == [200, 400]
    assert "success_rate" not in evals[0] and "success" not in rows(logs / "episodes.csv")[0]  # nothing made up
    assert (run / "seed_0" / "checkpoints" / "last.pt").is_file() and (run / "learning_curve.png").is_file()
    with EpisodeStore.open(run / "seed_0" / "replay.zarr") as store:
        assert (store.n_episodes, store.n_steps) == (2, 400)
        assert store.attrs["task"] == "Pendulum-v1" and store.attrs["env"]["gym"]["id"] == "Pendulum-v1"
        assert store.tasks == ["Pendulum-v1"]
        actions = store.read_episode(0).steps["action"]
    assert actions.shape == (200, 1) and np.abs(actions).max() <= 1.0  # stored as the learner's [-1, 1] actions

    checkpoint = run / "seed_0" / "checkpoints" / "last.pt"
    assert main(["eval", "--checkpoint", str(checkpoint), "--episodes", "2"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["success_rate"] is None and result["episodes"] == 2 and np.isfinite(result["return_mean"])

    # Resume from the run's own config.yaml (env.gym.id included) to a larger budget.
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "train.total_steps=600"]) == 0
    capsys.readouterr()
    assert [int(r["env_step"]) for r in rows(logs / "eval.csv")] == [200, 400, 600]
    with EpisodeStore.open(run / "seed_0" / "replay.zarr") as store:
        assert store.n_steps == 600


def test_goal_env_with_hindsight_relabelling_learns(tmp_path, capsys):
    run = tmp_path / "goal"
    assert main(["train", "--env", gym_goal_env.ENV_ID, "--env-import", "gym_goal_env",
                 "--wrapper", "gym_goal_env:episode_statistics", "--env-kwargs", '{"reward_type": "sparse"}',
                 "--run-dir", str(run), "--set", *SMALL, "agent.hidden_sizes=[64,64]", "agent.batch_size=128",
                 "her.strategy=future", "train.total_steps=1500", "train.eval_every=1500", "train.eval_episodes=20",
                 "train.checkpoint_every=1500"]) == 0
    final = last_json(capsys.readouterr().out)["final_eval"]["0"]
    # Sparse -1/0 rewards over 20-step episodes: without relabelling SAC is near 0.05 here at 1500
    # steps (0.95 only by 3000); with HER it is at 1.0 from 1500 steps.
    assert final["success_rate"] >= 0.6, final
    logs = run / "seed_0" / "logs"
    assert "success_rate" in rows(logs / "eval.csv")[0] and "success" in rows(logs / "episodes.csv")[0]
    with EpisodeStore.open(run / "seed_0" / "replay.zarr") as store:
        assert set(store.obs_keys) == {"observation", "achieved_goal", "desired_goal"}
        assert store.attrs["env"]["gym"]["kwargs"] == {"reward_type": "sparse"}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_discrete_actions_are_refused_with_exit_code_2(tmp_path, capsys):
    assert main(["train", "--env", "CartPole-v1", "--run-dir", str(tmp_path / "run")]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("robot-rl train: error: CartPole-v1: action space Discrete(2) is not supported")
    assert "Box action space with finite bounds" in line
    assert not (tmp_path / "run" / "seed_0").exists()
    with pytest.raises(UnsupportedEnvError):
        make_gym_env(GymEnvConfig(id="CartPole-v1"))


@pytest.mark.parametrize(("argv", "expected"), [
    (["--env", "Pendulm-v1"], "unknown gymnasium env 'Pendulm-v1'"),
    (["--env", "Pendulum-v1", "--env-import", "no_such_module_xyz"],
     "env.gym.imports[0]: cannot import 'no_such_module_xyz'"),
    (["--env", "Pendulum-v1", "--wrapper", "gym_goal_env:no_such_wrapper"], "'gym_goal_env:no_such_wrapper' not found"),
    (["--env", "Pendulum-v1", "--env-kwargs", '{"no_such_kwarg": 1}'], "no_such_kwarg"),
    (["--env", "Pendulum-v1", "--set", "her.strategy=future"], "her.strategy: Pendulum-v1 is no goal env"),
    (["--env", "Pendulum-v1", "--task", "reach"], "give one of them"),
])
def test_configuration_errors_are_one_line(tmp_path, capsys, argv, expected):
    assert main(["train", *argv, "--run-dir", str(tmp_path / "run")]) == 2
    line = _one_line_error(capsys)
    assert expected in line, line
    if "Pendulm" in argv:
        assert "close matches: Pendulum-v1" in line
    assert not (tmp_path / "run" / "seed_0").exists()


def test_non_finite_observations_stop_the_run(tmp_path, capsys):
    assert main(["train", "--env", gym_goal_env.ENV_ID, "--env-import", "gym_goal_env",
                 "--wrapper", "gym_goal_env:nan_observations", "--run-dir", str(tmp_path / "run"),
                 "--set", *SMALL, "train.total_steps=200"]) == 1
    line = _one_line_error(capsys)
    assert "is not finite at step 0" in line
