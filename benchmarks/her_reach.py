"""Hindsight relabelling on sparse reach: robot_rl SAC with and without HER.

Both runs use ``robot-rl train``'s default config on ``RobotRL/ArmReach-v0`` with
``reward_type: sparse`` (1 only within 2 cm of the goal), the same env-step budget and the same
evaluation protocol; "HER" adds ``her.strategy: future`` with ``her.ratio: 0.8`` (k = 4). Writes
``<out>/her_reach.json`` (curves, steps to 90 % success per seed, wall-clock, updates/s) and
``<out>/her_reach.png`` (median, min-max band, every seed, unsmoothed). A thin caller of
``robot_rl.bench.learn`` (runs in parallel processes, cached under ``--work``).

    python benchmarks/her_reach.py --seeds 0 1 2 --steps 6000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import sys

from robot_rl.bench import learn
from robot_rl.cli.errors import terminate_gracefully

VARIANTS = {"SAC": {"strategy": "none"}, "SAC + HER (future, 0.8)": {"strategy": "future", "ratio": 0.8}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    learn.add_protocol_options(parser, steps=6000, eval_every=500)
    args = parser.parse_args()
    protocol = learn.Protocol(steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                              seeds=tuple(args.seeds), task="reach", reward_type="sparse",
                              torch_threads=args.torch_threads)
    learners = [learn.Learner(label=label, stem=f"reach_sparse_her_{her['strategy']}_{args.steps}",
                              overrides={"her": her}, description={"learner": "robot-rl train defaults", "her": her})
                for label, her in VARIANTS.items()]
    return learn.run_script("benchmarks/her_reach.py", args, protocol, learners, "her_reach",
                            "ArmReach-v0 (sparse): SAC with and without HER, every seed", header={"task": "reach"})


if __name__ == "__main__":
    with terminate_gracefully():
        sys.exit(main())
