"""Checkpoints that load without executing code and are never half-written.

A checkpoint is a ``torch.save`` of plain containers, tensors and numbers, loaded with
``weights_only=True``. Writing goes to ``<name>.partial`` then ``os.replace``: a crash during a
save leaves the previous checkpoint intact. Loading checks the sections every reader relies on
(:data:`REQUIRED`), so a foreign, truncated or hand-edited file is a :class:`CheckpointError`
naming the path and what is missing, never a ``KeyError`` later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "robot_rl.checkpoint"
# Top-level sections and their types; ``counters`` must hold at least ``env_steps``.
REQUIRED: dict[str, type] = {"config": dict, "agent": dict, "counters": dict, "rng": dict}


class CheckpointError(RuntimeError):
    """The file is not a usable robot_rl checkpoint (missing, foreign, damaged, or not fitting the
    agent it is loaded into)."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with ``"format": FORMAT`` and the :data:`REQUIRED` sections) atomically."""
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
    """The payload saved at ``path``; a :class:`CheckpointError` if the file is missing, foreign,
    damaged or lacks a :data:`REQUIRED` section."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a loadable robot_rl checkpoint "
                              f"({exc.__class__.__name__}: {_shortened(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a robot_rl checkpoint (missing format marker)")
    problems = [f"{key!r} is missing" if key not in payload else f"{key!r} is a {type(payload[key]).__name__}"
                for key, kind in REQUIRED.items() if not isinstance(payload.get(key), kind)]
    if not problems and not isinstance(payload["counters"].get("env_steps"), int):
        problems.append("'counters' lacks 'env_steps'")
    if problems:
        raise CheckpointError(f"{path}: incomplete robot_rl checkpoint ({'; '.join(problems)}); "
                              "it was damaged or not written by robot_rl's trainer")
    return payload


def load_agent_state(agent: Any, payload: dict[str, Any], path: str | Path) -> None:
    """``agent.load_state_dict(payload["agent"])``; weights that do not fit the agent (e.g.
    ``--set agent.hidden_sizes=...`` over a checkpoint) are a :class:`CheckpointError`."""
    try:
        agent.load_state_dict(payload["agent"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's weights do not fit the agent built from its config "
                              f"({type(exc).__name__}: {_shortened(exc)})") from exc


def _shortened(exc: BaseException, limit: int = 240) -> str:
    """The first ``limit`` characters of an exception's message, on one line (torch's messages
    for foreign files and mismatched weights run to many lines)."""
    message = " ".join(str(exc).split())
    return message if len(message) <= limit else message[:limit] + "..."
