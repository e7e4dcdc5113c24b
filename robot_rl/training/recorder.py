"""Record episodes of an action source (scripted expert, teleoperation, policy) into a store.

:class:`EpisodeRecorder` runs an :class:`~robot_rl.data.recorder.ActionSource` in an env with
:func:`~robot_rl.training.rollout.run_episode` (the rollout training and evaluation use too)
and writes every episode to an :class:`~robot_rl.data.EpisodeStore`, which makes recording
crash-safe (a crash loses at most the episode in flight) and lets a recording append to an
existing dataset::

    env = make_arm_env("reach")
    with open_recording_store("demos.zarr", env) as store:
        EpisodeRecorder(env, store, ScriptedSource(env)).record(episodes=20)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_rl.data import SOURCES, EpisodeStore
from robot_rl.data.compat import check_spec, env_identity
from robot_rl.data.recorder import ActionSource
from robot_rl.training.rollout import RobotRecovery, run_episode


@dataclass(frozen=True)
class EpisodeOutcome:
    """What happened in one recorded episode."""

    seed: int
    steps: int
    success: bool  # the env's ``is_success`` after the last step
    total_reward: float
    kept: bool  # queued for the store (False: dropped by ``successful_only``, no steps, or the arm broke it off)
    clipped_steps: int = 0  # steps whose action was outside the action space (and was clipped)
    # A source with label buttons (teleop): "success" / "failure" (stored as the episode's label and
    # success), "reset" (dropped, the scene is run again) or None (the episode ended without a label).
    label: str | None = None


@dataclass(frozen=True)
class RecordingSummary:
    episodes_run: int
    episodes_recorded: int  # committed to the store by this recording (from its commit record)
    successes: int  # among the episodes run
    first_seed: int
    clipped_steps: int = 0  # steps whose action the source gave outside the action space (clipped)

    def to_json(self) -> dict[str, int]:
        return {"episodes_run": self.episodes_run, "episodes_recorded": self.episodes_recorded,
                "successes": self.successes, "first_seed": self.first_seed, "clipped_steps": self.clipped_steps}


class EpisodeRecorder:
    """Runs an :class:`ActionSource` in ``env`` and appends its episodes to ``store``.

    Each episode is reset with its own seed (stored with it), its steps are the observation
    before each action, the action as executed (clipped to the action space), reward and
    ``terminated`` (:func:`~robot_rl.training.rollout.transition`); the observation after the
    last action is its final observation, and its success is the env's ``info["is_success"]``
    after the last step. ``successful_only`` drops failed episodes instead of recording them
    with ``success=False``. ``recovery``: how to wait for a real arm that raises a RobotError
    (an episode it breaks off is dropped); without one the error propagates.

    A source with label buttons (it has an ``outcome``: a
    :class:`~robot_rl.teleop.source.TeleopActionSource`) labels its episodes: *success* or
    *failure* ends the episode and is stored as its label and its success; *reset* drops the
    episode and runs the same scene again (so does a label before the first step); an episode
    that ends without a label (it timed out) keeps the env's success and the label ``none``.
    ``human_reward`` (``reward.source: human``): rewards come from the labels too (see
    :mod:`robot_rl.training.interventions`).
    """

    def __init__(self, env: Any, store: EpisodeStore, source: ActionSource, successful_only: bool = False,
                 recovery: RobotRecovery | None = None, human_reward: bool = False) -> None:
        if source.source not in SOURCES:
            raise ValueError(f"action source name {source.source!r} is not one of {sorted(SOURCES)}")
        check_spec(store, env)
        self.env = env
        self.store = store
        self.source = source
        self.successful_only = successful_only
        self.recovery = recovery
        self.labelled = hasattr(source, "outcome")  # a source with label buttons (teleoperation)
        self.human_reward = human_reward
        self.task = env_identity(env)[0]
        # Tallies of the current record() call (see summary()).
        self._first_seed = self._committed_before = self._run = self._successes = self._clipped = 0

    def record_episode(self, seed: int) -> EpisodeOutcome:
        """Run one episode from ``env.reset(seed=seed)`` and queue it for the store (unless dropped)."""
        if self.labelled:
            return self._record_labelled(seed)
        rollout = run_episode(self.env, self.source, seed, store=self.store, recovery=self.recovery)
        kept = (rollout.robot_error is None and rollout.steps > 0
                and (rollout.success or not self.successful_only))
        if kept:
            self.store.end_episode(rollout.final_obs, rollout.success, source=self.source.source, seed=seed,
                                   task=self.task)
        else:
            self.store.discard_episode()
        return EpisodeOutcome(seed, rollout.steps, rollout.success, rollout.total_reward, kept, rollout.clipped_steps)

    def _record_labelled(self, seed: int) -> EpisodeOutcome:
        """An episode of a source with label buttons (see the class docstring)."""
        from robot_rl.training.interventions import EpisodeSteps, episode_result

        steps = EpisodeSteps(self.store, human_reward=self.human_reward)
        rollout = run_episode(self.env, self.source, seed, store=steps, recovery=self.recovery)
        outcome = getattr(self.source, "outcome", None)
        if rollout.robot_error is not None or outcome == "reset" or rollout.steps == 0:
            steps.discard_episode()
            label = "reset" if rollout.robot_error is None else None
            return EpisodeOutcome(seed, rollout.steps, False, rollout.total_reward, False, rollout.clipped_steps, label)
        steps.finish(outcome)
        result = episode_result(rollout, outcome, self.human_reward)
        kept = result.success or not self.successful_only
        if kept:
            self.store.end_episode(rollout.final_obs, result.success, source=self.source.source, seed=seed,
                                   task=self.task, label=result.label)
        else:
            self.store.discard_episode()
        return EpisodeOutcome(seed, rollout.steps, result.success, result.total_reward, kept, rollout.clipped_steps,
                              result.label)

    def record(self, episodes: int, first_seed: int | None = None,
               progress: Callable[[EpisodeOutcome], None] | None = None) -> RecordingSummary:
        """Run ``episodes`` episodes with seeds ``first_seed, first_seed + 1, ...`` and wait
        until every kept one is committed (an episode a person reset does not count: its scene is
        run again).

        ``first_seed`` defaults to one past the largest seed already in the store (0 for a new
        store), so appending to a dataset records new scenes. ``progress`` is called after
        every episode, when it has been queued; what counts as *recorded* is what the store has
        committed (:meth:`~robot_rl.data.EpisodeStore.add_commit_listener` reports each commit).
        If the recording is interrupted, :meth:`summary` tells what it did, once the store is
        closed (which commits the queued episodes).
        """
        self._first_seed = self.next_seed() if first_seed is None else first_seed
        self._committed_before = self.store.n_episodes
        self._run = self._successes = self._clipped = 0
        seed = self._first_seed
        while self._run < episodes:
            outcome = self.record_episode(seed)
            if outcome.label != "reset":  # reset: the operator asked for this scene again
                self._run += 1
                self._successes += outcome.success
                self._clipped += outcome.clipped_steps
                seed += 1
            if progress is not None:
                progress(outcome)
        self.store.flush()
        return self.summary()

    def next_seed(self) -> int:
        """One past the largest seed in the store (0 for an empty store)."""
        seeds = self.store.episodes["seed"]
        return int(seeds.max()) + 1 if len(seeds) else 0

    def summary(self) -> RecordingSummary:
        """What the last :meth:`record` call has done so far. ``episodes_recorded`` comes from the
        store's commit record, never from what was merely queued."""
        return RecordingSummary(self._run, self.store.n_episodes - self._committed_before, self._successes,
                                self._first_seed, self._clipped)
