"""Learner throughput: gradient updates per second, FLOPs and the fraction of the machine's
matrix-product throughput they reach, ours side by side with Stable-Baselines3.

Cases (256×256 MLPs, batch 256, minibatch sampling from the RAM replay tier included on both
sides; one update = one critic step, plus the actor (and temperature) step every k-th update):

* ``sac_n2``: our SAC, 2 critics (clipped double-Q), k = 1;
* ``redq_n10_m2``: 10 critics, target min over a random pair, k = 1 like ``sac_n2`` (the
  like-for-like cost of the ensemble; the actor step evaluates all 10 critics);
* ``redq_n10_m2_schedule``: the same on REDQ's own schedule (``configs/agents/redq.yaml``,
  k = 20), i.e. the cost per update a REDQ run actually pays;
* ``droq``: 2 dropout + LayerNorm critics on DroQ's schedule (``configs/agents/droq.yaml``, k = 20);
* ``td3``: TD3, 2 critics, policy delay k = 2 (``configs/agents/td3.yaml``);
* ``sac_n2_item_per_metric``: ``sac_n2`` reading every metric with ``.item()`` after every
  update (the loop before metrics stayed on the device);
* ``sac_n2_compiled``: ``sac_n2_onednn`` with ``agent.compile`` (the critic and actor
  objectives under ``torch.compile``, :mod:`robot_rl.agents.compiled`; compiled in the first
  warm-up, untimed); ``ratios.compile_speedup_sac_n2`` is its rate over ``sac_n2_onednn``;
* ``sb3_sac``, ``sb3_td3``: Stable-Baselines3 SAC and TD3 (policy delay 2) with the same sizes
  (``model.train(gradient_steps=…)``), when installed.

Our cases read their metrics as the training loop does: summed on the device
(:class:`~robot_rl.training.metrics.MetricMeans`) and transferred once per ``LOG_EVERY`` updates.

Roofline: every repeat also measures, with the same threads, the GFLOP/s of plain 256×256×256
float32 matrix products (``mm_256``, the machine's reference) and of the update's own matrix
products run back to back without anything else (``update_gemms_<case>``: the ceiling for
these small shapes; 1-wide products of the Q head, 0.3 % of the FLOPs, left out). Each case's
FLOPs per update are counted analytically (:mod:`robot_rl.bench.flops`, counting rule there);
``achieved_gflops`` = FLOPs per update × updates/s, and ``roofline_fraction`` = achieved /
``mm_256`` of the same repeat. Both are also given per CPU second of this process
(``*_cpu``), which a single-threaded run keeps close to its idle-machine value when other
processes take turns on the cores. ``sac_n2_onednn`` and ``redq_n10_m2_onednn`` run the same
updates with float32 matmuls on oneDNN (``agent.fp32_matmul: onednn``, only where it keeps
float32 accuracy), next to that library's own ``mm_256_onednn`` roofline.

Load: ``others_cpu`` (per measurement) is the share of the machine's CPUs that other processes
used meanwhile, and ``loadavg_1min`` the load after each repeat. With 2 threads on 2 busy cores
the figures collapse: OpenMP's waiting worker spins while the other core runs someone else
(measured in the same minute: 10 updates/s with the default wait policy, 80 with
``OMP_WAIT_POLICY=passive``).

Not offered, because measured slower here: ``torch.compile`` with inductor's default
partitioner (torch 2.13 CPU: 0.66× eager, see :mod:`robot_rl.agents.compiled`), with
``mode="max-autotune-no-cudagraphs"`` (no faster than "default" with MKL, and it fails with the
oneDNN routing) or of the modules alone (1.03×); and computing the next actions of several
minibatches in one actor pass (720 µs per 256 rows for 20 stacked batches vs 520 µs one at a
time: the stacked activations leave the L2 cache).

Cases run in turn inside every repeat; ratios are computed per repeat and summarised by their
median. ``utd_study`` (``--utd``) adds SAC N=2, REDQ N=10 and DroQ at each UTD ratio u with
one actor step per u critic steps (the presets' schedule), reported as updates/s and env
steps/s (= updates/s / u); ``width_study`` (``--widths``) the same for other hidden widths.

``pixel_study`` (``--pixels SIZE``, :func:`pixel_study`): learning from two cameras
(``image_scene``, ``image_wrist``, SIZE×SIZE×3 uint8, render-like frames of
:func:`robot_rl.bench.replay_bench.camera_frames`) plus a 22-d proprio vector and a 4-d action,
batch 256, 256×256 heads, SAC N=2 (one actor step per critic step), sampling included:

* ``ours_frozen``: ``agent.encoder.mode: frozen`` as the learner sees it: observations
  {``proprio`` (22), ``camera_features`` (2 × 64)}, the features made once per frame by a frozen
  encoder (here a randomly initialised one: what it computes, not what it learned, is measured);
  ``frozen_encode_ms_per_env_step`` is that encoder's cost per env step at collection time;
* ``ours_finetune``: ``agent.encoder.mode: finetune`` (per camera: 32-channel conv trunk of 4
  layers, the first 2 strided, spatial softmax, 64-d LayerNorm + tanh bottleneck; DrQ shift of 4
  pixels; the actor reads detached features) on uint8 images from a :class:`ReplayBuffer`;
* ``sb3_sac_multiinput``: Stable-Baselines3 SAC, ``MultiInputPolicy`` (``CombinedExtractor``:
  a NatureCNN per image key, SB3's defaults), channel-last uint8 images transposed by SB3's
  ``VecTransposeImage`` as they would be at collection, its own ``DictReplayBuffer``.

Ours run with the agent's default float32 matmul routing (``agent.fp32_matmul: onednn`` where
it keeps float32 accuracy), SB3 with torch's. The image cases take one update per timed call
(an update costs tenths of a second). ``gflop_per_update`` is counted by
``torch.utils.flop_counter.FlopCounterMode`` over one update (convolutions and matmuls, forward
and backward). ``seconds_per_10k_updates`` = 10 000 / updates per wall-clock second of this run,
``cpu_seconds_per_10k_updates`` the same per CPU second of this process (close to what an
otherwise idle core with the same thread count takes).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from gymnasium import spaces

from robot_rl.agents import AgentConfig, make_agent
from robot_rl.agents.kernels import fp32_matmul, onednn_keeps_fp32
from robot_rl.bench.env_bench import machine_info
from robot_rl.bench.flops import Gemm, update_flops, update_gemms
from robot_rl.data import FeatureSpec, ReplayBuffer
from robot_rl.training.metrics import MetricMeans

OBS_DIM, ACTION_DIM = 27, 4  # ArmReach-v0's flattened state and ee_delta action
BATCH, HIDDEN, FILL = 256, (256, 256), 20_000
LOG_EVERY = 100  # updates between metric reads (the loop logs every 100 env steps at UTD 1)
SAC_N2_VS_SB3_GOAL, REDQ_COST_GOAL, ROOFLINE_GOAL = 1.8, 2.5, 0.7


@dataclass(frozen=True)
class Case:
    """One learner configuration; ``peer`` marks a Stable-Baselines3 case."""

    algo: str = "sac"
    ensemble_size: int = 2
    subset_size: int = 2
    actor_update_interval: int = 1
    layer_norm: bool = False
    dropout: float = 0.0
    hidden: tuple[int, ...] = HIDDEN
    item_per_metric: bool = False
    fp32_matmul: str = "default"  # "onednn": oneDNN's float32 kernels (robot_rl/agents/kernels.py)
    compile: bool = False  # agent.compile: torch.compile of the update's objectives
    peer: bool = False

    def gemms(self) -> dict[str, list[Gemm]]:
        deterministic = self.algo in ("td3", "ddpg")
        return update_gemms(OBS_DIM, ACTION_DIM, self.hidden, BATCH, self.ensemble_size, self.subset_size,
                            stochastic_actor=not deterministic, actor_critics=1 if deterministic else None,
                            sb3=self.peer)

    def flops(self) -> dict[str, float]:
        return update_flops(self.gemms(), self.actor_update_interval)


CASES = {
    "sac_n2": Case(),
    "redq_n10_m2": Case(ensemble_size=10),
    "redq_n10_m2_schedule": Case(ensemble_size=10, actor_update_interval=20),
    "droq": Case(layer_norm=True, dropout=0.01, actor_update_interval=20),
    "td3": Case(algo="td3", actor_update_interval=2),
    "sac_n2_item_per_metric": Case(item_per_metric=True),
    "sac_n2_onednn": Case(fp32_matmul="onednn"),
    "redq_n10_m2_onednn": Case(ensemble_size=10, fp32_matmul="onednn"),
    "sac_n2_compiled": Case(fp32_matmul="onednn", compile=True),
    "sb3_sac": Case(peer=True),
    "sb3_td3": Case(algo="td3", actor_update_interval=2, peer=True),
}
ROOFLINE_CASES = ("sac_n2", "redq_n10_m2")  # whose GEMM lists are timed alone every repeat


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


def ours(ensemble_size: int = 2, subset_size: int = 2, device: str = "cpu", actor_update_interval: int = 1,
         item_per_metric: bool = False, case: Case | None = None) -> Callable[[int], None]:
    """Updates of our learner (``case``, or SAC with the given ensemble); metrics read once per
    ``LOG_EVERY`` updates, or (``item_per_metric``) each with ``.item()`` after every update."""
    if case is None:
        case = Case(ensemble_size=ensemble_size, subset_size=subset_size,
                    actor_update_interval=actor_update_interval, item_per_metric=item_per_metric)
    obs_space = spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)})
    action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
    config = AgentConfig(algo=case.algo, ensemble_size=case.ensemble_size, subset_size=case.subset_size,
                         hidden_sizes=case.hidden, batch_size=BATCH, device=device,
                         actor_update_interval=case.actor_update_interval, layer_norm=case.layer_norm,
                         dropout=case.dropout, fp32_matmul=case.fp32_matmul, compile=case.compile)
    agent = make_agent(obs_space, action_space, config)
    rng = np.random.default_rng(0)
    replay = _replay(rng, device)

    metrics, pending = MetricMeans(), 0

    def run(updates: int) -> None:
        nonlocal pending
        with fp32_matmul(case.fp32_matmul):  # only around this case's updates: the setting is process-wide
            for _ in range(updates):
                result = agent.update(replay.sample(BATCH, rng))
                if case.item_per_metric:
                    for value in result.metrics.values():
                        value.item()
                    continue
                metrics.add(result.metrics)
                pending += 1
                if pending == LOG_EVERY:
                    metrics.take()
                    pending = 0
    return run


def sb3(device: str, algo: str = "sac") -> Callable[[int], None] | None:
    """Stable-Baselines3 SAC or TD3 (policy delay 2) training steps, or None if not installed."""
    try:
        import gymnasium as gym
        from stable_baselines3 import SAC as SB3SAC
        from stable_baselines3 import TD3 as SB3TD3
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

    kwargs = dict(batch_size=BATCH, buffer_size=FILL, learning_starts=0, policy_kwargs={"net_arch": list(HIDDEN)},
                  device=device, seed=0)
    model = SB3SAC("MlpPolicy", ShapeOnlyEnv(), **kwargs) if algo == "sac" else \
        SB3TD3("MlpPolicy", ShapeOnlyEnv(), policy_delay=2, **kwargs)
    model.set_logger(configure(None, []))
    rng = np.random.default_rng(0)
    for _ in range(FILL):
        model.replay_buffer.add(rng.standard_normal((1, OBS_DIM)), rng.standard_normal((1, OBS_DIM)),
                                rng.uniform(-1, 1, (1, ACTION_DIM)), rng.standard_normal(1), np.zeros(1), [{}])

    def run(updates: int) -> None:
        with fp32_matmul("default"):  # torch's own float32 kernels, as SB3 users get them
            model.train(gradient_steps=updates, batch_size=BATCH)
    return run


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _rate(run: Callable[[int], None], seconds: float, chunk: int = 10) -> tuple[float, float, float | None]:
    """Updates per wall-clock second and per CPU second of this process (all its threads), and
    the share of the machine's CPUs that *other* processes used meanwhile (None where unknown).
    ``run`` is called with ``chunk`` updates at a time until ``seconds`` have passed."""
    run(5 if chunk >= 10 else 2)  # warm-up (allocator, first-call overheads)
    updates, start, cpu_start, busy_start = 0, time.perf_counter(), time.process_time(), _busy_cpu_seconds()
    while time.perf_counter() - start < seconds:
        run(chunk)
        updates += chunk
    wall, cpu, busy = time.perf_counter() - start, time.process_time() - cpu_start, _busy_cpu_seconds()
    others = None if busy is None or busy_start is None else \
        round(max(0.0, (busy - busy_start - cpu) / (wall * (os.cpu_count() or 1))), 3)
    return updates / wall, updates / cpu, others


def gemm_gflops(gemms: Sequence[Gemm], seconds: float = 0.5, device: str = "cpu") -> tuple[float, float]:
    """GFLOP per wall-clock second and per CPU second of ``gemms`` run back to back
    (``torch.mm``/``torch.bmm`` into preallocated outputs), products with a 1-wide side left
    out; medians of five timed windows of ``seconds``/5."""
    gemms = [g for g in gemms if min(g.k, g.n) > 1]
    operands = []
    for g in gemms:
        shape = (g.members,) if g.members > 1 else ()
        a, b = torch.randn(*shape, g.m, g.k, device=device), torch.randn(*shape, g.k, g.n, device=device)
        operands.append((torch.bmm if g.members > 1 else torch.mm, a, b, torch.empty(*shape, g.m, g.n, device=device)))
    flops = sum(g.flops for g in gemms)

    def run() -> None:
        for product, a, b, out in operands:
            product(a, b, out=out)

    for _ in range(3):
        run()
    rates, cpu_rates = [], []
    for _ in range(5):
        loops, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds / 5:
            run()
            loops += 1
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(loops * flops / (time.perf_counter() - start) / 1e9)
        cpu_rates.append(loops * flops / (time.process_time() - cpu_start) / 1e9)
    return statistics.median(rates), statistics.median(cpu_rates)


def roofline(device: str = "cpu", onednn: bool = False) -> dict[str, tuple[float, float]]:
    """``mm_256``: GFLOP/s (wall, CPU) of 256×256×256 float32 products; ``update_gemms_<case>``: of
    that case's update products run alone; with ``onednn``, the same on oneDNN's kernels too."""
    result = {}
    for suffix, kind in (("", "default"), ("_onednn", "onednn")) if onednn else (("", "default"),):
        with fp32_matmul(kind):
            result[f"mm_256{suffix}"] = gemm_gflops([Gemm(1, 256, 256, 256)], device=device)
            for name in ROOFLINE_CASES:
                products = [g for part in CASES[name].gemms().values() for g in part]
                result[f"update_gemms_{name}{suffix}"] = gemm_gflops(products, device=device)
    return result


def _median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def _measure(runs: dict[str, Callable[[int], None]], repeats: int, seconds: float, device: str,
             roofline_kinds: tuple[bool, ...] = (), chunks: dict[str, int] | None = None) -> dict[str, Any]:
    """Every run in turn within each repeat: updates/s (wall and CPU time), the roofline (if
    ``roofline_kinds``: with oneDNN too if it holds True) and the load after each repeat;
    ``chunks``: updates per timed call of a run (default 10)."""
    raw: dict[str, list[float]] = {name: [] for name in runs}
    raw_cpu: dict[str, list[float]] = {name: [] for name in runs}
    others: dict[str, list[float | None]] = {name: [] for name in runs}
    raw_roofline: dict[str, list[float]] = {}
    raw_roofline_cpu: dict[str, list[float]] = {}
    load: list[float] = []
    for _ in range(repeats):
        if roofline_kinds:
            for name, (wall, cpu) in roofline(device, onednn=roofline_kinds[0]).items():
                raw_roofline.setdefault(name, []).append(wall)
                raw_roofline_cpu.setdefault(name, []).append(cpu)
        for name, run in runs.items():
            wall, cpu, busy = _rate(run, seconds, (chunks or {}).get(name, 10))
            raw[name].append(wall)
            raw_cpu[name].append(cpu)
            others[name].append(busy)
        load.append(round(os.getloadavg()[0], 2))
    return {"raw": raw, "raw_cpu": raw_cpu, "others_cpu": others, "raw_roofline": raw_roofline,
            "raw_roofline_cpu": raw_roofline_cpu, "load": load}


def _study(cases: dict[str, Case], repeats: int, seconds: float, device: str) -> dict[str, Any]:
    """Updates/s of each case (alternating within repeats), with FLOPs, GFLOP/s and load."""
    measured = _measure({name: ours(case=case, device=device) for name, case in cases.items()},
                        repeats, seconds, device)
    result = {}
    for name, case in cases.items():
        rate, cpu_rate = statistics.median(measured["raw"][name]), statistics.median(measured["raw_cpu"][name])
        gflop = case.flops()["total_gflop"]
        result[name] = {"updates_per_s": rate, "env_steps_per_s": rate / case.actor_update_interval,
                        "updates_per_cpu_s": cpu_rate, "gflop_per_update": gflop, "achieved_gflops": gflop * rate,
                        "raw": measured["raw"][name], "raw_cpu": measured["raw_cpu"][name],
                        "others_cpu": measured["others_cpu"][name],
                        **{k: v for k, v in asdict(case).items() if k not in ("item_per_metric", "peer")}}
    return {"cases": result, "loadavg_1min": measured["load"]}


def run_learner_benchmark(repeats: int = 5, seconds: float = 3.0, device: str = "cpu", threads: int | None = None,
                          utd: Sequence[int] = (), widths: Sequence[int] = (), pixels: Sequence[int] = (),
                          only_pixels: bool = False) -> dict[str, Any]:
    """The learner benchmark's JSON: the state cases (unless ``only_pixels``), ``utd_study``,
    ``width_study`` and, per size in ``pixels``, ``pixel_study["<size>px"]``."""
    if threads:
        torch.set_num_threads(threads)
    if only_pixels:
        if not pixels:
            raise ValueError("only_pixels needs at least one image size in pixels")
        result: dict[str, Any] = {
            "benchmark": "learner", "unit": "gradient updates per second, see pixel_study", "device": device,
            "torch_threads": torch.get_num_threads(), "repeats": repeats, "seconds_per_case": seconds,
            "machine": {**machine_info(), "torch": torch.__version__, "cuda": torch.cuda.is_available()}}
    else:
        result = _state_cases(repeats, seconds, device)
    if utd:
        presets = {"sac_n2": CASES["sac_n2"], "redq_n10_m2": CASES["redq_n10_m2"], "droq": CASES["droq"]}
        result["utd_study"] = _study({f"{name}_utd{u}": replace(case, actor_update_interval=u)
                                      for u in utd for name, case in presets.items()}, repeats, seconds, device)
    if widths:
        result["width_study"] = _study({f"{name}_h{w}": replace(CASES[name], hidden=(w, w))
                                        for w in widths for name in ("sac_n2", "redq_n10_m2_schedule")},
                                       repeats, seconds, device)
    if pixels:
        result["pixel_study"] = {f"{size}px": pixel_study(size, repeats, seconds, device)
                                 for size in dict.fromkeys(pixels)}
    return result


def _state_cases(repeats: int, seconds: float, device: str) -> dict[str, Any]:
    """The state-observation cases of :data:`CASES`, the roofline and the ratios between them."""
    onednn = device == "cpu" and onednn_keeps_fp32()
    runs: dict[str, Callable[[int], None]] = {}
    for name, case in CASES.items():
        if case.fp32_matmul == "onednn" and not onednn:
            continue  # oneDNN would not keep float32 accuracy here (or this is not a CPU run)
        run = sb3(device, case.algo) if case.peer else ours(case=case, device=device)
        if run is not None:
            runs[name] = run
    measured = _measure(runs, repeats, seconds, device, roofline_kinds=(onednn,))
    raw, raw_cpu = measured["raw"], measured["raw_cpu"]

    flops = {name: CASES[name].flops() for name in runs}
    efficiency = {}
    for name in runs:
        kind = "_onednn" if CASES[name].fp32_matmul == "onednn" else ""
        base = name.removesuffix("_onednn")
        entry: dict[str, Any] = {"gflop_per_update": flops[name]["total_gflop"], "flops_by_part": flops[name]}
        for clock, rates, ceilings in (("", raw[name], measured["raw_roofline"]),
                                       ("_cpu", raw_cpu[name], measured["raw_roofline_cpu"])):
            achieved = [rate * flops[name]["total_gflop"] for rate in rates]
            entry[f"achieved_gflops{clock}"] = statistics.median(achieved)
            entry[f"roofline_fraction{clock}"] = _median_ratio(achieved, ceilings["mm_256"])
            if kind:
                entry[f"roofline_fraction_onednn{clock}"] = _median_ratio(achieved, ceilings["mm_256_onednn"])
            if base in ROOFLINE_CASES:
                entry[f"fraction_of_update_gemms{kind}{clock}"] = _median_ratio(
                    achieved, ceilings[f"update_gemms_{base}{kind}"])
        efficiency[name] = entry
    ratios: dict[str, Any] = {
        "redq_cost_vs_sac_n2": _median_ratio(raw["sac_n2"], raw["redq_n10_m2"]),
        "redq_flops_vs_sac_n2": flops["redq_n10_m2"]["total_gflop"] / flops["sac_n2"]["total_gflop"],
        "redq_schedule_cost_vs_sac_n2": _median_ratio(raw["sac_n2"], raw["redq_n10_m2_schedule"]),
        "redq_schedule_flops_vs_sac_n2": (flops["redq_n10_m2_schedule"]["total_gflop"]
                                          / flops["sac_n2"]["total_gflop"]),
        "redq_cost_goal_max": REDQ_COST_GOAL,
        "sac_n2_roofline_fraction": efficiency["sac_n2"]["roofline_fraction"],
        "sac_n2_roofline_fraction_cpu": efficiency["sac_n2"]["roofline_fraction_cpu"],
        "sac_n2_roofline_goal_min": ROOFLINE_GOAL,
        "host_sync_speedup": _median_ratio(raw["sac_n2"], raw["sac_n2_item_per_metric"]),
        "host_sync_note": ("sac_n2 (metrics summed on the device, one transfer per "
                           f"{LOG_EVERY} updates) over sac_n2_item_per_metric (.item() per metric per "
                           "update); near 1 on a CPU, where nothing waits for a device queue"),
    }
    if "sb3_sac" in raw:
        ratios["sac_n2_vs_sb3"] = _median_ratio(raw["sac_n2"], raw["sb3_sac"])
        ratios["sac_n2_vs_sb3_goal_min"] = SAC_N2_VS_SB3_GOAL
    if "sb3_td3" in raw:
        ratios["td3_vs_sb3"] = _median_ratio(raw["td3"], raw["sb3_td3"])
    if onednn:
        ratios["onednn_speedup_sac_n2"] = _median_ratio(raw["sac_n2_onednn"], raw["sac_n2"])
        ratios["onednn_speedup_redq_n10_m2"] = _median_ratio(raw["redq_n10_m2_onednn"], raw["redq_n10_m2"])
        ratios["redq_cost_vs_sac_n2_onednn"] = _median_ratio(raw["sac_n2_onednn"], raw["redq_n10_m2_onednn"])
        ratios["compile_speedup_sac_n2"] = _median_ratio(raw["sac_n2_compiled"], raw["sac_n2_onednn"])
        ratios["compile_speedup_sac_n2_cpu"] = _median_ratio(raw_cpu["sac_n2_compiled"], raw_cpu["sac_n2_onednn"])
        if "sb3_sac" in raw:
            ratios["sac_n2_onednn_vs_sb3"] = _median_ratio(raw["sac_n2_onednn"], raw["sb3_sac"])
    result: dict[str, Any] = {
        "benchmark": "learner",
        "unit": "gradient updates per second (critic step + actor/temperature step every k-th), batch 256, "
                "256x256 MLPs; GFLOP counted analytically (robot_rl/bench/flops.py)",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "seconds_per_case": seconds,
        "median": {name: statistics.median(values) for name, values in raw.items()},
        "median_per_cpu_s": {name: statistics.median(values) for name, values in raw_cpu.items()},
        "raw": raw,
        "raw_cpu": raw_cpu,
        "others_cpu": measured["others_cpu"],
        "efficiency": efficiency,
        "roofline_gflops": {name: statistics.median(values) for name, values in measured["raw_roofline"].items()},
        "roofline_gflops_per_cpu_s": {name: statistics.median(values)
                                      for name, values in measured["raw_roofline_cpu"].items()},
        "roofline_raw": measured["raw_roofline"],
        "roofline_raw_cpu": measured["raw_roofline_cpu"],
        "ratios": ratios,
        "loadavg_1min": measured["load"],
        "onednn_keeps_fp32": onednn,
        "cases": {name: asdict(CASES[name]) for name in runs},
        "peer": "stable-baselines3 " + _sb3_version() if "sb3_sac" in runs else "stable-baselines3 not installed",
        "machine": {**machine_info(), "torch": torch.__version__, "cuda": torch.cuda.is_available()},
    }
    return result


PROPRIO_DIM = 22  # joint positions and velocities, end-effector pose, gripper (the pixel study's state part)
PIXEL_CAMERAS = ("image_scene", "image_wrist")
PIXEL_REPLAY_STEPS, PIXEL_EPISODE_STEPS = 5_000, 200  # 25 episodes; 246 MB of frames at 64 px in ours
PIXEL_CHUNKS = {"ours_finetune": 1, "sb3_sac_multiinput": 1}  # updates per timed call (others: 10)
PIXEL_CASES = {
    "ours_frozen": "our SAC N=2 on {proprio (22), camera_features (2 x 64)}: agent.encoder.mode frozen as the "
                   "learner sees it (the frozen encoder ran once per frame at collection)",
    "ours_finetune": "our SAC N=2, agent.encoder.mode finetune: per camera a 32-channel 4-layer conv trunk (first 2 "
                     "strided), spatial softmax, 64-d LayerNorm+tanh bottleneck, trained by the critic loss; DrQ "
                     "shift (pad 4); the actor reads detached features; uint8 images from our ReplayBuffer",
    "sb3_sac_multiinput": "Stable-Baselines3 SAC, MultiInputPolicy (CombinedExtractor: NatureCNN per image key, "
                          "cnn_output_dim 256; actor and critic each own an extractor, SAC's default), its "
                          "DictReplayBuffer, channel-first uint8 images as VecTransposeImage stores them",
}


class PixelData:
    """The pixel study's episodes: render-like frames (the same ``episode_steps`` + 1 per camera in
    every episode, copied into every slot of a replay), random proprio, actions and rewards, and
    the ``camera_features`` a frozen encoder (randomly initialised, eval mode) makes of the frames."""

    def __init__(self, size: int, replay_steps: int = PIXEL_REPLAY_STEPS, seed: int = 0) -> None:
        from robot_rl.bench.replay_bench import camera_frames
        from robot_rl.vision.encoders import EncoderSpec, ImageEncoder
        from robot_rl.vision.features import FrozenFeatures

        self.size = size
        self.episode_steps = min(PIXEL_EPISODE_STEPS, replay_steps)
        self.episodes = max(1, replay_steps // self.episode_steps)
        self.frames = camera_frames(self.episode_steps + 1, size, seed, PIXEL_CAMERAS)  # + the final observation
        torch.manual_seed(seed)
        self.frozen = FrozenFeatures(ImageEncoder(EncoderSpec(cameras=PIXEL_CAMERAS, image_shape=(size, size, 3))))
        self.features = self.frozen(self.frames)
        self.seed = seed

    def episode(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Steps (every observation key, action, reward, terminated) and final observation."""
        from robot_rl.vision.features import FEATURES_KEY

        rng = np.random.default_rng(self.seed + index)
        length = self.episode_steps
        obs = {"proprio": rng.standard_normal((length + 1, PROPRIO_DIM), dtype=np.float32),
               FEATURES_KEY: self.features, **self.frames}
        steps = {key: values[:length] for key, values in obs.items()}
        steps.update(action=rng.uniform(-1, 1, (length, ACTION_DIM)).astype(np.float32),
                     reward=rng.standard_normal(length, dtype=np.float32), terminated=np.zeros(length, bool))
        return steps, {key: values[length] for key, values in obs.items()}

    def observation_space(self, mode: str) -> spaces.Dict:
        """What the learner reads: ``frozen``: proprio and camera_features; else proprio and the images."""
        from robot_rl.vision.features import FEATURES_KEY

        entries: dict[str, spaces.Space] = {"proprio": spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32)}
        if mode == "frozen":
            entries[FEATURES_KEY] = spaces.Box(-1.0, 1.0, (self.frozen.dim,), np.float32)
        else:
            entries.update({key: spaces.Box(0, 255, (self.size, self.size, 3), np.uint8) for key in PIXEL_CAMERAS})
        return spaces.Dict(entries)

    def encode_ms_per_step(self, calls: int = 30) -> float:
        """Median milliseconds of the frozen encoder on one env step's frames (what
        :class:`~robot_rl.vision.features.CameraFeatures` adds to every step at collection)."""
        times = []
        for i in range(calls + 3):
            frames = {key: values[i % len(values)][None] for key, values in self.frames.items()}
            start = time.perf_counter()
            self.frozen(frames)
            times.append(time.perf_counter() - start)
        return statistics.median(times[3:]) * 1e3


def _parameters(*modules: torch.nn.Module) -> int:
    return sum(parameter.numel() for module in modules for parameter in module.parameters())


def pixel_ours(data: PixelData, mode: str, device: str = "cpu", batch: int = BATCH,
               replay_steps: int = PIXEL_REPLAY_STEPS) -> tuple[Callable[[int], None], dict[str, Any]]:
    """Our SAC N=2 on the frozen features (``mode`` "frozen") or fine-tuning its own image encoder
    ("finetune"), sampling from a filled :class:`ReplayBuffer`; the update runner and a description."""
    from robot_rl.agents.config import EncoderConfig

    obs_space = data.observation_space(mode)
    config = AgentConfig(hidden_sizes=HIDDEN, batch_size=batch, device=device,
                         encoder=EncoderConfig(mode="finetune") if mode == "finetune" else EncoderConfig())
    agent = make_agent(obs_space, spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32), config)
    kind = "onednn" if device == "cpu" and onednn_keeps_fp32() else "default"  # what the agent's default gives
    keys = agent.input_keys
    features = {key: FeatureSpec(str(obs_space[key].dtype), obs_space[key].shape) for key in keys}
    features.update(action=FeatureSpec("float32", (ACTION_DIM,)), reward=FeatureSpec("float32", ()),
                    terminated=FeatureSpec("bool", ()))
    replay = ReplayBuffer(features, keys, replay_steps, device=device)
    for episode in range(data.episodes):
        replay.add_episode(*data.episode(episode))
    rng = np.random.default_rng(0)
    metrics, pending = MetricMeans(), 0

    def run(updates: int) -> None:
        nonlocal pending
        with fp32_matmul(kind):
            for _ in range(updates):
                metrics.add(agent.update(replay.sample(batch, rng)).metrics)
                pending += 1
                if pending == LOG_EVERY:
                    metrics.take()
                    pending = 0

    info: dict[str, Any] = {"observation": {key: [*obs_space[key].shape, str(obs_space[key].dtype)] for key in keys},
                            "obs_feature_dim": agent.obs_dim, "fp32_matmul": kind,
                            "parameters_critic": _parameters(agent.critic),
                            "parameters_actor": _parameters(agent.actor)}
    if agent.encoder.images is not None:
        info["parameters_encoder"] = _parameters(agent.encoder.images)
        info["encoder"] = asdict(config.encoder)
        info["encoder_spec"] = asdict(agent.encoder.images.spec)
    return run, info


def pixel_sb3(data: PixelData, device: str = "cpu", batch: int = BATCH, replay_steps: int = PIXEL_REPLAY_STEPS,
              ) -> tuple[Callable[[int], None], dict[str, Any]] | None:
    """Stable-Baselines3 SAC with ``MultiInputPolicy`` on proprio and the two channel-last uint8
    cameras (SB3 wraps the env in ``VecTransposeImage``; its buffer holds channel-first frames),
    its own ``DictReplayBuffer`` filled with the same episodes; None if SB3 is not installed."""
    try:
        import gymnasium as gym
        from stable_baselines3 import SAC as SB3SAC
        from stable_baselines3.common.logger import configure
    except ImportError:
        return None
    env_space = data.observation_space("finetune")

    class ShapeOnlyEnv(gym.Env):  # SB3 only reads the spaces; training here never steps it
        observation_space = env_space
        action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

        def reset(self, *, seed=None, options=None):
            return {key: np.zeros(box.shape, box.dtype) for key, box in env_space.spaces.items()}, {}

        def step(self, action):
            return self.reset()[0], 0.0, False, False, {}

    model = SB3SAC("MultiInputPolicy", ShapeOnlyEnv(), batch_size=batch, buffer_size=replay_steps, learning_starts=0,
                   policy_kwargs={"net_arch": list(HIDDEN)}, device=device, seed=0)
    model.set_logger(configure(None, []))
    stored = model.observation_space  # channel-first images after VecTransposeImage
    for key in PIXEL_CAMERAS:
        if stored[key].shape != (3, data.size, data.size):
            raise RuntimeError(f"SB3 stores {key} as {stored[key].shape}, expected channel-first")
    buffer = model.replay_buffer
    for episode in range(data.episodes):
        steps, final = data.episode(episode)
        obs = {key: np.concatenate([steps[key], final[key][None]]) for key in stored.spaces}
        obs.update({key: np.ascontiguousarray(obs[key].transpose(0, 3, 1, 2)) for key in PIXEL_CAMERAS})
        for t in range(data.episode_steps):
            buffer.add({key: values[t:t + 1] for key, values in obs.items()},
                       {key: values[t + 1:t + 2] for key, values in obs.items()},
                       steps["action"][t:t + 1], steps["reward"][t:t + 1], steps["terminated"][t:t + 1], [{}])

    def run(updates: int) -> None:
        with fp32_matmul("default"):  # torch's own float32 kernels, as SB3 users get them
            model.train(gradient_steps=updates, batch_size=batch)

    policy = model.policy
    info = {"observation": {key: [*box.shape, str(box.dtype)] for key, box in stored.spaces.items()},
            "policy": "MultiInputPolicy", "features_extractor": type(policy.actor.features_extractor).__name__,
            "features_dim": policy.actor.features_extractor.features_dim,
            "share_features_extractor": policy.share_features_extractor, "fp32_matmul": "default",
            "parameters_critic": _parameters(policy.critic), "parameters_actor": _parameters(policy.actor),
            "replay_buffer": type(buffer).__name__}
    return run, info


def _gflop_per_update(run: Callable[[int], None]) -> float | None:
    """GFLOP of one update as ``FlopCounterMode`` counts them (matmuls and convolutions, forward
    and backward), or None where it cannot count."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            run(1)
        return counter.get_total_flops() / 1e9
    except Exception:  # noqa: BLE001 - the figure is context, the rate is the measurement
        return None


def pixel_study(size: int, repeats: int = 5, seconds: float = 3.0, device: str = "cpu", batch: int = BATCH,
                replay_steps: int = PIXEL_REPLAY_STEPS, peer: bool = True) -> dict[str, Any]:
    """Updates/s of learning from two SIZE×SIZE cameras (see the module doc): ``ours_frozen``,
    ``ours_finetune`` and (``peer``, when installed) ``sb3_sac_multiinput``, alternating within
    each repeat; per case medians, raw values, GFLOP per update and seconds per 10k updates;
    ``ratios`` are medians of per-repeat ratios."""
    data = PixelData(size, replay_steps)
    built: dict[str, tuple[Callable[[int], None], dict[str, Any]]] = {
        "ours_frozen": pixel_ours(data, "frozen", device, batch, replay_steps),
        "ours_finetune": pixel_ours(data, "finetune", device, batch, replay_steps)}
    peer_note = "not measured"
    try:
        peer_case = pixel_sb3(data, device, batch, replay_steps) if peer else None
    except (RuntimeError, ValueError, AssertionError) as exc:  # e.g. NatureCNN needs images of 36 px or more
        peer_case, peer_note = None, f"stable-baselines3 could not be measured: {type(exc).__name__}: {exc}"
    if peer_case is not None:
        built["sb3_sac_multiinput"] = peer_case
    elif peer and peer_note == "not measured":
        peer_note = "stable-baselines3 not installed"
    runs = {name: run for name, (run, _) in built.items()}
    gflop = {name: _gflop_per_update(run) for name, run in runs.items()}  # also a first, untimed update
    with fp32_matmul(built["ours_frozen"][1]["fp32_matmul"]):
        encode_ms = data.encode_ms_per_step()
    measured = _measure(runs, repeats, seconds, device, chunks=PIXEL_CHUNKS)
    raw, raw_cpu = measured["raw"], measured["raw_cpu"]
    cases = {}
    for name, (_, info) in built.items():
        rate, cpu_rate = statistics.median(raw[name]), statistics.median(raw_cpu[name])
        cases[name] = {"updates_per_s": rate, "updates_per_cpu_s": cpu_rate,
                       "seconds_per_10k_updates": 1e4 / rate, "cpu_seconds_per_10k_updates": 1e4 / cpu_rate,
                       "gflop_per_update": gflop[name],
                       "achieved_gflops": None if gflop[name] is None else gflop[name] * rate,
                       "raw": raw[name], "raw_cpu": raw_cpu[name], "others_cpu": measured["others_cpu"][name],
                       "updates_per_timed_call": PIXEL_CHUNKS.get(name, 10), "what": PIXEL_CASES[name], **info}
    cases["ours_frozen"]["frozen_encode_ms_per_env_step"] = encode_ms
    ratios: dict[str, Any] = {
        "finetune_vs_frozen": _median_ratio(raw["ours_finetune"], raw["ours_frozen"]),
        "finetune_vs_frozen_cpu": _median_ratio(raw_cpu["ours_finetune"], raw_cpu["ours_frozen"])}
    if "sb3_sac_multiinput" in raw:
        ratios["ours_finetune_vs_sb3"] = _median_ratio(raw["ours_finetune"], raw["sb3_sac_multiinput"])
        ratios["ours_finetune_vs_sb3_cpu"] = _median_ratio(raw_cpu["ours_finetune"], raw_cpu["sb3_sac_multiinput"])
        ratios["ours_frozen_vs_sb3"] = _median_ratio(raw["ours_frozen"], raw["sb3_sac_multiinput"])
    ratios["note"] = ("updates/s of the first case over the second, median of per-repeat ratios (_cpu: per CPU "
                      "second of this process)")
    return {
        "unit": "gradient updates per second (critic step + actor and temperature step), sampling included",
        "image_shape": [size, size, 3], "cameras": list(PIXEL_CAMERAS), "proprio_dim": PROPRIO_DIM,
        "action_dim": ACTION_DIM, "batch": batch, "hidden": list(HIDDEN),
        "replay_steps": data.episodes * data.episode_steps, "episode_steps": data.episode_steps,
        "repeats": repeats, "seconds_per_case": seconds,
        "frames": "render-like synthetic frames (robot_rl.bench.replay_bench.camera_frames)",
        "cases": cases, "ratios": ratios, "loadavg_1min": measured["load"],
        "peer": "stable-baselines3 " + _sb3_version() if peer_case is not None else peer_note,
    }


def _sb3_version() -> str:
    from importlib.metadata import version

    return version("stable-baselines3")
