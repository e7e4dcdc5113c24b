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
import json
from pathlib import Path

from common import plot, run_ours, run_sb3, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {"robot_rl SAC": {}, "SB3 SAC (defaults)": {}}
    for seed in args.seeds:
        train_overrides = {"train": {"total_steps": args.steps, "eval_every": args.eval_every,
                                     "eval_episodes": args.eval_episodes, "seeds": [seed],
                                     "checkpoint_every": args.steps, "progress": False}}
        results["robot_rl SAC"][seed] = run_ours(args.out / f"ours_seed{seed}", train_overrides)
        results["SB3 SAC (defaults)"][seed] = run_sb3("RobotRL/ArmReach-v0", {}, seed, args.steps,
                                                      args.eval_every, args.eval_episodes)
    summary = {name: summarise(runs) for name, runs in results.items()}
    report = {"task": "RobotRL/ArmReach-v0 (dense)", "budget_env_steps": args.steps, "seeds": args.seeds,
              "eval_every": args.eval_every, "eval_episodes": args.eval_episodes, "summary": summary,
              "curves": {name: {seed: run["curve"] for seed, run in runs.items()} for name, runs in results.items()}}
    (args.out / "sample_efficiency.json").write_text(json.dumps(report, indent=2))
    plot(results, "ArmReach-v0 (dense): every seed, unsmoothed", args.out / "sample_efficiency.png")
    print(json.dumps({"summary": summary}, indent=2))


if __name__ == "__main__":
    main()
