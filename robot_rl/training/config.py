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
from robot_rl.envs.tasks import TASK_CLASSES
from robot_rl.teleop.config import TeleopConfig

AGENT_PRESETS = ("sac", "redq", "droq", "td3", "ddpg", "rlpd", "ddpgfd", "awac")


@dataclass(frozen=True)
class LoopConfig(CheckedConfig):
    total_steps: int = bounded(6000, ge=1)  # environment steps per seed
    warmup_steps: int = bounded(500, ge=0)  # env steps before learning starts
    # What acts during warmup_steps: uniformly random actions (from scratch), or the agent's own
    # exploration policy (fine-tuning a loaded agent: WSRL's warm-up recalibrates its critic on
    # the new robot's data before any update).
    warmup_actions: Literal["uniform", "policy"] = "uniform"
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
    """Hindsight goal relabelling of sampled minibatches (goal tasks: reach, push, pick, peg; or a
    gymnasium goal env with a vectorised ``compute_reward``); see :mod:`robot_rl.data.hindsight`."""

    strategy: Literal["none", "future", "final", "episode"] = "none"  # none: no relabelling
    ratio: float = bounded(0.8, ge=0, le=1)  # share of every minibatch relabelled; HER's k goals per real one = k / (k + 1)


@dataclass(frozen=True)
class RunTeleopConfig(TeleopConfig):
    """A training run's teleop device, for interventions (:mod:`robot_rl.training.interventions`):
    the device settings of :class:`~robot_rl.teleop.config.TeleopConfig`, with no device by default.
    Intervened transitions also go to the demonstration buffer, mixed into minibatches at
    ``demos.ratio`` (without ``demos.paths`` that buffer starts empty)."""

    device: str = ""  # "": no teleop device; else keyboard, gamepad, spacemouse, joy, twist, virtual, ...

    optional_device = True


@dataclass(frozen=True)
class RewardConfig(CheckedConfig):
    """Where the reward comes from: ``env`` (the task's), ``human`` (the success / failure buttons
    of the teleop device: 1 on the last step of a success, terminal on either label),
    ``classifier`` (a success classifier on the camera frames, ``robot-rl reward train``: 1 while
    it says success; :mod:`robot_rl.vision.reward_env`), ``auto``: ``human`` on a real arm (robot
    kind ros2 with a teleop device), else ``env``."""

    source: Literal["auto", "env", "human", "classifier"] = "auto"
    classifier: str = ""  # the classifier file (reward.source classifier)
    threshold: float | None = bounded(None, gt=0, lt=1)  # p(success) needed; default: the file's
    hold_steps: int | None = bounded(None, ge=1)  # consecutive steps p ≥ threshold; default: the file's

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "classifier" and not self.classifier:
            raise FieldError("classifier", "reward.source classifier needs the classifier file "
                                           "(robot-rl train --reward classifier:PATH)")


@dataclass(frozen=True)
class InitConfig(CheckedConfig):
    """Start from a trained agent instead of random weights (``robot-rl finetune --from``;
    :mod:`robot_rl.training.finetune`). The env must offer the same interface as the one the
    checkpoint was trained on (observation keys and shapes, action space, control rate, ...),
    checked before anything moves."""

    checkpoint: str = ""  # a robot_rl checkpoint file; "": random initial weights
    # Parts of the agent taken from the checkpoint (a part the learner lacks, e.g. TD3's
    # temperature, is skipped); the rest start fresh. The observation encoder (normalisation
    # statistics, trained weights) comes with the actor or the critic.
    load: tuple[Literal["actor", "critic", "temperature"], ...] = ("actor", "critic", "temperature")
    replay: str = ""  # a previous run's replay store, mixed into minibatches at replay_ratio ("": none)
    replay_ratio: float = bounded(0.25, gt=0, lt=1)
    # Safety ramp on a new robot: the motion part of every action is scaled by a factor rising
    # linearly from action_scale_start to 1 over the first action_ramp_episodes episodes.
    action_scale_start: float = bounded(1.0, gt=0, le=1)
    action_ramp_episodes: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.load)) != len(self.load):
            raise FieldError("load", f"lists a part twice: {list(self.load)}")


@dataclass(frozen=True)
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    demos: DemoConfig = field(default_factory=DemoConfig)
    her: HerConfig = field(default_factory=HerConfig)
    teleop: RunTeleopConfig = field(default_factory=RunTeleopConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    init: InitConfig = field(default_factory=InitConfig)

    @property
    def reward_source(self) -> str:
        """``env`` or ``human``: ``reward.source`` with ``auto`` resolved."""
        if self.reward.source == "auto":
            return "human" if self.teleop.device and self.env.robot.kind == "ros2" else "env"
        return self.reward.source

    def check_complete(self) -> None:
        """Rules across sections, checked once every layer is merged (a preset may set
        ``demos.offline_steps`` before the command line names the datasets), and the device,
        so that a run that cannot work stops before it builds anything."""
        if self.init.replay and not self.init.checkpoint:
            raise ConfigError("init.replay: mixing in a previous run's replay belongs to fine-tuning from that run; "
                              "set init.checkpoint too (robot-rl finetune --from RUN)")
        if self.demos.offline_steps and not self.demos.paths:
            raise ConfigError("demos.offline_steps: offline pre-training needs demonstrations (--demos D.zarr)")
        gym = self.env.gym
        if (gym.kwargs or gym.imports or gym.wrappers) and not gym.id:
            raise ConfigError("env.gym: kwargs, imports and wrappers apply to a gymnasium env; set env.gym.id too "
                              "(robot-rl train --env ID)")
        # The online replay ring holds whole episodes and must fill a minibatch (a gymnasium env's
        # episode length is checked when it is made: robot_rl.training.loop.make_env).
        needed = {"agent.batch_size": self.agent.batch_size}
        if not gym.id:
            needed["env.task.max_episode_steps"] = self.env.task.max_episode_steps
        for key, steps in needed.items():
            if self.train.replay_capacity < steps:
                raise ConfigError(f"train.replay_capacity: {self.train.replay_capacity} steps cannot hold "
                                  f"{key} = {steps} steps; raise it to at least {max(needed.values())}")
        if self.teleop.device and gym.id:
            raise ConfigError(f"teleop.device: a teleop device drives this project's arm, not the gymnasium env "
                              f"{gym.id!r}")
        if self.reward_source == "classifier" and self.her.strategy != "none":
            raise ConfigError("her.strategy: hindsight relabelling recomputes the env's reward, but reward.source is "
                              "classifier; set her.strategy: none")
        if self.reward_source == "human":
            if not self.teleop.device:
                raise ConfigError("reward.source: human rewards come from a teleop device's success / failure "
                                  "buttons; set teleop.device (robot-rl train --teleop DEVICE)")
            if self.her.strategy != "none":
                raise ConfigError("her.strategy: hindsight relabelling recomputes the env's reward, but "
                                  "reward.source is human; set her.strategy: none")
        if self.her.strategy != "none" and not gym.id and not self.env.observation.privileged:
            task = TASK_CLASSES[self.env.task.name]
            if task.goal_keys and task.privileged_keys:
                raise ConfigError(f"her.strategy: relabelling {task.name!r} needs the achieved goal, computed from "
                                  f"{list(task.privileged_keys)}, which env.observation.privileged: false leaves out; "
                                  f"set her.strategy: none")
        if self.agent.encoder.mode != "none" and not gym.id and not self.env.observation.images:
            raise ConfigError(f"agent.encoder.mode: {self.agent.encoder.mode} learns from camera images; set "
                              f"env.observation.images: true")
        problem = device_problem(self.agent.device)
        if problem:
            raise ConfigError(f"agent.device: {problem}")


def _resource(*parts: str) -> Path:
    return Path(str(resources.files("robot_rl").joinpath("configs", *parts)))


def agent_preset_path(name: str) -> Path:
    if name not in AGENT_PRESETS:
        raise ConfigError(f"unknown agent preset {name!r}; choose one of {', '.join(AGENT_PRESETS)}")
    return _resource("agents", f"{name}.yaml")


def load_finetune_config(
    trained: Mapping[str, Any],
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """A fine-tuning run's config: the ``trained`` run's whole config (from its checkpoint) ←
    ``configs/train/finetune.yaml`` ← ``path`` ← ``overrides``; checked like a training config."""
    layers: list[tuple[str, Mapping[str, Any]]] = [("the checkpoint's config", dict(trained))]
    finetune = _resource("train", "finetune.yaml")
    layers.append((str(finetune), read_yaml(finetune)))
    if path is not None:
        layers.append((str(path), read_yaml(path)))
    if overrides:
        layers.append(("--set", dict(overrides)))
    config = from_dict(TrainConfig, merge_layers(TrainConfig, layers), layers[-1][0])
    config.check_complete()
    return config


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
