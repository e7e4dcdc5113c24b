"""Checkpoints that load without executing code and are never half-written.

A checkpoint is a ``torch.save`` of plain containers, tensors and numbers, loaded with
``weights_only=True``. Writing goes to ``<name>.partial`` then ``os.replace``: a crash during a
save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a loadable robot_rl checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != "robot_rl.checkpoint":
        raise CheckpointError(f"{path}: not a robot_rl checkpoint (missing format marker)")
    return payload
