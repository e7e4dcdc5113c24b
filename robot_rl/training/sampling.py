"""The data path of a run, built from what the learner declares (:class:`DataNeeds`).

The training loop asks for a :class:`ReplaySetup` once and from then on only samples, gives
feedback and adds its own episodes; it never asks which learner it runs.

* uniform learners (the SAC family, AWAC): uniform minibatches from the online replay, or, with
  demonstrations, a :class:`~robot_rl.data.MixtureSampler` of online replay and demonstrations
  at ``demos.ratio``; the offline phase samples the demonstrations alone;
* prioritised learners that pin demonstrations (DDPGfD): one prioritised buffer over the pinned
  demonstrations and the online replay; the offline phase uses the same sampler, so priorities
  and the β schedule carry on into the online phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Protocol

import numpy as np

from robot_rl.agents import DataNeeds
from robot_rl.data import MixtureSampler, PrioritizedSampler, ReplayBuffer, Sampler, UniformSampler
from robot_rl.data.prioritized import PrioritizedReplayBuffer

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


def make_replay_setup(needs: DataNeeds, online: ReplayBuffer, demos: ReplayBuffer | None,
                      config: TrainConfig) -> ReplaySetup:
    """Samplers over ``online`` (the RAM tier of the run's experience) and ``demos`` (or
    ``None``), as ``needs`` asks, with the target fields and priority settings of ``config``."""
    agent = config.agent
    targets = {"n_step": agent.n_step, "gamma": agent.gamma}
    if demos is not None and needs.prioritized != needs.demos_in_online_buffer:
        raise ValueError(f"unsupported data needs {needs} with demonstrations: demonstrations go pinned into a "
                         f"prioritised buffer or mixed into uniform minibatches")
    if needs.prioritized:
        buffer = PrioritizedReplayBuffer.from_config(online, demos, agent)
        sampler = PrioritizedSampler(buffer, **targets)
        return ReplaySetup(sampler, sampler if demos is not None else None, buffer)
    if demos is None:
        return ReplaySetup(UniformSampler(online, **targets), None, online)
    ratio = config.demos.ratio
    mixture = MixtureSampler([(online, 1.0 - ratio), (demos, ratio)], skip_empty=True,
                             names=["online replay", "demonstrations"], **targets)
    return ReplaySetup(mixture, UniformSampler(demos, **targets), online)
