"""The online training loop: act, persist, learn, evaluate, checkpoint, resume.

One :class:`Trainer` runs one seed in ``<run_dir>/seed_<s>/``::

    replay.zarr/          every committed episode (the source of truth on resume)
    checkpoints/last.pt   agent, optimisers, temperature, counters, RNG states
    logs/*.csv            episodes, eval, updates (+ TensorBoard under logs/tensorboard)

Resume rule: the replay store's commit record says how many environment steps happened; the
checkpoint says what the learner knew. On ``--resume`` every committed episode is reloaded into
the RAM tier, the learner restarts from its last checkpoint and the step counter continues from
the store, so at most the episode in flight at the crash is lost.

The loop talks to the learner and the data only through small interfaces, and never asks
which learner it runs: episodes are :func:`~robot_rl.training.rollout.run_episode` of an action
source (the exploration policy), minibatches come from a :class:`~robot_rl.data.Sampler` built
from what the learner declares (``agent.data_needs``, see :mod:`robot_rl.training.sampling`),
and ``agent.update(batch)`` returns metrics plus optional TD errors, which go back to the
sampler as feedback.

Demonstrations (``demos.paths``) are loaded into their own RAM buffer and used as the learner
declares: mixed into every minibatch at ``demos.ratio`` (RLPD, AWAC, SAC), or pinned inside one
prioritised buffer with the online data (DDPGfD). ``demos.offline_steps`` gradient steps on the
demonstrations alone run before the first environment step; that phase checkpoints and resumes
like the online one, and the same agent and optimisers carry on online.

Host syncs: learner metrics stay on the device, summed there, and are read once per logging
interval, where they are also checked for NaN/inf; they (and the weights) are checked again
before every checkpoint, so a diverged learner never overwrites the last good checkpoint.

A real arm that raises a :class:`~robot_rl.robot.RobotError` (stale state, safety stop) does not
end the run: the episode in flight is dropped from the store, the event is logged (console and
``logs/robot_events.csv``), resets are retried with backoff for up to
``train.robot_recovery_timeout`` seconds, and training goes on. ``env_steps`` counts the steps
taken, dropped ones included; a resumed run restarts it from the store's count.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from tqdm import tqdm

from robot_rl.agents import OffPolicyAgent, make_agent
from robot_rl.config import ConfigError, to_dict
from robot_rl.data import EpisodeStore, ReplayBuffer, Sampler, features_from_spaces
from robot_rl.data.recorder import Observation, open_recording_store
from robot_rl.data.samplers import NonFiniteFeedback
from robot_rl.data.schema import INTERVENTION, LABELS, with_interventions
from robot_rl.envs import make_arm_env
from robot_rl.envs.gym_env import goal_task_of, make_gym_env
from robot_rl.envs.interface import env_interface
from robot_rl.robot import Robot
from robot_rl.training.checkpoint import FORMAT as CHECKPOINT_FORMAT
from robot_rl.training.checkpoint import load_agent_state, load_checkpoint, save_checkpoint
from robot_rl.training.config import TrainConfig
from robot_rl.training.finetune import ActionRamp, start_from_checkpoint
from robot_rl.training.logging import RunLogger
from robot_rl.training.metrics import MetricMeans
from robot_rl.training.rollout import (
    EVAL_SEED_OFFSET,
    RobotEvent,
    RobotRecovery,
    RobotUnavailableError,
    episode_summary,
    evaluate,
    run_episode,
)
from robot_rl.training.sampling import make_replay_setup

log = logging.getLogger(__name__)

__all__ = ["EVAL_SEED_OFFSET", "RunDirError", "Trainer", "TrainingDiverged", "episode_summary", "evaluate",
           "make_env", "train"]


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


def make_env(config: TrainConfig, robot: Robot | None = None) -> gym.Env:
    """The run's env; ``robot``: a ready arm instead of the one ``config.env.robot`` describes.

    With ``env.gym.id`` set: that gymnasium env, adapted for the learners
    (:func:`robot_rl.envs.gym_env.make_gym_env`), and the arm sections are ignored. With
    ``agent.encoder.mode: frozen`` the frozen encoder's ``camera_features`` join the observation
    (:class:`robot_rl.vision.features.CameraFeatures`)."""
    env = make_arm_env(config.env.task.name, config=config.env, robot=robot) if not config.env.gym.id \
        else _make_gym_env(config, robot)
    if config.agent.encoder.mode == "frozen":
        from robot_rl.vision.features import CameraFeatures, load_encoder

        try:
            env = CameraFeatures(env, load_encoder(config.agent.encoder.weights)[0])
        except BaseException:
            env.close()
            raise
    return env


def make_training_env(config: TrainConfig, robot: Robot | None = None) -> gym.Env:
    """The env training episodes run in: :func:`make_env`'s, with the reward of a success
    classifier when ``reward.source`` is ``classifier`` (the task then neither rewards nor ends
    an episode on the simulator's success; evaluations still report it)."""
    if config.reward_source != "classifier":
        return make_env(config, robot)
    from robot_rl.vision.reward_classifier import ClassifierReward
    from robot_rl.vision.reward_env import ClassifierRewardEnv

    task = replace(config.env.task, terminate_on_success=False)
    env = make_env(replace(config, env=replace(config.env, task=task)), robot)
    try:
        reward = ClassifierReward.load(config.reward.classifier, config.reward.threshold, config.reward.hold_steps)
        return ClassifierRewardEnv(env, reward, config.env.task.terminate_on_success)
    except BaseException:
        env.close()
        raise


def _make_gym_env(config: TrainConfig, robot: Robot | None) -> gym.Env:
    if robot is not None:
        raise ValueError(f"a robot drives this project's arm env, not the gymnasium env {config.env.gym.id!r}")
    env = make_gym_env(config.env.gym)
    try:
        capacity = config.train.replay_capacity
        if capacity < env.max_episode_steps:  # the online replay ring holds whole episodes
            raise ConfigError(f"train.replay_capacity: {capacity} steps cannot hold an episode of "
                              f"{config.env.gym.id} ({env.max_episode_steps} steps); raise it to at least "
                              f"{env.max_episode_steps}")
        if config.her.strategy != "none":
            goal_task_of(env)  # before the run's store exists: relabelling needs a goal env
    except BaseException:
        env.close()
        raise
    return env


OBSERVATION_STATISTICS_SAMPLES = 8192  # transitions the observation normalisation is fitted on


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step`` (evaluation and checkpoint schedules)."""
    return (step // every + 1) * every


def episode_seed(run_seed: int, episode: int) -> int:
    """Reset seed of a training episode: a pure function of (run seed, episode index), so a
    resumed run draws the same scenes it would have drawn without the crash."""
    return (run_seed * 1_000_003 + episode) % (2**31)


class ExplorationPolicy:
    """The training run's action source: for the first ``warmup_steps`` env steps of the run
    uniformly random actions (``uniform_warmup``; else the agent acts from the start), then the
    agent's exploration policy. A non-finite action (the learner diverged since its metrics were
    last read) raises ``diverged(what)`` instead of reaching the arm."""

    source = "policy"

    def __init__(self, agent: OffPolicyAgent, action_shape: tuple[int, ...], rng: np.random.Generator,
                 warmup_steps: int, env_steps: Callable[[], int], diverged: Callable[[str], Exception],
                 uniform_warmup: bool = True) -> None:
        self.agent, self.action_shape, self.rng = agent, action_shape, rng
        self.warmup_steps, self.env_steps, self.diverged = warmup_steps if uniform_warmup else 0, env_steps, diverged

    def reset(self) -> None:
        """The policy keeps no per-episode state."""

    def act(self, observation: Observation) -> np.ndarray:
        if self.env_steps() < self.warmup_steps:
            return self.rng.uniform(-1.0, 1.0, size=self.action_shape).astype(np.float32)
        action = self.agent.act(observation)
        if not np.all(np.isfinite(action)):  # already on the host: checking costs nothing
            raise self.diverged(f"action {action} from the learner")
        return action


class Trainer:
    def __init__(self, config: TrainConfig, seed_dir: Path, seed: int, resume: bool = False,
                 robot: Robot | None = None) -> None:
        """``robot``: a ready arm for the training episodes (default: built from the config)."""
        self.config, self.seed_dir, self.seed = config, seed_dir, seed
        self.checkpoint_path = seed_dir / "checkpoints" / "last.pt"
        store_path = seed_dir / "replay.zarr"
        if not resume and store_path.exists():
            raise RunDirError(f"{seed_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        if config.train.torch_threads > 0:
            torch.set_num_threads(config.train.torch_threads)
        self.env = make_training_env(config, robot)
        self.eval_env = make_env(config)
        # Seed before the learner exists: its initial weights come from torch's global generator,
        # which torch seeds differently in every process.
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        random.seed(seed)
        self.agent = make_agent(self.env.observation_space, self.env.action_space, config.agent)
        self.env_interface = env_interface(self.env)
        if config.init.checkpoint and not (resume and self.checkpoint_path.exists()):
            self._start_from(config.init.checkpoint)  # before the store exists or anything moves
        self.prior = self._load_prior() if config.init.replay else None
        # Demonstrations first: a dataset that does not fit must not leave a replay store behind.
        # The teleop side (interventions, human labels) first: a device that cannot open leaves no run behind.
        self.human = None
        if config.teleop.device:
            from robot_rl.training.interventions import HumanInTheLoop

            self.human = HumanInTheLoop(config, self.env, on_event=lambda event: tqdm.write(
                f"[seed {seed}] teleop: {event.kind} ({event.detail})"))
        self.demos = self._load_demos() if config.demos.paths or config.teleop.device else None
        # With a teleop device every step carries its intervention flag.
        self.store = open_recording_store(store_path, self.env, interventions=bool(config.teleop.device))
        if config.teleop.device and self.demos is not None:  # a resumed run's interventions are demonstrations again
            from robot_rl.training.interventions import add_stored_interventions

            add_stored_interventions(self.store, self.demos)
        self.data = make_replay_setup(self.agent.data_needs, self._online_replay(), self.demos, config, self.prior)
        self.counters = Counters(next_eval=config.train.eval_every, next_checkpoint=config.train.checkpoint_every)
        self.policy = self._action_source()
        self.recovery = RobotRecovery(config.train.robot_recovery_timeout, report=self._robot_event)
        self._robot_down_since: float | None = None  # when the arm broke off the first of consecutive episodes
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
        self._metrics = MetricMeans()
        if self.human is not None:
            self.human.bind(self.policy, self.store)
            tqdm.write(self.human.device.help)

    def _action_source(self) -> ExplorationPolicy | ActionRamp:
        """The exploration policy, behind fine-tuning's action ramp when ``init`` asks for one."""
        cfg, init = self.config.train, self.config.init
        policy = ExplorationPolicy(self.agent, self.env.action_space.shape, self.rng, cfg.warmup_steps,
                                   lambda: self.counters.env_steps, self._diverged,
                                   uniform_warmup=cfg.warmup_actions == "uniform")
        if not init.action_ramp_episodes or init.action_scale_start == 1.0:
            return policy
        size = int(np.prod(self.env.action_space.shape))
        gripper = getattr(self.env.unwrapped, "gripper_action_index", None)
        return ActionRamp(policy, init.action_scale_start, init.action_ramp_episodes, lambda: self.counters.episodes,
                          size, () if gripper is None else (gripper % size,))

    def _start_from(self, checkpoint: str) -> None:
        started = start_from_checkpoint(self.agent, self.env, checkpoint, self.config.init.load, make_env)
        tqdm.write(f"[seed {self.seed}] starting from {started.checkpoint} ({started.env_steps} env steps, "
                   f"{started.updates} updates): loaded {', '.join(started.loaded) or 'nothing'}"
                   + (f"; this learner has no {', '.join(started.skipped)}" if started.skipped else ""))

    # ------------------------------------------------------------------ data
    def _load_prior(self) -> ReplayBuffer:
        """A previous run's replay (``init.replay``), e.g. the simulation data of the checkpoint."""
        from robot_rl.data.compat import load_demonstrations

        return load_demonstrations([Path(self.config.init.replay)], self.env, rename=self.config.demos.rename or None,
                                   obs_keys=self.agent.input_keys)

    def _load_demos(self) -> ReplayBuffer:
        """The demonstration buffer: ``demos.paths``, plus, with a teleop device, room for every
        step the run may take (intervened steps join it and are never evicted)."""
        from robot_rl.data.compat import load_demonstrations

        paths = [Path(p) for p in self.config.demos.paths]
        room = self.config.train.total_steps if self.config.teleop.device else 0
        if not paths:
            features = features_from_spaces(self.env.observation_space, self.env.action_space)
            return ReplayBuffer(features, self.agent.input_keys, room)
        capacity = None
        if room:
            stored = 0
            for path in paths:
                with EpisodeStore.open(path, "r") as dataset:
                    stored += dataset.n_steps
            capacity = stored + room
        return load_demonstrations(paths, self.env, rename=self.config.demos.rename or None, capacity=capacity,
                                   obs_keys=self.agent.input_keys)

    def _online_replay(self) -> ReplayBuffer:
        """The RAM tier of online experience, refilled from the store on resume."""
        capacity = self.config.train.replay_capacity
        if self.store.n_episodes:
            return ReplayBuffer.from_store(self.store, capacity=capacity, obs_keys=self.agent.input_keys)
        features = features_from_spaces(self.env.observation_space, self.env.action_space)
        if INTERVENTION in self.store.features:
            features = with_interventions(features)  # the RAM tier keeps the flags too
        return ReplayBuffer(features, self.agent.input_keys, capacity)

    # ------------------------------------------------------------------ checkpoints
    def _payload(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": to_dict(self.config),
            "env_interface": self.env_interface,  # what a fine-tuning run checks its robot against
            "seed": self.seed,
            "agent": self.agent.state_dict(),
            "counters": vars(self.counters).copy(),
            "store_generation": self.store.generation,
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(),
                    "python": list(random.getstate()[1])},
            "sampler": self.data.sampler.state_dict(),
        }

    def _restore(self, payload: dict[str, Any]) -> None:
        load_agent_state(self.agent, payload, self.checkpoint_path)
        self.counters = Counters(**payload["counters"])
        self.rng.bit_generator.state = payload["rng"]["numpy"]
        torch.set_rng_state(payload["rng"]["torch"])
        random.setstate((3, tuple(payload["rng"]["python"]), None))
        state = payload.get("sampler", payload.get("replay_priorities"))  # the latter: older checkpoints
        if state:
            try:
                self.data.sampler.load_state_dict(state)
            except ValueError as exc:  # e.g. a changed replay capacity: start from uniform priorities
                log.warning("sampler state not restored (%s); starting from a fresh sampler", exc)

    def save(self) -> Path:
        """Checkpoint, after checking that no metric since the last log and no weight is NaN/inf."""
        finite, means = self._metrics.all_finite()
        if not finite:
            raise self._diverged(f"learner metrics {means}")
        if not _all_finite(self.agent.state_dict()):
            raise self._diverged("learner weights")
        self.store.flush()  # the checkpoint never refers to experience that is not committed
        return save_checkpoint(self.checkpoint_path, self._payload())

    def _diverged(self, what: str) -> TrainingDiverged:
        return TrainingDiverged(
            f"non-finite {what} at env step {self.counters.env_steps} (update {self.agent.updates}); "
            f"the last good checkpoint is {self.checkpoint_path}")

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
            if self.human is not None:
                self.human.close()  # first: a keyboard gives the terminal back before anything else is printed
            self.store.close()
            self.logger.close()
            self.env.close()
            self.eval_env.close()

    def _run_episode(self, bar: tqdm) -> None:
        counters = self.counters
        seed = episode_seed(self.seed, counters.episodes)
        human = self.human
        rollout = run_episode(self.env, self.policy if human is None else human.source, seed,
                              store=self.store if human is None else human.steps,
                              on_step=lambda info: self._after_step(bar), recovery=self.recovery)
        if rollout.robot_error is not None:  # dropped and reported; the next episode retries this seed
            self._check_robot_downtime(rollout.robot_error)
            return
        self._robot_down_since = None
        if rollout.steps == 0:  # a label button before the first step: run this scene again
            return
        total, success, label, source = rollout.total_reward, rollout.success, None, self.policy.source
        if human is not None:  # the person's steps, labels and (reward.source: human) rewards
            result = human.finish(rollout)
            total, success, label, source = result.total_reward, result.success, result.label, human.source.source
        episode = self.store.end_episode(rollout.final_obs, success, source=source, seed=seed, label=label)
        self.data.online.add_episode(episode.steps, episode.final_obs)  # online data: never a demonstration
        counters.episodes += 1
        self._recent.append((total, success))
        interventions = {}
        if human is not None:
            interventions = self._interventions(episode, label, bar)
        reported = {"success": float(success)} if rollout.success_reported else {}  # a gymnasium env may give none
        self.logger.log("episodes", counters.env_steps, {"return": total, **reported,
                                                         "length": episode.length, "episode": counters.episodes,
                                                         **interventions, **self._env_episode_log()})
        # episodes: the committed count (commit record), what a kill cannot take back; the
        # episode just ended is usually still queued for the writer.
        bar.set_postfix(episodes=self.store.n_episodes,
                        success=f"{np.mean([s for _, s in self._recent]):.2f}" if rollout.success_reported else "n/a",
                        ret=f"{np.mean([r for r, _ in self._recent]):.1f}",
                        **({"interv": f"{interventions['intervention_rate']:.2f}"} if interventions else {}),
                        refresh=False)

    def _env_episode_log(self) -> dict[str, float]:
        """Columns a wrapper of the training env adds to ``episodes.csv`` (its ``episode_log()``,
        e.g. a reward classifier's mistakes against the simulator's success)."""
        try:
            return dict(self.env.get_wrapper_attr("episode_log")())
        except AttributeError:
            return {}

    def _interventions(self, episode: Any, label: str | None, bar: tqdm) -> dict[str, float]:
        """A run with a teleop device: the episode's intervened segments join the demonstrations
        (HIL-SERL), one line on the console, and the intervention columns of ``episodes.csv``."""
        from robot_rl.training.interventions import intervened_segments

        intervened = int(np.count_nonzero(episode.steps[INTERVENTION])) if INTERVENTION in episode.steps else 0
        if self.data.demos is not None:
            for steps, final in intervened_segments(episode.steps, episode.final_obs, self.store.obs_keys):
                self.data.demos.add_episode(steps, final)
        rate = intervened / episode.length
        bar.write(f"[seed {self.seed}] episode {self.counters.episodes}: {episode.length} steps, "
                  f"{intervened} intervened ({rate:.0%}), label {label or '-'}, success {episode.success}")
        return {"intervened_steps": intervened, "intervention_rate": rate, "label": LABELS[label or "none"]}

    def _after_step(self, bar: tqdm) -> None:
        self.counters.env_steps += 1
        bar.update(1)
        if self.counters.env_steps >= self.config.train.warmup_steps and \
                self.data.sampler.ready(self.config.agent.batch_size):
            self._learn()

    def _robot_event(self, event: RobotEvent) -> None:
        """Console and ``logs/robot_events.csv``: every RobotError a rollout met."""
        if event.phase == "step":
            what = "episode dropped, waiting for the arm"
        else:
            what = f"reset attempt {event.attempt} failed, {event.waited:.1f} s since the first failed reset"
        message = (f"[seed {self.seed}] robot error at env step {self.counters.env_steps} "
                   f"({type(event.error).__name__}: {event.error}): {what}")
        log.warning(message)
        tqdm.write(message)
        self.logger.log("robot_events", self.counters.env_steps, {"episode": self.counters.episodes, **event.row()})

    def _check_robot_downtime(self, error: Exception) -> None:
        """Episodes the arm keeps breaking off count against the same recovery timeout as resets."""
        now = time.monotonic()
        if self._robot_down_since is None:
            self._robot_down_since = now
        elif now - self._robot_down_since > self.recovery.timeout:
            raise RobotUnavailableError(
                f"the robot broke off every episode for more than train.robot_recovery_timeout = "
                f"{self.recovery.timeout:g} s (last: {type(error).__name__}: {error})") from error

    def _pretrain_offline(self) -> None:
        """``demos.offline_steps`` updates on demonstrations alone (resumable), then evaluate."""
        total = self.config.demos.offline_steps
        if self.counters.offline_updates >= total:
            return
        bar = tqdm(total=total, initial=self.counters.offline_updates, desc=f"seed {self.seed} offline",
                   unit="update", disable=not self.config.train.progress, dynamic_ncols=True)
        sampler = self.data.offline_sampler
        every = self.config.train.checkpoint_every
        with bar:
            while self.counters.offline_updates < total:
                self._update(sampler)
                self.counters.offline_updates += 1
                bar.update(1)
                if self.counters.offline_updates % every == 0 or self.counters.offline_updates == total:
                    self.logger.log("offline", self.counters.offline_updates, self._take_metric_means())
                    self.save()
            self._evaluate(bar)

    def _update(self, sampler: Sampler) -> None:
        """One gradient step on a minibatch from ``sampler``, and its feedback (no host sync
        unless the sampler needs the TD errors; metrics are checked when they are read)."""
        if self.agent.needs_observation_statistics:
            # a generator of its own: fitting must not shift the run's sampling stream
            sample = sampler.sample(OBSERVATION_STATISTICS_SAMPLES, np.random.default_rng(self.seed))
            self.agent.fit_observation_statistics(sample.obs)
        batch = sampler.sample(self.config.agent.batch_size, self.rng)
        result = self.agent.update(batch)
        try:
            sampler.feedback(batch, result.td_errors)
        except NonFiniteFeedback as exc:
            raise self._diverged(f"TD errors ({exc})") from exc
        self._metrics.add(result.metrics)

    def _learn(self) -> None:
        for _ in range(self.config.agent.utd_ratio):
            self._update(self.data.sampler)
        if self.counters.env_steps % 100 == 0 and self._metrics:
            self.logger.log("updates", self.counters.env_steps,
                            self._take_metric_means() | {"updates": self.agent.updates})

    def _take_metric_means(self) -> dict[str, float]:
        """Mean of every learner metric since the last call (one device-to-host transfer), and
        start accumulating afresh; NaN/inf stops the run."""
        means = self._metrics.take()
        if not all(np.isfinite(list(means.values()))):
            raise self._diverged(f"learner metrics {means}")
        return means

    def _evaluate(self, bar: tqdm) -> dict[str, Any]:
        result = evaluate(self.eval_env, self.agent, self.config.train.eval_episodes, EVAL_SEED_OFFSET)
        # success_rate is None for an env that reports no success: the log then has no such column
        self.logger.log("eval", self.counters.env_steps,
                        {k: v for k, v in result.items() if k != "episodes" and v is not None})
        rate = result["success_rate"]
        bar.write(f"[seed {self.seed}] step {self.counters.env_steps}: eval success "
                  f"{'n/a' if rate is None else f'{rate:.2f}'}, "
                  f"return {result['return_mean']:.2f} ± {result['return_std']:.2f}")
        self.counters.next_eval = next_multiple(self.counters.env_steps, self.config.train.eval_every)
        self._last_eval, self._last_eval_step = result, self.counters.env_steps
        return result


def _all_finite(state: Any) -> bool:
    """Whether every floating-point tensor in a (nested) state dict is finite (one host sync)."""
    flags: list[torch.Tensor] = []

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                flags.append(torch.isfinite(value).all())
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(state)
    return not flags or bool(torch.stack(flags).all())


def write_run_config(path: Path, config: TrainConfig) -> None:
    """Write the run's ``config.yaml`` through ``<name>.partial``, fsync and ``os.replace``.

    Every start, resumed ones included, rewrites it, and ``--resume`` reads it back: a plain
    rewrite killed between truncating and writing would leave it empty, which reads as "all
    defaults" (a different run, silently). A kill now leaves the previous file intact."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as f:
        f.write(yaml.safe_dump(to_dict(config), sort_keys=False))
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def train(config: TrainConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train every seed of ``config.train.seeds`` under ``run_dir``; returns final evaluations."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_config(run_dir / "config.yaml", config)
    results = {}
    for seed in config.train.seeds:
        trainer = Trainer(config, run_dir / f"seed_{seed}", seed, resume=resume)
        results[seed] = trainer.run()
    from robot_rl.training.plots import plot_learning_curves

    plot_learning_curves(run_dir, run_dir / "learning_curve.png")
    return results
