"""Learning benchmark (``robot-rl bench learn``): N seeds of several learners on one task for one
env-step budget, each (learner, seed) in its own process, and one JSON + one PNG of the result.

Learners are this project's agent presets (``sac``, ``redq``, ``droq``, ``td3``, ``ddpg``,
``rlpd``, ``ddpgfd``, ``awac``; trained by the normal training loop, :func:`run_ours`) and
Stable-Baselines3's SAC at its defaults (``sb3``; ``sb3_her`` adds SB3's ``HerReplayBuffer`` on
the goal observation of a goal task; :func:`run_sb3`). Every learner gets the same env, budget
and evaluation protocol: ``eval_episodes`` deterministic episodes on the fixed evaluation seeds
every ``eval_every`` env steps.

Each run lives in ``<work>/<stem>_seed<S>/``:

* ``bench_run.json``: what the run is (the *spec*) and how it is run (torch threads);
* ``bench.log``: the worker's stdout and stderr;
* ``result.json``: written once the run finished; a later invocation reuses it instead of
  training again (the cache). Its ``spec`` must equal the new one, else the run is refused with
  the differences, so a changed protocol never reuses a stale result silently. Results written by
  the older benchmark scripts (no ``spec``) are reused as they are;
* our learners' run directory (``config.yaml``, ``seed_<S>/``: replay store, checkpoints, logs).
  An interrupted run of ours continues from its checkpoint (``train(..., resume=True)``); an SB3
  run starts again.

The parent (:func:`run_benchmark`) starts at most ``jobs`` workers
(``python -m robot_rl.bench.learn RUN_DIR``), each in its own session, optionally niced; on
Ctrl-C / SIGTERM it sends SIGTERM to every worker, waits for their clean-up (stores commit what is
queued, the attempt's wall time is recorded) and re-raises.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

LEVEL = 0.9  # success rate that counts as "solved" (steps to 90 %)
SB3_LEARNERS = ("sb3", "sb3_her")
DEMO_LEARNERS = ("rlpd", "ddpgfd", "awac")  # our presets that learn from demonstrations
HER_STRATEGIES = ("future", "final", "episode")
RESULT_FILE = "result.json"
JOB_FILE = "bench_run.json"
LOG_FILE = "bench.log"
ATTEMPTS_FILE = "bench_attempts.json"
LOCK_FILE = "bench.lock"
SPEC_FORMAT = 1


class BenchSetupError(ValueError):
    """The benchmark cannot be run as asked (a bad learner name, HER without a goal, a cached run
    made with other settings); the CLI reports it with exit code 2."""


Curve = list[tuple[int, float]]  # (env step, eval success rate or mean return)


# --------------------------------------------------------------------------- what is run
@dataclass(frozen=True)
class Protocol:
    """What every learner of one benchmark shares: env, budget, evaluation."""

    steps: int
    eval_every: int
    eval_episodes: int
    seeds: tuple[int, ...]
    task: str = "reach"  # an arm task (ignored when env["gym"]["id"] is set)
    reward_type: str | None = "sparse"  # arm tasks; None: the task's own default
    env: Mapping[str, Any] = field(default_factory=dict)  # env-section overrides (--set env.*, env.gym)
    torch_threads: int = 1  # per run; not part of a run's identity

    @property
    def gym_id(self) -> str:
        return str(self.env.get("gym", {}).get("id", "") or "")

    def env_section(self) -> dict[str, Any]:
        """The ``env`` section of our config for this protocol (arm task name and reward type set)."""
        from robot_rl.config import deep_merge

        if self.gym_id:
            return dict(self.env)
        task = {"name": self.task, **({"reward_type": self.reward_type} if self.reward_type else {})}
        return deep_merge(dict(self.env), {"task": task})

    def env_label(self) -> str:
        if self.gym_id:
            kwargs = self.env.get("gym", {}).get("kwargs") or {}
            return self.gym_id + (f" {json.dumps(kwargs, sort_keys=True)}" if kwargs else "")
        from robot_rl.envs.config import ENV_IDS

        return f"{ENV_IDS[self.task]} ({self.reward_type or 'task default'} reward)"

    def env_tag(self) -> str:
        """Leading part of run-directory names: the arm task, or ``gym-<id>[-<hash>]``."""
        if not self.gym_id:
            return self.task
        tag = "gym-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", self.gym_id).strip("-.") or "env")
        extra = {k: v for k, v in self.env.get("gym", {}).items() if k != "id" and v}
        return tag + (f"-{digest(extra)}" if extra else "")


@dataclass(frozen=True)
class Learner:
    """One learner of a benchmark: how its runs are made and where they live."""

    label: str  # its name in the report
    stem: str  # run directories: <work>/<stem>_seed<S>
    kind: str = "ours"  # ours | sb3 | sb3_her
    preset: str | None = None  # ours: agent preset (None: robot-rl train's default config)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # ours: config overrides (agent, her, ...)
    demos: bool = False  # ours: gets the demonstrations
    her_strategy: str = "future"  # sb3_her: HerReplayBuffer's goal selection
    description: Mapping[str, Any] = field(default_factory=dict)  # shown in the report


def digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def is_goal_task(task: str) -> bool:
    from robot_rl.envs.config import load_env_config
    from robot_rl.envs.tasks import make_task

    return make_task(load_env_config(task).task).is_goal_task


def _preset_agent(name: str) -> dict[str, Any]:
    from robot_rl.config import read_yaml
    from robot_rl.training.config import agent_preset_path

    return dict(read_yaml(agent_preset_path(name)).get("agent", {}))


def high_utd_presets() -> tuple[str, ...]:
    """Presets with more than one gradient step per env step (the ones ``--utd`` changes)."""
    from robot_rl.training.config import AGENT_PRESETS

    return tuple(name for name in AGENT_PRESETS if int(_preset_agent(name).get("utd_ratio", 1)) > 1)


def utd_overrides(preset: str, utd: int) -> dict[str, Any]:
    """``utd`` gradient steps per env step for ``preset``; a preset that updates its actor once
    per env step (RLPD, REDQ, DroQ: ``actor_update_interval == utd_ratio``) keeps doing so."""
    agent = _preset_agent(preset)
    section: dict[str, Any] = {"utd_ratio": utd}
    if agent.get("actor_update_interval") is not None and agent.get("actor_update_interval") == agent.get("utd_ratio"):
        section["actor_update_interval"] = utd
    return {"agent": section}


def learner_names() -> tuple[str, ...]:
    from robot_rl.training.config import AGENT_PRESETS

    return (*AGENT_PRESETS, *SB3_LEARNERS)


def plan_learners(names: Sequence[str], protocol: Protocol, *, utd: int | None = None, her: str | None = None,
                  her_ratio: float = 0.8, demos: int = 0, demos_for_all: bool = False,
                  overrides: Mapping[str, Any] | None = None, goal_env: bool | None = None) -> list[Learner]:
    """The learners of ``robot-rl bench learn`` with their canonical run-directory stems
    ``<task>_<learner>_<steps>[_preset|_utdN][_dense][_her-S][_demosK][_set-H]`` (the layout of
    ``benchmarks/demo_learning.py`` for its default and ``--utd N`` runs).

    ``utd``: gradient steps per env step for the presets that use more than one (None: the
    presets' own ratios); ``her``: our HER strategy (also SB3-HER's goal selection);
    ``demos``: demonstrations given to rlpd, ddpgfd, awac (all our learners with
    ``demos_for_all``); ``overrides``: the non-env part of ``--set`` for our learners;
    ``goal_env``: whether the env is a goal env (None: decided from the arm task)."""
    from robot_rl.config import deep_merge

    known = learner_names()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchSetupError(f"unknown learner {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    if len(set(names)) != len(names):
        raise BenchSetupError(f"learners listed twice: {' '.join(names)}")
    gym = bool(protocol.gym_id)
    if goal_env is None:
        goal_env = False if gym else is_goal_task(protocol.task)
    where = f"env {protocol.gym_id!r}" if gym else f"task {protocol.task!r}"
    if her is not None and her not in HER_STRATEGIES:
        raise BenchSetupError(f"--her: unknown strategy {her!r}; choose one of {', '.join(HER_STRATEGIES)}")
    if (her is not None or "sb3_her" in names) and not goal_env:
        what = "--her" if her is not None else "learner sb3_her"
        hint = "goal tasks: reach, push, pick, peg" if not gym else \
            "a goal env has a Dict observation with achieved_goal and desired_goal and a compute_reward"
        raise BenchSetupError(f"{what}: {where} has no goal to relabel ({hint})")
    if demos and gym:
        raise BenchSetupError("--demos: scripted demonstrations exist only for this project's arm tasks, not for "
                              f"{where}")
    needs_demos = [name for name in names if name in ("ddpgfd", "awac")]
    if needs_demos and not demos:
        raise BenchSetupError(f"{', '.join(needs_demos)} pre-train on demonstrations: add --demos K")
    high_utd = high_utd_presets()
    extra = dict(overrides or {})
    learners = []
    for name in names:
        parts = [protocol.env_tag(), name, str(protocol.steps)]
        if name in high_utd:
            parts.append("preset" if utd is None else (f"utd{utd}" if utd != 1 else ""))
        if not gym and protocol.reward_type == "dense":
            parts.append("dense")
        env_extra = {k: v for k, v in protocol.env.items() if k != "gym"}
        if name in SB3_LEARNERS:
            strategy = her or "future"
            if name == "sb3_her" and strategy != "future":
                parts.append(f"her-{strategy}")
            if env_extra:
                parts.append(f"set-{digest(env_extra)}")
            what = "Stable-Baselines3 SAC, defaults" + \
                (f" + HerReplayBuffer ({strategy}, 4 goals)" if name == "sb3_her" else "")
            learners.append(Learner(label=name, stem="_".join(p for p in parts if p), kind=name, her_strategy=strategy,
                                    description={"learner": what}))
            continue
        learner_overrides: dict[str, Any] = {}
        if utd is not None and name in high_utd:
            learner_overrides = deep_merge(learner_overrides, utd_overrides(name, utd))
        if her is not None:
            learner_overrides = deep_merge(learner_overrides, {"her": {"strategy": her, "ratio": her_ratio}})
            parts.append(f"her-{her}" + (f"{her_ratio:g}" if her_ratio != 0.8 else ""))
        gets_demos = bool(demos) and (name in DEMO_LEARNERS or demos_for_all)
        if gets_demos and name not in DEMO_LEARNERS:
            parts.append(f"demos{demos}")
        if extra or env_extra:
            parts.append(f"set-{digest([extra, env_extra])}")
        learner_overrides = deep_merge(learner_overrides, extra)
        agent = deep_merge(_preset_agent(name), learner_overrides.get("agent", {}))
        learners.append(Learner(label=name, stem="_".join(p for p in parts if p), preset=name,
                                overrides=learner_overrides, demos=gets_demos,
                                description={"learner": f"robot_rl preset {name}", "algo": agent.get("algo"),
                                             "utd_ratio": agent.get("utd_ratio", 1), "demos": gets_demos,
                                             "her": her or "none"}))
    return learners


def ours_overrides(protocol: Protocol, learner: Learner, seed: int, demos_path: Path | None) -> dict[str, Any]:
    """The full config overrides of one run of ours (the protocol's keys win)."""
    from robot_rl.config import deep_merge

    overrides = deep_merge({"env": protocol.env_section()}, dict(learner.overrides))
    overrides = deep_merge(overrides, {"train": {
        "total_steps": protocol.steps, "eval_every": protocol.eval_every, "eval_episodes": protocol.eval_episodes,
        "seeds": [seed], "checkpoint_every": protocol.eval_every, "progress": False}})
    if learner.demos:
        if demos_path is None:
            raise BenchSetupError(f"{learner.label} learns from demonstrations but none were recorded (--demos K)")
        overrides = deep_merge(overrides, {"demos": {"paths": [str(Path(demos_path).resolve())]}})
    return overrides


def run_spec(protocol: Protocol, learner: Learner, seed: int, demos_path: Path | None,
             demo_episodes: int = 0) -> dict[str, Any]:
    """What one run is: compared with a cached result's before reusing it."""
    spec: dict[str, Any] = {"format": SPEC_FORMAT, "kind": learner.kind, "seed": seed, "steps": protocol.steps,
                            "eval_every": protocol.eval_every, "eval_episodes": protocol.eval_episodes}
    if learner.kind == "ours":
        spec["preset"] = learner.preset
        spec["overrides"] = ours_overrides(protocol, learner, seed, demos_path)
        spec["demo_episodes"] = demo_episodes if learner.demos else 0
    else:
        spec["env"] = protocol.env_section()
        if learner.kind == "sb3_her":
            spec["her_strategy"] = learner.her_strategy
    return spec


def _identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` without what may differ between equal runs (where the demonstrations are stored)."""
    identity = json.loads(json.dumps(spec))
    identity.get("overrides", {}).get("demos", {}).pop("paths", None)
    return identity


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def probe_gym_env(protocol: Protocol) -> tuple[bool, bool]:
    """(reports success, is a goal env) of the protocol's gymnasium env, from one episode of
    random actions: without ``info["is_success"]`` the benchmark reports mean eval returns."""
    from robot_rl.envs.gym_env import make_gym_env
    from robot_rl.training.config import load_train_config

    env = make_gym_env(load_train_config(overrides={"env": protocol.env_section()}).env.gym)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(env.max_episode_steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
        return bool(env.reports_success), env.goal_task is not None
    finally:
        env.close()


def check_learners(protocol: Protocol, learners: Sequence[Learner]) -> None:
    """Build every config of ours once before anything runs: a bad ``--set`` key or value, or
    HER with a learner that samples by priority, stops here (ConfigError / BenchSetupError)."""
    from robot_rl.agents import AGENTS
    from robot_rl.training.config import load_train_config

    for learner in learners:
        if learner.kind != "ours":
            continue
        placeholder = Path("demos.zarr") if learner.demos else None
        config = load_train_config(overrides=ours_overrides(protocol, learner, protocol.seeds[0], placeholder),
                                   agent_preset=learner.preset)
        if config.her.strategy != "none" and AGENTS[config.agent.algo].data_needs.prioritized:
            raise BenchSetupError(f"--her: {learner.label} samples by priority, which hindsight relabelling does not "
                                  f"support; leave {learner.label} out of this benchmark or drop --her")


# --------------------------------------------------------------------------- demonstrations
def record_demos(protocol: Protocol, episodes: int, work: Path) -> Path:
    """``episodes`` scripted demonstrations of the protocol's arm task, recorded once into
    ``<work>/demos_<task>_<K>[_<reward>][_<hash>].zarr`` (an interrupted recording is completed)."""
    from robot_rl.data import EpisodeStore
    from robot_rl.data.recorder import ScriptedSource, open_recording_store
    from robot_rl.envs import make_arm_env
    from robot_rl.envs.config import load_env_config
    from robot_rl.training.recorder import EpisodeRecorder

    env_extra = {k: v for k, v in protocol.env.items() if k != "gym"}
    name = f"demos_{protocol.task}_{episodes}"
    if protocol.reward_type != "sparse":
        name += f"_{protocol.reward_type or 'default'}"
    if env_extra:
        name += f"_{digest(env_extra)}"
    path = work / f"{name}.zarr"
    have = 0
    if path.exists():
        store = EpisodeStore.open(path, mode="r")
        have = store.n_episodes
        store.close()
    if have < episodes:
        work.mkdir(parents=True, exist_ok=True)
        print(f"recording {episodes - have} scripted demonstrations into {path}", file=sys.stderr, flush=True)
        section = protocol.env_section()
        env = make_arm_env(protocol.task, config=load_env_config(protocol.task, overrides=section))
        try:
            with open_recording_store(path, env) as store:
                EpisodeRecorder(env, store, ScriptedSource(env)).record(episodes - have, first_seed=have)
        finally:
            env.close()
    return path


# --------------------------------------------------------------------------- one run (in the worker)
def _eval_rows(seed_dir: Path) -> list[dict[str, str]]:
    path = seed_dir / "logs" / "eval.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = {int(float(row["env_step"])): row for row in csv.DictReader(f)}  # a repeated step: the last row
    return [rows[step] for step in sorted(rows)]


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):  # "" or "None": not logged
        return None
    return None if math.isnan(value) else value


def _attempts(run_dir: Path) -> list[float]:
    path = run_dir / ATTEMPTS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def _add_attempt(run_dir: Path, seconds: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / ATTEMPTS_FILE, [*_attempts(run_dir), seconds])


def _write_json(path: Path, data: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


def run_ours(run_dir: Path, overrides: Mapping[str, Any], agent_preset: str | None = None,
             torch_threads: int | None = None) -> dict[str, Any]:
    """Train one seed with ``robot-rl train``'s machinery in ``run_dir`` (continuing it from its
    checkpoint if an earlier attempt was interrupted) and return its result: the eval curve
    (success rate), the mean-return curve, wall time summed over attempts, env steps and gradient
    updates (from the final checkpoint)."""
    from robot_rl.config import deep_merge
    from robot_rl.training import load_train_config, train
    from robot_rl.training.checkpoint import load_checkpoint

    if torch_threads:
        overrides = deep_merge(dict(overrides), {"train": {"torch_threads": torch_threads}})
    config = load_train_config(overrides=overrides, agent_preset=agent_preset)
    (seed,) = config.train.seeds
    seed_dir = run_dir / f"seed_{seed}"
    checkpoint = seed_dir / "checkpoints" / "last.pt"
    resume = (seed_dir / "replay.zarr").exists()
    if resume and not checkpoint.exists():  # killed before its first checkpoint: nothing to continue from
        seed_dir.rename(run_dir / f"seed_{seed}.abandoned-{time.strftime('%Y%m%d-%H%M%S')}")
        (run_dir / ATTEMPTS_FILE).unlink(missing_ok=True)
        resume = False
    start = time.perf_counter()
    try:
        train(config, run_dir, resume=resume)
    finally:
        _add_attempt(run_dir, time.perf_counter() - start)
    rows = _eval_rows(seed_dir)
    steps = [int(float(r["env_step"])) for r in rows]
    success = [_number(r.get("success_rate")) for r in rows]
    reports_success = all(value is not None for value in success)  # gymnasium envs may report none
    payload = load_checkpoint(checkpoint)
    attempts = _attempts(run_dir)
    return {"curve": [[s, v] for s, v in zip(steps, success)] if reports_success else [],
            "returns": [[s, float(r["return_mean"])] for s, r in zip(steps, rows)],
            "reports_success": reports_success,
            "wall_clock_s": sum(attempts), "attempts": len(attempts),
            "env_steps": int(payload["counters"]["env_steps"]),
            "updates": int(payload["agent"]["updates"]),
            "offline_updates": int(payload["counters"].get("offline_updates", 0))}


def make_bench_env(env_section: Mapping[str, Any], goal: bool = False) -> Any:
    """The env of an SB3 run: our arm task (``GoalObservation`` dicts when ``goal``) or the
    adapted gymnasium env, as our learners get it; flattened to one vector unless ``goal``."""
    from robot_rl.envs import FlattenState, make_arm_env
    from robot_rl.training.config import load_train_config

    config = load_train_config(overrides={"env": dict(env_section)}).env
    if config.gym.id:
        from robot_rl.envs.gym_env import make_gym_env

        env = make_gym_env(config.gym)
        if goal and env.goal_task is None:
            env.close()
            raise BenchSetupError(f"sb3_her: {config.gym.id} is not a goal env ({env.goal_problem or 'no goal keys'})")
    else:
        env = make_arm_env(config.task.name, config=config, goal_observation=goal)
    return env if goal else FlattenState(env)


def run_sb3(spec: Mapping[str, Any], torch_threads: int = 1) -> dict[str, Any]:
    """Stable-Baselines3 SAC at its defaults (``sb3_her``: + ``HerReplayBuffer``, 4 sampled
    goals, on the goal observation), evaluated like our learners."""
    import torch
    from gymnasium.spaces import Dict
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from robot_rl.training.loop import EVAL_SEED_OFFSET

    torch.set_num_threads(torch_threads)
    goal = spec["kind"] == "sb3_her"
    env, eval_env = make_bench_env(spec["env"], goal), make_bench_env(spec["env"], goal)
    eval_every, episodes = int(spec["eval_every"]), int(spec["eval_episodes"])
    curve: list[list[float]] = []
    returns: list[list[float]] = []
    reports_success = [False]

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                successes, totals = [], []
                for i in range(episodes):
                    obs, _ = eval_env.reset(seed=EVAL_SEED_OFFSET + i)
                    done, info, total = False, {}, 0.0
                    while not done:
                        action, _ = self.model.predict(obs, deterministic=True)
                        obs, reward, terminated, truncated, info = eval_env.step(action)
                        total += float(reward)
                        done = terminated or truncated
                    reports_success[0] |= "is_success" in info
                    successes.append(float(info.get("is_success", 0.0)))
                    totals.append(total)
                curve.append([self.num_timesteps, statistics.mean(successes)])
                returns.append([self.num_timesteps, statistics.mean(totals)])
            return True

    kwargs: dict[str, Any] = {}
    if goal:
        from stable_baselines3 import HerReplayBuffer

        dense = spec["env"].get("task", {}).get("reward_type") == "dense"
        kwargs = {"replay_buffer_class": HerReplayBuffer,
                  "replay_buffer_kwargs": {"n_sampled_goal": 4, "goal_selection_strategy": spec["her_strategy"],
                                           "copy_info_dict": dense}}  # dense rewards read the info dict
    # Dict observations: goal dicts, or a state vector beside camera images (SB3's CNN per camera)
    policy = "MultiInputPolicy" if isinstance(env.observation_space, Dict) else "MlpPolicy"
    model = SAC(policy, env, seed=int(spec["seed"]), device="cpu", verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(total_timesteps=int(spec["steps"]), callback=Evaluate())
    wall = time.perf_counter() - start
    env.close()
    eval_env.close()
    return {"curve": curve, "returns": returns, "reports_success": reports_success[0], "wall_clock_s": wall,
            "attempts": 1, "env_steps": int(model.num_timesteps), "updates": int(model._n_updates),
            "offline_updates": 0}


class _Stop(BaseException):
    """SIGTERM in a worker: unwinds like Ctrl-C so that ``finally`` blocks run."""


def worker_main(run_dir: Path) -> int:
    """Run the job in ``run_dir/bench_run.json`` unless its result exists; one worker per run
    directory at a time (an exclusive lock; a second worker waits, then finds the result)."""
    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop(f"terminated by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, stop)
    job = json.loads((run_dir / JOB_FILE).read_text())
    spec, threads = job["spec"], int(job.get("torch_threads", 1))
    with open(run_dir / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{run_dir}: another process runs this; waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (run_dir / RESULT_FILE).exists():
            return 0
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} start (pid {os.getpid()}): {json.dumps(spec)}", flush=True)
        try:
            if spec["kind"] == "ours":
                result = run_ours(run_dir, spec["overrides"], spec["preset"], threads)
            else:
                result = run_sb3(spec, threads)
        except _Stop as exc:
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {exc}", flush=True)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
        _write_json(run_dir / RESULT_FILE, {**result, "spec": spec})
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} done: final {result['curve'][-1] if result['curve'] else None}",
              flush=True)
    return 0


# --------------------------------------------------------------------------- many runs (the parent)
@dataclass
class RunOutcome:
    learner: Learner
    seed: int
    run_dir: Path
    result: dict[str, Any] | None = None
    cached: bool = False
    error: str | None = None


def cached_run(run_dir: Path, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s result, computed once in this process: kept in ``run_dir/result.json``."""
    result_file = run_dir / RESULT_FILE
    if result_file.exists():
        return json.loads(result_file.read_text())
    result = run()
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(result_file, result)
    return result


def load_cached(run_dir: Path, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The finished result in ``run_dir``, or None; a result made with another spec is an error."""
    path = run_dir / RESULT_FILE
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if "spec" in result and _identity(result["spec"]) != _identity(spec):
        changes = "; ".join(_differences(_identity(result["spec"]), _identity(spec))[:6])
        raise BenchSetupError(f"{run_dir} holds a finished run with other settings ({changes}); use another --work "
                              f"directory or --name, or move that run away")
    return result


def _with_counters(run_dir: Path, seed: int, result: dict[str, Any]) -> dict[str, Any]:
    """A result of the older scripts (curve and wall time only) with the env steps and gradient
    updates of its final checkpoint, when it has one (our learners); the file is left as it is."""
    checkpoint = run_dir / f"seed_{seed}" / "checkpoints" / "last.pt"
    if not checkpoint.exists():
        return result
    from robot_rl.training.checkpoint import CheckpointError, load_checkpoint

    try:
        payload = load_checkpoint(checkpoint)
    except CheckpointError:
        return result
    return {**result, "env_steps": int(payload["counters"]["env_steps"]), "updates": int(payload["agent"]["updates"]),
            "offline_updates": int(payload["counters"].get("offline_updates", 0))}


def _prepare(outcome: RunOutcome, spec: Mapping[str, Any], torch_threads: int, say: Callable[[str], None]) -> None:
    """Write the job file; an unfinished run with another spec is refused; an unfinished run
    left by an older script (no job file: it checkpointed too rarely to continue) is moved aside."""
    run_dir = outcome.run_dir
    job_path = run_dir / JOB_FILE
    if job_path.exists():
        old = json.loads(job_path.read_text())["spec"]
        if _identity(old) != _identity(spec):
            changes = "; ".join(_differences(_identity(old), _identity(spec))[:6])
            raise BenchSetupError(f"{run_dir} holds an unfinished run with other settings ({changes}); use another "
                                  f"--work directory or --name, or move that run away")
    elif run_dir.exists() and any(run_dir.iterdir()):
        aside = run_dir.with_name(f"{run_dir.name}.abandoned-{time.strftime('%Y%m%d-%H%M%S')}")
        say(f"{run_dir}: unfinished run of an older script; moved to {aside.name}, starting afresh")
        run_dir.rename(aside)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(job_path, {"spec": dict(spec), "torch_threads": torch_threads})


def _store_busy(run_dir: Path) -> bool:
    """Whether a process holds the append lock of a replay store in ``run_dir`` (StoreLock)."""
    for store in run_dir.glob("seed_*/replay.zarr"):
        fd = os.open(store, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock taken here
    return False


def _child_setup(nice: int | None) -> Callable[[], None]:
    def setup() -> None:
        if nice:
            os.nice(nice)
            try:  # Linux autogroups: a new session gets its own CPU share, which its nice value must lower too
                Path("/proc/self/autogroup").write_text(str(nice))
            except OSError:
                pass
        try:  # Linux: SIGTERM if the parent dies without cleaning up (e.g. SIGKILL)
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return setup


def _tail(path: Path, lines: int = 6) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop_all(running: Mapping[subprocess.Popen, RunOutcome], grace: float = 60.0) -> None:
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def default_jobs(torch_threads: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, torch_threads))


def run_benchmark(protocol: Protocol, learners: Sequence[Learner], work: Path, *, jobs: int | None = None,
                  nice: int | None = None, demos_path: Path | None = None, demo_episodes: int = 0,
                  metric: str | None = None, say: Callable[[str], None] | None = None) -> list[RunOutcome]:
    """Every (learner, seed) of the protocol: cached results first, the rest in at most ``jobs``
    worker processes (default: cores // torch threads per run), one progress line per finished run.
    A run whose replay store another process is writing (e.g. an older benchmark script still
    running) is skipped and reported as not done."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    jobs = jobs or default_jobs(protocol.torch_threads)
    outcomes, todo = [], deque()
    specs = {}
    for seed in protocol.seeds:
        for learner in learners:
            outcome = RunOutcome(learner, seed, work / f"{learner.stem}_seed{seed}")
            spec = run_spec(protocol, learner, seed, demos_path, demo_episodes)
            outcome.result = load_cached(outcome.run_dir, spec)
            outcome.cached = outcome.result is not None
            if outcome.cached and "updates" not in outcome.result:
                outcome.result = _with_counters(outcome.run_dir, seed, outcome.result)
            outcomes.append(outcome)
            specs[id(outcome)] = spec
            if not outcome.cached:
                todo.append(outcome)
    total, done = len(outcomes), 0
    for outcome in outcomes:
        if outcome.cached:
            done += 1
            say(f"[{done}/{total}] {_outcome_line(outcome, protocol, metric)} (cached)")
    for outcome in list(todo):
        if _store_busy(outcome.run_dir):
            todo.remove(outcome)
            done += 1
            outcome.error = "another process is writing its replay store (an older benchmark script?); run " \
                            "again once it has finished"
            say(f"[{done}/{total}] {outcome.learner.label} seed {outcome.seed}: skipped, {outcome.error}")
    if todo:
        for outcome in todo:
            _prepare(outcome, specs[id(outcome)], protocol.torch_threads, say)
        say(f"{len(todo)} runs to do in {min(jobs, len(todo))} parallel processes "
            f"({protocol.torch_threads} torch thread(s) each{f', nice {nice}' if nice else ''}); "
            f"logs: <run dir>/{LOG_FILE} under {work}")
    threads = str(protocol.torch_threads)
    child_env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                 "OPENBLAS_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    running: dict[subprocess.Popen, RunOutcome] = {}
    started: dict[subprocess.Popen, float] = {}
    try:
        while todo or running:
            while todo and len(running) < jobs:
                outcome = todo.popleft()
                with open(outcome.run_dir / LOG_FILE, "ab") as log:
                    process = subprocess.Popen([sys.executable, "-m", "robot_rl.bench.learn", str(outcome.run_dir)],
                                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                               env=child_env, start_new_session=True, preexec_fn=_child_setup(nice))
                running[process] = outcome
                started[process] = time.monotonic()
            finished = [process for process in running if process.poll() is not None]
            for process in finished:
                outcome = running.pop(process)
                done += 1
                result_path = outcome.run_dir / RESULT_FILE
                if process.returncode == 0 and result_path.exists():
                    outcome.result = json.loads(result_path.read_text())
                    say(f"[{done}/{total}] {_outcome_line(outcome, protocol, metric)}")
                else:
                    outcome.error = f"exit code {process.returncode}; {outcome.run_dir / LOG_FILE} ends with:\n" \
                                    f"{_tail(outcome.run_dir / LOG_FILE)}"
                    say(f"[{done}/{total}] {outcome.learner.label} seed {outcome.seed}: FAILED ({outcome.error})")
            if not finished:
                time.sleep(0.25)
    except BaseException:
        if running:
            say(f"stopping {len(running)} running run(s); they continue from their last checkpoint next time")
            _stop_all(running)
        raise
    return outcomes


def _outcome_line(outcome: RunOutcome, protocol: Protocol, metric: str | None = None) -> str:
    entry = seed_entry(outcome.result or {}, protocol.eval_every, metric)
    metric = entry["metric"]
    final = entry["final"]
    reached = entry.get("steps_to_90pct")
    text = f"{outcome.learner.label} seed {outcome.seed}: final {metric} " + \
        ("—" if final is None else f"{final:.2f}" if metric == "success" else f"{final:.1f}")
    if metric == "success":
        text += f", 90 % at {reached}" if reached is not None else ", 90 % not reached"
    return text + f", {entry['wall_clock_s']:.0f} s"


# --------------------------------------------------------------------------- report
def steps_to(curve: Curve, level: float = LEVEL) -> int | None:
    """First evaluation step at which the success rate reached ``level`` (None: never)."""
    return next((int(step) for step, value in curve if value >= level), None)


def seed_entry(result: Mapping[str, Any], eval_every: int, metric: str | None = None) -> dict[str, Any]:
    """One run's part of the report, from its ``result.json`` (older scripts' results too).

    ``metric``: ``success`` (eval success rate) or ``return`` (mean eval return; for envs that
    report no success); default: success unless the run saw no ``is_success``."""
    if metric is None:
        metric = "success" if result.get("reports_success", True) else "return"
    points = result.get("curve", []) if metric == "success" else result.get("returns", [])
    curve = [[int(step), float(value)] for step, value in points]
    checkpoints: dict[int, float] = {}
    for step, value in curve:  # the loop evaluates at the first episode end past each multiple
        checkpoints[step // eval_every * eval_every] = value
    wall = float(result.get("wall_clock_s", float("nan")))
    env_steps = result.get("env_steps")
    if env_steps is None and curve:
        env_steps = curve[-1][0]
    updates = result.get("updates")
    return {"metric": metric, "curve": curve, "at_checkpoints": [[c, v] for c, v in sorted(checkpoints.items())],
            "final": curve[-1][1] if curve else None,
            "steps_to_90pct": steps_to(curve) if metric == "success" else None,
            "wall_clock_s": wall, "attempts": result.get("attempts"),
            "env_steps": env_steps, "env_steps_per_s": env_steps / wall if env_steps and wall > 0 else None,
            "updates": updates, "offline_updates": result.get("offline_updates"),
            "updates_per_s": updates / wall if updates is not None and wall > 0 else None,
            **({"weights_sha256": result["weights_sha256"]} if "weights_sha256" in result else {})}


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else None


def summarise(seeds: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Per learner: final value median and range, median steps to 90 % (a seed that never got
    there counts as later than any that did), wall time and rates."""
    entries = list(seeds.values())
    finals = [e["final"] for e in entries if e["final"] is not None]
    reached = [e["steps_to_90pct"] for e in entries]
    ranked = sorted(math.inf if r is None else r for r in reached)
    median_reach = statistics.median(ranked) if ranked else math.inf
    success = all(e["metric"] == "success" for e in entries)
    return {"seeds": len(entries),
            "final_median": statistics.median(finals) if finals else None,
            "final_min": min(finals) if finals else None, "final_max": max(finals) if finals else None,
            "steps_to_90pct_median": None if math.isinf(median_reach) or not success else median_reach,
            "reached_90pct": f"{sum(r is not None for r in reached)}/{len(reached)}" if success else None,
            "wall_clock_s_median": _median([e["wall_clock_s"] for e in entries]),
            "env_steps_per_s_median": _median([e["env_steps_per_s"] for e in entries]),
            "updates_per_s_median": _median([e["updates_per_s"] for e in entries])}


def build_report(results: Mapping[str, Mapping[Any, Mapping[str, Any]]], header: Mapping[str, Any],
                 eval_every: int, descriptions: Mapping[str, Any] | None = None,
                 metric: str | None = None) -> dict[str, Any]:
    """``header`` + per learner: description, summary and every seed's entry. One metric for the
    whole report: success unless some run reported none (then mean eval return)."""
    if metric is None:
        silent = any(not r.get("reports_success", True) for runs in results.values() for r in runs.values())
        metric = "return" if silent else "success"
    learners = {}
    for name, runs in results.items():
        seeds = {str(seed): seed_entry(result, eval_every, metric) for seed, result in runs.items()}
        learners[name] = {"description": dict((descriptions or {}).get(name, {})), "summary": summarise(seeds),
                          "seeds": seeds}
    return {**header, "metric": metric, "metric_meaning": "eval success rate" if metric == "success" else
            "mean eval return (the env reports no success)", "level": LEVEL, "learners": learners}


def plot_report(report: Mapping[str, Any], path: Path, title: str) -> None:
    """Eval metric vs env steps: per learner one colour, the median over seeds at each
    evaluation checkpoint with the min-max band, and every seed as a thin line; unsmoothed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    success = report["metric"] == "success"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for index, (name, learner) in enumerate(report["learners"].items()):
        colour = f"C{index}"
        by_step: dict[int, list[float]] = {}
        for entry in learner["seeds"].values():
            if entry["curve"]:
                steps, values = zip(*entry["curve"])
                ax.plot(steps, values, "-", color=colour, alpha=0.35, lw=0.8)
            for step, value in entry["at_checkpoints"]:
                by_step.setdefault(step, []).append(value)
        if by_step:
            steps = sorted(by_step)
            ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                            color=colour, alpha=0.15, lw=0)
            ax.plot(steps, [statistics.median(by_step[s]) for s in steps], "o-", color=colour, lw=2, ms=3,
                    label=f"{name} (median, min-max of {len(learner['seeds'])})")
    if success:
        ax.axhline(LEVEL, color="grey", ls="--", lw=0.8)
        ax.set_ylim(-0.05, 1.05)
    ax.set(xlabel="environment steps", ylabel="eval success rate" if success else "mean eval return", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: Mapping[str, Mapping[Any, Mapping[str, Any]]], header: Mapping[str, Any], out: Path,
                 stem: str, title: str, eval_every: int, descriptions: Mapping[str, Any] | None = None) -> dict:
    """``<out>/<stem>.json`` and ``<out>/<stem>.png``; returns the report."""
    report = build_report(results, header, eval_every, descriptions)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, out / f"{stem}.png", title)
    return report


def add_protocol_options(parser: Any, steps: int, eval_every: int) -> None:
    """Seeds, budget, evaluation, output, cache and process options of the scripts in
    ``benchmarks/`` that call this module (``argparse`` parser)."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--eval-every", type=int, default=eval_every)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="report JSON + PNG")
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks"),
                        help="run directories; a finished run's result.json is reused")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, help="runs at a time (default: usable cores // --torch-threads)")
    parser.add_argument("--nice", type=int, help="run the training processes at this niceness")


def machine_info(torch_threads: int, jobs: int, nice: int | None) -> dict[str, Any]:
    """Where and how the runs were made: the machine (:func:`robot_rl.bench.env_bench.machine_info`)
    and this benchmark's parallelism."""
    from importlib.metadata import PackageNotFoundError, version

    from robot_rl.bench.env_bench import machine_info as host

    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {**host(), "torch_threads_per_run": torch_threads, "jobs": jobs, "nice": nice or 0,
            "load_average_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            **{name: package(name) for name in ("torch", "stable-baselines3")}}


def script_header(script: str, protocol: Protocol, jobs: int, nice: int | None) -> dict[str, Any]:
    """The report header every benchmark script shares: its exact command, the machine, the protocol."""
    import shlex

    return {"command": shlex.join(["python", script, *sys.argv[1:]]),
            "machine": machine_info(protocol.torch_threads, jobs, nice), "env": protocol.env_label(),
            "budget_env_steps": protocol.steps, "eval_every": protocol.eval_every,
            "eval_episodes": protocol.eval_episodes, "seeds": list(protocol.seeds)}


def run_script(script: str, args: Any, protocol: Protocol, learners: Sequence[Learner], stem: str, title: str, *,
               header: Mapping[str, Any] | None = None, metric: str | None = None, **run_options: Any) -> int:
    """What a script in ``benchmarks/`` does once it has planned its learners: run them
    (:func:`run_benchmark`, with the script's ``--jobs/--nice/--work`` options), write
    ``<out>/<stem>.json`` + PNG with :func:`script_header` and ``header``, print the summaries.
    Returns the script's exit code."""
    jobs = args.jobs or default_jobs(args.torch_threads)
    outcomes = run_benchmark(protocol, learners, args.work, jobs=jobs, nice=args.nice, metric=metric, **run_options)
    header = {**script_header(script, protocol, jobs, args.nice), **(header or {})}
    return print_summaries(benchmark_report(protocol, learners, outcomes, header, args.out, stem, title, metric))


def print_summaries(report: Mapping[str, Any]) -> int:
    """Print each learner's summary; the exit code of a benchmark script (1 if a run failed)."""
    print(json.dumps({name: entry["summary"] for name, entry in report["learners"].items()}, indent=2))
    return 1 if report["failed"] else 0


def benchmark_report(protocol: Protocol, learners: Sequence[Learner], outcomes: Sequence[RunOutcome],
                     header: Mapping[str, Any], out: Path, stem: str, title: str,
                     metric: str | None = None) -> dict[str, Any]:
    """The report of :func:`run_benchmark`'s outcomes (failed runs listed under ``failed``)."""
    results: dict[str, dict[int, dict[str, Any]]] = {learner.label: {} for learner in learners}
    for outcome in outcomes:
        if outcome.result is not None:
            results[outcome.learner.label][outcome.seed] = outcome.result
    failed = [{"learner": o.learner.label, "seed": o.seed, "run_dir": str(o.run_dir), "error": o.error}
              for o in outcomes if o.result is None]
    header = {**header, "failed": failed}
    report = build_report(results, header, protocol.eval_every, {l.label: l.description for l in learners}, metric)
    for outcome in outcomes:
        entry = report["learners"][outcome.learner.label]["seeds"].get(str(outcome.seed))
        if entry is not None:
            entry["run_dir"] = str(outcome.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, out / f"{stem}.png", title)
    return report


if __name__ == "__main__":  # python -m robot_rl.bench.learn RUN_DIR: one worker
    sys.exit(worker_main(Path(sys.argv[1])))
