"""The default run, as a new user gets it: ``robot-rl train`` with no arguments, seeds 0–4.

Checks the two promises of the README's first command: it learns (final eval success per seed)
and it is reproducible (the same seed run twice on one machine gives the same evaluations and
bit-identical final weights). Nothing is overridden but the seed and the progress bar; the
torch thread count is the config's own (``train.torch_threads``).

Writes ``<out>/default_run.json`` (per-seed curves and final success, the repeat check) and
``<out>/default_run.png``. Finished runs are reused from ``--work``, so an interrupted
invocation continues where it stopped (run two at a time with ``--seeds``, then once for the
report)::

    python benchmarks/default_run.py --seeds 0 1 2 3 4 --repeat-seeds 0 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from robot_rl.bench.learn import cached_run, run_ours, write_report
from robot_rl.training.checkpoint import load_checkpoint


def weights_digest(run_dir: Path, seed: int) -> str:
    """SHA-256 over the final agent weights (every tensor of the checkpoint's ``agent`` entry, in key order)."""
    agent = load_checkpoint(run_dir / f"seed_{seed}" / "checkpoints" / "last.pt")["agent"]
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                digest.update(str(key).encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            for item in value:
                feed(item)
        else:
            digest.update(repr(value).encode())

    feed(agent)
    return digest.hexdigest()


def run_default(run_dir: Path, seed: int) -> dict[str, Any]:
    result = run_ours(run_dir, {"train": {"seeds": [seed], "progress": False}})
    # as lists, so a fresh result compares equal to one read back from result.json
    curve = [list(point) for point in result["curve"]]
    return {**result, "curve": curve, "weights_sha256": weights_digest(run_dir, seed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--repeat-seeds", type=int, nargs="*", default=[0],
                        help="seeds run a second time in a separate run directory to check reproducibility")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {seed: cached_run(args.work / f"default_seed{seed}", lambda: run_default(args.work / f"default_seed{seed}", seed))
            for seed in args.seeds}
    repeats = {}
    for seed in args.repeat_seeds:
        first = runs.get(seed) or cached_run(args.work / f"default_seed{seed}",
                                             lambda: run_default(args.work / f"default_seed{seed}", seed))
        again = cached_run(args.work / f"default_seed{seed}_repeat",
                           lambda: run_default(args.work / f"default_seed{seed}_repeat", seed))
        repeats[seed] = {"same_curve": first["curve"] == again["curve"],
                         "same_weights": first["weights_sha256"] == again["weights_sha256"],
                         "curves": [first["curve"], again["curve"]]}
    header = {"command": "python benchmarks/default_run.py " + " ".join(sys.argv[1:]),
              "each_run": "robot-rl train --seeds <s> (every other setting at its default)",
              "cpu_count": os.cpu_count(), "seeds": args.seeds,
              "final_success_per_seed": {seed: run["curve"][-1][1] for seed, run in runs.items()},
              "target": "final eval success >= 0.9 on every seed", "reproducibility": repeats,
              "meets_target": all(run["curve"][-1][1] >= 0.9 for run in runs.values())}
    write_report({"robot-rl train (default)": runs}, header, args.out, "default_run",
                 "robot-rl train defaults: every seed, unsmoothed", eval_every=1000)  # the default config's
    print(json.dumps({"final_success_per_seed": header["final_success_per_seed"], "reproducibility":
                      {s: {k: v for k, v in r.items() if k != "curves"} for s, r in repeats.items()}}, indent=2))


if __name__ == "__main__":
    main()
