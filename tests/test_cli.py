"""The ``robot-rl`` command line: end to end as a subprocess, and error paths through ``main(argv)``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest
from PIL import Image

from robot_rl.cli import main


def robot_rl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run([sys.executable, "-m", "robot_rl.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_console_script_is_declared():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("robot-rl") == "robot_rl.cli:main"


def test_help_lists_command_groups():
    result = robot_rl("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: robot-rl" in result.stdout
    for group in ("sim", "bench"):
        assert group in result.stdout
    sim_help = robot_rl("sim", "view", "--help")
    assert sim_help.returncode == 0
    for option in ("--policy", "--episodes", "--out", "--set", "--config"):
        assert option in sim_help.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: robot-rl" in capsys.readouterr().err


def test_sim_view_random_policy_writes_png(tmp_path):
    out = tmp_path / "view"
    result = robot_rl("sim", "view", "--task", "reach", "--policy", "random", "--episodes", "1",
                      "--out", str(out), "--set", "task.max_episode_steps=8")
    assert result.returncode == 0, result.stderr
    strips = sorted(out.glob("*.png"))
    assert len(strips) == 1
    assert strips[0].stat().st_size > 1000
    image = np.asarray(Image.open(strips[0]).convert("RGB"))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 10.0  # real rendered frames, not a blank canvas
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["env_id"] == "RobotRL/ArmReach-v0"
    assert summary["policy"] == "random"
    assert len(summary["episodes"]) == 1 and summary["episodes"][0]["steps"] == 8
    assert summary["episodes"][0]["strip"] == str(strips[0])


def test_bad_set_is_exit_code_2_with_message(tmp_path):
    """End to end: the process exits with status 2 and one clear line on stderr."""
    out = tmp_path / "o"
    result = robot_rl("sim", "view", "--task", "reach", "--policy", "random", "--out", str(out),
                      "--set", "control.position_scale=fast", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("robot-rl sim view: error: overrides: control.position_scale: "
                                     "expected float, got str ('fast')")
    assert not out.exists()


@pytest.mark.parametrize("assignment, message", [
    ("bogus", "--set 'bogus': expected KEY=VALUE"),
    ("control.bogus=1", "control.bogus: unknown key"),
    ("task.reward_type=shaped", "task.reward_type: expected one of 'dense', 'sparse', got 'shaped'"),
])
def test_bad_set_messages(tmp_path, capsys, assignment, message):
    code = main(["sim", "view", "--task", "reach", "--policy", "random", "--out", str(tmp_path / "o"),
                 "--set", assignment])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("robot-rl sim view: error: ") and message in err
    assert "Traceback" not in err


def test_bad_config_file_names_the_file(tmp_path, capsys):
    config = tmp_path / "env.yaml"
    config.write_text("control:\n  pos_scale: 0.1\n")
    code = main(["sim", "view", "--task", "reach", "--config", str(config), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(config) in err and "control.pos_scale: unknown key" in err


def test_unknown_task_is_exit_code_2(tmp_path, capsys):
    code = main(["sim", "view", "--task", "fly", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "unknown task 'fly'" in capsys.readouterr().err


def test_experts_command_rejects_joint_actions(capsys):
    code = main(["sim", "experts", "--tasks", "reach", "--episodes", "1", "--set", "control.action_mode=joint_delta"])
    assert code == 2
    assert "action_mode=ee_delta" in capsys.readouterr().err
