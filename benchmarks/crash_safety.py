"""Crash safety of the episode store: SIGKILL the real CLI at random times and check what survives.

For each of ``robot-rl record``, ``robot-rl train`` and ``robot-rl data merge`` this starts the
command as a subprocess (``python -m robot_rl.cli``, the console script's ``main``), kills it with
SIGKILL at a seeded random time, and checks the promises of the README ("Reliability", "Training",
"Data"):

- **record** (scripted expert, ``reach``, appending to *one* store across all kills, as a user
  re-running ``record`` would): the store opens (``EpisodeStore.open``) and ``robot-rl data
  verify`` exits 0; every episode the progress bar had shown as recorded (it counts commit
  records) is in the store; the episodes committed before this run are unchanged (SHA-256 of
  their steps, final observations and table rows); seeds stay ``0..n-1`` with no gap. At the
  end one more ``record`` runs to completion on the same store.
- **train** (tiny SAC config, a fresh run directory per kill): the replay store opens and
  verifies; it holds at least the ``episodes=N`` the progress bar had shown (the commit
  record's count); the checkpoint never counts more steps than the store; ``robot-rl train
  --resume`` exits 0, its progress bar starts at the store's committed step count, it finishes
  ``total_steps``, the episodes committed before the kill are unchanged, the final store
  verifies, and ``logs/episodes.csv`` has exactly one row per stored episode (its ``env_step``
  column equals ``meta/episode_ends``).
- **merge** (two small stores recorded once at the start): the destination is either absent
  (the merge builds in a hidden ``.<name>.*.partial`` sibling) or complete (same content as an
  uninterrupted merge, verify exits 0); the sources' files are byte-identical before and after
  (SHA-256 of every file). A few merges killed before the destination appeared are run again to
  completion to show the leftover hidden directory does not get in the way.

Kill times are seeded and spread over a plan measured from one uninterrupted run of each command:
a fifth of the kills land at a uniform time during start-up (before the trigger: ``record``'s and
``train``'s progress bar appearing, ``merge``'s hidden staging directory appearing), the rest at
a uniform delay after the trigger, up to the calibrated end of the run (``train``: the process's
exit; ``merge``: the destination appearing, plus 10 %; ``record``, which is given 100000
episodes: 3 s, about 60 commits), so most land while episodes are being written and committed.
Kills that caught a write in the act are counted: ``*.partial`` files left behind (a chunk, a
checkpoint or the commit record half written), and rows of an episode written past the commit
record but not committed.

``robot-rl data verify`` runs as the CLI's ``main(["data", "verify", PATH])`` in this process
(the same parser, handler and exit code, without a process start-up that imports torch per
check); ``--verify-in-subprocess`` runs it as a command instead.

Prints JSON on stdout (progress on stderr) and writes ``--json``. Run it niced on a busy
machine; the whole default run takes about 10 minutes on 2 loaded cores::

    nice -n 10 python benchmarks/crash_safety.py --json benchmarks/results/crash_safety.json
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CLI = [sys.executable, "-m", "robot_rl.cli"]
TASK = "reach"  # 50-step episodes, a scripted expert that always succeeds
TRAIN_STEPS = 400
TRAIN_SETTINGS = [f"train.total_steps={TRAIN_STEPS}", "train.warmup_steps=100", "train.checkpoint_every=100",
                  "train.eval_every=200", "train.eval_episodes=2", "train.progress=true",
                  "agent.hidden_sizes=[32,32]", "agent.batch_size=32"]
MERGE_SOURCE_EPISODES = 40
RECORD_WINDOW = 3.0  # s after record's progress bar appears: ~60 episodes committed at ~20 per s
BAR_COUNT = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")  # tqdm's " 12/1000 [" (the count shown)
BAR_EPISODES = re.compile(r"episodes=(\d+)")  # the train bar's postfix: committed episodes


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- running the CLI
Trigger = Callable[[], bool]


class Run:
    """One ``robot-rl`` subprocess with stdout/stderr in files (everything it wrote before a
    SIGKILL is there), in a session of its own."""

    def __init__(self, args: Sequence[str], logs: Path, name: str, cwd: Path) -> None:
        self.args = list(args)
        self.stdout_path, self.stderr_path = logs / f"{name}.out", logs / f"{name}.err"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.started = time.monotonic()
            self.process = subprocess.Popen([*CLI, *self.args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                            cwd=cwd, env=env, start_new_session=True)

    def has_output(self) -> bool:
        """A trigger: the command has written to stderr (its progress bar is up)."""
        return self.stderr_path.stat().st_size > 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait(self, *triggers: Trigger, timeout: float = 600.0) -> tuple[float, list[float | None]]:
        """Wait for the end; ``(seconds it ran, seconds until each trigger() first held)``."""
        times: list[float | None] = [None] * len(triggers)

        def look() -> None:
            for i, trigger in enumerate(triggers):
                if times[i] is None and trigger():
                    times[i] = self.elapsed()

        while self.process.poll() is None:
            look()
            if self.elapsed() > timeout:
                self.kill()
                raise RuntimeError(f"{' '.join(self.args)} did not finish within {timeout} s")
            time.sleep(0.005)
        look()
        return self.elapsed(), times

    def kill_planned(self, plan: tuple[str, float], trigger: Trigger) -> tuple[bool, float]:
        """SIGKILL by ``plan``: ``("start", t)`` t seconds after the start, ``("trigger", d)`` d
        seconds after ``trigger()`` first holds. ``(killed, seconds since start)``; killed is
        False if the command had already exited."""
        kind, seconds = plan
        if kind == "trigger":
            while not trigger():
                if self.process.poll() is not None:
                    return False, self.elapsed()
                time.sleep(0.002)
            seconds += self.elapsed()
        while self.elapsed() < seconds:
            if self.process.poll() is not None:
                return False, self.elapsed()
            time.sleep(0.002)
        if self.process.poll() is not None:
            return False, self.elapsed()
        at = self.elapsed()
        self.kill()
        return True, at

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group of this one child, started above
        except ProcessLookupError:
            pass
        self.process.wait()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")


def bar_counts(text: str) -> list[int]:
    """Every count a tqdm bar showed (``N`` of ``N/total``), in order."""
    return [int(match.group(1)) for match in BAR_COUNT.finditer(text)]


def cli(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


VERIFY_IN_SUBPROCESS = False  # --verify-in-subprocess


def verify(path: Path, cwd: Path) -> tuple[bool, str]:
    """``robot-rl data verify PATH``: exit 0? By default the CLI's ``main`` runs in this process
    (same parser, handler and exit codes; it saves the ~2-4 s start-up of a process that imports
    torch, per check), with its output captured."""
    if VERIFY_IN_SUBPROCESS:
        result = cli(["data", "verify", str(path)], cwd)
        return result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    from robot_rl.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(["data", "verify", str(cwd / path)])
    except BaseException as exc:  # a traceback: a bug, counted as a failure
        return False, f"{type(exc).__name__}: {exc}"
    return code == 0, (out.getvalue() + err.getvalue())[-2000:]


# --------------------------------------------------------------------------- looking at stores
def store_state(path: Path, first_episodes: int | None = None) -> dict[str, Any]:
    """Open the store read-only (changes nothing on disk) and describe it: committed episodes and
    steps, the seeds, and a SHA-256 over the first ``first_episodes`` episodes (default: all):
    their steps, final observations and table rows."""
    from robot_rl.data import EpisodeStore

    with EpisodeStore.open(path, "r") as store:
        n = store.n_episodes if first_episodes is None else first_episodes
        digest = hashlib.sha256()
        episodes = np.arange(n)
        if n:
            for name, values in sorted(store.load(episodes=episodes).items()):
                digest.update(name.encode() + np.ascontiguousarray(values).tobytes())
            for name, values in sorted(store.final_obs(episodes).items()):
                digest.update(name.encode() + np.ascontiguousarray(values).tobytes())
        table = store.episodes
        for name in sorted(table):
            digest.update(name.encode() + np.ascontiguousarray(table[name][:n]).tobytes())
        return {"episodes": store.n_episodes, "steps": store.n_steps, "generation": store.generation,
                "seeds": table["seed"].tolist(), "episode_ends": table["episode_ends"].tolist(),
                "digest": digest.hexdigest()}


def partial_files(path: Path) -> list[str]:
    """``*.partial`` files under ``path``: a chunk, array metadata or the commit record that a
    kill interrupted mid-write (opening for appending deletes them; reading ignores them)."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*.partial"))


def rows_past_commit(path: Path, episode_steps: int = 50) -> tuple[int, np.ndarray]:
    """``(committed steps, raw data/action rows [n, n + episode_steps) on disk)``, read with plain
    Zarr past the commit record (nothing opens the store for appending in between). Rows that
    are not the fill value there are an episode the writer had written but not committed when
    the kill came (a kill interrupts at most one episode's write), or rows left there by an
    earlier kill, which the caller tells apart."""
    import zarr

    n = json.loads((path / "zarr.json").read_text())["attributes"]["commit"]["n_steps"]
    array = zarr.open_array(store=str(path), path="data/action", mode="r")
    return n, np.asarray(array[n: n + episode_steps])


def written_past_commit(path: Path, previous: tuple[int, np.ndarray] | None) -> tuple[bool, tuple[int, np.ndarray]]:
    """Whether this run left rows of an uncommitted episode on disk (rows unchanged since the
    previous kill's snapshot at the same commit do not count), and the new snapshot."""
    if not path.exists():
        return False, (0, np.zeros((0,)))
    snapshot = rows_past_commit(path)
    n, rows = snapshot
    written = bool(rows.size and np.any(rows != 0))
    if written and previous is not None and previous[0] == n and previous[1].shape == rows.shape:
        written = bool(np.any(previous[1] != rows))
    return written, snapshot


def tree_digest(path: Path) -> str:
    """SHA-256 over every file's relative path and bytes (sources must stay byte-identical)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def try_state(path: Path, first_episodes: int | None = None) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return store_state(path, first_episodes), None
    except Exception as exc:  # anything: the point is to count stores that do not open
        return None, f"{type(exc).__name__}: {exc}"


STARTUP_SHARE = 0.2  # share of kills timed from the start (start-up, opening or creating the store)


def kill_plan(rng: random.Random, calibration: dict[str, float]) -> tuple[str, float]:
    """When to kill: a share :data:`STARTUP_SHARE` uniformly within the calibrated time to the
    trigger (from 20 % of it), the rest uniformly within the calibrated time after the trigger
    (``after_trigger``), counted from when the trigger holds in this run, so that the machine's
    load, which stretches start-up most, does not move the kills out of the writing phase."""
    if rng.random() < STARTUP_SHARE:
        return "start", rng.uniform(0.2, 1.0) * calibration["trigger"]
    return "trigger", rng.uniform(0.0, calibration["after_trigger"])


def median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


# --------------------------------------------------------------------------- record
def record_args(store: Path, episodes: int) -> list[str]:
    return ["record", "--task", TASK, "--episodes", str(episodes), "--out", str(store)]


def bench_record(kills: int, rng: random.Random, work: Path, calibration: dict[str, float]) -> dict[str, Any]:
    logs = work / "logs"
    store = work / "record.zarr"
    # From a little before the first progress output to ~3 s into the recording.
    counts = {"kills": kills, "killed_while_running": 0, "killed_after_first_commit": 0,
              "left_partial_files": 0, "left_uncommitted_rows": 0, "store_absent_killed_before_creation": 0,
              "stores_failed_to_open": 0,
              "verify_failures": 0, "episodes_lost": 0, "committed_episodes_changed": 0, "seed_gaps": 0}
    cases, failures, verify_seconds = [], [], []
    before: dict[str, Any] | None = None
    snapshot: tuple[int, np.ndarray] | None = None
    for i in range(kills):
        plan = kill_plan(rng, calibration)
        run = Run(record_args(store, 100_000), logs, f"record_{i}", work)
        alive, at = run.kill_planned(plan, run.has_output)
        counts["killed_while_running"] += alive
        shown = max(bar_counts(run.stderr()), default=0)
        partials = partial_files(store)
        counts["left_partial_files"] += bool(partials)
        uncommitted, snapshot = written_past_commit(store, snapshot)
        counts["left_uncommitted_rows"] += uncommitted
        case = {"plan": [plan[0], round(plan[1], 3)], "kill_at_s": round(at, 3), "killed": alive,
                "shown_recorded": shown, "partial_files": len(partials), "uncommitted_rows": uncommitted}
        if not store.exists():
            counts["store_absent_killed_before_creation"] += 1
            case["store"] = "absent"
            if shown:
                counts["episodes_lost"] += shown
                failures.append({"case": i, "problem": f"{shown} episodes shown as recorded, store absent"})
            cases.append(case)
            continue
        after, error = try_state(store)
        if after is None:
            counts["stores_failed_to_open"] += 1
            failures.append({"case": i, "problem": f"store does not open: {error}"})
            cases.append({**case, "store": error})
            break  # every later kill would append to a store that does not open
        t = time.monotonic()
        ok, output = verify(store, work)
        verify_seconds.append(time.monotonic() - t)
        counts["verify_failures"] += not ok
        if not ok:
            failures.append({"case": i, "problem": "verify failed", "output": output})
        prior = before["episodes"] if before else 0
        gained = after["episodes"] - prior
        counts["killed_after_first_commit"] += gained > 0
        if gained < shown:
            counts["episodes_lost"] += shown - gained
            failures.append({"case": i, "problem": f"bar showed {shown} recorded, store gained {gained}"})
        if before and try_state(store, prior)[0]["digest"] != before["digest"]:
            counts["committed_episodes_changed"] += 1
            failures.append({"case": i, "problem": f"the {prior} episodes committed before this run changed"})
        if after["seeds"] != list(range(after["episodes"])):
            counts["seed_gaps"] += 1
            failures.append({"case": i, "problem": "seeds are not 0..n-1"})
        cases.append({**case, "committed_before": prior, "committed_after": after["episodes"], "verify_ok": ok})
        before = after
        log(f"record kill {i + 1}/{kills}: at {at:.2f} s, shown {shown}, gained {gained}, "
            f"partial files {len(partials)}, uncommitted rows {uncommitted}, verify {'ok' if ok else 'FAILED'}")
    # The killed-and-recovered store still takes appends to the end.
    final = Run(record_args(store, 3), logs, "record_final", work)
    final.wait()
    end, error = try_state(store)
    prior = before["episodes"] if before else 0
    final_ok = final.returncode == 0 and end is not None and end["episodes"] == prior + 3 and verify(store, work)[0]
    if not final_ok:
        failures.append({"case": "final", "problem": f"record after the kills: exit {final.returncode}, {error}"})
    return {"command": " ".join(["robot-rl", *record_args(Path("record.zarr"), 100_000)]),
            "kill_plan_s": calibration, **counts,
            "episodes_committed_in_total": end["episodes"] if end else None,
            "final_append_ok": final_ok, "verify_median_s": median(verify_seconds),
            "failures": failures, "cases": cases}


# --------------------------------------------------------------------------- train
def train_args(run_dir: Path, resume: bool = False) -> list[str]:
    return ["train", "--task", TASK, "--run-dir", str(run_dir), *(["--resume"] if resume else []),
            "--set", *TRAIN_SETTINGS]


def log_steps(seed_dir: Path) -> list[int]:
    path = seed_dir / "logs" / "episodes.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [int(float(row["env_step"])) for row in csv.DictReader(f)]


def bench_train(kills: int, rng: random.Random, work: Path, calibration: dict[str, float]) -> dict[str, Any]:
    from robot_rl.training.checkpoint import load_checkpoint

    logs = work / "logs"
    counts = {"kills": kills, "killed_while_running": 0, "killed_after_first_commit": 0,
              "left_partial_files": 0, "left_uncommitted_rows": 0, "killed_before_run_existed": 0,
              "stores_failed_to_open": 0,
              "verify_failures": 0, "episodes_lost": 0, "committed_episodes_changed": 0,
              "checkpoint_ahead_of_store": 0, "resumes_failed": 0, "resumes_at_wrong_step": 0,
              "resumes_not_finished": 0, "log_rows_not_matching_store": 0}
    cases, failures, resume_seconds = [], [], []
    for i in range(kills):
        plan = kill_plan(rng, calibration)
        run_dir = work / f"train_{i}"
        seed_dir = run_dir / "seed_0"
        store = seed_dir / "replay.zarr"
        run = Run(train_args(run_dir), logs, f"train_{i}", work)
        alive, at = run.kill_planned(plan, run.has_output)
        counts["killed_while_running"] += alive
        shown = max((int(m) for m in BAR_EPISODES.findall(run.stderr())), default=0)
        partials = partial_files(seed_dir)
        counts["left_partial_files"] += bool(partials)
        uncommitted = written_past_commit(store, None)[0]  # a fresh store: no earlier kill's rows
        counts["left_uncommitted_rows"] += uncommitted
        case: dict[str, Any] = {"plan": [plan[0], round(plan[1], 3)], "kill_at_s": round(at, 3), "killed": alive,
                                "shown_episodes": shown,
                                "partial_files": len(partials), "uncommitted_rows": uncommitted}
        if not (run_dir / "config.yaml").is_file():
            counts["killed_before_run_existed"] += 1  # --resume refuses: there is no run to continue
            cases.append({**case, "store": "no run yet"})
            log(f"train kill {i + 1}/{kills}: at {at:.2f} s, before the run directory existed")
            continue
        after, error = try_state(store) if store.exists() else ({"episodes": 0, "steps": 0, "digest": None}, None)
        if after is None:
            counts["stores_failed_to_open"] += 1
            failures.append({"case": i, "problem": f"replay store does not open: {error}"})
            cases.append({**case, "store": error})
            continue
        if store.exists():
            ok, output = verify(store, work)
            counts["verify_failures"] += not ok
            if not ok:
                failures.append({"case": i, "problem": "verify failed after the kill", "output": output})
        counts["killed_after_first_commit"] += after["episodes"] > 0
        if after["episodes"] < shown:
            counts["episodes_lost"] += shown - after["episodes"]
            failures.append({"case": i, "problem": f"bar showed {shown} episodes, store has {after['episodes']}"})
        checkpoint = seed_dir / "checkpoints" / "last.pt"
        checkpoint_step = load_checkpoint(checkpoint)["counters"]["env_steps"] if checkpoint.exists() else None
        if checkpoint_step is not None and checkpoint_step > after["steps"]:
            counts["checkpoint_ahead_of_store"] += 1
            failures.append({"case": i, "problem": f"checkpoint at step {checkpoint_step}, store {after['steps']}"})
        # Resume and let it finish.
        resumed = Run(train_args(run_dir, resume=True), logs, f"train_{i}_resume", work)
        resume_seconds.append(resumed.wait()[0])
        text = resumed.stderr()
        starts = bar_counts(text)
        first_step = starts[0] if starts else None
        expected = min(after["steps"], TRAIN_STEPS)
        final, final_error = try_state(store)
        case.update({"committed_episodes": after["episodes"], "committed_steps": after["steps"],
                     "checkpoint_step": checkpoint_step, "resume_exit": resumed.returncode,
                     "resume_first_step": first_step})
        if resumed.returncode != 0:
            counts["resumes_failed"] += 1
            failures.append({"case": i, "problem": f"resume exited {resumed.returncode}", "stderr": text[-1500:]})
        if first_step != expected:
            counts["resumes_at_wrong_step"] += 1
            failures.append({"case": i, "problem": f"resume started at {first_step}, store committed {expected}"})
        if final is None or final["steps"] < TRAIN_STEPS:
            counts["resumes_not_finished"] += 1
            failures.append({"case": i, "problem": f"after resume: {final_error or final['steps']} steps"})
        else:
            if after["episodes"] and try_state(store, after["episodes"])[0]["digest"] != after["digest"]:
                counts["committed_episodes_changed"] += 1
                failures.append({"case": i, "problem": "episodes committed before the kill changed on resume"})
            ok, output = verify(store, work)
            counts["verify_failures"] += not ok
            if not ok:
                failures.append({"case": i, "problem": "verify failed after resume", "output": output})
            steps_logged = log_steps(seed_dir)
            if steps_logged != final["episode_ends"]:
                counts["log_rows_not_matching_store"] += 1
                failures.append({"case": i, "problem": "logs/episodes.csv env_step != meta/episode_ends",
                                 "logged": steps_logged, "stored": final["episode_ends"]})
            case["final_steps"] = final["steps"]
        cases.append(case)
        log(f"train kill {i + 1}/{kills}: at {at:.2f} s, shown {shown} episodes, store {after['episodes']} "
            f"episodes / {after['steps']} steps, checkpoint {checkpoint_step}, resume started at {first_step}, "
            f"exit {resumed.returncode}")
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"command": " ".join(["robot-rl", *train_args(Path("runs/crash"))]),
            "resume_command": " ".join(["robot-rl", *train_args(Path("runs/crash"), resume=True)]),
            "kill_plan_s": calibration, **counts,
            "resume_median_s": median(resume_seconds), "failures": failures, "cases": cases}


# --------------------------------------------------------------------------- merge
def merge_args(out: Path, inputs: Sequence[Path]) -> list[str]:
    return ["data", "merge", str(out), *map(str, inputs)]


def bench_merge(kills: int, rng: random.Random, work: Path, sources: Sequence[Path], reference: dict[str, Any],
                calibration: dict[str, float], reruns: int = 3) -> dict[str, Any]:
    logs = work / "logs"
    source_digests = {str(s): tree_digest(s) for s in sources}
    counts = {"kills": kills, "killed_while_running": 0, "destination_absent": 0, "destination_complete": 0,
              "destination_incomplete": 0, "stores_failed_to_open": 0, "verify_failures": 0,
              "hidden_partial_dirs_left": 0, "sources_changed": 0, "reruns": 0, "reruns_failed": 0}
    cases, failures = [], []
    for i in range(kills):
        plan = kill_plan(rng, calibration)
        out = work / f"merged_{i}.zarr"
        run = Run(merge_args(out, sources), logs, f"merge_{i}", work)
        alive, at = run.kill_planned(plan, staging_exists(out))
        counts["killed_while_running"] += alive
        if not alive and run.returncode != 0:
            failures.append({"case": i, "problem": f"merge exited {run.returncode} before the kill",
                             "stderr": run.stderr()[-1500:]})
        leftovers = sorted(p.name for p in work.glob(f".{out.name}.*.partial"))
        counts["hidden_partial_dirs_left"] += bool(leftovers)
        case: dict[str, Any] = {"plan": [plan[0], round(plan[1], 3)], "kill_at_s": round(at, 3), "killed": alive,
                                "shown": max(bar_counts(run.stderr()), default=0),
                                "hidden_partial_dir": bool(leftovers)}
        if not out.exists():
            counts["destination_absent"] += 1
            case["destination"] = "absent"
            if counts["reruns"] < reruns:  # the leftover hidden directory must not get in the way
                counts["reruns"] += 1
                again = cli(merge_args(out, sources), work)
                state, _ = try_state(out) if out.exists() else (None, None)
                if again.returncode != 0 or state is None or state["digest"] != reference["digest"]:
                    counts["reruns_failed"] += 1
                    failures.append({"case": i, "problem": f"re-run merge: exit {again.returncode}",
                                     "stderr": again.stderr[-1500:]})
                case["rerun_ok"] = again.returncode == 0
        else:
            state, error = try_state(out)
            if state is None:
                counts["stores_failed_to_open"] += 1
                failures.append({"case": i, "problem": f"destination does not open: {error}"})
            elif state["digest"] != reference["digest"]:
                counts["destination_incomplete"] += 1
                failures.append({"case": i, "problem": f"destination has {state['episodes']} episodes, differs"})
            else:
                counts["destination_complete"] += 1
            ok, output = verify(out, work)
            counts["verify_failures"] += not ok
            if not ok:
                failures.append({"case": i, "problem": "verify failed", "output": output})
            case["destination"] = "complete" if state and state["digest"] == reference["digest"] else "BAD"
        changed = [s for s, d in source_digests.items() if tree_digest(Path(s)) != d]
        if changed:
            counts["sources_changed"] += 1
            failures.append({"case": i, "problem": f"sources changed: {changed}"})
        cases.append(case)
        log(f"merge kill {i + 1}/{kills}: at {at:.2f} s, destination {case['destination']}, "
            f"hidden partial dir {bool(leftovers)}")
        shutil.rmtree(out, ignore_errors=True)
    return {"command": " ".join(["robot-rl", *merge_args(Path("merged.zarr"), [Path(s.name) for s in sources])]),
            "source_episodes": [MERGE_SOURCE_EPISODES] * len(sources),
            "kill_plan_s": calibration, **counts, "failures": failures, "cases": cases}


# --------------------------------------------------------------------------- main
def staging_exists(out: Path) -> Trigger:
    """A trigger: the merge has created its hidden staging directory (writing has begun)."""
    return lambda: any(out.parent.glob(f".{out.name}.*.partial")) or out.exists()


def calibrate(args: Sequence[str], logs: Path, name: str, cwd: Path, trigger: Callable[[Run], Trigger],
              done: Trigger | None = None, after_trigger: float | None = None) -> dict[str, float]:
    """Run the command to its end once. Kills are then planned up to ``after_trigger`` s after
    the trigger (default: until ``done()`` first holds, plus 10 %, so that a few kills come
    after the output is complete; without ``done``, until the process exits)."""
    run = Run(args, logs, name, cwd)
    seconds, (triggered, finished) = run.wait(trigger(run), done or (lambda: False))
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {run.returncode}): {run.stderr()[-2000:]}")
    triggered = seconds / 2 if triggered is None else triggered
    if after_trigger is None:
        after_trigger = 1.1 * ((finished or seconds) - triggered) if done else seconds - triggered
    return {"trigger": round(triggered, 3), "seconds": round(seconds, 3), "after_trigger": round(after_trigger, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=float, default=1.0,
                        help="scale the default numbers of kills (30 record, 12 train, 20 merge)")
    parser.add_argument("--record-kills", type=int)
    parser.add_argument("--train-kills", type=int)
    parser.add_argument("--merge-kills", type=int)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--verify-in-subprocess", action="store_true",
                        help="run each `robot-rl data verify` as its own process (slower)")
    args = parser.parse_args()
    global VERIFY_IN_SUBPROCESS
    VERIFY_IN_SUBPROCESS = args.verify_in_subprocess
    numbers = {name: max(1, round(default * args.kills)) if given is None else given
               for name, default, given in (("record", 30, args.record_kills), ("train", 12, args.train_kills),
                                            ("merge", 20, args.merge_kills))}
    work = (args.work or Path(tempfile.mkdtemp(prefix="crash_safety_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    rng = random.Random(args.seed)
    load_at_start = os.getloadavg()
    started = time.monotonic()
    try:
        # Two small stores, recorded once; they are also the calibration of `record`.
        sources = [work / "a.zarr", work / "b.zarr"]
        # Kills of `record` land up to RECORD_WINDOW s after its progress bar appears (it never ends).
        record_cal = calibrate(["record", "--task", TASK, "--episodes", str(MERGE_SOURCE_EPISODES), "--out",
                                str(sources[0])], work / "logs", "source_a", work, lambda run: run.has_output,
                               after_trigger=RECORD_WINDOW)
        calibrate(["record", "--task", TASK, "--episodes", str(MERGE_SOURCE_EPISODES), "--out", str(sources[1]),
                   "--seed", "1000"], work / "logs", "source_b", work, lambda run: run.has_output)
        merge_cal = calibrate(merge_args(work / "reference.zarr", sources), work / "logs", "merge_reference", work,
                              lambda run: staging_exists(work / "reference.zarr"),
                              done=(work / "reference.zarr").exists)
        reference = store_state(work / "reference.zarr")
        train_cal = calibrate(train_args(work / "train_reference"), work / "logs", "train_reference", work,
                              lambda run: run.has_output)
        shutil.rmtree(work / "train_reference")
        calibration = {"record": record_cal, "merge": merge_cal, "train": train_cal}
        log(f"calibration (s): {json.dumps(calibration)}")
        timings, results = {}, {}
        for name, bench in (("record", lambda: bench_record(numbers["record"], rng, work, record_cal)),
                            ("train", lambda: bench_train(numbers["train"], rng, work, train_cal)),
                            ("merge", lambda: bench_merge(numbers["merge"], rng, work, sources, reference, merge_cal))):
            t = time.monotonic()
            results[name] = bench()
            timings[name] = round(time.monotonic() - t, 1)
    finally:
        if not (args.keep or args.work):
            shutil.rmtree(work, ignore_errors=True)
    from robot_rl.bench.env_bench import machine_info

    failed = {name: len(result["failures"]) for name, result in results.items()}
    report = {
        "command": "nice -n 10 python benchmarks/crash_safety.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(), "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(),
        "seed": args.seed, "kills": numbers,
        "calibration_s": calibration,
        "summary": {
            "kills": sum(numbers.values()),
            "stores_failed_to_open": sum(r["stores_failed_to_open"] for r in results.values()),
            "verify_failures": sum(r["verify_failures"] for r in results.values()),
            "episodes_lost": results["record"]["episodes_lost"] + results["train"]["episodes_lost"],
            "committed_episodes_changed": results["record"]["committed_episodes_changed"]
            + results["train"]["committed_episodes_changed"],
            "resumes_at_wrong_step": results["train"]["resumes_at_wrong_step"],
            "resumes_failed": results["train"]["resumes_failed"],
            "merge_destinations_incomplete": results["merge"]["destination_incomplete"],
            "merge_sources_changed": results["merge"]["sources_changed"],
            "failures": failed,
        },
        "seconds": {**timings, "total": round(time.monotonic() - started, 1)},
        **results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    sys.exit(1 if any(failed.values()) else 0)


if __name__ == "__main__":
    main()
