"""A training env whose reward comes from a learned success classifier, not from the simulator.

``robot-rl train --reward classifier:PATH`` wraps the training env (never the evaluation env,
so evaluations keep reporting the task's own success where one exists) in
:class:`ClassifierRewardEnv`: every step's reward is 1 when the classifier says "success" (p ≥
threshold for ``hold_steps`` steps in a row) and 0 otherwise, the episode ends there when the
task terminates on success, and ``info["is_success"]`` becomes the classifier's verdict, the
only one a real arm has. Where the env still reports its own success (simulation), it is kept
as ``info["true_success"]`` and every step is counted against it, so the run's logs show when the
classifier is fooled (:meth:`ClassifierRewardEnv.episode_log`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from robot_rl.vision.reward_classifier import ClassifierReward, ConfusionCounter


class ClassifierRewardEnv(gym.Wrapper):
    """``env`` with the classifier's sparse reward; ``terminate_on_success``: end the episode
    when the classifier says success (make ``env`` itself not terminate on success: its success
    is the simulator's, which a learner relying on this reward must not be told)."""

    def __init__(self, env: gym.Env, reward: ClassifierReward, terminate_on_success: bool) -> None:
        super().__init__(env)
        reward.check_space(env.observation_space)
        self.reward = reward
        self.terminate_on_success = terminate_on_success
        self.run = ConfusionCounter()  # every step so far, against the env's own success
        self.episode = ConfusionCounter()
        self._true_success: bool | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.reward.reset()
        self.episode = ConfusionCounter()
        self._true_success = None
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, "is_success": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        success, probability = self.reward(observation)
        if "is_success" in info:
            truth = bool(info["is_success"])
            self.run.add(success, truth)
            self.episode.add(success, truth)
            self._true_success = truth
            info = {**info, "true_success": truth}
        info = {**info, "is_success": success, "success_probability": probability}
        return observation, float(success), terminated or (success and self.terminate_on_success), truncated, info

    def episode_log(self) -> dict[str, float]:
        """Columns of the training log's ``episodes.csv`` for the episode just ended: the env's own
        success at its last step, the classifier's false positives and negatives (steps) in it,
        and the false-positive rate over every step of the run so far (empty without a truth)."""
        if self._true_success is None:
            return {}
        rate = self.run.metrics()["false_positive_rate"]
        return {"true_success": float(self._true_success), "classifier_fp_steps": float(self.episode.fp),
                "classifier_fn_steps": float(self.episode.fn),
                "classifier_fpr": float("nan") if rate is None else float(rate)}
