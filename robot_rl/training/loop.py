"""The online training loop: act, persist, learn, evaluate, checkpoint, resume.

One :class:`Trainer` runs one seed in ``<run_dir>/seed_<s>/``::

    replay.zarr/          every committed episode (the source of truth on resume)
    checkpoints/last.pt   agent, optimisers, temperature, counters, RNG states
    logs/*.csv            episodes, eval, updates (+ TensorBoard under logs/tensorboard)

Resume rule: the replay store's commit record says how many environment steps happened; the
checkpoint says what the learner knew. On ``--resume`` every committed episode is reloaded into
the RAM tier, the learner restarts from its last checkpoint and the step counter continues from
the store, so at most the episode in flight at the crash is lost.

Demonstrations (``demos.paths``) are loaded into their own RAM buffer and used in one of two ways:
mixed into every minibatch at ``demos.ratio`` (RLPD, AWAC, SAC), or, for DDPGfD, pinned inside
one prioritised buffer with the online data. ``demos.offline_steps`` gradient steps on the
demonstrations alone run before the first environment step; that phase checkpoints and resumes
like the online one, and the same agent and optimisers carry on online.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from tqdm import tqdm

from robot_rl.agents import OffPolicyAgent, make_agent
from robot_rl.config import to_dict
from robot_rl.data import (
    EpisodeStore,
    MixtureSampler,
    ReplayBuffer,
    features_from_spaces,
)
from robot_rl.envs import make_arm_env
from robot_rl.training.checkpoint import load_checkpoint, save_checkpoint
from robot_rl.training.config import TrainConfig
from robot_rl.training.logging import RunLogger

log = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 10_000_000  # evaluation episodes use seeds disjoint from training episodes


class TrainingDiverged(RuntimeError):
    """A loss or observation became NaN/inf; the last good checkpoint is left untouched."""


class RunDirError(RuntimeError):
    pass


@dataclass
class Counters:
    env_steps: int = 0
    episodes: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    offline_updates: int = 0


def make_env(config: TrainConfig) -> gym.Env:
    return make_arm_env(config.env.task.name, config=config.env)


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step`` (evaluation and checkpoint schedules)."""
    return (step // every + 1) * every


def episode_seed(run_seed: int, episode: int) -> int:
    """Reset seed of a training episode: a pure function of (run seed, episode index), so a
    resumed run draws the same scenes it would have drawn without the crash."""
    return (run_seed * 1_000_003 + episode) % (2**31)


def evaluate(env: gym.Env, agent: OffPolicyAgent, episodes: int, seed: int = EVAL_SEED_OFFSET) -> dict[str, Any]:
    """Run ``episodes`` deterministic-policy episodes with seeds ``seed, seed+1, ...``."""
    returns, successes = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done, info = 0.0, False, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, deterministic=True))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        successes.append(bool(info.get("is_success", False)))
    return episode_summary(returns, successes)


def episode_summary(returns: list[float], successes: list[bool]) -> dict[str, Any]:
    """Success rate, mean and std of the return, and the number of episodes (the eval JSON)."""
    return {"success_rate": float(np.mean(successes)), "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)), "episodes": len(returns)}


class Trainer:
    def __init__(self, config: TrainConfig, seed_dir: Path, seed: int, resume: bool = False) -> None:
        self.config, self.seed_dir, self.seed = config, seed_dir, seed
        self.checkpoint_path = seed_dir / "checkpoints" / "last.pt"
        store_path = seed_dir / "replay.zarr"
        if not resume and store_path.exists():
            raise RunDirError(f"{seed_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        if config.train.torch_threads > 0:
            torch.set_num_threads(config.train.torch_threads)
        self.env = make_env(config)
        self.eval_env = make_env(config)
        features = features_from_spaces(self.env.observation_space, self.env.action_space)
        obs_keys = list(self.env.observation_space.spaces)
        attrs = {"control_hz": config.env.control.control_hz, "task": config.env.task.name,
                 "env": to_dict(config.env), "robot": self.env.unwrapped.robot.spec.name}
        self.store = EpisodeStore.open_or_create(store_path, features, obs_keys, attrs)
        self.demos = self._load_demos() if config.demos.paths else None
        self.replay = self._make_replay(features, obs_keys)
        self.sampler = self._make_sampler()
        self.agent = make_agent(self.env.observation_space, self.env.action_space, config.agent)
        self.counters = Counters(next_eval=config.train.eval_every, next_checkpoint=config.train.checkpoint_every)
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        random.seed(seed)
        if resume and self.checkpoint_path.exists():
            self._restore(load_checkpoint(self.checkpoint_path))
        # The store is the truth about how much experience exists.
        self.counters.env_steps = self.store.n_steps
        self.counters.episodes = self.store.n_episodes
        resume_at = {"env_step": self.counters.env_steps, "update": self.counters.offline_updates}
        self.logger = RunLogger(seed_dir / "logs", resume_at=resume_at if resume else None)
        self._recent: deque[tuple[float, bool]] = deque(maxlen=20)  # progress-bar statistics
        self._last_eval: dict[str, Any] = {}
        self._last_eval_step = -1
        self._metrics: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ data
    def _load_demos(self) -> ReplayBuffer:
        from robot_rl.data.compat import load_demonstrations

        return load_demonstrations([Path(p) for p in self.config.demos.paths], self.env,
                                   rename=self.config.demos.rename or None)

    @property
    def prioritized(self) -> bool:
        return self.config.agent.algo == "ddpgfd"

    def _make_replay(self, features, obs_keys) -> ReplayBuffer:
        """The RAM tier of online experience, refilled from the store on resume. DDPGfD keeps the
        demonstrations pinned inside the same prioritised buffer instead of a separate one."""
        capacity = self.config.train.replay_capacity
        online = (ReplayBuffer.from_store(self.store, capacity=capacity) if self.store.n_episodes
                  else ReplayBuffer(features, obs_keys, capacity))
        if self.prioritized:
            from robot_rl.data.prioritized import PrioritizedReplayBuffer

            return PrioritizedReplayBuffer.from_config(online, self.demos, self.config.agent)
        return online

    def _make_sampler(self):
        """Where minibatches come from: online replay, mixed with demonstrations at a fixed ratio."""
        if self.demos is None or self.prioritized:
            return self.replay
        ratio = self.config.demos.ratio
        return MixtureSampler([(self.replay, 1.0 - ratio), (self.demos, ratio)], skip_empty=True,
                              names=["online replay", "demonstrations"])

    def _available(self) -> int:
        return len(self.replay) + (len(self.demos) if self.demos is not None and not self.prioritized else 0)

    # ------------------------------------------------------------------ checkpoints
    def _payload(self) -> dict[str, Any]:
        return {
            "format": "robot_rl.checkpoint",
            "config": to_dict(self.config),
            "seed": self.seed,
            "agent": self.agent.state_dict(),
            "counters": vars(self.counters).copy(),
            "store_generation": self.store.generation,
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(),
                    "python": list(random.getstate()[1])},
            **({"replay_priorities": self.replay.state_dict()} if self.prioritized else {}),
        }

    def _restore(self, payload: dict[str, Any]) -> None:
        self.agent.load_state_dict(payload["agent"])
        self.counters = Counters(**payload["counters"])
        self.rng.bit_generator.state = payload["rng"]["numpy"]
        torch.set_rng_state(payload["rng"]["torch"])
        random.setstate((3, tuple(payload["rng"]["python"]), None))
        if self.prioritized and "replay_priorities" in payload:
            try:
                self.replay.load_state_dict(payload["replay_priorities"])
            except ValueError as exc:  # e.g. a changed replay capacity: start from uniform priorities
                log.warning("prioritised replay: priorities not restored (%s); starting from uniform ones", exc)

    def save(self) -> Path:
        self.store.flush()  # the checkpoint never refers to experience that is not committed
        return save_checkpoint(self.checkpoint_path, self._payload())

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        cfg = self.config.train
        bar = tqdm(total=cfg.total_steps, initial=min(self.counters.env_steps, cfg.total_steps),
                   desc=f"seed {self.seed}", unit="step", disable=not cfg.progress, dynamic_ncols=True)
        try:
            self._pretrain_offline()
            while self.counters.env_steps < cfg.total_steps:
                self._run_episode(bar)
                if self.counters.env_steps >= self.counters.next_eval:
                    self._evaluate(bar)
                if self.counters.env_steps >= self.counters.next_checkpoint:
                    self.save()
                    self.counters.next_checkpoint = next_multiple(self.counters.env_steps, cfg.checkpoint_every)
            final = self._last_eval if self._last_eval_step == self.counters.env_steps else self._evaluate(bar)
            self.save()
            return final
        finally:
            bar.close()
            self.store.close()
            self.logger.close()
            self.env.close()
            self.eval_env.close()

    def _run_episode(self, bar: tqdm) -> None:
        cfg, counters = self.config.train, self.counters
        seed = episode_seed(self.seed, counters.episodes)
        obs, _ = self.env.reset(seed=seed)
        total, done, info = 0.0, False, {}
        while not done:
            if counters.env_steps < cfg.warmup_steps:
                action = self.rng.uniform(-1.0, 1.0, size=self.env.action_space.shape).astype(np.float32)
            else:
                action = self.agent.act(obs)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            self.store.append_step({**obs, "action": action, "reward": reward, "terminated": terminated})
            obs, total, done = next_obs, total + float(reward), terminated or truncated
            counters.env_steps += 1
            bar.update(1)
            if counters.env_steps >= cfg.warmup_steps and self._available() >= self.config.agent.batch_size:
                self._learn()
        success = bool(info.get("is_success", False))
        episode = self.store.end_episode(obs, success, source="policy", seed=seed)
        self.replay.add_episode(episode.steps, episode.final_obs)  # online data: never a demonstration
        counters.episodes += 1
        self._recent.append((total, success))
        self.logger.log("episodes", counters.env_steps, {"return": total, "success": float(success),
                                                         "length": episode.length, "episode": counters.episodes})
        bar.set_postfix(success=f"{np.mean([s for _, s in self._recent]):.2f}",
                        ret=f"{np.mean([r for r, _ in self._recent]):.1f}", refresh=False)

    def _pretrain_offline(self) -> None:
        """``demos.offline_steps`` updates on demonstrations alone (resumable), then evaluate."""
        total = self.config.demos.offline_steps
        if self.counters.offline_updates >= total:
            return
        bar = tqdm(total=total, initial=self.counters.offline_updates, desc=f"seed {self.seed} offline",
                   unit="update", disable=not self.config.train.progress, dynamic_ncols=True)
        source = self.replay if self.prioritized else self.demos
        every = self.config.train.checkpoint_every
        with bar:
            while self.counters.offline_updates < total:
                self._update(source)
                self.counters.offline_updates += 1
                bar.update(1)
                if self.counters.offline_updates % every == 0 or self.counters.offline_updates == total:
                    self.logger.log("offline", self.counters.offline_updates, self._take_metric_means())
                    self.save()
            self._evaluate(bar)

    def _update(self, source) -> None:
        """One gradient step on a minibatch from ``source``; NaN/inf stops the run."""
        agent_cfg = self.config.agent
        batch = source.sample(agent_cfg.batch_size, self.rng, agent_cfg.n_step, agent_cfg.gamma)
        metrics = self.agent.update(batch)
        if not all(math.isfinite(v) for v in metrics.values()):
            raise TrainingDiverged(
                f"non-finite learner metrics {metrics} at env step {self.counters.env_steps} "
                f"(update {self.agent.updates}); the last good checkpoint is {self.checkpoint_path}")
        if self.prioritized:
            source.update_priorities(batch.indices, self.agent.td_errors)
        for key, value in metrics.items():
            self._metrics.setdefault(key, []).append(value)

    def _learn(self) -> None:
        for _ in range(self.config.agent.utd_ratio):
            self._update(self.sampler)
        if self.counters.env_steps % 100 == 0 and self._metrics:
            self.logger.log("updates", self.counters.env_steps,
                            self._take_metric_means() | {"updates": self.agent.updates})

    def _take_metric_means(self) -> dict[str, float]:
        """Mean of every learner metric since the last call, and start accumulating afresh."""
        means = {k: float(np.mean(v)) for k, v in self._metrics.items()}
        self._metrics.clear()
        return means

    def _evaluate(self, bar: tqdm) -> dict[str, Any]:
        result = evaluate(self.eval_env, self.agent, self.config.train.eval_episodes)
        self.logger.log("eval", self.counters.env_steps, {k: v for k, v in result.items() if k != "episodes"})
        bar.write(f"[seed {self.seed}] step {self.counters.env_steps}: eval success {result['success_rate']:.2f}, "
                  f"return {result['return_mean']:.2f} ± {result['return_std']:.2f}")
        self.counters.next_eval = next_multiple(self.counters.env_steps, self.config.train.eval_every)
        self._last_eval, self._last_eval_step = result, self.counters.env_steps
        return result


def train(config: TrainConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train every seed of ``config.train.seeds`` under ``run_dir``; returns final evaluations."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    results = {}
    for seed in config.train.seeds:
        trainer = Trainer(config, run_dir / f"seed_{seed}", seed, resume=resume)
        results[seed] = trainer.run()
    from robot_rl.training.plots import plot_learning_curves

    plot_learning_curves(run_dir, run_dir / "learning_curve.png")
    return results
