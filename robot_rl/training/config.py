"""Training-run configuration: ``env`` + ``agent`` + ``train`` sections of one YAML file.

Layering (later wins): built-in defaults ← ``configs/train/default.yaml`` ← the task's YAML
(under ``env``) ← an agent preset (``configs/agents/<name>.yaml``) ← ``--config FILE`` ←
``--set key=value`` overrides. Errors name the key and the file it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from robot_rl.agents.config import AgentConfig, device_problem
from robot_rl.config import (
    CheckedConfig,
    ConfigError,
    FieldError,
    bounded,
    deep_merge,
    from_dict,
    merge_layers,
    read_yaml,
)
from robot_rl.envs.config import EnvConfig, task_config_path

AGENT_PRESETS = ("sac", "redq", "droq", "td3", "ddpg", "rlpd", "ddpgfd", "awac")


@dataclass(frozen=True)
class LoopConfig(CheckedConfig):
    total_steps: int = bounded(6000, ge=1)  # environment steps per seed
    warmup_steps: int = bounded(500, ge=0)  # uniformly random actions before learning starts
    eval_every: int = bounded(1000, ge=1)  # env steps between evaluations (deterministic policy)
    eval_episodes: int = bounded(10, ge=1)
    checkpoint_every: int = bounded(1000, ge=1)  # env steps; checkpoints are taken at episode boundaries
    replay_capacity: int = bounded(1_000_000, ge=1)  # steps; see TrainConfig.check_complete for the minimum
    seeds: tuple[int, ...] = bounded((0,), ge=0)  # numpy seeds must be non-negative
    torch_threads: int = bounded(0, ge=0)  # 0: let torch decide
    progress: bool = True
    # A real arm that raises a RobotError (stale state, safety stop): how long to keep retrying
    # its reset (with backoff) before the run stops with an error naming this key.
    robot_recovery_timeout: float = bounded(300.0, gt=0)  # seconds

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.seeds:
            raise FieldError("seeds", "needs at least one seed")


@dataclass(frozen=True)
class DemoConfig(CheckedConfig):
    """Demonstration datasets (Zarr episode stores) and how the learner uses them."""

    paths: tuple[str, ...] = ()
    ratio: float = bounded(0.5, gt=0, lt=1)  # share of every minibatch drawn from demonstrations (RLPD: 0.5)
    offline_steps: int = bounded(0, ge=0)  # gradient steps on demonstrations alone before the first env step
    rename: dict[str, str] = field(default_factory=dict)  # dataset feature name → env observation key


@dataclass(frozen=True)
class HerConfig(CheckedConfig):
    """Hindsight goal relabelling of sampled minibatches (goal tasks: reach, push, pick, peg);
    see :mod:`robot_rl.data.hindsight`."""

    strategy: Literal["none", "future", "final", "episode"] = "none"  # none: no relabelling
    ratio: float = bounded(0.8, ge=0, le=1)  # share of every minibatch relabelled; HER's k goals per real one = k / (k + 1)


@dataclass(frozen=True)
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    demos: DemoConfig = field(default_factory=DemoConfig)
    her: HerConfig = field(default_factory=HerConfig)

    def check_complete(self) -> None:
        """Rules across sections, checked once every layer is merged (a preset may set
        ``demos.offline_steps`` before the command line names the datasets), and the device,
        so that a run that cannot work stops before it builds anything."""
        if self.demos.offline_steps and not self.demos.paths:
            raise ConfigError("demos.offline_steps: offline pre-training needs demonstrations (--demos D.zarr)")
        # The online replay ring holds whole episodes and must fill a minibatch.
        needed = {"agent.batch_size": self.agent.batch_size,
                  "env.task.max_episode_steps": self.env.task.max_episode_steps}
        for key, steps in needed.items():
            if self.train.replay_capacity < steps:
                raise ConfigError(f"train.replay_capacity: {self.train.replay_capacity} steps cannot hold "
                                  f"{key} = {steps} steps; raise it to at least {max(needed.values())}")
        problem = device_problem(self.agent.device)
        if problem:
            raise ConfigError(f"agent.device: {problem}")


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
