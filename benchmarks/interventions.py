"""Interventions without a person: a learner with and without the ``virtual`` operator (issue 13).

For each ``--tasks`` (default: lift and pick, sparse reward) and every seed, the same learner
(``--learner``, a ``robot-rl train`` agent preset; default SAC) trains for the same env-step
budget twice:

* alone;
* with ``--set teleop.device=virtual``: the scripted operator of :mod:`robot_rl.teleop.virtual`
  watches the policy and takes over when it is stuck (no progress towards the goal for
  ``--stuck-steps`` steps) or heading out of the workspace, after ``--reaction-delay`` steps, for
  ``--control-steps`` steps, with Gaussian noise on its commands and at most ``--budget`` of all
  steps. It drives the real intervention path (device → safety filter → ``TeleopActionSource`` →
  ``InterventionSource`` → ``env.step``); intervened transitions join the demonstration buffer,
  sampled at ``demos.ratio`` (0.5).

Writes, per task, ``<out>/interventions_<task>.json`` (curves, steps to 90 % success, final success,
wall-clock, and per seed the fraction of env steps intervened and its curve) and two PNGs:
``interventions_<task>.png`` (eval success vs env steps, median, min-max band, every seed) and
``interventions_<task>_rate.png`` (fraction of each episode's steps intervened vs env steps). The
JSON's ``target`` says whether, with at most 15 % of steps intervened, the operator-assisted
learner reached 90 % in at most half the env steps of the learner alone (the issue's goal for pick).

Each run is cached under ``--work`` (``<work>/interventions_<task>_<variant>_<steps>_seed<S>``): a
finished run's ``result.json`` is reused, an interrupted one continues from its checkpoint. A thin
caller of ``robot_rl.bench.learn``.

    python benchmarks/interventions.py --tasks lift pick --seeds 0 1 2 --steps 20000 --nice 10
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from robot_rl.bench import learn
from robot_rl.cli.errors import terminate_gracefully
from robot_rl.teleop.config import VirtualOperatorConfig

TARGET_FRACTION = 0.15  # the goal: at most this share of steps intervened ...
TARGET_SPEEDUP = 2.0  # ... and 90 % success in at most half the env steps of the learner alone


def episode_rows(run_dir: Path, seed: int) -> list[dict[str, str]]:
    path = run_dir / f"seed_{seed}" / "logs" / "episodes.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def intervention_stats(run_dir: Path, seed: int, bin_steps: int) -> dict[str, Any]:
    """Fraction of all env steps intervened, and per ``bin_steps`` of env steps the fraction of
    that bin's steps intervened (from ``logs/episodes.csv``)."""
    rows = episode_rows(run_dir, seed)
    steps = sum(int(row["length"]) for row in rows)
    intervened = sum(int(row.get("intervened_steps") or 0) for row in rows)
    bins: dict[int, list[int]] = {}
    for row in rows:
        key = (int(float(row["env_step"])) - 1) // bin_steps * bin_steps  # an episode ends at its env_step
        total = bins.setdefault(key, [0, 0])
        total[0] += int(row.get("intervened_steps") or 0)
        total[1] += int(row["length"])
    curve = [[step + bin_steps, done / length] for step, (done, length) in sorted(bins.items()) if length]
    return {"intervention_fraction": intervened / steps if steps else None, "intervened_steps": intervened,
            "episode_steps": steps, "intervention_curve": curve}


def plot_rates(report: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for index, (name, learner) in enumerate(report["learners"].items()):
        for seed, entry in learner["seeds"].items():
            curve = entry.get("intervention_curve") or []
            if curve:
                steps, rates = zip(*curve)
                ax.plot(steps, rates, "-", color=f"C{index}", lw=1, alpha=0.7,
                        label=f"{name}, seed {seed} ({entry['intervention_fraction']:.1%} overall)")
    ax.axhline(TARGET_FRACTION, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="environment steps", ylabel="fraction of steps intervened", title=title, ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    learn.add_protocol_options(parser, steps=20000, eval_every=1000)
    parser.add_argument("--tasks", nargs="+", choices=("lift", "pick"), default=["lift", "pick"])
    parser.add_argument("--learner", default="sac", help="agent preset of both variants (default: sac)")
    defaults = VirtualOperatorConfig()
    parser.add_argument("--budget", type=float, default=TARGET_FRACTION, help="teleop.virtual.budget")
    parser.add_argument("--stuck-steps", type=int, default=defaults.stuck_steps, help="teleop.virtual.stuck_steps (k)")
    parser.add_argument("--control-steps", type=int, default=defaults.control_steps,
                        help="teleop.virtual.control_steps (m)")
    parser.add_argument("--reaction-delay", type=int, default=defaults.reaction_delay,
                        help="teleop.virtual.reaction_delay (steps)")
    parser.add_argument("--noise", type=float, default=defaults.noise,
                        help="teleop.virtual.noise (fraction of linear_speed)")
    parser.add_argument("--linear-speed", type=float, default=0.3,
                        help="teleop.linear_speed, m/s (default 0.3: the policy's own top speed at 10 Hz, "
                             "3 cm per step; at the device default of 0.15 a takeover cannot finish a lift)")
    args = parser.parse_args()
    operator = {"stuck_steps": args.stuck_steps, "control_steps": args.control_steps,
                "reaction_delay": args.reaction_delay, "budget": args.budget, "noise": args.noise}
    jobs = args.jobs or learn.default_jobs(args.torch_threads)
    failed = False
    summary: dict[str, Any] = {}
    for task in args.tasks:
        protocol = learn.Protocol(steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                                  seeds=tuple(args.seeds), task=task, reward_type="sparse",
                                  torch_threads=args.torch_threads)
        alone = learn.Learner(label=args.learner, stem=f"interventions_{task}_{args.learner}_{args.steps}",
                              preset=args.learner, description={"learner": f"preset {args.learner}", "teleop": None})
        assisted = learn.Learner(
            label=f"{args.learner} + virtual operator",
            stem=f"interventions_{task}_{args.learner}_virtual_"
                 f"{learn.digest({**operator, 'linear_speed': args.linear_speed})}_{args.steps}",
            preset=args.learner, overrides={"teleop": {"device": "virtual", "linear_speed": args.linear_speed, "virtual": operator}},
            description={"learner": f"preset {args.learner}", "teleop": "virtual", "virtual": operator,
                         "linear_speed": args.linear_speed,
                         "demos_ratio": 0.5})
        learners = [alone, assisted]
        outcomes = learn.run_benchmark(protocol, learners, args.work, jobs=jobs, nice=args.nice)
        header = {**learn.script_header("benchmarks/interventions.py", protocol, jobs, args.nice), "task": task}
        stem = f"interventions_{task}"
        report = learn.benchmark_report(protocol, learners, outcomes, header, args.out, stem,
                                        f"{protocol.env_label()}: {args.learner} with and without the virtual operator")
        failed = failed or bool(report["failed"])
        for outcome in outcomes:  # the fraction of steps intervened, from each run's episode log
            entry = report["learners"][outcome.learner.label]["seeds"].get(str(outcome.seed))
            if entry is not None:
                entry.update(intervention_stats(outcome.run_dir, outcome.seed, args.eval_every))
        for learner in report["learners"].values():
            fractions = [e["intervention_fraction"] for e in learner["seeds"].values()
                         if e.get("intervention_fraction") is not None]
            learner["summary"]["intervention_fraction_median"] = statistics.median(fractions) if fractions else None
            learner["summary"]["intervention_fraction_max"] = max(fractions) if fractions else None
        base, helped = (report["learners"][learner.label]["summary"] for learner in learners)
        speedup = (base["steps_to_90pct_median"] / helped["steps_to_90pct_median"]
                   if base["steps_to_90pct_median"] and helped["steps_to_90pct_median"] else None)
        report["target"] = {
            "goal": f"<= {TARGET_FRACTION:.0%} of steps intervened and 90 % success in <= 1/{TARGET_SPEEDUP:g} "
                    f"of the env steps of the learner alone",
            "intervention_fraction_max": helped["intervention_fraction_max"],
            "steps_to_90pct_alone": base["steps_to_90pct_median"],
            "steps_to_90pct_assisted": helped["steps_to_90pct_median"],
            "speedup": speedup,
            "met": bool(speedup is not None and speedup >= TARGET_SPEEDUP
                        and (helped["intervention_fraction_max"] or 0.0) <= TARGET_FRACTION)}
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        plot_rates(report, args.out / f"{stem}_rate.png", f"{protocol.env_label()}: steps intervened")
        summary[task] = {**{name: l["summary"] for name, l in report["learners"].items()}, "target": report["target"]}
    print(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    with terminate_gracefully():
        sys.exit(main())
