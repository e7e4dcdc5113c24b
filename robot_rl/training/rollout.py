"""One rollout function for every episode an arm runs: training, evaluation and recording.

:func:`run_episode` resets the env with a seed, asks an action source for actions until the
episode ends, and (given a store) appends every step to the store's episode buffer, leaving the
commit to the caller. An action source is anything with a ``source`` name, ``reset()`` and
``act(obs) -> action | None`` (:class:`~robot_rl.data.recorder.ActionSource`): a scripted
expert, a teleop device, :class:`AgentPolicy`, or the training run's exploration policy.

A step written to a store is built in one place, :func:`transition`: the observation before the
action, the action as executed (clipped to the action space), the reward and ``terminated``.
An action that is not an array of finite real numbers of the right shape is a ``ValueError``
(:func:`~robot_rl.envs.arm_env.checked_action`); clipped steps are counted
(``Rollout.clipped_steps``), as ``info["action_clipped"]`` flags them for direct env users.

A real arm may raise a :class:`~robot_rl.robot.RobotError` (a stale state, a safety stop) from
``env.reset`` or ``env.step``. With a :class:`RobotRecovery`, :func:`run_episode` survives it:
a failed step ends the episode, nothing of it stays in the store (the in-flight episode is
discarded, so no bogus last step is ever committed) and the rollout reports the error; a failed
reset is retried with exponential backoff until the arm is back or the recovery's timeout has
passed (then :class:`RobotUnavailableError`). Every event goes to ``RobotRecovery.report``.
Without a recovery a ``RobotError`` propagates (after discarding the in-flight episode).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.data import TRANSITION_FEATURES, EpisodeStore
from robot_rl.data.recorder import ActionSource, Observation, episode_parameters
from robot_rl.envs.arm_env import checked_action
from robot_rl.robot import RobotError

EVAL_SEED_OFFSET = 10_000_000  # evaluation episodes use seeds disjoint from training episodes


class RobotUnavailableError(RuntimeError):
    """The arm did not come back (reset kept raising a RobotError) within the recovery timeout."""


@dataclass(frozen=True)
class RobotEvent:
    """One RobotError met by a rollout: in ``"step"`` (the episode was dropped) or ``"reset"``
    (attempt ``attempt`` failed, ``waited`` seconds after the first failed reset)."""

    phase: str
    error: RobotError
    attempt: int = 0
    waited: float = 0.0

    def row(self) -> dict[str, Any]:
        """A flat record for logs."""
        return {"phase": self.phase, "error": type(self.error).__name__, "message": str(self.error),
                "attempt": self.attempt, "waited_s": round(self.waited, 3)}


@dataclass(frozen=True)
class RobotRecovery:
    """How a rollout waits for an arm that raised a RobotError: ``env.reset`` is retried after
    ``first_delay`` seconds, the delay doubling up to ``max_delay``, until it succeeds or
    ``timeout`` seconds have passed since the first failure (``timeout_key``: the setting to
    name in the error)."""

    timeout: float
    report: Callable[[RobotEvent], None] = lambda event: None
    timeout_key: str = "train.robot_recovery_timeout"
    first_delay: float = 0.5
    max_delay: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)


@dataclass(frozen=True)
class Rollout:
    """What happened in one episode. ``final_obs`` is the observation after the last action;
    ``success`` the env's ``info["is_success"]`` after it (False when the env gives none:
    ``success_reported`` then says so; this project's arm always gives it, other gymnasium envs
    may not). ``robot_error``: the arm failed in the middle of the episode, which was therefore
    dropped (not in the store)."""

    seed: int | None
    steps: int
    total_reward: float
    success: bool
    final_obs: Observation
    robot_error: RobotError | None = None
    clipped_steps: int = 0  # steps whose action the source gave outside the action space
    success_reported: bool = True  # the last step's info had "is_success"


class AgentPolicy:
    """A learner's policy as an action source (deterministic by default: evaluation)."""

    source = "policy"

    def __init__(self, agent: Any, deterministic: bool = True) -> None:
        self.agent, self.deterministic = agent, deterministic

    def reset(self) -> None:
        """The policy keeps no per-episode state."""

    def act(self, observation: Observation) -> np.ndarray:
        return self.agent.act(observation, deterministic=self.deterministic)


def transition(obs: Observation, action: np.ndarray, reward: float, terminated: bool) -> dict[str, Any]:
    """The step written to a store: the observation before ``action``, then the transition
    features (:data:`~robot_rl.data.TRANSITION_FEATURES`: action, reward, terminated)."""
    return {**obs, **dict(zip(TRANSITION_FEATURES, (action, reward, terminated), strict=True))}


def reset_env(env: Any, seed: int | None, recovery: RobotRecovery | None = None) -> tuple[Observation, dict]:
    """``env.reset(seed=seed)``, retried as ``recovery`` says while the arm raises a RobotError."""
    if recovery is None:
        return env.reset(seed=seed)
    started, delay, attempt = recovery.clock(), recovery.first_delay, 0
    while True:
        try:
            return env.reset(seed=seed)
        except RobotError as exc:
            attempt += 1
            waited = recovery.clock() - started
            recovery.report(RobotEvent("reset", exc, attempt, waited))
            if waited >= recovery.timeout:
                raise RobotUnavailableError(
                    f"the robot did not come back within {recovery.timeout_key} = {recovery.timeout:g} s "
                    f"({attempt} reset attempts; last: {type(exc).__name__}: {exc})") from exc
            recovery.sleep(min(delay, recovery.timeout - waited))
            delay = min(2.0 * delay, recovery.max_delay)


def run_episode(env: Any, source: ActionSource, seed: int | None, *, store: EpisodeStore | None = None,
                on_step: Callable[[dict[str, Any]], None] | None = None,
                on_reset: Callable[[dict[str, Any]], None] | None = None,
                recovery: RobotRecovery | None = None) -> Rollout:
    """Run one episode of ``source`` in ``env`` from ``reset(seed=seed)``.

    The episode ends when the env terminates or truncates it, or when ``source.act`` returns
    ``None``. ``on_reset(info)`` runs after the reset. Each step goes to ``store.append_step``
    (if given; the caller commits with ``store.end_episode`` or drops with
    ``store.discard_episode``), then ``on_step(info)`` runs with the step's info (learning,
    rendering). On any exception the in-flight episode is discarded from the store.
    """
    obs, info = reset_env(env, seed, recovery)
    recorded = episode_parameters(env) if store is not None else {}  # e.g. domain-randomisation draws
    if on_reset is not None:
        on_reset(info)
    source.reset()
    low, high = env.action_space.low, env.action_space.high
    steps, total, clipped = 0, 0.0, 0
    try:
        while True:
            requested = source.act(obs)
            if requested is None:
                break
            requested = checked_action(requested, env.action_space, steps)
            within = np.clip(requested, low, high)
            clipped += bool(np.any(within != requested))
            action = within.astype(np.float32)
            try:
                next_obs, reward, terminated, truncated, info = env.step(action)
            except RobotError as exc:
                if recovery is None:
                    raise
                if store is not None:
                    store.discard_episode()  # never commit a partial episode with a bogus last step
                recovery.report(RobotEvent("step", exc))
                return Rollout(seed, steps, total, False, obs, robot_error=exc, clipped_steps=clipped)
            if store is not None:
                store.append_step({**transition(obs, action, reward, terminated), **recorded})
            obs, total, steps = next_obs, total + float(reward), steps + 1
            if on_step is not None:
                on_step(info)
            if terminated or truncated:
                break
    except BaseException:
        if store is not None:
            store.discard_episode()  # never glue a broken episode's steps onto the next one
        raise
    return Rollout(seed, steps, total, bool(info.get("is_success", False)), obs, clipped_steps=clipped,
                   success_reported="is_success" in info)


def episode_summary(returns: list[float], successes: list[bool], success_reported: bool = True) -> dict[str, Any]:
    """Success rate, mean and std of the return, and the number of episodes (the eval JSON).
    ``success_rate`` is None when the env reports no success (``success_reported`` False): a
    gymnasium env without ``info["is_success"]`` is judged by its return alone."""
    rate = float(np.mean(successes)) if success_reported else None
    return {"success_rate": rate, "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)), "episodes": len(returns)}


def evaluate(env: Any, agent: Any, episodes: int, seed: int = EVAL_SEED_OFFSET,
             recovery: RobotRecovery | None = None) -> dict[str, Any]:
    """Run ``episodes`` deterministic-policy episodes with seeds ``seed, seed+1, ...``; an
    episode the arm broke off (see :class:`RobotRecovery`) is run again with the same seed."""
    policy, returns, successes, reported = AgentPolicy(agent), [], [], True
    while len(returns) < episodes:
        rollout = run_episode(env, policy, seed + len(returns), recovery=recovery)
        if rollout.robot_error is None:
            returns.append(rollout.total_reward)
            successes.append(rollout.success)
            reported = reported and rollout.success_reported
    return episode_summary(returns, successes, reported)
