"""The data path of a run, built from what the learner declares (:class:`DataNeeds`).

The training loop asks for a :class:`ReplaySetup` once and from then on only samples, gives
feedback and adds its own episodes; it never asks which learner it runs.

* uniform learners (the SAC family, AWAC): uniform minibatches from the online replay, or, with
  demonstrations, a :class:`~robot_rl.data.MixtureSampler` of online replay and demonstrations
  at ``demos.ratio``; the offline phase samples the demonstrations alone;
* prioritised learners that pin demonstrations (DDPGfD): one prioritised buffer over the pinned
  demonstrations and the online replay; the offline phase uses the same sampler, so priorities
  and the β schedule carry on into the online phase.

A fine-tuning run (``init.replay``, :mod:`robot_rl.training.finetune`) may add a third uniform
source, the replay of the run it starts from (e.g. its simulation data), at ``init.replay_ratio``
of every minibatch; the online replay gets what the demonstrations and that prior data leave.

With ``her.strategy`` set (goal tasks), every uniform source, online replay and demonstrations
alike, is a :class:`~robot_rl.data.HindsightSampler` that relabels ``her.ratio`` of its rows with
goals its own episodes achieved; the reward comes from the run's task (pure numpy, the same
function as the env's reward), or, for a gymnasium goal env (``env.gym.id``), from the env's own
vectorised ``compute_reward`` (:class:`~robot_rl.envs.gym_env.GymGoalTask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Protocol

import numpy as np

from robot_rl.agents import DataNeeds
from robot_rl.config import ConfigError
from robot_rl.data import HindsightSampler, MixtureSampler, PrioritizedSampler, ReplayBuffer, Sampler, UniformSampler
from robot_rl.data.prioritized import PrioritizedReplayBuffer
from robot_rl.envs.gym_env import gym_goal_task
from robot_rl.envs.tasks import make_task

if TYPE_CHECKING:
    from robot_rl.training.config import TrainConfig


class EpisodeSink(Protocol):
    """Where the run's own episodes go (a replay buffer, or the prioritised buffer that wraps it)."""

    def add_episode(self, steps: Mapping[str, np.ndarray], final_obs: Mapping[str, np.ndarray]) -> None: ...


@dataclass(frozen=True)
class ReplaySetup:
    sampler: Sampler  # minibatches while interacting
    offline_sampler: Sampler | None  # minibatches of the offline phase; None without demonstrations
    online: EpisodeSink  # add the run's own episodes here (the sampler sees them)
    demos: EpisodeSink | None = None  # add demonstrations made during the run (interventions); None without demos


class _PinnedDemos:
    """The demonstration side of a prioritised buffer as an :class:`EpisodeSink` (pinned, never evicted)."""

    def __init__(self, buffer: PrioritizedReplayBuffer) -> None:
        self.buffer = buffer

    def add_episode(self, steps: Mapping[str, np.ndarray], final_obs: Mapping[str, np.ndarray]) -> None:
        self.buffer.add_episode(steps, final_obs, is_demo=True)


def make_replay_setup(needs: DataNeeds, online: ReplayBuffer, demos: ReplayBuffer | None,
                      config: TrainConfig, prior: ReplayBuffer | None = None) -> ReplaySetup:
    """Samplers over ``online`` (the RAM tier of the run's experience), ``demos`` and ``prior``
    (a previous run's replay, ``init.replay``; either may be ``None``), as ``needs`` asks, with the
    target fields and priority settings of ``config``."""
    agent = config.agent
    if prior is not None and needs.prioritized:
        raise ConfigError(f"init.replay: mixing a previous run's replay needs uniform sampling; the {agent.algo!r} "
                          f"learner draws by priority (leave init.replay empty)")
    targets = {"n_step": agent.n_step, "gamma": agent.gamma}
    if demos is not None and needs.prioritized != needs.demos_in_online_buffer:
        raise ValueError(f"unsupported data needs {needs} with demonstrations: demonstrations go pinned into a "
                         f"prioritised buffer or mixed into uniform minibatches")
    her = config.her
    if needs.prioritized:
        if her.strategy != "none":
            raise ConfigError(f"her.strategy: {her.strategy!r} needs uniform sampling; the {agent.algo!r} learner "
                              f"draws by priority (set her.strategy: none)")
        buffer = PrioritizedReplayBuffer.from_config(online, demos, agent)
        sampler = PrioritizedSampler(buffer, **targets)
        return ReplaySetup(sampler, sampler if demos is not None else None, buffer,
                           None if demos is None else _PinnedDemos(buffer))
    uniform = _uniform_sampler_factory(config)
    if demos is None and prior is None:
        return ReplaySetup(uniform(online), None, online)
    sources = [(uniform(demos), config.demos.ratio, "demonstrations")] if demos is not None else []
    if prior is not None:
        sources.append((uniform(prior), config.init.replay_ratio, "prior replay"))
    online_share = 1.0 - sum(share for _, share, _ in sources)
    if online_share <= 0:
        raise ConfigError(f"init.replay_ratio: {config.init.replay_ratio} + demos.ratio {config.demos.ratio} leave no "
                          f"room for the run's own experience; keep their sum below 1")
    sources.insert(0, (uniform(online), online_share, "online replay"))
    mixture = MixtureSampler([(sampler, share) for sampler, share, _ in sources], skip_empty=True,
                             names=[name for _, _, name in sources])
    return ReplaySetup(mixture, None if demos is None else uniform(demos), online, demos)


def _uniform_sampler_factory(config: TrainConfig) -> Callable[[ReplayBuffer], Sampler]:
    """buffer → its uniform sampler: hindsight-relabelled when ``her.strategy`` is set."""
    agent, her = config.agent, config.her
    targets = {"n_step": agent.n_step, "gamma": agent.gamma}
    if her.strategy == "none":
        return lambda buffer: UniformSampler(buffer, **targets)
    if config.env.gym.id:  # a gymnasium goal env: its own vectorised compute_reward (else a ConfigError)
        goal_task = gym_goal_task(config.env.gym)
        return lambda buffer: HindsightSampler(buffer, goal_task, her.strategy, her.ratio, **targets)
    task = make_task(config.env.task)
    if not task.is_goal_task:
        raise ConfigError(f"her.strategy: task {task.name!r} has no goal to relabel (goal tasks: reach, push, pick, "
                          f"peg); set her.strategy: none")
    return lambda buffer: HindsightSampler(buffer, task, her.strategy, her.ratio, **targets)
