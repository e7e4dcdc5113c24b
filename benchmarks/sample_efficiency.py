"""Sample efficiency on the default training task: robot_rl SAC vs Stable-Baselines3 SAC.

Both learners get the same environment (``RobotRL/ArmReach-v0``, dense reward, state
observations flattened for SB3), the same env-step budget and the same evaluation protocol
(``--eval-episodes`` deterministic episodes on fixed seeds every ``--eval-every`` steps). SB3 runs
at its defaults. Writes ``<out>/sample_efficiency.json`` (curves, steps to 90 % success per
seed, wall-clock) and ``<out>/sample_efficiency.png`` (every seed, unsmoothed).

    python benchmarks/sample_efficiency.py --seeds 0 1 2 --steps 8000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import robot_rl  # noqa: E402,F401  (registers the envs)
from robot_rl.envs import FlattenState  # noqa: E402
from robot_rl.training import load_train_config, train  # noqa: E402
from robot_rl.training.loop import EVAL_SEED_OFFSET  # noqa: E402

TARGET = 0.9


def steps_to(curve: list[tuple[int, float]], level: float = TARGET) -> int | None:
    return next((step for step, success in curve if success >= level), None)


def run_ours(seed: int, steps: int, eval_every: int, eval_episodes: int, out: Path, overrides: dict) -> dict:
    config = load_train_config(overrides={"train": {"total_steps": steps, "eval_every": eval_every,
                                                    "eval_episodes": eval_episodes, "seeds": [seed],
                                                    "checkpoint_every": steps, "progress": False},
                                          **overrides})
    run_dir = out / f"ours_seed{seed}"
    start = time.perf_counter()
    train(config, run_dir)
    wall = time.perf_counter() - start
    with open(run_dir / f"seed_{seed}" / "logs" / "eval.csv") as f:
        curve = [(int(float(r["env_step"])), float(r["success_rate"])) for r in csv.DictReader(f)]
    return {"curve": curve, "wall_clock_s": wall}


def run_sb3(seed: int, steps: int, eval_every: int, eval_episodes: int) -> dict:
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    env = FlattenState(gym.make("RobotRL/ArmReach-v0"))
    eval_env = FlattenState(gym.make("RobotRL/ArmReach-v0"))
    curve: list[tuple[int, float]] = []

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {"ours": {}, "sb3": {}}
    for seed in args.seeds:
        results["ours"][seed] = run_ours(seed, args.steps, args.eval_every, args.eval_episodes, args.out, {})
        results["sb3"][seed] = run_sb3(seed, args.steps, args.eval_every, args.eval_episodes)
    summary = {}
    for name, runs in results.items():
        reached = [steps_to(run["curve"]) for run in runs.values()]
        hit = [s for s in reached if s is not None]
        summary[name] = {
            "steps_to_90pct_per_seed": reached,
            "steps_to_90pct_median": statistics.median(hit) if len(hit) == len(reached) else None,
            "final_success_per_seed": [run["curve"][-1][1] if run["curve"] else None for run in runs.values()],
            "wall_clock_s_median": statistics.median(run["wall_clock_s"] for run in runs.values()),
        }
    report = {"task": "RobotRL/ArmReach-v0 (dense)", "budget_env_steps": args.steps, "seeds": args.seeds,
              "eval_every": args.eval_every, "eval_episodes": args.eval_episodes, "summary": summary,
              "curves": {name: {seed: run["curve"] for seed, run in runs.items()} for name, runs in results.items()}}
    (args.out / "sample_efficiency.json").write_text(json.dumps(report, indent=2))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, color in (("ours", "C0"), ("sb3", "C3")):
        for i, (seed, run) in enumerate(results[name].items()):
            steps, success = zip(*run["curve"]) if run["curve"] else ((), ())
            ax.plot(steps, success, "o-", color=color, alpha=0.7, ms=3,
                    label=("robot_rl SAC" if name == "ours" else "SB3 SAC (defaults)") if i == 0 else None)
    ax.axhline(TARGET, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="environment steps", ylabel="eval success rate", ylim=(-0.05, 1.05),
           title="ArmReach-v0 (dense): every seed, unsmoothed")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "sample_efficiency.png", dpi=110)
    print(json.dumps({"summary": summary}, indent=2))


if __name__ == "__main__":
    main()
