"""Learning from demonstrations on a sparse-reward task (issue: DDPGfD, AWAC, RLPD-style mixing).

Records ``--demos`` scripted demonstrations of ``--task`` (once, reused across learners), then
trains, for every seed and the same env-step budget:

* ``rlpd``   SAC + LayerNorm critic ensemble, 50/50 demo mixing, high UTD (``--algo rlpd``);
* ``ddpgfd`` prioritised replay with pinned demos, n-step + BC/Q-filter, pre-training;
* ``awac``   offline pre-training on the demos, then online fine-tuning;
* ``sac``    SAC from scratch, no demos;
* ``sb3``    Stable-Baselines3 SAC at its defaults, no demos.

Writes ``<out>/demo_learning_<task>.json`` (curves, steps to 90 %, final success median and
range, wall-clock, updates/s) and a PNG (median, min-max band, every seed, unsmoothed).

A thin caller of ``robot_rl.bench.learn`` (``robot-rl bench learn``) that keeps this script's
options and run-directory names (``<work>/<task>_<learner>_<steps>[_preset][_utdN]_seed<S>``), so
results cached by earlier versions are reused. The same runs with the CLI:
``robot-rl bench learn --task pick --demos 20 --steps 20000 --learners rlpd ddpgfd awac sac sb3 --utd 1``.

    python benchmarks/demo_learning.py --task pick --demos 20 --steps 20000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from robot_rl.bench import learn
from robot_rl.cli.errors import terminate_gracefully
from robot_rl.envs.config import ENV_IDS

LEARNERS = ("rlpd", "ddpgfd", "awac", "sac", "sb3")
# What fits 3 seeds x 5 learners x 20k steps on a 2-core CPU in about an hour: one gradient step
# per env step for every learner (the presets use 10 for RLPD, 4 for DDPGfD, 2 for AWAC; RLPD's
# preset alone would take ~2 h per run here). Reported in the JSON; --preset-utd restores them.


def legacy_stem(task: str, name: str, steps: int, utd: int, preset_utd: bool) -> str:
    """This script's run-directory names (kept so that cached runs are found)."""
    return (f"{task}_{name}_{steps}{'_preset' if preset_utd else ''}"
            f"{f'_utd{utd}' if utd != 1 and name not in ('sac', 'sb3') else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(ENV_IDS), default="pick")
    parser.add_argument("--demos", type=int, default=20, help="scripted demonstrations to record")
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=list(LEARNERS))
    parser.add_argument("--utd", type=int, default=1, help="update-to-data ratio of the demo learners")
    parser.add_argument("--preset-utd", action="store_true", help="keep the presets' update-to-data ratios")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="report JSON + PNG")
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks"),
                        help="run directories; a finished run's result.json is reused, so several invocations "
                             "(e.g. one per seed, in parallel) and a final one writing the report share runs")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time, each in its own process (default 1: one after the other)")
    parser.add_argument("--nice", type=int, help="run the training processes at this niceness")
    args = parser.parse_args()
    protocol = learn.Protocol(steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                              seeds=tuple(args.seeds), task=args.task, reward_type="sparse",
                              torch_threads=args.torch_threads)
    utd = None if args.preset_utd else args.utd
    learners = [dataclasses.replace(learner, stem=legacy_stem(args.task, learner.label, args.steps, args.utd,
                                                              args.preset_utd))
                for learner in learn.plan_learners(args.learners, protocol, utd=utd, demos=args.demos)]
    demos = learn.record_demos(protocol, args.demos, args.work) if any(l.demos for l in learners) else None
    header = {"task": args.task, "utd": "presets' own" if args.preset_utd else args.utd,
              "demos": {"episodes": args.demos, "path": str(demos) if demos else None,
                        "given_to": [l.label for l in learners if l.demos]}}
    return learn.run_script("benchmarks/demo_learning.py", args, protocol, learners, f"demo_learning_{args.task}",
                            f"{ENV_IDS[args.task]} (sparse, {args.demos} demos): every seed, unsmoothed",
                            header=header, demos_path=demos, demo_episodes=args.demos)


if __name__ == "__main__":
    with terminate_gracefully():
        sys.exit(main())
