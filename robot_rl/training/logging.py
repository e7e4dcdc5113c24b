"""Run logs: one CSV per stream (``episodes``, ``eval``, ``updates``, ``offline``,
``robot_events``) plus TensorBoard (numeric columns).

CSV files are appended row by row and flushed, so a killed run keeps its logs; on resume,
rows beyond the resumed point are dropped so curves never double back. Online streams are
indexed by ``env_step``; the offline pre-training stream by gradient ``update``.
"""

from __future__ import annotations

import csv
import numbers
from pathlib import Path
from typing import Any, Mapping

X_AXIS = {"offline": "update"}  # stream → index column; the rest are indexed by env_step


class RunLogger:
    def __init__(self, log_dir: Path, resume_at: Mapping[str, int] | None = None) -> None:
        """``resume_at`` maps index columns (``env_step``, ``update``) to the point a resumed run
        continues from; rows past it are dropped."""
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, Any] = {}
        self._writers: dict[str, csv.DictWriter] = {}
        if resume_at is not None:
            for path in log_dir.glob("*.csv"):
                x = X_AXIS.get(path.stem, "env_step")
                self._truncate(path, x, resume_at[x])
        resume_step = None if resume_at is None else resume_at["env_step"]
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(log_dir / "tensorboard"), purge_step=resume_step)
        except ImportError:  # tensorboard is optional; CSV logs are always written
            self._tensorboard = None

    @staticmethod
    def _truncate(path: Path, x: str, last: int) -> None:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        kept = [row for row in rows if int(float(row[x])) <= last]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            writer.writerows(kept)

    def log(self, stream: str, step: int, values: Mapping[str, float]) -> None:
        """Append ``values`` at ``step`` (an env step, or an update for the offline stream)."""
        row = {X_AXIS.get(stream, "env_step"): step, **values}
        if stream not in self._writers:
            path = self.log_dir / f"{stream}.csv"
            exists = path.exists() and path.stat().st_size > 0
            self._files[stream] = open(path, "a", newline="")
            fieldnames = list(row)
            if exists:
                with open(path, newline="") as f:
                    fieldnames = next(csv.reader(f))
            self._writers[stream] = csv.DictWriter(self._files[stream], fieldnames=fieldnames, extrasaction="ignore")
            if not exists:
                self._writers[stream].writeheader()
        self._writers[stream].writerow(row)
        self._files[stream].flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, numbers.Real):  # text columns (e.g. robot events) are CSV-only
                    self._tensorboard.add_scalar(f"{stream}/{key}", value, step)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
