"""Replay data path: recording cost on the control loop, episode commit latency, sampling rate,
and the memory one transition takes in the RAM tier.

Measured with two 128×128 RGB camera images (``image_scene`` and ``image_wrist``) plus the usual
low-dim features per step:

- ``append_step`` cost per step (µs, p50/p99) in two situations: ``idle`` (the background writer
  has nothing to do) and ``while_committing`` (the previous episode is being written by the
  writer thread at the same time, so the two threads share the GIL). Goal: p99 < 1 ms.
- Episode commit latency for 200 steps (ms, ``end_episode`` until ``flush`` returns). Goal < 100 ms.
- Batches of 256 per second from the RAM tier (:class:`~robot_rl.data.ReplayBuffer`), with images
  (goal ≥ 1000/s) and state only (goal ≥ 5000/s), allocating each batch or refilling one
  (``out=``). Peer in the same run: stable-baselines3's ``DictReplayBuffer`` (1-step samples;
  skipped when the ``bench`` extra is not installed). ``image_copy_ceiling`` is the rate at which
  this machine can merely copy the image bytes of a batch (obs + next obs, contiguous), an upper
  bound for any gather.
- Bytes per transition in the RAM tier (``memory``), measured from the numpy arrays a filled
  :class:`~robot_rl.data.ReplayBuffer` allocated (every ring plus the per-episode final-observation
  ring, over the stored steps of 200-step episodes): each frame is stored once and ``next_obs`` is
  gathered from the next slot. Beside it, measured the same way, SB3's ``DictReplayBuffer`` with
  the same spaces (it keeps ``next_observations``; its ``optimize_memory_usage`` is not supported
  for Dict spaces), and, computed from the shapes, a float32 layout like LeRobot's in-memory
  ``ReplayBuffer`` (observations and next observations as float32 tensors, images included).
  Goal: ours ≤ 55 % of SB3's with the two cameras.

Each quantity is measured ``repeats`` times; the JSON holds the median and every raw value.
Images are synthetic but render-like (static textured scene, a moving cube and arm link); their
compression ratio is reported (zstd-1 on 128×128 MuJoCo renders of the pick scene: about 8.6×;
on these frames about 10×; frames with per-pixel camera noise compress only about 1.2×).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.replay import ReplayBuffer
from robot_rl.data.store import EpisodeStore, FeatureSpec

IMAGE_SIZE = 128
EPISODE_STEPS = 200
EPISODES_PER_REPEAT = 6  # in cycles of three, see measure_recording
BATCH_SIZE = 256
IMAGE_CAPACITY = 4000  # steps (20 episodes) in the image replay buffer: ≈ 393 MB of frames in ours
STATE_CAPACITY = 100_000
GOALS = {
    "append_p99_us": 1000.0,
    "commit_ms": 100.0,
    "image_batches_per_s": 1000.0,
    "state_batches_per_s": 5000.0,
    "image_memory_vs_sb3": 0.55,  # bytes per transition, ours / SB3's DictReplayBuffer, two cameras
}
STATE_FEATURES = {
    "joint_pos": FeatureSpec("float32", (7,)),
    "joint_vel": FeatureSpec("float32", (7,)),
    "ee_pos": FeatureSpec("float32", (3,)),
    "ee_quat": FeatureSpec("float32", (4,)),
    "gripper_width": FeatureSpec("float32", (1,)),
    "goal_pos": FeatureSpec("float32", (3,)),
}
TRANSITION_FEATURES = {
    "action": FeatureSpec("float32", (4,)),
    "reward": FeatureSpec("float32", ()),
    "terminated": FeatureSpec("bool", ()),
}
IMAGE_CAMERAS = ("image_scene", "image_wrist")
IMAGE_FEATURES = {key: FeatureSpec("uint8", (IMAGE_SIZE, IMAGE_SIZE, 3)) for key in IMAGE_CAMERAS}
#: Where the float32 layout's shapes come from (computed, not measured: lerobot is not installed).
LEROBOT_LAYOUT = ("huggingface/lerobot src/lerobot/utils/buffer.py, ReplayBuffer._initialize_storage: "
                  "states and next_states (default optimize_memory=False) as torch.empty float32 per key, "
                  "images included; actions, rewards float32; dones, truncateds, episode_ends bool")


def render_like_frames(n: int, size: int = IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    """``n`` deterministic (size, size, 3) uint8 frames like a simulator's: a static wall and
    shaded, textured floor, a red cube and an arm link moving across the view."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    scene = np.stack([150 + 40 * y, 140 + 30 * y, 120 + 20 * x], axis=-1)
    scene[: size // 3] = (190, 200, 215)
    scene += rng.integers(-6, 7, scene.shape)
    frames = np.empty((n, size, size, 3), np.uint8)
    for i, t in enumerate(np.linspace(0.0, 1.0, n)):
        frame = scene.copy()
        cx, cy = 0.3 + 0.4 * t, 0.6 + 0.1 * np.sin(6 * t)
        frame[(abs(x - cx) < 0.06) & (abs(y - cy) < 0.06)] = (200, 40, 40)
        arm = (abs(x - (0.7 - 0.3 * t)) < 0.04) & (y < 0.5 + 0.1 * t)
        frame[arm] = 90 + 60 * y[arm, None]
        frames[i] = frame
    return frames


def camera_frames(n: int, size: int = IMAGE_SIZE, seed: int = 0,
                  cameras: tuple[str, ...] = IMAGE_CAMERAS) -> dict[str, np.ndarray]:
    """Camera key → ``n`` render-like frames (:func:`render_like_frames`, one seed per camera)."""
    return {key: render_like_frames(n, size, seed + i) for i, key in enumerate(cameras)}


def synthetic_episode(features: dict[str, FeatureSpec], length: int, seed: int,
                      frames: Mapping[str, np.ndarray] | None = None,
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random low-dim steps (plus ``frames``: camera key → (≥ length, H, W, 3) images, for the
    keys that are in ``features``) and a final observation."""
    rng = np.random.default_rng(seed)
    steps = {name: rng.standard_normal((length, *spec.shape)).astype(spec.dtype)
             for name, spec in features.items() if spec.dtype == "float32"}
    steps["terminated"] = np.zeros(length, bool)
    steps["terminated"][-1] = seed % 2 == 0
    for key, images in (frames or {}).items():
        if key in features:
            steps[key] = images[:length]
    final = {key: steps[key][-1] for key in features if key not in TRANSITION_FEATURES}
    return steps, final


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    values = np.asarray(samples_ns) / 1e3
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "max": float(values.max())}


def measure_recording(directory: Path, frames: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Record ``EPISODES_PER_REPEAT`` image episodes in cycles of three: (0) appended with the
    writer idle, then ``end_episode`` + ``flush`` timed as the commit latency; (1) appended with
    the writer idle, queued without waiting; (2) appended while the writer commits episode (1).
    Returns per-step append costs, commit latencies and the stored image bytes (per camera
    frame and per step)."""
    features = {**STATE_FEATURES, **IMAGE_FEATURES, **TRANSITION_FEATURES}
    obs_keys = [*STATE_FEATURES, *IMAGE_FEATURES]
    idle_ns: list[int] = []
    busy_ns: list[int] = []
    commit_ms: list[float] = []
    clock = time.perf_counter_ns
    path = directory / "bench.zarr"
    with EpisodeStore.create(path, features, obs_keys, {"control_hz": 10, "task": "bench"}) as store:
        for episode in range(EPISODES_PER_REPEAT):
            phase = episode % 3
            steps, final = synthetic_episode(features, EPISODE_STEPS, episode, frames)
            rows = [{name: values[t] for name, values in steps.items()} for t in range(EPISODE_STEPS)]
            timings = busy_ns if phase == 2 else idle_ns
            for row in rows:
                start = clock()
                store.append_step(row)
                timings.append(clock() - start)
            start = clock()
            store.end_episode(final, success=True, seed=episode)
            if phase != 1:
                store.flush()
                if phase == 0:
                    commit_ms.append((clock() - start) / 1e6)
    image_bytes = sum(f.stat().st_size for key in IMAGE_FEATURES
                      for f in (path / "data" / key).rglob("*") if f.is_file())
    n_steps = EPISODES_PER_REPEAT * EPISODE_STEPS
    raw_bytes = n_steps * sum(images[0].nbytes for key, images in frames.items() if key in IMAGE_FEATURES)
    return {
        "idle": _percentiles(idle_ns),
        "while_committing": _percentiles(busy_ns),
        "commit_ms": commit_ms,
        "image_bytes_per_frame": image_bytes / (n_steps * len(IMAGE_FEATURES)),
        "image_bytes_per_step": image_bytes / n_steps,
        "image_compression_ratio": raw_bytes / image_bytes,
    }


def _rate(sample: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``sample`` over about ``seconds`` (after two warm-up calls)."""
    sample(), sample()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        sample()
        calls += 1
    return calls / elapsed


def fill_buffer(features: dict[str, FeatureSpec], capacity: int,
                frames: Mapping[str, np.ndarray] | None) -> ReplayBuffer:
    obs_keys = [key for key in features if key not in TRANSITION_FEATURES]
    buffer = ReplayBuffer(features, obs_keys, capacity)
    for episode in range(capacity // EPISODE_STEPS):
        buffer.add_episode(*synthetic_episode(features, EPISODE_STEPS, episode, frames))
    return buffer


def sb3_buffer(features: dict[str, FeatureSpec], capacity: int, frames: Mapping[str, np.ndarray] | None) -> Any:
    """A filled stable-baselines3 ``DictReplayBuffer`` with the same spaces (1 env), or None
    without the ``bench`` extra."""
    try:
        from gymnasium import spaces
        from stable_baselines3.common.buffers import DictReplayBuffer
    except ImportError:
        return None
    obs_keys = [key for key in features if key not in TRANSITION_FEATURES]
    observation_space = spaces.Dict({
        key: spaces.Box(0, 255, features[key].shape, np.uint8) if features[key].dtype == "uint8"
        else spaces.Box(-np.inf, np.inf, features[key].shape, np.float32)
        for key in obs_keys})
    action_space = spaces.Box(-1, 1, features["action"].shape, np.float32)
    peer = DictReplayBuffer(capacity, observation_space, action_space, device="cpu", handle_timeout_termination=False)
    for episode in range(capacity // EPISODE_STEPS):
        steps, final = synthetic_episode(features, EPISODE_STEPS, episode, frames)
        for t in range(EPISODE_STEPS):
            obs = {key: steps[key][t][None] for key in obs_keys}
            next_obs = {key: (steps[key][t + 1] if t + 1 < EPISODE_STEPS else final[key])[None] for key in obs_keys}
            peer.add(obs, next_obs, steps["action"][t][None], steps["reward"][t][None],
                     steps["terminated"][t][None], [{}])
    return peer


def array_nbytes(obj: object) -> dict[str, int]:
    """Attribute name → bytes of the numpy arrays ``obj`` holds there (a dict of arrays summed;
    an array reachable twice counted once)."""
    seen: set[int] = set()
    sizes: dict[str, int] = {}
    for name, value in vars(obj).items():
        arrays = [a for a in (value.values() if isinstance(value, dict) else [value])
                  if isinstance(a, np.ndarray) and id(a) not in seen]
        seen.update(id(a) for a in arrays)
        if arrays:
            sizes[name] = sum(a.nbytes for a in arrays)
    return sizes


def ours_memory(buffer: ReplayBuffer) -> dict[str, Any]:
    """Bytes per stored transition of a filled RAM-tier buffer, from its allocated arrays."""
    sizes = array_nbytes(buffer)
    total = sum(sizes.values())
    ring = sum(n for name, n in sizes.items() if name.startswith("_final") or name == "_episode_end")
    steps = len(buffer)
    return {"bytes_per_transition": total / steps, "total_bytes": total, "stored_steps": steps,
            "capacity": buffer.capacity, "episodes": buffer.n_episodes,
            "final_obs_ring_slots": len(buffer._episode_end), "final_obs_ring_bytes_per_transition": ring / steps,
            "arrays_bytes": sizes, "how": "measured: sum of nbytes of every array / stored steps"}


def sb3_memory(peer: Any) -> dict[str, Any]:
    """Bytes per transition of a full SB3 ``DictReplayBuffer``, from its allocated arrays."""
    sizes = array_nbytes(peer)
    total = sum(sizes.values())
    return {"bytes_per_transition": total / peer.buffer_size, "total_bytes": total, "buffer_size": peer.buffer_size,
            "stored_steps": peer.size(), "arrays_bytes": sizes, "optimize_memory_usage": False,
            "how": "measured: sum of nbytes of every array / buffer_size (optimize_memory_usage is not "
                   "supported for Dict observation spaces)"}


def float32_layout_memory(features: Mapping[str, FeatureSpec]) -> dict[str, Any]:
    """Bytes per transition of a LeRobot-like in-memory layout (see :data:`LEROBOT_LAYOUT`)."""
    obs_elements = sum(prod(spec.shape) for key, spec in features.items() if key not in TRANSITION_FEATURES)
    parts = {"states": 4 * obs_elements, "next_states": 4 * obs_elements,
             "actions": 4 * prod(features["action"].shape), "rewards": 4, "dones": 1, "truncateds": 1,
             "episode_ends": 1}
    return {"bytes_per_transition": float(sum(parts.values())), "parts_bytes": parts,
            "how": "computed from the shapes, not measured (lerobot not installed)", "layout": LEROBOT_LAYOUT}


def memory_report(buffer: ReplayBuffer, peer: Any, features: Mapping[str, FeatureSpec],
                  goal: float | None = None) -> dict[str, Any]:
    """Ours, SB3's (if ``peer``) and the float32 layout's bytes per transition, and the ratios."""
    ours = ours_memory(buffer)
    report: dict[str, Any] = {"ours": ours, "float32_obs_and_next_obs": float32_layout_memory(features)}
    report["ratio_ours_vs_float32"] = ours["bytes_per_transition"] / report["float32_obs_and_next_obs"][
        "bytes_per_transition"]
    if peer is not None:
        report["sb3_dict_replay_buffer"] = sb3_memory(peer)
        ratio = ours["bytes_per_transition"] / report["sb3_dict_replay_buffer"]["bytes_per_transition"]
        report["ratio_ours_vs_sb3"] = ratio
        if goal is not None:
            report["goal"] = goal
            report["meets_goal"] = ratio <= goal
    return report


def _sampler_rates(buffer: ReplayBuffer, seconds: float, rng: np.random.Generator) -> dict[str, float]:
    out = buffer.empty_batch(BATCH_SIZE)
    return {
        "": _rate(lambda: buffer.sample(BATCH_SIZE, rng), seconds),
        "_reuse_out": _rate(lambda: buffer.sample(BATCH_SIZE, rng, out=out), seconds),
        "_n_step_3": _rate(lambda: buffer.sample(BATCH_SIZE, rng, n_step=3, out=out), seconds),
    }


def measure_sampling(seconds: float, frames: Mapping[str, np.ndarray], seed: int,
                     ) -> tuple[dict[str, float], dict[str, Any]]:
    """Batches of ``BATCH_SIZE`` per second for each sampling case, and the bytes per transition
    of the filled buffers (:func:`memory_report`, for ``image`` and ``state``)."""
    rng = np.random.default_rng(seed)
    rates: dict[str, float] = {}
    memory: dict[str, Any] = {}
    image_features = {**STATE_FEATURES, **IMAGE_FEATURES, **TRANSITION_FEATURES}
    state_features = {**STATE_FEATURES, **TRANSITION_FEATURES}
    for name, features, capacity, images in (("image", image_features, IMAGE_CAPACITY, frames),
                                             ("state", state_features, STATE_CAPACITY, None)):
        buffer = fill_buffer(features, capacity, images)
        ours = _sampler_rates(buffer, seconds, rng)
        rates.update({f"{name}{case}": rate for case, rate in ours.items()})
        peer = sb3_buffer(features, capacity, images)
        if peer is not None:
            rates[f"{name}_sb3_peer"] = _rate(lambda: peer.sample(BATCH_SIZE), seconds)
        memory[name] = memory_report(buffer, peer, features, GOALS["image_memory_vs_sb3"] if name == "image" else None)
    frame = next(iter(frames.values()))[:1]
    source = np.ascontiguousarray(np.broadcast_to(frame, (2 * len(IMAGE_FEATURES) * BATCH_SIZE, *frame.shape[1:])))
    target = np.empty_like(source)
    rates["image_copy_ceiling"] = _rate(lambda: np.copyto(target, source), seconds)
    return rates, memory


def _sampling_goal(case: str) -> float | None:
    """Goals apply to our sampler (``image…``/``state…``), not to the peer or the copy ceiling."""
    if "sb3" in case or "ceiling" in case:
        return None
    return GOALS[f"{case.split('_')[0]}_batches_per_s"]


def _summary(raw: list[float], goal: float | None = None, higher_is_better: bool = True) -> dict[str, Any]:
    median = statistics.median(raw)
    summary: dict[str, Any] = {"median": median, "raw": raw}
    if goal is not None:
        summary["goal"] = goal
        summary["meets_goal"] = median >= goal if higher_is_better else median < goal
    return summary


def machine_info() -> dict[str, Any]:
    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_end": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **{name: package(name) for name in ("numpy", "zarr", "torch", "stable-baselines3")},
    }


def run_replay_benchmark(repeats: int = 5, tmpdir: str | os.PathLike[str] | None = None,
                         sample_seconds: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Run every measurement ``repeats`` times; return a JSON-ready dict (see module docstring).

    Stores are written under ``tmpdir`` (default: the system temporary directory) and deleted.
    """
    frames = camera_frames(EPISODE_STEPS, seed=seed)
    recordings = []
    samplings = []
    memory: dict[str, Any] = {}
    for repeat in range(repeats):
        print(f"replay bench: repeat {repeat + 1}/{repeats}", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=tmpdir, prefix="replay_bench_") as directory:
            recordings.append(measure_recording(Path(directory), frames))
        rates, memory = measure_sampling(sample_seconds, frames, seed + repeat)  # memory: the same every repeat
        samplings.append(rates)
    append = {
        situation: {stat: _summary([r[situation][stat] for r in recordings],
                                   GOALS["append_p99_us"] if stat == "p99" else None, higher_is_better=False)
                    for stat in ("p50", "p99", "max")}
        for situation in ("idle", "while_committing")
    }
    commits = [ms for r in recordings for ms in r["commit_ms"]]
    sampling = {case: _summary([s[case] for s in samplings], _sampling_goal(case)) for case in samplings[0]}
    return {
        "benchmark": "replay",
        "config": {"repeats": repeats, "image": [IMAGE_SIZE, IMAGE_SIZE, 3], "cameras": list(IMAGE_FEATURES),
                   "episode_steps": EPISODE_STEPS,
                   "episodes_per_repeat": EPISODES_PER_REPEAT, "batch_size": BATCH_SIZE,
                   "image_capacity": IMAGE_CAPACITY, "state_capacity": STATE_CAPACITY,
                   "low_dim_features": {k: list(v.shape) for k, v in {**STATE_FEATURES, **TRANSITION_FEATURES}.items()},
                   "sample_seconds": sample_seconds},
        "append_step_us": append,
        "commit_ms": {**_summary(commits, GOALS["commit_ms"], higher_is_better=False),
                      "p90": float(np.percentile(commits, 90))},
        "storage": {key: statistics.median(r[key] for r in recordings)
                    for key in ("image_bytes_per_frame", "image_bytes_per_step", "image_compression_ratio")},
        "sample_batches_per_s": sampling,
        "memory": {"definition": "RAM-tier bytes per stored transition (obs, action, reward, done, next obs "
                                 "available), buffers filled with 200-step episodes",
                   **memory},
        "machine": machine_info(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run_replay_benchmark(), indent=2))
