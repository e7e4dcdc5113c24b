"""Training-run configuration: ``env`` + ``agent`` + ``train`` sections of one YAML file.

Layering (later wins): built-in defaults ← ``configs/train/default.yaml`` ← the task's YAML
(under ``env``) ← an agent preset (``configs/agents/<name>.yaml``) ← ``--config FILE`` ←
``--set key=value`` overrides. Errors name the key and the file it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from robot_rl.agents.config import AgentConfig
from robot_rl.config import ConfigError, deep_merge, from_dict, merge_layers, read_yaml
from robot_rl.envs.config import EnvConfig, task_config_path

AGENT_PRESETS = ("sac", "redq", "droq", "td3", "ddpg", "rlpd", "ddpgfd", "awac")


@dataclass(frozen=True)
class LoopConfig:
    total_steps: int = 6000  # environment steps per seed
    warmup_steps: int = 500  # uniformly random actions before learning starts
    eval_every: int = 1000  # env steps between evaluations (deterministic policy)
    eval_episodes: int = 10
    checkpoint_every: int = 1000  # env steps; checkpoints are taken at episode boundaries
    replay_capacity: int = 1_000_000
    seeds: tuple[int, ...] = (0,)
    torch_threads: int = 0  # 0: let torch decide
    progress: bool = True
    # A real arm that raises a RobotError (stale state, safety stop): how long to keep retrying
    # its reset (with backoff) before the run stops with an error naming this key.
    robot_recovery_timeout: float = 300.0  # seconds

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("train.seeds: needs at least one seed")
        if not 0.0 < self.robot_recovery_timeout < float("inf"):
            raise ConfigError(f"train.robot_recovery_timeout: must be a positive number of seconds, "
                              f"got {self.robot_recovery_timeout}")
        for name in ("total_steps", "eval_every", "eval_episodes", "checkpoint_every", "replay_capacity"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class DemoConfig:
    """Demonstration datasets (Zarr episode stores) and how the learner uses them."""

    paths: tuple[str, ...] = ()
    ratio: float = 0.5  # share of every minibatch drawn from demonstrations (RLPD: 0.5)
    offline_steps: int = 0  # gradient steps on demonstrations alone before the first env step
    rename: dict[str, str] = field(default_factory=dict)  # dataset feature name → env observation key

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"demos.ratio: must be in (0, 1), got {self.ratio}")
        if self.offline_steps < 0:
            raise ConfigError(f"demos.offline_steps: must be >= 0, got {self.offline_steps}")


@dataclass(frozen=True)
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    demos: DemoConfig = field(default_factory=DemoConfig)

    def check_complete(self) -> None:
        """Cross-section rules, checked once every layer is merged (a preset may set
        ``demos.offline_steps`` before the command line names the datasets)."""
        if self.demos.offline_steps and not self.demos.paths:
            raise ConfigError("demos.offline_steps: offline pre-training needs demonstrations (--demos D.zarr)")


def _resource(*parts: str) -> Path:
    return Path(str(resources.files("robot_rl").joinpath("configs", *parts)))


def agent_preset_path(name: str) -> Path:
    if name not in AGENT_PRESETS:
        raise ConfigError(f"unknown agent preset {name!r}; choose one of {', '.join(AGENT_PRESETS)}")
    return _resource("agents", f"{name}.yaml")


def load_train_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    agent_preset: str | None = None,
) -> TrainConfig:
    files: list[str | Path] = [_resource("train", "default.yaml")]
    if agent_preset is not None:
        files.append(agent_preset_path(agent_preset))
    if path is not None:
        files.append(path)
    layers: list[tuple[str, Mapping[str, Any]]] = [(str(file), read_yaml(file)) for file in files]
    if overrides:
        layers.append(("--set", dict(overrides)))
    merged = merge_layers(TrainConfig, layers)  # errors point at the layer that added them
    task = merged.get("env", {}).get("task", {}).get("name", "reach")
    task_layer = {"env": read_yaml(task_config_path(task))}
    # The task file supplies defaults for its own env section; explicit settings still win.
    merged = deep_merge(task_layer, merged)
    config = from_dict(TrainConfig, merged, layers[-1][0])
    config.check_complete()
    return config
