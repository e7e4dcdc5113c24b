"""``robot-rl bench learn``: a tiny real benchmark (our SAC and SB3 SAC, two seeds, two worker
processes), its JSON and PNG, the per-run cache, run-directory names compatible with
``benchmarks/demo_learning.py``'s cache, and the requests refused with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from robot_rl.bench import learn
from robot_rl.cli import main

TINY = ["--task", "reach", "--learners", "sac", "sb3", "--seeds", "0", "1", "--steps", "300", "--eval-every", "150",
        "--eval-episodes", "2", "--jobs", "2",
        "--set", "train.warmup_steps=100", "agent.hidden_sizes=[64,64]", "agent.batch_size=64"]


def bench_learn(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "robot_rl.cli", "bench", "learn", *TINY, "--out", str(tmp_path / "out"),
               "--work", str(tmp_path / "work"), "--name", "tiny", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_tiny_benchmark_writes_json_and_png_and_reruns_from_cache(tmp_path):
    first = bench_learn(tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert (tmp_path / "out" / "tiny.png").stat().st_size > 0
    assert report["command"].startswith("robot-rl bench learn --task reach --learners sac sb3")
    assert report["machine"]["jobs"] == 2 and report["machine"]["torch_threads_per_run"] == 1
    assert report["machine"]["cpu_count"] >= 1 and "cpu_model" in report["machine"]
    assert report["env"].startswith("RobotRL/ArmReach-v0") and report["budget_env_steps"] == 300
    assert report["metric"] == "success" and report["failed"] == []
    assert set(report["learners"]) == {"sac", "sb3"}
    for name, learner in report["learners"].items():
        assert set(learner["seeds"]) == {"0", "1"}
        for entry in learner["seeds"].values():
            assert [step for step, _ in entry["at_checkpoints"]] == [150, 300], (name, entry)
            assert all(0.0 <= value <= 1.0 for _, value in entry["curve"])
            assert entry["final"] == entry["curve"][-1][1]
            assert entry["steps_to_90pct"] is None or entry["steps_to_90pct"] in (150, 300)
            assert entry["wall_clock_s"] > 0 and entry["env_steps"] >= 300
            assert entry["updates"] > 0 and entry["updates_per_s"] > 0 and entry["env_steps_per_s"] > 0
        summary = learner["summary"]
        assert summary["seeds"] == 2 and summary["final_min"] <= summary["final_median"] <= summary["final_max"]
        assert {"steps_to_90pct_median", "reached_90pct", "wall_clock_s_median", "updates_per_s_median"} <= set(summary)
    assert report["learners"]["sac"]["seeds"]["0"]["updates"] == 200  # one update per step after 100 warm-up steps
    # one progress line per finished run, with a counter
    assert sum(line.startswith("[") and "/4]" in line for line in first.stderr.splitlines()) == 4, first.stderr
    stdout = json.loads(first.stdout)
    assert set(stdout["summary"]) == {"sac", "sb3"}

    start = time.monotonic()
    again = bench_learn(tmp_path)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - start < 30 and again.stderr.count("(cached)") == 4, again.stderr
    assert json.loads((tmp_path / "out" / "tiny.json").read_text())["learners"] == report["learners"]
    # A changed protocol never reuses a result silently.
    changed = bench_learn(tmp_path, "--eval-episodes", "3")
    assert changed.returncode == 2 and "other settings" in changed.stderr and "eval_episodes" in changed.stderr


@pytest.mark.parametrize("argv, message", [
    (["--learners", "sac", "ppo"], "unknown learner 'ppo'"),
    (["--task", "lift", "--learners", "sac", "--her", "future"], "has no goal to relabel"),
    (["--task", "lift", "--learners", "sb3_her"], "has no goal to relabel"),
    (["--task", "reach", "--learners", "ddpgfd"], "add --demos K"),
    (["--task", "reach", "--learners", "ddpgfd", "--demos", "2", "--her", "future"], "samples by priority"),
    (["--set", "train.total_steps=5"], "the benchmark sets it"),
])
def test_bad_requests_exit_2(tmp_path, capsys, argv, message):
    code = main(["bench", "learn", *argv, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "work").exists()  # refused before anything ran or was recorded


def test_run_names_match_demo_learning_cache_and_legacy_results_are_reused(tmp_path):
    """The names ``benchmarks/demo_learning.py`` gave its runs (default UTD 1, ``--utd N``); a result
    written by that script (no spec) is reused, one with another spec is refused."""
    protocol = learn.Protocol(steps=15000, eval_every=1000, eval_episodes=20, seeds=(0,), task="lift")
    stems = {l.label: l.stem for l in learn.plan_learners(["rlpd", "ddpgfd", "awac", "sac", "sb3"], protocol,
                                                            utd=2, demos=20)}
    assert stems == {"rlpd": "lift_rlpd_15000_utd2", "ddpgfd": "lift_ddpgfd_15000_utd2",
                     "awac": "lift_awac_15000_utd2", "sac": "lift_sac_15000", "sb3": "lift_sb3_15000"}
    assert learn.plan_learners(["rlpd"], protocol, utd=1, demos=20)[0].stem == "lift_rlpd_15000"
    assert learn.plan_learners(["rlpd"], protocol, demos=20)[0].stem == "lift_rlpd_15000_preset"
    (sb3,) = learn.plan_learners(["sb3"], protocol)
    run_dir = tmp_path / "lift_sb3_15000_seed0"
    run_dir.mkdir()
    (run_dir / "result.json").write_text(json.dumps({"curve": [[1000, 0.5], [2000, 0.95]], "wall_clock_s": 20.0}))
    spec = learn.run_spec(protocol, sb3, 0, None)
    legacy = learn.load_cached(run_dir, spec)
    entry = learn.seed_entry(legacy, protocol.eval_every)
    assert entry["steps_to_90pct"] == 2000 and entry["final"] == 0.95 and entry["env_steps_per_s"] == 100.0
    (run_dir / "result.json").write_text(json.dumps({**legacy, "spec": {**spec, "eval_episodes": 10}}))
    with pytest.raises(learn.BenchSetupError, match="eval_episodes: 10 -> 20"):
        learn.load_cached(run_dir, spec)


def test_sigterm_stops_the_workers_and_keeps_the_run_resumable(tmp_path):
    """SIGTERM to ``bench learn`` reaches every worker (each in its own session): the worker
    records its attempt and exits, the parent exits 143, nothing is left running, and the run
    has a checkpoint to continue from."""
    import os
    import re
    import signal

    work = tmp_path / "work"
    command = [sys.executable, "-m", "robot_rl.cli", "bench", "learn", "--task", "reach", "--learners", "sac",
               "--seeds", "0", "--steps", "20000", "--eval-every", "200", "--eval-episodes", "1",
               "--set", "train.warmup_steps=100", "agent.hidden_sizes=[32,32]", "agent.batch_size=32",
               "--work", str(work), "--out", str(tmp_path / "out")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = None
    deadline = time.monotonic() + 120
    while run_dir is None or not (run_dir / "seed_0" / "checkpoints" / "last.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        run_dir = next(work.glob("reach_sac_20000_*_seed0"), None) if work.exists() else None
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 143, stderr
    log = (run_dir / "bench.log").read_text()
    assert "terminated by SIGTERM" in log, log
    pid = int(re.search(r"start \(pid (\d+)\)", log).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (run_dir / "result.json").exists()
    assert len(json.loads((run_dir / "bench_attempts.json").read_text())) == 1
