"""Bad input to ``robot-rl`` ends as one line ``robot-rl <command>: error: ...`` and a non-zero exit
code (2: the request cannot be done as given, 1: a failure while running), never a traceback;
``--debug`` / ``ROBOT_RL_DEBUG`` show the traceback for developers.

Every case of issue 11's findings that reached the CLI is one parametrised case here: damaged
chunks, StoreError and SpecMismatchError from training, a checkpoint without ``config``,
non-numeric and non-finite imports, and the ``--set`` values that used to fail late or pass.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from robot_rl.cli import main
from robot_rl.cli.errors import EXIT_CODES, EXIT_RUNTIME, EXIT_USAGE, run_reported
from robot_rl.data import EpisodeStore, FeatureSpec

FEATURES = {"state": FeatureSpec("float32", (3,)), "action": FeatureSpec("float32", (2,)),
            "reward": FeatureSpec("float32"), "terminated": FeatureSpec("bool")}
# Training flags that would make a run tiny if it ever started (it must not: each case fails first).
TINY = ["--set", "train.total_steps=10", "train.progress=false", "agent.hidden_sizes=[8]", "agent.batch_size=8"]


# --------------------------------------------------------------------------- inputs
def small_store(tmp_path: Path, name: str = "s.zarr") -> Path:
    """Three 4-step episodes of a 3-dim state and 2-dim action (not any env's features)."""
    path = tmp_path / name
    with EpisodeStore.create(path, FEATURES, ["state"], {"control_hz": 10.0}) as store:
        for seed in range(3):
            steps = {name: np.full((4, *spec.shape), seed, spec.dtype) for name, spec in FEATURES.items()}
            store.append_episode(steps, {"state": np.zeros(3, np.float32)}, success=True, seed=seed)
    return path


def damaged(path: Path, array: str) -> Path:
    """The store at ``path`` with the first chunk of ``array`` overwritten by garbage."""
    next(file for file in sorted((path / array / "c").rglob("*")) if file.is_file()).write_bytes(b"not zstd")
    return path


def diffusion_policy_store(tmp_path: Path, **columns: np.ndarray) -> Path:
    """A Zarr v2 diffusion_policy-style store: ``data/<name>`` arrays, two episodes of 3 steps."""
    root = zarr.open_group(tmp_path / "dp.zarr", mode="w", zarr_format=2)
    data = root.create_group("data")
    for name, values in columns.items():
        if values.dtype == object:
            data.create_array(name, shape=values.shape, dtype=str)[:] = values
        else:
            data.create_array(name, data=values)
    root.create_group("meta").create_array("episode_ends", data=np.array([3, 6], np.int64))
    return tmp_path / "dp.zarr"


def checkpoint_without(tmp_path: Path, key: str) -> Path:
    payload = {"format": "robot_rl.checkpoint", "config": {}, "agent": {}, "counters": {"env_steps": 0}, "rng": {}}
    del payload[key]
    path = tmp_path / "last.pt"
    torch.save(payload, path)
    return path


def junk_file(path: Path) -> Path:
    path.write_text("not a checkpoint")
    return path


ACTIONS = np.zeros((6, 2), np.float32)
NAN_ACTIONS = np.where(np.arange(12).reshape(6, 2) == 7, np.nan, 0.0)  # first NaN: step 3, column 1


def train(tmp_path: Path, *settings: str) -> list:
    return ["train", "--run-dir", tmp_path / "run", *TINY, *settings]


# (id, argv builder, exit code, text the message must contain)
CASES = [
    # Damaged chunks: a reader error naming the array, not "Zstd decompression error" from deep inside.
    ("info-damaged-table", lambda t: ["data", "info", damaged(small_store(t), "meta/length")],
     EXIT_RUNTIME, "cannot read meta/length"),
    ("export-damaged-data", lambda t: ["data", "export-diffusion-policy", damaged(small_store(t), "data/action"),
                                       t / "dp_out.zarr"], EXIT_RUNTIME, "cannot read data/action"),
    ("merge-damaged-data", lambda t: ["data", "merge", t / "m.zarr", damaged(small_store(t), "data/state")],
     EXIT_RUNTIME, "cannot read data/state"),
    ("verify-damaged", lambda t: ["data", "verify", damaged(small_store(t), "data/action")],
     EXIT_RUNTIME, "1 damaged or missing chunk(s)"),
    ("info-not-a-store", lambda t: ["data", "info", t], EXIT_USAGE, "not an episode store"),
    # StoreError and SpecMismatchError used to escape the handler.
    ("record-into-non-store", lambda t: ["record", "--task", "reach", "--episodes", "1", "--out", t],
     EXIT_USAGE, "not an episode store"),
    ("train-demos-missing", lambda t: train(t, "--demos", t / "missing.zarr"), EXIT_USAGE, "no episode store here"),
    ("train-demos-other-env", lambda t: train(t, "--demos", small_store(t)), EXIT_USAGE,
     "does not fit the 'reach' env"),
    # Checkpoints.
    ("eval-checkpoint-without-config", lambda t: ["eval", "--checkpoint", checkpoint_without(t, "config")],
     EXIT_USAGE, "'config' is missing"),
    ("eval-checkpoint-garbage", lambda t: ["eval", "--checkpoint", junk_file(t / "junk.pt")],
     EXIT_USAGE, "not a loadable robot_rl checkpoint"),
    ("eval-checkpoint-missing", lambda t: ["eval", "--checkpoint", t / "none.pt"], EXIT_USAGE, "no such checkpoint"),
    # Imports: non-numeric dtypes and non-finite values.
    ("import-string-dtype", lambda t: ["data", "import-diffusion-policy", diffusion_policy_store(
        t, action=ACTIONS, label=np.array(list("abcdef"))), t / "out.zarr", "--control-hz", "10"],
     EXIT_USAGE, "data/label has dtype <U1"),
    ("import-object-dtype", lambda t: ["data", "import-diffusion-policy", diffusion_policy_store(
        t, action=ACTIONS, label=np.array(list("abcdef"), dtype=object)), t / "out.zarr", "--control-hz", "10"],
     EXIT_USAGE, "data/label has dtype"),
    ("import-nan-action", lambda t: ["data", "import-diffusion-policy", diffusion_policy_store(
        t, action=NAN_ACTIONS), t / "out.zarr", "--control-hz", "10"],
     EXIT_USAGE, "data/action holds nan at index [3, 1] (step 3)"),
    # Config values that failed late or were accepted.
    ("actor-lr-negative", lambda t: train(t, "agent.actor_lr=-1"), EXIT_USAGE, "agent.actor_lr: must be > 0, got -1.0"),
    ("critic-lr-nan", lambda t: train(t, "agent.critic_lr=.nan"), EXIT_USAGE,
     "agent.critic_lr: expected a finite number"),
    ("hidden-size-negative", lambda t: train(t, "agent.hidden_sizes=[-5]"), EXIT_USAGE,
     "agent.hidden_sizes[0]: must be >= 1, got -5"),
    ("device-missing-gpu", lambda t: train(t, "agent.device=cuda:7"), EXIT_USAGE,
     "agent.device: 'cuda:7' is not available"),
    ("device-nonsense", lambda t: train(t, "agent.device=gpu"), EXIT_USAGE, "agent.device: expected cpu, cuda"),
    ("max-episode-steps-zero", lambda t: train(t, "env.task.max_episode_steps=0"), EXIT_USAGE,
     "env.task.max_episode_steps: must be >= 1, got 0"),
    ("replay-capacity-too-small", lambda t: train(t, "train.replay_capacity=10"), EXIT_USAGE,
     "train.replay_capacity: 10 steps cannot hold"),
    ("init-temperature-negative", lambda t: train(t, "agent.init_temperature=-1"), EXIT_USAGE,
     "agent.init_temperature: must be > 0"),
    ("torch-threads-negative", lambda t: train(t, "train.torch_threads=-3"), EXIT_USAGE,
     "train.torch_threads: must be >= 0, got -3"),
    ("seed-negative", lambda t: train(t, "train.seeds=[-1]"), EXIT_USAGE, "train.seeds[0]: must be >= 0"),
    ("bench-device-missing-gpu", lambda t: ["bench", "learner", "--device", "cuda:7"], EXIT_USAGE,
     "--device: 'cuda:7' is not available"),
    ("env-position-scale-inf", lambda t: ["sim", "experts", "--tasks", "reach", "--episodes", "1",
                                          "--set", "control.position_scale=.inf"], EXIT_USAGE,
     "control.position_scale: expected a finite number, got inf"),
]


@pytest.mark.parametrize("build, code, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_an_exit_code(tmp_path, capsys, build, code, message):
    if "cuda:7" in message and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    argv = [str(arg) for arg in build(tmp_path)]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    command = " ".join(argv[:2]) if argv[0] in ("data", "sim", "bench") else argv[0]
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"robot-rl {command}: error: "), err
    assert message in errors[0], errors[0]
    assert not (tmp_path / "run" / "seed_0" / "replay.zarr").exists()  # nothing was started
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "m.zarr").exists()


def test_debug_flag_and_variable_show_the_traceback(tmp_path, capsys, monkeypatch):
    path = damaged(small_store(tmp_path), "meta/length")
    assert main(["--debug", "data", "info", str(path)]) == EXIT_RUNTIME
    err = capsys.readouterr().err
    assert "Traceback" in err and "CorruptDataError" in err
    assert err.strip().splitlines()[-1].startswith("robot-rl data info: error: ")
    monkeypatch.setenv("ROBOT_RL_DEBUG", "1")
    assert main(["data", "info", str(path)]) == EXIT_RUNTIME
    assert "Traceback" in capsys.readouterr().err


def test_end_to_end_no_traceback_for_damaged_data(tmp_path):
    """As a real process: stderr is exactly the one line."""
    path = damaged(small_store(tmp_path), "meta/length")
    result = subprocess.run([sys.executable, "-m", "robot_rl.cli", "data", "info", str(path)],
                            capture_output=True, text=True, timeout=120,
                            env={key: value for key, value in os.environ.items() if key != "ROBOT_RL_DEBUG"})
    assert result.returncode == EXIT_RUNTIME
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"robot-rl data info: error: {path}: cannot read meta/length")


def test_bugs_keep_their_traceback():
    """Only listed exception kinds are reported as one line; anything else is a bug."""

    def buggy() -> int:
        raise TypeError("unsupported operand")

    with pytest.raises(TypeError):
        run_reported("sim view", buggy)


def test_every_listed_exception_class_exists():
    for name in EXIT_CODES:
        module, _, cls = name.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), cls), BaseException), name


def test_import_allows_non_finite_values_when_asked(tmp_path, capsys):
    source = diffusion_policy_store(tmp_path, action=NAN_ACTIONS)
    assert main(["data", "import-diffusion-policy", str(source), str(tmp_path / "out.zarr"), "--control-hz", "10",
                 "--allow-nonfinite"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    assert np.isnan(EpisodeStore.open(tmp_path / "out.zarr").load(["action"])["action"][3, 1])


def test_eval_with_weights_that_do_not_fit_the_agent(tmp_path, capsys):
    """``--set agent.hidden_sizes=...`` over a checkpoint: a clear checkpoint error, not torch's
    multi-line ``Error(s) in loading state_dict``."""
    from robot_rl.agents import make_agent
    from robot_rl.config import to_dict
    from robot_rl.training import load_train_config
    from robot_rl.training.checkpoint import save_checkpoint
    from robot_rl.training.loop import make_env

    config = load_train_config(overrides={"agent": {"hidden_sizes": [8]}})
    env = make_env(config)
    agent = make_agent(env.observation_space, env.action_space, config.agent)
    env.close()
    path = save_checkpoint(tmp_path / "last.pt", {"format": "robot_rl.checkpoint", "config": to_dict(config),
                                                  "agent": agent.state_dict(), "counters": {"env_steps": 0}, "rng": {}})
    argv = ["eval", "--checkpoint", str(path), "--episodes", "1", "--set", "agent.hidden_sizes=[16]"]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "weights do not fit the agent built from its config" in err
