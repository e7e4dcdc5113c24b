"""Shared pieces of the learning benchmarks: run our trainer or SB3 SAC under one evaluation
protocol, summarise curves, and plot every seed unsmoothed."""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import robot_rl  # noqa: E402,F401  (registers the envs)
from robot_rl.envs import FlattenState  # noqa: E402
from robot_rl.training import load_train_config, train  # noqa: E402
from robot_rl.training.loop import EVAL_SEED_OFFSET  # noqa: E402

Curve = list[tuple[int, float]]  # (env step, eval success rate)


def add_protocol_options(parser: argparse.ArgumentParser, steps: int, eval_every: int) -> None:
    """Seeds, env-step budget, evaluation protocol and output directory of a learning benchmark."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--eval-every", type=int, default=eval_every)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="report JSON + PNG")
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks"),
                        help="run directories; a finished run's result.json is reused, so several invocations "
                             "(e.g. one per seed, in parallel) and a final one writing the report share runs")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per run")


def loop_overrides(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The ``train`` section for one seed under :func:`add_protocol_options`'s protocol."""
    return {"total_steps": args.steps, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
            "seeds": [seed], "checkpoint_every": args.steps, "progress": False, "torch_threads": args.torch_threads}


def cached_run(run_dir: Path, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s result, computed once: kept in ``run_dir/result.json`` once the run finished."""
    result_file = run_dir / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    result = run()
    run_dir.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result))
    return result


def steps_to(curve: Curve, level: float = 0.9) -> int | None:
    """First evaluation step at which the success rate reached ``level``."""
    return next((step for step, success in curve if success >= level), None)


def run_ours(run_dir: Path, overrides: dict[str, Any], agent_preset: str | None = None) -> dict[str, Any]:
    """Train with ``robot-rl train``'s machinery; the curve comes from the run's eval log."""
    config = load_train_config(overrides=overrides, agent_preset=agent_preset)
    start = time.perf_counter()
    train(config, run_dir)
    wall = time.perf_counter() - start
    seed = config.train.seeds[0]
    with open(run_dir / f"seed_{seed}" / "logs" / "eval.csv") as f:
        curve = [(int(float(r["env_step"])), float(r["success_rate"])) for r in csv.DictReader(f)]
    return {"curve": curve, "wall_clock_s": wall}


def run_sb3(env_id: str, make_kwargs: dict[str, Any], seed: int, steps: int, eval_every: int,
            eval_episodes: int, torch_threads: int = 1) -> dict[str, Any]:
    """Stable-Baselines3 SAC at its defaults on the flattened env, same evaluation protocol."""
    import torch
    from stable_baselines3 import SAC

    torch.set_num_threads(torch_threads)
    from stable_baselines3.common.callbacks import BaseCallback

    env = FlattenState(gym.make(env_id, **make_kwargs))
    eval_env = FlattenState(gym.make(env_id, **make_kwargs))
    curve: Curve = []

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                successes = []
                for i in range(eval_episodes):
                    obs, _ = eval_env.reset(seed=EVAL_SEED_OFFSET + i)
                    done, info = False, {}
                    while not done:
                        action, _ = self.model.predict(obs, deterministic=True)
                        obs, _, terminated, truncated, info = eval_env.step(action)
                        done = terminated or truncated
                    successes.append(float(info["is_success"]))
                curve.append((self.num_timesteps, statistics.mean(successes)))
            return True

    model = SAC("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Evaluate())
    return {"curve": curve, "wall_clock_s": time.perf_counter() - start}


def summarise(runs: dict[int, dict[str, Any]], level: float = 0.9) -> dict[str, Any]:
    """Steps to ``level`` per seed (None: not reached), final success median and range, wall-clock."""
    reached = [steps_to(run["curve"], level) for run in runs.values()]
    finals = [run["curve"][-1][1] if run["curve"] else 0.0 for run in runs.values()]
    return {
        f"steps_to_{round(level * 100)}pct_per_seed": reached,
        f"steps_to_{round(level * 100)}pct_median": statistics.median(reached) if None not in reached else None,
        "final_success_per_seed": finals,
        "final_success_median": statistics.median(finals),
        "final_success_range": [min(finals), max(finals)],
        "wall_clock_s_median": statistics.median(run["wall_clock_s"] for run in runs.values()),
    }


def plot(results: dict[str, dict[int, dict[str, Any]]], title: str, out: Path, level: float = 0.9) -> None:
    """One colour per learner, one line per seed, no smoothing."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for index, (name, runs) in enumerate(results.items()):
        for i, run in enumerate(runs.values()):
            if run["curve"]:
                steps, success = zip(*run["curve"])
                ax.plot(steps, success, "o-", color=f"C{index}", alpha=0.7, ms=3, label=name if i == 0 else None)
    ax.axhline(level, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="environment steps", ylabel="eval success rate", ylim=(-0.05, 1.05), title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, dict[int, dict[str, Any]]], header: dict[str, Any], out: Path, stem: str,
                 title: str) -> None:
    """``<out>/<stem>.json`` (``header``, per-learner summary, every curve), ``<out>/<stem>.png``,
    and the summary as JSON on stdout."""
    summary = {name: summarise(runs) for name, runs in results.items()}
    report = {**header, "summary": summary,
              "curves": {name: {seed: run["curve"] for seed, run in runs.items()} for name, runs in results.items()}}
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    plot(results, title, out / f"{stem}.png")
    print(json.dumps({"summary": summary}, indent=2))
