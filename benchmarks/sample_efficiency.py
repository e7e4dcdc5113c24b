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

from common import add_protocol_options, cached_run, loop_overrides, run_ours, run_sb3, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_options(parser, steps=8000, eval_every=500)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {"robot_rl SAC": {}, "SB3 SAC (defaults)": {}}
    for seed in args.seeds:
        ours = args.work / f"reach_sac_{args.steps}_seed{seed}"
        results["robot_rl SAC"][seed] = cached_run(ours, lambda: run_ours(ours, {"train": loop_overrides(args, seed)}))
        results["SB3 SAC (defaults)"][seed] = cached_run(args.work / f"reach_sb3_{args.steps}_seed{seed}", lambda: run_sb3(
            "RobotRL/ArmReach-v0", {}, seed, args.steps, args.eval_every, args.eval_episodes, args.torch_threads))
    write_report(results, {"task": "RobotRL/ArmReach-v0 (dense)", "budget_env_steps": args.steps,
                           "seeds": args.seeds, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes},
                 args.out, "sample_efficiency", "ArmReach-v0 (dense): every seed, unsmoothed")


if __name__ == "__main__":
    main()
