"""Training loop, rollouts, recording, configs, checkpoints, logs and plots.

Names load on first use: recording (:mod:`robot_rl.training.recorder`, built on
:mod:`robot_rl.training.rollout`) does not import torch or the learners.
"""

from importlib import import_module
from typing import Any

_NAMES = {"LoopConfig": "config", "TrainConfig": "config", "load_train_config": "config", "Trainer": "loop",
          "TrainingDiverged": "loop", "train": "loop", "evaluate": "rollout", "run_episode": "rollout",
          "EpisodeRecorder": "recorder"}

__all__ = ["EpisodeRecorder", "LoopConfig", "TrainConfig", "Trainer", "TrainingDiverged", "evaluate",
           "load_train_config", "run_episode", "train"]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(import_module(f"robot_rl.training.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
