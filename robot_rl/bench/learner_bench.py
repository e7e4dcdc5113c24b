"""Learner throughput: gradient updates per second, ours side by side with Stable-Baselines3.

Cases (256×256 MLPs, batch 256, one critic + actor + temperature step per update, minibatch
sampling from the RAM replay tier included on both sides):

* ``sac_n2``: our SAC, 2 critics (clipped double-Q);
* ``redq_n10_m2``: our SAC with a 10-critic ensemble, target min over a random pair, actor
  updated at every critic step like the N=2 case (the like-for-like cost of the ensemble);
* ``redq_n10_m2_schedule``: the same with REDQ's own schedule from ``configs/agents/redq.yaml``
  (one actor step per 20 critic steps), i.e. the cost per update a REDQ run actually pays;
* ``sac_n2_item_per_metric``: ``sac_n2`` reading every metric with ``.item()`` after every
  update (the loop before metrics stayed on the device: five host syncs per update);
* ``sb3_sac``: Stable-Baselines3 SAC (``model.train(gradient_steps=…)``), when installed.

Our cases keep the metrics on the device and read them as the training loop does: summed there
(:class:`~robot_rl.training.metrics.MetricMeans`) and transferred once per ``LOG_EVERY`` updates.
``host_sync_speedup`` (``sac_n2`` / ``sac_n2_item_per_metric``) is what that saves; on a CPU a
"transfer" is a read of memory the host already has, so the figure stays near 1 there, and the
saving shows on a GPU, where every ``.item()`` waits for the queued kernels to finish.

Cases run in turn inside every repeat; ratios are computed per repeat and summarised by their
median. Goals on a 2-core CPU: ``sac_n2`` ≥ 3× SB3's updates/s; REDQ costs ≤ 2.5× ``sac_n2`` per
update. Both learners are compute-bound here (≈0.6 GFLOP per update at batch 256): our edge
over SB3 comes from skipping work (no critic weight gradients in the actor step, only the M drawn
target critics evaluated), not from faster arithmetic. ``torch.compile`` was measured slower on
CPU (inductor, torch 2.13) and is therefore not offered.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces

from robot_rl.agents import AgentConfig, make_agent
from robot_rl.bench.env_bench import machine_info
from robot_rl.data import FeatureSpec, ReplayBuffer
from robot_rl.training.metrics import MetricMeans

OBS_DIM, ACTION_DIM = 27, 4  # ArmReach-v0's flattened state and ee_delta action
BATCH, HIDDEN, FILL = 256, (256, 256), 20_000
LOG_EVERY = 100  # updates between metric reads (the loop logs every 100 env steps at UTD 1)


def _replay(rng: np.random.Generator, device: str) -> ReplayBuffer:
    features = {"state": FeatureSpec("float32", (OBS_DIM,)), "action": FeatureSpec("float32", (ACTION_DIM,)),
                "reward": FeatureSpec("float32", ()), "terminated": FeatureSpec("bool", ())}
    buffer = ReplayBuffer(features, ["state"], FILL, device=device)
    for _ in range(FILL // 100):
        steps = {"state": rng.standard_normal((100, OBS_DIM), dtype=np.float32),
                 "action": rng.uniform(-1, 1, (100, ACTION_DIM)).astype(np.float32),
                 "reward": rng.standard_normal(100, dtype=np.float32), "terminated": np.zeros(100, bool)}
        buffer.add_episode(steps, {"state": rng.standard_normal(OBS_DIM, dtype=np.float32)})
    return buffer


def ours(ensemble_size: int, subset_size: int, device: str, actor_update_interval: int = 1,
         item_per_metric: bool = False) -> Callable[[int], None]:
    """Updates of our SAC; metrics read once per ``LOG_EVERY`` updates, or (``item_per_metric``)
    each with ``.item()`` after every update."""
    obs_space = spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)})
    action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
    config = AgentConfig(ensemble_size=ensemble_size, subset_size=subset_size, hidden_sizes=HIDDEN,
                         batch_size=BATCH, device=device, actor_update_interval=actor_update_interval)
    agent = make_agent(obs_space, action_space, config)
    rng = np.random.default_rng(0)
    replay = _replay(rng, device)

    metrics, pending = MetricMeans(), 0

    def run(updates: int) -> None:
        nonlocal pending
        for _ in range(updates):
            result = agent.update(replay.sample(BATCH, rng))
            if item_per_metric:
                for value in result.metrics.values():
                    value.item()
                continue
            metrics.add(result.metrics)
            pending += 1
            if pending == LOG_EVERY:
                metrics.take()
                pending = 0
    return run


def sb3(device: str) -> Callable[[int], None] | None:
    try:
        import gymnasium as gym
        from stable_baselines3 import SAC as SB3SAC
        from stable_baselines3.common.logger import configure
    except ImportError:
        return None

    class ShapeOnlyEnv(gym.Env):  # SB3 only reads the spaces; training here never steps it
        observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(OBS_DIM, np.float32), {}

        def step(self, action):
            return np.zeros(OBS_DIM, np.float32), 0.0, False, False, {}

    model = SB3SAC("MlpPolicy", ShapeOnlyEnv(), batch_size=BATCH, buffer_size=FILL, learning_starts=0,
                   policy_kwargs={"net_arch": list(HIDDEN)}, device=device, seed=0)
    model.set_logger(configure(None, []))
    rng = np.random.default_rng(0)
    for _ in range(FILL):
        model.replay_buffer.add(rng.standard_normal((1, OBS_DIM)), rng.standard_normal((1, OBS_DIM)),
                                rng.uniform(-1, 1, (1, ACTION_DIM)), rng.standard_normal(1), np.zeros(1), [{}])

    def run(updates: int) -> None:
        model.train(gradient_steps=updates, batch_size=BATCH)
    return run


def _rate(run: Callable[[int], None], seconds: float) -> float:
    run(5)  # warm-up (allocator, first-call overheads)
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(10)
        updates += 10
    return updates / (time.perf_counter() - start)


def run_learner_benchmark(repeats: int = 5, seconds: float = 3.0, device: str = "cpu",
                          threads: int | None = None) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    cases: dict[str, Callable[[int], None]] = {
        "sac_n2": ours(2, 2, device),
        "sac_n2_item_per_metric": ours(2, 2, device, item_per_metric=True),
        "redq_n10_m2": ours(10, 2, device),
        "redq_n10_m2_schedule": ours(10, 2, device, actor_update_interval=20),
    }
    peer = sb3(device)
    if peer is not None:
        cases["sb3_sac"] = peer
    raw: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            raw[name].append(_rate(run, seconds))
    median = {name: statistics.median(values) for name, values in raw.items()}
    ratios: dict[str, Any] = {
        "redq_cost_vs_sac_n2": statistics.median(a / b for a, b in zip(raw["sac_n2"], raw["redq_n10_m2"])),
        "redq_schedule_cost_vs_sac_n2": statistics.median(
            a / b for a, b in zip(raw["sac_n2"], raw["redq_n10_m2_schedule"])),
        "redq_cost_goal_max": 2.5,
        "host_sync_speedup": statistics.median(
            a / b for a, b in zip(raw["sac_n2"], raw["sac_n2_item_per_metric"])),
        "host_sync_note": ("sac_n2 (metrics summed on the device, one transfer per "
                           f"{LOG_EVERY} updates) over sac_n2_item_per_metric (.item() per metric per "
                           "update); near 1 on a CPU, where nothing waits for a device queue"),
    }
    if "sb3_sac" in raw:
        ratios["sac_n2_vs_sb3"] = statistics.median(a / b for a, b in zip(raw["sac_n2"], raw["sb3_sac"]))
        ratios["sac_n2_vs_sb3_goal_min"] = 3.0
    return {
        "benchmark": "learner",
        "unit": "gradient updates per second (critic + actor + temperature), batch 256, 256x256 MLPs",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "seconds_per_case": seconds,
        "median": median,
        "raw": raw,
        "ratios": ratios,
        "peer": "stable-baselines3 " + _sb3_version() if peer is not None else "stable-baselines3 not installed",
        "machine": {**machine_info(), "torch": torch.__version__, "cuda": torch.cuda.is_available()},
    }


def _sb3_version() -> str:
    from importlib.metadata import version

    return version("stable-baselines3")
