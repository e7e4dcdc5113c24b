"""Pretrain in simulation, fine-tune on the reality-gap twin over ROS 2 (issue 15's benchmark).

For every seed, with the twin (``robot-rl bridge --twin PROFILE --task lift``) served in its own
process over ROS 2 on loopback (inside a private network namespace where ``unshare -n`` works):

1. **zero-shot**: ``robot-rl eval --robot ros2`` of the policy pretrained in simulation *with*
   domain randomisation (``--randomized``) and of the one pretrained *without* (``--nominal``);
2. **fine-tuning**, ``robot-rl finetune --from`` for ``--steps`` twin steps, in variants:
   ``warmup`` (WSRL: a warm-up of the loaded policy, no simulation data), ``replay`` (the
   simulation replay mixed into every minibatch, no warm-up), ``neither`` (no warm-up, no
   simulation data), ``warmup-demos`` (``warmup`` plus the simulation demonstrations mixed in at
   ``demos.ratio``) and ``nominal-warmup`` (``warmup`` from the policy pretrained without
   randomisation, when both are given);
3. **from scratch** on the twin: ``robot-rl train`` of the same learner (AWAC, UTD 2) with the
   same demonstrations (recorded in simulation), for ``--scratch-steps`` twin steps; not reaching
   90 % within them makes ``scratch_steps / finetune_steps`` a lower bound.

Twin steps to 90 % are the first evaluation at or above 0.9 (0 when the zero-shot evaluation
already is). The twin runs ``--time-scale`` times faster than real time (its clock goes out on
/clock; the control rate seen by the learner is unchanged in robot time), at ``--state-hz``.
Each part's result is cached under ``--work`` (per seed and part), so the same command continues
where it stopped; fine-tuning and scratch runs resume from their checkpoints.

    python benchmarks/sim_to_twin.py --seeds 0 1 \\
        --randomized runs/benchmarks/lift_awac_15000_utd2_set-RAND_seed{seed} \\
        --nominal runs/benchmarks/lift_awac_15000_utd2_set-NOM_seed{seed} \\
        --demos runs/benchmarks/demos_lift_20.zarr
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

VARIANTS: dict[str, tuple[str, list[str]]] = {
    # name: (which pretrained policy: "main" is --randomized if given, else --nominal; extra finetune arguments)
    "warmup": ("main", []),
    "replay": ("main", ["--sim-replay", "--set", "train.warmup_steps=0"]),
    "neither": ("main", ["--set", "train.warmup_steps=0"]),
    "warmup-demos": ("main", ["--demos", "{demos}"]),  # the simulation demos mixed in at demos.ratio
    "warmup-demos-utd4": ("main", ["--demos", "{demos}", "--set", "agent.utd_ratio=4"]),  # and twice the updates
    "nominal-warmup": ("nominal", []),
}
LEVEL = 0.9


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def in_private_namespace(argv: list[str]) -> None:
    """Re-run this script in a network namespace of its own (only ``lo``) when possible."""
    if os.environ.get("ROBOT_RL_NETNS") or shutil.which("unshare") is None:
        return
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        log("no private network namespace here; DDS stays on the loopback-only configuration")
        return
    os.environ["ROBOT_RL_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, *argv])


def robot_rl(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robot_rl.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@contextlib.contextmanager
def twin(args: argparse.Namespace, domain: int, events: Path, profile: str | None = None) -> Iterator[dict[str, Any]]:
    """A twin bridge process for the block; yields its 'ready' line, then its 'stopped' statistics."""
    command = [sys.executable, "-m", "robot_rl.cli", "bridge", "--twin", profile or args.profile, "--task", "lift",
               "--time-scale", str(args.time_scale), "--state-hz", str(args.state_hz), "--domain-id", str(domain),
               "--events-log", str(events)]
    # Its stderr goes to a file: a pipe nobody reads fills up and blocks the bridge mid-run.
    log_path = events.with_name("twin_stderr.log")
    with open(log_path, "a") as stderr:
        process = subprocess.Popen(command, stderr=stderr, text=True)
    info: dict[str, Any] = {}

    def lines_with(marker: str) -> list[str]:
        return [line for line in log_path.read_text().splitlines() if line.startswith("{") and marker in line]
    try:
        deadline = time.monotonic() + 120
        while not lines_with('"ready"'):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the twin did not start (see {log_path})")
            time.sleep(0.2)
        info["ready"] = json.loads(lines_with('"ready"')[-1])
        yield info
    finally:
        process.terminate()
        process.wait(timeout=60)
        stopped = lines_with('"stopped"')
        if stopped:
            info["stopped"] = json.loads(stopped[-1])


def cached(path: Path, compute) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def zero_shot_eval(checkpoint: Path, domain: int, episodes: int) -> dict[str, Any]:
    done = robot_rl("eval", "--checkpoint", str(checkpoint), "--robot", "ros2", "--episodes", str(episodes),
                    "--set", f"env.robot.ros2.transport.domain_id={domain}", timeout=3600)
    if done.returncode:
        raise RuntimeError(f"zero-shot eval of {checkpoint} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def eval_curve(run_dir: Path, seed: int) -> list[tuple[int, float]]:
    with open(run_dir / f"seed_{seed}" / "logs" / "eval.csv", newline="") as f:
        return [(int(row["env_step"]), float(row["success_rate"])) for row in csv.DictReader(f)]


def steps_to_level(curve: list[tuple[int, float]], zero_shot: float) -> int | None:
    if zero_shot >= LEVEL:
        return 0
    return next((step for step, success in curve if success >= LEVEL), None)


def main_source(args: argparse.Namespace) -> str:
    return "randomized" if args.randomized else "nominal"


def domain_settings(domain: int) -> list[str]:
    return [f"env.robot.ros2.transport.domain_id={domain}", "train.progress=false"]


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    work = args.work / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    domain = 60 + seed
    checkpoints = {name: Path(str(template).format(seed=seed)) / f"seed_{seed}" / "checkpoints" / "last.pt"
                   for name, template in (("randomized", args.randomized), ("nominal", args.nominal)) if template}
    result: dict[str, Any] = {"zero_shot": {}, "finetune": {}}
    # what each checkpoint scored in the simulator it was trained in (its own run's evaluations)
    result["pretrained_sim_eval"] = {name: eval_curve(checkpoint.parent.parent.parent, seed)
                                     for name, checkpoint in checkpoints.items()}
    if args.check_profile:  # the pipeline itself: a twin without a gap should score what the sim scores
        with twin(args, domain, work / "check_events.jsonl", profile=args.check_profile):
            main = checkpoints[main_source(args)]
            result["zero_shot_check"] = cached(work / f"zero_shot_{args.check_profile}.json",
                                               lambda: zero_shot_eval(main, domain, args.eval_episodes))
            log(f"seed {seed}: zero-shot on the {args.check_profile!r} twin: "
                f"{result['zero_shot_check']['success_rate']}")
    with twin(args, domain, work / "twin_events.jsonl") as bridge:
        for name, checkpoint in checkpoints.items():
            result["zero_shot"][name] = cached(work / f"zero_shot_{name}.json",
                                               lambda checkpoint=checkpoint: zero_shot_eval(checkpoint, domain,
                                                                                            args.eval_episodes))
            log(f"seed {seed}: zero-shot {name}: {result['zero_shot'][name]['success_rate']}")
        for variant in args.variants:
            source, extra = VARIANTS[variant]
            source = main_source(args) if source == "main" else source
            run_dir = work / f"finetune_{variant}"

            def finetune(run_dir=run_dir, source=source, extra=extra) -> dict[str, Any]:
                resume = (run_dir / "config.yaml").exists()
                start = time.perf_counter()
                common = ["--set", *domain_settings(domain), f"train.eval_every={args.eval_every}",
                          f"train.eval_episodes={args.finetune_eval_episodes}"]
                if resume:
                    done = robot_rl("finetune", "--resume", "--run-dir", str(run_dir), *common, timeout=7200)
                else:
                    extra = [word.format(demos=args.demos) for word in extra]
                    done = robot_rl("finetune", "--from", str(checkpoints[source]), "--steps", str(args.steps),
                                    "--run-dir", str(run_dir), *extra, *common, timeout=7200)
                if done.returncode:
                    raise RuntimeError(f"finetune {run_dir} failed:\n{done.stderr[-3000:]}")
                return {"curve": eval_curve(run_dir, seed), "wall_clock_s": time.perf_counter() - start}
            ran = cached(work / f"finetune_{variant}.json", finetune)
            zero = result["zero_shot"][source]["success_rate"]
            ran["steps_to_90pct"] = steps_to_level(ran["curve"], zero)
            ran["final"] = ran["curve"][-1][1]
            result["finetune"][variant] = ran
            log(f"seed {seed}: finetune {variant}: curve {ran['curve']}")

        def scratch() -> dict[str, Any]:
            run_dir = work / "scratch"
            resume = (run_dir / "config.yaml").exists()
            settings = ["--set", *domain_settings(domain), "env.robot.kind=ros2", "env.task.reward_type=sparse",
                        "agent.utd_ratio=2", f"train.total_steps={args.scratch_steps}",
                        f"train.eval_every={args.eval_every}", f"train.eval_episodes={args.finetune_eval_episodes}",
                        f"train.seeds=[{seed}]", "train.torch_threads=1"]
            start = time.perf_counter()
            if resume:
                done = robot_rl("train", "--resume", "--run-dir", str(run_dir), *settings, timeout=14400)
            else:
                done = robot_rl("train", "--task", "lift", "--algo", "awac", "--demos", str(args.demos),
                                "--run-dir", str(run_dir), *settings, timeout=14400)
            if done.returncode:
                raise RuntimeError(f"scratch run failed:\n{done.stderr[-3000:]}")
            return {"curve": eval_curve(run_dir, seed), "wall_clock_s": time.perf_counter() - start}
        if args.scratch_steps:
            ran = cached(work / "scratch.json", scratch)
            ran["steps_to_90pct"] = steps_to_level(ran["curve"], 0.0)
            ran["final"] = ran["curve"][-1][1]
            result["scratch"] = ran
            log(f"seed {seed}: scratch: curve {ran['curve']}")
    result["twin"] = bridge
    return result


def summarize(results: dict[int, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    summary: dict[str, Any] = {
        "zero_shot_check_median": median([r.get("zero_shot_check", {}).get("success_rate") for r in results.values()]),
        "zero_shot_median": {name: median([r["zero_shot"][name]["success_rate"] for r in results.values()])
                             for name in ("randomized", "nominal") if getattr(args, name)},
        "finetune": {},
    }
    for variant in args.variants:
        runs = [r["finetune"][variant] for r in results.values() if variant in r["finetune"]]
        reached = [run["steps_to_90pct"] for run in runs]
        summary["finetune"][variant] = {
            "final_median": median([run["final"] for run in runs]),
            "steps_to_90pct": reached,
            "reached_90pct": f"{sum(s is not None for s in reached)}/{len(runs)}",
        }
    scratch = [r["scratch"] for r in results.values() if "scratch" in r]
    if scratch:
        summary["scratch"] = {"final_median": median([run["final"] for run in scratch]),
                              "steps_to_90pct": [run["steps_to_90pct"] for run in scratch],
                              "budget": args.scratch_steps}
        ratios = []
        for seed, r in results.items():
            tuned = r["finetune"].get("warmup", {}).get("steps_to_90pct")
            needed = r.get("scratch", {}).get("steps_to_90pct")
            # not reached from scratch: at least the whole budget (a lower bound on the ratio)
            needed = args.scratch_steps if needed is None else needed
            if tuned is not None:
                ratios.append({"seed": seed, "scratch_steps": needed, "finetune_steps": tuned,
                               "ratio": None if tuned == 0 else needed / tuned,
                               "scratch_reached": r["scratch"]["steps_to_90pct"] is not None})
        summary["scratch_vs_finetune"] = ratios
    return summary


def plot(results: dict[int, dict[str, Any]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {"warmup": "C0", "replay": "C1", "neither": "C2", "nominal-warmup": "C3", "warmup-demos": "C4",
               "warmup-demos-utd4": "C5", "scratch": "k"}
    for seed, r in results.items():
        for variant, run in [*r["finetune"].items(), *([("scratch", r["scratch"])] if "scratch" in r else [])]:
            source = VARIANTS.get(variant, ("none",))[0]
            source = main_source(args) if source == "main" else source
            zero = r["zero_shot"][source]["success_rate"] if source in r["zero_shot"] else 0.0
            steps = [0] + [s for s, _ in run["curve"]]
            values = [zero] + [v for _, v in run["curve"]]
            ax.plot(steps, values, color=colours[variant], alpha=0.8, marker=".",
                    label=variant if seed == min(results) else None)
    ax.axhline(LEVEL, color="grey", linestyle=":")
    ax.set_xlabel("twin env steps")
    ax.set_ylabel("eval success")
    ax.set_title(f"lift: sim → twin '{args.profile}' (every seed, unsmoothed; step 0 = zero-shot)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--randomized", help="run dir template of the randomised pretraining, {seed}")
    parser.add_argument("--nominal", required=True, help="run dir template of the pretraining without randomisation")
    parser.add_argument("--demos", type=Path, required=True, help="the sim demonstrations (for the scratch runs)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--check-profile", default="identical",
                        help="a twin profile without a gap for a zero-shot check of the pipeline ('' to skip)")
    parser.add_argument("--time-scale", type=float, default=2.0)
    parser.add_argument("--state-hz", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=5000, help="fine-tuning twin steps")
    parser.add_argument("--scratch-steps", type=int, default=10000)
    parser.add_argument("--variants", nargs="+", default=["warmup", "replay", "neither"], choices=list(VARIANTS))
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=20, help="zero-shot episodes")
    parser.add_argument("--finetune-eval-episodes", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks/sim_to_twin"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="sim_to_twin_lift")
    args = parser.parse_args(argv)
    in_private_namespace(sys.argv)
    with tempfile.TemporaryDirectory(prefix="robot_rl_twin_") as runtime:
        os.environ["XDG_RUNTIME_DIR"] = runtime  # the bridge's local e-stop socket, private to this run
        results = {}
        for seed in args.seeds:
            results[seed] = run_seed(args, seed)  # every part is cached on its own
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": "python benchmarks/sim_to_twin.py " + " ".join(sys.argv[1:]),
              "note": f"the twin ran {args.time_scale}x faster than real time (sim time on /clock), states at "
                      f"{args.state_hz} Hz; object poses come from the twin's simulated perception topic "
                      f"(robot_rl/object_poses, with the profile's noise and dropout)",
              "level": LEVEL, "summary": summarize(results, args), "seeds": {str(s): r for s, r in results.items()}}
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    plot(results, args, args.out / f"{args.name}.png")
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
