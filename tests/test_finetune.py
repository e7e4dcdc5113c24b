"""Fine-tuning from a trained run: interface checks, partial loading, warm-up, ramp, prior replay, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_rl.agents import make_agent
from robot_rl.config import ConfigError, parse_overrides
from robot_rl.data import EpisodeStore
from robot_rl.envs.interface import InterfaceMismatchError, env_interface, interface_mismatches
from robot_rl.training import Trainer, load_train_config, train
from robot_rl.training.checkpoint import CheckpointError, load_checkpoint
from robot_rl.training.config import load_finetune_config
from robot_rl.training.finetune import ActionRamp, resolve_checkpoint

SMALL = {"agent": {"hidden_sizes": [32, 32], "batch_size": 32},
         "train": {"total_steps": 150, "warmup_steps": 50, "eval_every": 150, "eval_episodes": 1,
                   "progress": False, "torch_threads": 1}}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A short SAC run on the simulated reach task: the checkpoint every test fine-tunes from."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train(load_train_config(overrides=SMALL), run_dir)
    return run_dir


def finetune_config(run_dir: Path, **overrides):
    checkpoint = resolve_checkpoint(run_dir)
    payload = load_checkpoint(checkpoint)
    layer = {"env": {"robot": {"kind": "sim"}}, "init": {"checkpoint": str(checkpoint)},
             "train": {"total_steps": 100, "eval_every": 100, "warmup_steps": 60}}
    for key, value in overrides.items():
        layer = _merge(layer, parse_overrides([f"{key}={json.dumps(value)}"]))
    return load_finetune_config(payload["config"], overrides=layer), payload


def _merge(a: dict, b: dict) -> dict:
    from robot_rl.config import deep_merge

    return deep_merge(a, b)


def weights(module_state: dict) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module_state.items() if isinstance(v, torch.Tensor)}


def test_resolve_checkpoint_from_run_seed_dir_or_file(trained_run, tmp_path):
    file = trained_run / "seed_0" / "checkpoints" / "last.pt"
    assert resolve_checkpoint(trained_run) == file
    assert resolve_checkpoint(trained_run / "seed_0") == file
    assert resolve_checkpoint(file) == file
    assert resolve_checkpoint(trained_run, seed=0) == file
    with pytest.raises(CheckpointError, match="no checkpoint for seed 3"):
        resolve_checkpoint(trained_run, seed=3)
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        resolve_checkpoint(tmp_path)


def test_the_checkpoint_records_its_env_interface(trained_run, make_env):
    payload = load_checkpoint(resolve_checkpoint(trained_run))
    interface = payload["env_interface"]
    assert interface["control"]["control_hz"] == 10.0 and interface["action"]["shape"] == [4]
    assert interface_mismatches(interface, env_interface(make_env("reach", reward_type="dense"))) == []


def test_every_interface_difference_is_listed_before_anything_moves(trained_run, tmp_path):
    config, _ = finetune_config(trained_run, **{"env.control.control_hz": 20, "env.control.action_mode": "joint_delta",
                                                "env.observation.privileged": False})
    with pytest.raises(InterfaceMismatchError) as raised:
        Trainer(config, tmp_path / "ft" / "seed_0", seed=0)
    lines = raised.value.mismatches
    assert any(line.startswith("control.control_hz: 10.0 (checkpoint) → 20.0") for line in lines), lines
    assert any(line.startswith("control.action_mode: 'ee_delta'") for line in lines), lines
    assert any(line.startswith("action.shape") for line in lines), lines  # 4 → 8 with joint_delta
    assert "nothing was moved" in str(raised.value)
    assert not (tmp_path / "ft" / "seed_0" / "replay.zarr").exists()  # no store was made either


def test_interface_mismatch_lists_keys_on_both_sides():
    trained = {"observation": {"a": {"shape": [3], "dtype": "float32"}, "b": {"shape": [1], "dtype": "float32"}}}
    target = {"observation": {"a": {"shape": [4], "dtype": "float32"}, "c": {"shape": [1], "dtype": "float32"}}}
    lines = interface_mismatches(trained, target)
    assert "observation.b: present in the checkpoint's env, missing here" in lines
    assert "observation.c: new here, the checkpoint's policy never saw it" in lines
    assert "observation.a.shape: [3] (checkpoint) → [4] (here)" in lines


def test_load_parts_takes_only_what_is_asked(trained_run, make_env):
    payload = load_checkpoint(resolve_checkpoint(trained_run))
    env = make_env("reach", reward_type="dense")
    config = load_train_config(overrides=SMALL).agent
    agent = make_agent(env.observation_space, env.action_space, config)
    fresh_critic = weights(agent.critic.state_dict())
    skipped = agent.load_state_parts(payload["agent"], ("actor", "temperature"))
    assert skipped == []
    for name, value in agent.actor.state_dict().items():
        assert torch.equal(value, payload["agent"]["actor"][name])
    for name, value in agent.critic.state_dict().items():
        assert torch.equal(value, fresh_critic[name])  # the critic starts fresh
    assert torch.equal(agent.log_alpha.detach(), payload["agent"]["log_alpha"])
    assert agent.updates == payload["agent"]["updates"]

    td3 = make_agent(env.observation_space, env.action_space, load_train_config(overrides=SMALL, agent_preset="td3").agent)
    assert td3.load_state_parts(payload["agent"], ("critic", "temperature")) == ["temperature"]


def test_a_checkpoint_of_another_learner_is_a_clear_error(trained_run, tmp_path):
    config, _ = finetune_config(trained_run, **{"agent.algo": "td3"})
    with pytest.raises(CheckpointError, match=r"its agent \(sac\) does not fit this run's \(td3\)"):
        Trainer(config, tmp_path / "ft" / "seed_0", seed=0)


def test_policy_warmup_collects_with_the_loaded_agent_then_learns(trained_run, tmp_path):
    config, payload = finetune_config(trained_run)
    trainer = Trainer(config, tmp_path / "ft" / "seed_0", seed=0)
    assert trainer.agent.updates == payload["agent"]["updates"]
    assert trainer.policy.warmup_steps == 0  # no uniform phase: the loaded policy acts from the first step
    trainer.run()
    checkpoint = load_checkpoint(tmp_path / "ft" / "seed_0" / "checkpoints" / "last.pt")
    assert checkpoint["counters"]["env_steps"] == 100
    # one update after each step from the 60th (the end of the warm-up) to the 100th
    assert checkpoint["agent"]["updates"] == payload["agent"]["updates"] + 41


def test_action_ramp_scales_motion_not_the_gripper():
    class Source:
        source = "policy"

        def reset(self):
            pass

        def act(self, obs):
            return np.array([1.0, -1.0, 0.5, 1.0], dtype=np.float32)

    episodes = [0]
    ramp = ActionRamp(Source(), start=0.5, episodes=4, episodes_done=lambda: episodes[0], action_size=4, fixed=(3,))
    ramp.reset()
    assert np.allclose(ramp.act({}), [0.5, -0.5, 0.25, 1.0])
    episodes[0] = 2
    ramp.reset()
    assert np.allclose(ramp.act({}), [0.75, -0.75, 0.375, 1.0])
    episodes[0] = 9
    ramp.reset()
    assert np.allclose(ramp.act({}), [1.0, -1.0, 0.5, 1.0])
    assert ramp.source == "policy"


def test_ramped_actions_are_the_ones_stored(trained_run, tmp_path):
    config, _ = finetune_config(trained_run, **{"init.action_scale_start": 0.2, "init.action_ramp_episodes": 100,
                                                "train.total_steps": 50, "train.eval_every": 50})
    train(config, tmp_path / "ft")
    with EpisodeStore.open(tmp_path / "ft" / "seed_0" / "replay.zarr", "r") as store:
        actions = store.read_episode(0).steps["action"]
    assert np.abs(actions[:, :3]).max() <= 0.2 + 1e-6  # motion at the ramp's first scale
    assert np.abs(actions[:, 3]).max() > 0.2  # the gripper command is not scaled


def test_prior_replay_joins_the_minibatches(trained_run, tmp_path):
    config, _ = finetune_config(trained_run, **{"init.replay": str(trained_run / "seed_0" / "replay.zarr"),
                                                "init.replay_ratio": 0.5})
    trainer = Trainer(config, tmp_path / "ft" / "seed_0", seed=0)
    sampler = trainer.data.sampler
    assert sampler.names == ["online replay", "prior replay"]
    assert np.allclose(sampler.weights / sampler.weights.sum(), [0.5, 0.5])
    assert len(trainer.prior) == 150
    trainer.store.close()
    trainer.env.close()
    trainer.eval_env.close()


def test_prior_replay_needs_a_checkpoint_and_room():
    with pytest.raises(ConfigError, match="init.replay"):
        load_train_config(overrides={"init": {"replay": "x.zarr"}})
    with pytest.raises(ConfigError, match="load: lists a part twice"):
        load_train_config(overrides={"init": {"load": ["actor", "actor"]}})


def test_finetune_cli_runs_resumes_and_names_mismatches(trained_run, tmp_path):
    def robot_rl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "robot_rl.cli", *args], capture_output=True, text=True, timeout=300)

    run_dir = tmp_path / "ft"
    settings = ["train.eval_every=100", "train.eval_episodes=1", "train.warmup_steps=40", "train.progress=false"]
    done = robot_rl("finetune", "--from", str(trained_run), "--robot", "sim", "--steps", "100", "--run-dir",
                    str(run_dir), "--sim-replay", "--set", *settings)
    assert done.returncode == 0, done.stderr
    assert "starting from" in done.stdout + done.stderr and "loaded actor, critic, temperature" in done.stdout + done.stderr
    saved = (run_dir / "config.yaml").read_text()
    assert "replay.zarr" in saved and "warmup_actions: policy" in saved

    resumed = robot_rl("finetune", "--resume", "--run-dir", str(run_dir), "--set", "train.total_steps=150")
    assert resumed.returncode == 0, resumed.stderr
    assert "starting from" not in resumed.stdout + resumed.stderr  # its own checkpoint, not the source's
    assert load_checkpoint(run_dir / "seed_0" / "checkpoints" / "last.pt")["counters"]["env_steps"] == 150

    refused = robot_rl("finetune", "--from", str(trained_run), "--robot", "sim", "--run-dir", str(tmp_path / "bad"),
                       "--set", "env.control.control_hz=25", "env.control.use_yaw=true")
    assert refused.returncode == 2
    assert "control.control_hz: 10.0 (checkpoint) → 25.0 (here)" in refused.stderr
    assert "control.use_yaw: False (checkpoint) → True (here)" in refused.stderr
    assert not (tmp_path / "bad" / "seed_0" / "replay.zarr").exists()


def test_eval_on_another_robot_checks_the_interface(trained_run):
    checkpoint = resolve_checkpoint(trained_run)
    refused = subprocess.run([sys.executable, "-m", "robot_rl.cli", "eval", "--checkpoint", str(checkpoint),
                              "--episodes", "1", "--set", "env.control.control_hz=20"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "control.control_hz: 10.0 (checkpoint) → 20.0 (here)" in refused.stderr


def test_env_interface_of_a_gymnasium_env_names_it():
    env = gym.make("Pendulum-v1")
    assert env_interface(env)["gym_id"] == "Pendulum-v1"
    env.close()


def test_offline_phase_from_a_previous_runs_store_before_going_online(trained_run, tmp_path):
    """Part of the sim → real toolbox: start from stored episodes (here the trained run's own
    replay store, policy episodes rather than demonstrations) with offline updates, then go online."""
    store = trained_run / "seed_0" / "replay.zarr"
    config = load_train_config(overrides={**SMALL, "demos": {"paths": [str(store)], "offline_steps": 30},
                                          "train": {**SMALL["train"], "total_steps": 50, "eval_every": 50}},
                               agent_preset="awac")
    train(config, tmp_path / "offline")
    checkpoint = load_checkpoint(tmp_path / "offline" / "seed_0" / "checkpoints" / "last.pt")
    assert checkpoint["counters"]["offline_updates"] == 30
    assert checkpoint["agent"]["updates"] > 30  # and online updates after it
