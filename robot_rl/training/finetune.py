"""Starting a run from a trained agent: sim → twin or real arm (``robot-rl finetune --from``).

A fine-tuning run is an ordinary training run (own run directory, store, checkpoints, resume)
whose ``init`` section names a checkpoint. Before its store exists or the robot moves,
:func:`start_from_checkpoint`:

1. compares the checkpoint's env interface (:mod:`robot_rl.envs.interface`: observation keys and
   shapes, action space, control rate and mode, workspace, cameras, arm) with the new env's and
   raises :class:`~robot_rl.envs.interface.InterfaceMismatchError` listing *every* difference;
2. loads the parts of the agent ``init.load`` names (actor, critic, temperature; the observation
   encoder with either network) and continues the checkpoint's update count.

What happens next is configuration, not code here (``configs/train/finetune.yaml``):
``train.warmup_actions: policy`` collects the first ``train.warmup_steps`` with the loaded
policy before any update (WSRL, Zhou et al., ICLR 2025: the critic recalibrates on the new
robot's data, so the simulation replay need not be kept); ``init.replay`` mixes the source
run's replay in instead (or as well) at ``init.replay_ratio``; and :class:`ActionRamp` scales
the motion part of every action up from ``init.action_scale_start`` over the first
``init.action_ramp_episodes`` episodes, so a policy meets the new robot gently.

A resumed fine-tuning run restores its *own* last checkpoint; the source is read only when the
run has none yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from robot_rl.agents import OffPolicyAgent
from robot_rl.config import from_dict
from robot_rl.data.recorder import Observation
from robot_rl.envs.interface import InterfaceMismatchError, env_interface, interface_mismatches
from robot_rl.training.checkpoint import CheckpointError, load_checkpoint


@dataclass(frozen=True)
class StartedFrom:
    """What a run took from its checkpoint (logged at start)."""

    checkpoint: Path
    env_steps: int  # experience behind the loaded agent
    updates: int
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]  # parts asked for that this learner does not have


def resolve_checkpoint(source: str | Path, seed: int | None = None) -> Path:
    """The checkpoint file of ``source``: a checkpoint file, a seed directory (``seed_<s>``) or a
    run directory (``seed`` picks one of its seeds; it may be left out when there is one)."""
    path = Path(source)
    if path.is_file():
        return path
    if (path / "checkpoints" / "last.pt").is_file():
        return path / "checkpoints" / "last.pt"
    seeds = sorted(p.name.removeprefix("seed_") for p in path.glob("seed_*") if (p / "checkpoints" / "last.pt").is_file())
    if not path.is_dir() or not seeds:
        raise CheckpointError(f"{path}: neither a checkpoint file nor a run or seed directory with "
                              f"checkpoints/last.pt")
    if seed is None:
        if len(seeds) > 1:
            raise CheckpointError(f"{path} holds seeds {', '.join(seeds)}: choose one (--seed S)")
        return path / f"seed_{seeds[0]}" / "checkpoints" / "last.pt"
    if str(seed) not in seeds:
        raise CheckpointError(f"{path} has no checkpoint for seed {seed} (it has seeds {', '.join(seeds)})")
    return path / f"seed_{seed}" / "checkpoints" / "last.pt"


def trained_interface(payload: dict[str, Any], make_env: Callable[[Any], gym.Env]) -> dict[str, Any]:
    """The env interface a checkpoint was trained on: saved in it, or, for checkpoints written
    before it was saved, described from an env built from the checkpoint's config."""
    if "env_interface" in payload:
        return payload["env_interface"]
    from robot_rl.training.config import TrainConfig

    env = make_env(from_dict(TrainConfig, payload["config"], "checkpoint config"))
    try:
        return env_interface(env)
    finally:
        env.close()


def start_from_checkpoint(agent: OffPolicyAgent, env: gym.Env, path: str | Path, parts: tuple[str, ...],
                          make_env: Callable[[Any], gym.Env]) -> StartedFrom:
    """Check ``env`` against the checkpoint at ``path`` and load ``parts`` of it into ``agent``
    (module docstring). Raises :class:`InterfaceMismatchError` or :class:`CheckpointError`."""
    payload = load_checkpoint(path)
    mismatches = interface_mismatches(trained_interface(payload, make_env), env_interface(env))
    if mismatches:
        raise InterfaceMismatchError(f"init.checkpoint {path}", mismatches)
    try:
        skipped = agent.load_state_parts(payload["agent"], parts)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        trained_algo = payload["config"].get("agent", {}).get("algo", "?")
        raise CheckpointError(f"{path}: its agent ({trained_algo}) does not fit this run's "
                              f"({agent.config.algo}): {type(exc).__name__}: {' '.join(str(exc).split())[:240]}") from exc
    return StartedFrom(Path(path), int(payload["counters"]["env_steps"]), agent.updates,
                       tuple(p for p in parts if p not in skipped), tuple(skipped))


class ActionRamp:
    """An action source whose motion commands are scaled by a factor rising linearly from
    ``start`` to 1 over the first ``episodes`` episodes of the run (``episodes_done`` counts
    them, resumed runs included); ``fixed`` indices (the gripper) are never scaled. The scaled
    action is the one executed and stored."""

    def __init__(self, source: Any, start: float, episodes: int, episodes_done: Callable[[], int],
                 action_size: int, fixed: tuple[int, ...] = ()) -> None:
        self.inner, self.start, self.episodes, self.episodes_done = source, start, episodes, episodes_done
        self.source = source.source
        self._motion = np.ones(action_size, dtype=bool)
        self._motion[list(fixed)] = False
        self.scale = 1.0

    def reset(self) -> None:
        self.inner.reset()
        progress = min(1.0, self.episodes_done() / self.episodes) if self.episodes else 1.0
        self.scale = self.start + (1.0 - self.start) * progress

    def act(self, observation: Observation) -> np.ndarray | None:
        action = self.inner.act(observation)
        if action is None or self.scale == 1.0:
            return action
        scaled = np.array(action, copy=True)
        scaled[self._motion] *= self.scale
        return scaled


__all__ = ["ActionRamp", "CheckpointError", "InterfaceMismatchError", "StartedFrom", "resolve_checkpoint",
           "start_from_checkpoint", "trained_interface"]
