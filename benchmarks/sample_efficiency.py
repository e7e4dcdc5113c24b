"""Sample efficiency on the default training task: robot_rl SAC vs Stable-Baselines3 SAC.

Both learners get the same environment (``RobotRL/ArmReach-v0``, dense reward, state
observations flattened for SB3), the same env-step budget and the same evaluation protocol
(``--eval-episodes`` deterministic episodes on fixed seeds every ``--eval-every`` steps). SB3 runs
at its defaults. Writes ``<out>/sample_efficiency.json`` (curves, steps to 90 % success per
seed, wall-clock, updates/s) and ``<out>/sample_efficiency.png`` (median, min-max band, every
seed, unsmoothed). A thin caller of ``robot_rl.bench.learn``; the same runs with the CLI:
``robot-rl bench learn --task reach --reward dense --learners sac sb3 --steps 8000 --eval-every 500``
(the ``sac`` preset equals ``robot-rl train``'s default learner).

    python benchmarks/sample_efficiency.py --seeds 0 1 2 --steps 8000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import sys

from robot_rl.bench import learn
from robot_rl.cli.errors import terminate_gracefully


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    learn.add_protocol_options(parser, steps=8000, eval_every=500)
    args = parser.parse_args()
    protocol = learn.Protocol(steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                              seeds=tuple(args.seeds), task="reach", reward_type="dense",
                              torch_threads=args.torch_threads)
    learners = [learn.Learner(label="robot_rl SAC", stem=f"reach_sac_{args.steps}",
                              description={"learner": "robot-rl train defaults"}),
                learn.Learner(label="SB3 SAC (defaults)", stem=f"reach_sb3_{args.steps}", kind="sb3",
                              description={"learner": "Stable-Baselines3 SAC, defaults"})]
    return learn.run_script("benchmarks/sample_efficiency.py", args, protocol, learners, "sample_efficiency",
                            "ArmReach-v0 (dense): every seed, unsmoothed", header={"task": "reach"})


if __name__ == "__main__":
    with terminate_gracefully():
        sys.exit(main())
