"""Pixel lift (issue 14): the whole pipeline behind benchmarks/results/learn_lift_pixels_*.json.

Both cameras at 64 px, no object state (``env.observation.privileged: false``), 20 scripted
demonstrations, sparse reward, AWAC at UTD 2 (the best state-based lift preset):

1. ``robot-rl encoder pretrain``: the frozen encoder, from 20k simulated frames (cached file);
2. ``robot-rl bench learn`` with ``agent.encoder.mode=frozen``: success vs env steps, true reward;
3. the same budget for Stable-Baselines3 SAC ``MultiInputPolicy`` on the same observations (its
   own CNN per camera), ``--sb3-seeds`` only (about an hour per seed on one CPU core);
4. ``robot-rl record --source random``: 30 failed episodes at the same camera settings, then
   ``robot-rl reward train`` on the demonstrations, those failures and the first frozen run's own
   episodes (their stored success flag standing in for a person's labels);
5. ``robot-rl bench learn`` again with ``--reward classifier`` (hold 3 steps) instead of the
   task's reward; evaluations still count the task's success.

Every step is cached (files, and bench learn's per-run results), so the same command again only
runs what is missing. Run from the repository root::

    python benchmarks/pixel_lift.py --seeds 0 1 2 --sb3-seeds 0
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

PIXELS = ["observation.images=true", "observation.image_height=64", "observation.image_width=64",
          "observation.privileged=false"]


def run(command: list[str]) -> None:
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sb3-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--skip", nargs="*", default=[], choices=("frozen", "sb3", "classifier"),
                        help="parts not to run this time")
    args = parser.parse_args()
    work, out = args.work.resolve(), args.out.resolve()
    encoder = work / "encoders" / "lift_64px.pt"
    bench_work = work / "benchmarks"
    robot_rl = ["robot-rl"]
    if not encoder.exists():
        report = subprocess.run([*robot_rl, "encoder", "pretrain", "--task", "lift", "--frames", "20000", "--epochs", "8",
                                 "--out", str(encoder), "--set", *PIXELS[1:3]], check=True, capture_output=True, text=True)
        (out / "encoder_lift_64px.json").write_text(report.stdout)
    learn = [*robot_rl, "bench", "learn", "--task", "lift", "--steps", str(args.steps), "--eval-every", "1000",
             "--eval-episodes", "20", "--jobs", "2", "--nice", "19", "--work", str(bench_work), "--out", str(out)]
    env_set = [f"env.{item}" for item in PIXELS]
    frozen = [*env_set, "agent.encoder.mode=frozen", f"agent.encoder.weights={encoder}"]
    seeds = [str(seed) for seed in args.seeds]
    if "frozen" not in args.skip:
        run([*learn, "--learners", "awac", "--demos", "20", "--utd", "2", "--seeds", *seeds, "--set", *frozen,
             "--name", "learn_lift_pixels_frozen"])
    if "sb3" not in args.skip and args.sb3_seeds:
        run([*learn, "--learners", "sb3", "--seeds", *map(str, args.sb3_seeds), "--jobs", "1", "--set", *env_set,
             "--name", "learn_lift_pixels_sb3"])
    if "classifier" not in args.skip:
        classifier = work / "classifier" / "lift_64px.pt"
        failures = work / "classifier" / "lift_64px_random.zarr"
        if not failures.exists():
            run([*robot_rl, "record", "--task", "lift", "--source", "random", "--episodes", "30", "--seed", "5000",
                 "--out", str(failures), "--set", *PIXELS])
        if not classifier.exists():
            results = json.loads((out / "learn_lift_pixels_frozen.json").read_text())
            first_seed = next(iter(next(iter(results["learners"].values()))["seeds"].values()))
            first_run = Path(first_seed["run_dir"])
            stores = [Path(results["demos"]["path"]), failures, *first_run.glob("seed_*/replay.zarr")]
            run([*robot_rl, "reward", "train", "--data", *map(str, stores), "--out", str(classifier), "--hold-steps", "3",
                 "--report-dir", str(out / "reward_classifier_lift_64px")])
        run([*learn, "--learners", "awac", "--demos", "20", "--utd", "2", "--seeds", *seeds, "--set", *frozen,
             "reward.source=classifier", f"reward.classifier={classifier}", "--name", "learn_lift_pixels_classifier"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
