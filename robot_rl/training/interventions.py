"""Human in the loop: a person (or the ``virtual`` operator) takes over from the learning policy,
and labels episodes with the success / failure buttons.

The pieces, used by the training loop (``robot-rl train --teleop DEVICE``, through
:class:`HumanInTheLoop`, which also refills the demonstrations of a resumed run with
:func:`add_stored_interventions`) and by ``robot-rl record --source teleop``:

* :class:`InterventionSource`: the per-step action source of a run with a teleop device. Each
  step the policy proposes an action; the device (through
  :class:`~robot_rl.teleop.source.TeleopActionSource`, i.e. its
  :class:`~robot_rl.teleop.safety.TeleopSafety` filter) says whether the person is driving
  (deadman / intervene held, input valid). If so, the executed action is the person's and the
  step is flagged ``intervention``; on release the policy resumes. The person's actions then pass
  ``env.step`` exactly like the policy's (the env's limits and, over ROS 2, the bridge's safety
  supervisor). If the device fails (silence, disconnect, NaN) *while* the person drives, the
  arm holds (zero motion, gripper kept) until the device is back, instead of jumping to what
  the policy wants; such hold steps are not flagged (no person chose them).
* :class:`EpisodeSteps`: sits between :func:`~robot_rl.training.rollout.run_episode` and the
  episode store. It adds each step's ``intervention`` flag (when the store has the feature),
  and, because a label button is only seen at the poll *after* the last step, it keeps the
  newest step back until the next one arrives, so that :meth:`EpisodeSteps.finish` can rewrite
  the last step when a label ends the episode.
* :func:`intervened_segments`: the runs of consecutive intervened steps of an episode, each as a
  short episode of its own (its final observation is the one after its last step), which is how
  intervened transitions also go into the demonstration buffer (HIL-SERL).

Rewards (``reward.source``): ``env`` keeps the env's rewards and terminations, and a label only
ends the episode (a truncation). ``human`` makes the person the reward: every step gets 0, the
last step of an episode ended with *success* gets 1 and is terminal, one ended with *failure*
keeps 0 and is terminal, and an episode that times out unlabelled is all zeros and not terminal
(a truncation). An episode's stored success is its label when a person gave one, whatever the
reward source; unlabelled, the env's (with ``human`` rewards: False). ``auto`` (the default) is
``human`` on a real arm (robot kind ``ros2`` with a teleop device: nothing else there says
"success") and ``env`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_rl.data.recorder import ActionSource, Observation
from robot_rl.data.schema import INTERVENTION
from robot_rl.teleop.safety import FAULTS

LABELS = ("success", "failure")


class InterventionSource:
    """The policy, with a person who may take over at any step (see the module docstring).

    ``policy``: the run's action source (the exploration policy); ``teleop``: a
    :class:`~robot_rl.teleop.source.TeleopActionSource`. After each ``act``,
    :attr:`last_intervened` tells whether the person drove that step; :attr:`flags` holds the
    episode's flags so far, :attr:`outcome` the label button that ended it (``success``,
    ``failure``, ``reset``) or None, and :attr:`source` is ``intervention`` once any step of the
    episode was the person's, else the policy's source name.
    """

    def __init__(self, policy: ActionSource, teleop: Any) -> None:
        self.policy, self.teleop = policy, teleop
        self.source = policy.source
        self.flags: list[bool] = []
        self.outcome: str | None = None
        self._person_drove = False  # the person drove the last step: a device fault now holds the arm

    @property
    def last_intervened(self) -> bool:
        return bool(self.flags) and self.flags[-1]

    @property
    def intervened_steps(self) -> int:
        return int(sum(self.flags))

    def reset(self) -> None:
        self.policy.reset()
        self.teleop.reset()
        self.source = self.policy.source
        self.flags = []
        self.outcome = None
        self._person_drove = False

    def act(self, observation: Observation) -> np.ndarray | None:
        proposed = self.policy.act(observation)
        action = self.teleop.act(observation, proposed=proposed)
        if action is None:  # a label button ended the episode
            self.outcome = self.teleop.outcome
            return None
        safe = self.teleop.last
        if safe.engaged:
            self._person_drove = True
            self.flags.append(True)
            self.source = "intervention"
            return action
        self.flags.append(False)
        if self._person_drove and safe.hold in FAULTS:
            return action  # the device failed under the person's hand: hold until it is back
        self._person_drove = False
        gripper = float(np.asarray(proposed).reshape(-1)[-1])
        self.teleop.safety.follow(gripper)  # a takeover starts from the policy's gripper command
        return proposed


class EpisodeSteps:
    """What :func:`~robot_rl.training.rollout.run_episode` writes, on its way to ``store`` (see the
    module docstring). ``flags``: an object with ``last_intervened`` (an
    :class:`InterventionSource`), or None for no flags; ``human_reward``: ``reward.source`` is
    ``human``. Call :meth:`finish` when the episode ended (before ``store.end_episode``), or
    nothing when it broke off (``run_episode`` has discarded it through :meth:`discard_episode`)."""

    def __init__(self, store: Any, flags: Any = None, human_reward: bool = False) -> None:
        self.store = store
        self.flags = flags if flags is not None and INTERVENTION in store.features else None
        self.human_reward = human_reward
        self._held: dict[str, Any] | None = None

    def append_step(self, step: Mapping[str, Any]) -> None:
        step = dict(step)
        if self.flags is not None:
            step[INTERVENTION] = self.flags.last_intervened
        if self.human_reward:
            step["reward"], step["terminated"] = np.float32(0.0), False
        if self._held is not None:
            self.store.append_step(self._held)
        self._held = step

    def discard_episode(self) -> None:
        self._held = None
        self.store.discard_episode()

    def finish(self, label: str | None) -> None:
        """Write the held last step, rewritten for ``label`` (``success`` / ``failure`` ends the
        episode: with human rewards the step is terminal and its reward 1 or 0)."""
        held, self._held = self._held, None
        if held is None:
            return
        if self.human_reward and label in LABELS:
            held["reward"], held["terminated"] = np.float32(1.0 if label == "success" else 0.0), True
        self.store.append_step(held)


@dataclass(frozen=True)
class EpisodeResult:
    """An episode's success, return and label as stored (after :class:`EpisodeSteps`)."""

    success: bool
    total_reward: float
    label: str | None  # success / failure if a person said so, else None


def episode_result(rollout: Any, outcome: str | None, human_reward: bool) -> EpisodeResult:
    """Success and return of ``rollout`` given the label button that ended it (``outcome``).
    A label is the episode's success whatever the reward source (a person said so); without one
    it is the env's (with human rewards: False). The return is the label's with human rewards,
    else the env's."""
    label = outcome if outcome in LABELS else None
    if human_reward:
        return EpisodeResult(label == "success", 1.0 if label == "success" else 0.0, label)
    success = bool(rollout.success) if label is None else label == "success"
    return EpisodeResult(success, float(rollout.total_reward), label)


def intervened_segments(steps: Mapping[str, np.ndarray], final_obs: Mapping[str, np.ndarray],
                        obs_keys: tuple[str, ...]) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """``(steps, final_obs)`` of every run of consecutive intervened steps of an episode (its
    ``steps`` must hold the ``intervention`` flags). A run that stops before the episode's end
    ends with the observation of the step after it and is not terminal there (its last step's
    ``terminated`` is the stored one, False), so n-step targets bootstrap from where the person
    let go."""
    flags = np.asarray(steps[INTERVENTION], dtype=bool)
    if not flags.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    segments = []
    for start, stop in zip(edges[::2], edges[1::2]):
        part = {name: np.asarray(values[start:stop]) for name, values in steps.items()}
        final = ({key: np.asarray(final_obs[key]) for key in obs_keys} if stop == len(flags)
                 else {key: np.asarray(steps[key][stop]) for key in obs_keys})
        segments.append((part, final))
    return segments


class HumanInTheLoop:
    """The teleop side of a training run with ``teleop.device`` set: the device (made first, so a
    device that cannot open leaves no run behind), then, once :meth:`bind` gives it the run's
    policy and store, the :class:`InterventionSource` and the :class:`EpisodeSteps` between the
    rollout and the store. A device on ROS 2 topics reaches them the way the env reaches the arm
    (``env.robot.ros2.transport``) unless ``teleop.transport`` is set. The caller closes it
    (:meth:`close`: e.g. restores the terminal of a keyboard)."""

    def __init__(self, config: Any, env: Any, on_event: Callable[[Any], None] | None = None) -> None:
        from dataclasses import replace

        from robot_rl.envs.config import TransportConfig
        from robot_rl.teleop import TeleopActionSource, make_teleop_device

        teleop_config = config.teleop
        if teleop_config.transport == TransportConfig():
            teleop_config = replace(teleop_config, transport=env.unwrapped.config.robot.ros2.transport)
        self.device = make_teleop_device(teleop_config)
        try:
            self.teleop = TeleopActionSource(self.device, teleop_config, env, on_event=on_event)
        except BaseException:
            self.device.close()
            raise
        self.human_reward = config.reward_source == "human"
        self.source: InterventionSource | None = None
        self.steps: EpisodeSteps | None = None

    def bind(self, policy: ActionSource, store: Any) -> None:
        """Wrap the run's ``policy`` and write through to ``store``."""
        self.source = InterventionSource(policy, self.teleop)
        self.steps = EpisodeSteps(store, self.source, self.human_reward)

    def finish(self, rollout: Any) -> EpisodeResult:
        """The episode ended: write its held last step and say what is to be stored of it."""
        outcome = self.source.outcome
        self.steps.finish(outcome)
        return episode_result(rollout, outcome, self.human_reward)

    def close(self) -> None:
        self.device.close()


def add_stored_interventions(store: Any, demos: Any) -> int:
    """Put the intervened segments of every committed episode of ``store`` (a resumed run's
    replay) into ``demos`` (an :class:`~robot_rl.training.sampling.EpisodeSink`); returns the
    number of intervened steps added."""
    from robot_rl.data.schema import SOURCES

    added = 0
    if INTERVENTION not in store.features:
        return added
    for index in np.flatnonzero(store.episodes["source"] == SOURCES["intervention"]).tolist():
        episode = store.read_episode(index)
        for steps, final in intervened_segments(episode.steps, episode.final_obs, store.obs_keys):
            demos.add_episode(steps, final)
            added += len(steps["action"])
    return added
