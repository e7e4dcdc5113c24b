"""Training loop, configs, checkpoints, logs and plots."""

from robot_rl.training.config import LoopConfig, TrainConfig, load_train_config
from robot_rl.training.loop import Trainer, TrainingDiverged, evaluate, train

__all__ = ["LoopConfig", "TrainConfig", "Trainer", "TrainingDiverged", "evaluate", "load_train_config", "train"]
