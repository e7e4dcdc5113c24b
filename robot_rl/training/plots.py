"""Learning-curve PNGs from run logs: every seed, unsmoothed, with evaluation points."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _read(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def plot_learning_curves(run_dir: Path, out: Path) -> Path:
    """Episode success and return per seed (thin lines) and evaluation points (markers). An env
    that reports no success (logs without success columns) gets an empty success panel saying so."""
    fig, (ax_success, ax_return) = plt.subplots(1, 2, figsize=(11, 4))
    success_logged = False
    for i, seed_dir in enumerate(sorted(run_dir.glob("seed_*"))):
        color = f"C{i}"
        episodes = _read(seed_dir / "logs" / "episodes.csv")
        evals = _read(seed_dir / "logs" / "eval.csv")
        if episodes and "success" in episodes:
            success_logged = True
            ax_success.plot(episodes["env_step"], episodes["success"], color=color, alpha=0.25, lw=0.8)
        if episodes:
            ax_return.plot(episodes["env_step"], episodes["return"], color=color, alpha=0.4, lw=0.8,
                           label=f"{seed_dir.name} episodes")
        if evals and "success_rate" in evals:
            success_logged = True
            ax_success.plot(evals["env_step"], evals["success_rate"], "o-", color=color, label=f"{seed_dir.name} eval")
        if evals:
            ax_return.plot(evals["env_step"], evals["return_mean"], "o-", color=color, label=f"{seed_dir.name} eval")
    ax_success.set(xlabel="environment steps", ylabel="success", ylim=(-0.05, 1.05),
                   title="success (episodes: 0/1, eval: rate)")
    ax_return.set(xlabel="environment steps", ylabel="episode return", title="return")
    if not success_logged:
        ax_success.text(0.5, 0.5, "the env reports no success\n(no info['is_success'])", ha="center", va="center",
                        transform=ax_success.transAxes)
    for ax in (ax_success, ax_return):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
