"""A gymnasium environment this project did not write: our SAC vs Stable-Baselines3 SAC on ``Pusher-v5``.

Both learners get the same env (gymnasium's MuJoCo ``Pusher-v5``: 7-DoF arm, 23-D Box observation,
7-D Box action in [-2, 2], 100-step episodes, dense negative reward, no ``is_success``), the same
env-step budget and seeds, and the same evaluation protocol (``--eval-episodes`` deterministic
episodes on the fixed evaluation seeds every ``--eval-every`` env steps). Ours trains through
``robot-rl train --env Pusher-v5`` (``env.gym.id``; the env is adapted by
``robot_rl.envs.gym_env``: observation ``Dict(state=...)``, actions rescaled to [-1, 1]); SB3 runs at
its defaults on the same adapted env, flattened. Pusher reports no success, so the metric is the
**mean eval return** (higher is better; a random policy scores about -150 to -160 per episode).

Writes ``<out>/gym_env_pusher.json`` (per learner and seed: the mean-eval-return curve, wall time,
env steps/s, updates/s; summary: final median and range) and ``<out>/gym_env_pusher.png`` (median,
min-max band, every seed, unsmoothed). Each (learner, seed) runs in its own process with its result
cached in ``<work>/gym-Pusher-v5_<learner>_<steps>_seed<S>/result.json``, so an interrupted
benchmark resumes (our runs from their last checkpoint) and a finished one is not run again.

A thin caller of ``robot_rl.bench.learn`` (``robot-rl bench learn``); the same runs with the CLI:
``robot-rl bench learn --env Pusher-v5 --learners sac sb3 --steps 20000``.

    python benchmarks/gym_env.py --seeds 0 1 2 --steps 20000 --eval-every 2000 --jobs 2
    python benchmarks/gym_env.py --seeds 0 --steps 1000 --eval-every 500 --eval-episodes 3   # smoke run, ~2 min
"""

from __future__ import annotations

import argparse
import sys

from robot_rl.bench import learn
from robot_rl.cli.errors import terminate_gracefully

LEARNERS = ("sac", "sb3")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pusher-v5", help="gymnasium env id (default: Pusher-v5)")
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=list(LEARNERS))
    learn.add_protocol_options(parser, steps=20000, eval_every=2000)
    args = parser.parse_args()
    protocol = learn.Protocol(steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                              seeds=tuple(args.seeds), env={"gym": {"id": args.env}},
                              torch_threads=args.torch_threads)
    reports_success, goal_env = learn.probe_gym_env(protocol)  # also: an unsupported env stops here
    metric = "success" if reports_success else "return"
    learners = learn.plan_learners(args.learners, protocol, goal_env=goal_env)
    learn.check_learners(protocol, learners)
    stem = "gym_env_" + args.env.split("/")[-1].split("-v")[0].lower()
    return learn.run_script("benchmarks/gym_env.py", args, protocol, learners, stem,
                            f"{args.env}: robot_rl SAC vs SB3 SAC, every seed, unsmoothed",
                            header={"env_reports_success": reports_success}, metric=metric)


if __name__ == "__main__":
    with terminate_gracefully():
        sys.exit(main())
