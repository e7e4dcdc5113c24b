"""Hindsight relabelling on sparse reach: robot_rl SAC with and without HER.

Both runs use ``robot-rl train``'s default config on ``RobotRL/ArmReach-v0`` with
``reward_type: sparse`` (1 only within 2 cm of the goal), the same env-step budget and the same
evaluation protocol; "HER" adds ``her.strategy: future`` with ``her.ratio: 0.8`` (k = 4). Writes
``<out>/her_reach.json`` (curves, steps to 90 % success per seed, wall-clock) and
``<out>/her_reach.png`` (every seed, unsmoothed).

    python benchmarks/her_reach.py --seeds 0 1 2 --steps 6000 --out benchmarks/results
"""

from __future__ import annotations

import argparse

from common import add_protocol_options, cached_run, loop_overrides, run_ours, write_report

SPARSE_REACH = {"task": {"name": "reach", "reward_type": "sparse"}}
LEARNERS = {"SAC": {"strategy": "none"}, "SAC + HER (future, 0.8)": {"strategy": "future", "ratio": 0.8}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_options(parser, steps=6000, eval_every=500)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {name: {} for name in LEARNERS}
    for seed in args.seeds:
        for name, her in LEARNERS.items():
            run_dir = args.work / f"reach_sparse_her_{her['strategy']}_{args.steps}_seed{seed}"
            overrides = {"env": SPARSE_REACH, "her": her, "train": loop_overrides(args, seed)}
            results[name][seed] = cached_run(run_dir, lambda: run_ours(run_dir, overrides))
    write_report(results, {"task": "RobotRL/ArmReach-v0 (sparse)", "budget_env_steps": args.steps,
                           "seeds": args.seeds, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes},
                 args.out, "her_reach", "ArmReach-v0 (sparse): SAC with and without HER, every seed")


if __name__ == "__main__":
    main()
