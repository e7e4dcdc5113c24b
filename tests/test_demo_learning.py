"""Demonstrations make learning faster: the same learner with and without scripted demos."""

from __future__ import annotations

import csv

import gymnasium as gym
import pytest

from robot_rl.data.recorder import EpisodeRecorder, ScriptedSource, open_recording_store
from robot_rl.training import load_train_config, train


def final_return(run_dir) -> float:
    with open(run_dir / "seed_0" / "logs" / "eval.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["return_mean"])


@pytest.mark.slow
def test_sac_with_demos_beats_sac_without(tmp_path):
    """10 scripted demonstrations (mixed 50/50 into every minibatch, 500 offline updates first) vs
    the same SAC learner from scratch, same online budget: the demo-bootstrapped learner's
    evaluation return must be clearly higher (measured 26.0 vs 18.4 here, 29.2 vs 12.9 with
    evaluations every 500 steps)."""
    env = gym.make("RobotRL/ArmReach-v0")
    demos = tmp_path / "reach_demos.zarr"
    with open_recording_store(demos, env) as store:
        EpisodeRecorder(env, store, ScriptedSource(env)).record(10, first_seed=0)
    env.close()
    common = {"train": {"total_steps": 1000, "eval_every": 1000, "eval_episodes": 10, "progress": False,
                        "torch_threads": 1},
              "agent": {"layer_norm": True}}
    with_demos = load_train_config(overrides={**common, "train": {**common["train"], "warmup_steps": 0},
                                              "demos": {"paths": [str(demos)], "offline_steps": 500}})
    without = load_train_config(overrides=common)
    train(with_demos, tmp_path / "with")
    train(without, tmp_path / "without")
    return_with, return_without = final_return(tmp_path / "with"), final_return(tmp_path / "without")
    assert return_with > 1.2 * return_without, (return_with, return_without)
