"""Real SIGKILLs of a process writing an EpisodeStore: every committed episode survives intact.

A child process appends deterministic episodes as fast as it can; the test kills it at random
moments, then checks that the store reopens at its last commit with every committed episode
byte-identical to what the generator produces for that index, trims what lies past the commit,
removes the ``*.partial`` files of interrupted writes, and that a new writer carries on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr

from robot_rl.data.store import EpisodeStore, FeatureSpec

FEATURES = {
    "joint_pos": FeatureSpec("float32", (7,)),
    "image_scene": FeatureSpec("uint8", (8, 8, 3)),
    "action": FeatureSpec("float32", (4,)),
    "reward": FeatureSpec("float32", ()),
    "terminated": FeatureSpec("bool", ()),
}
OBS_KEYS = ("joint_pos", "image_scene")
KILLS = 5

CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_store_crash import write_forever
write_forever({path!r})
"""


def make_episode(index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Episode ``index``'s steps and final observation: a pure function of the index."""
    rng = np.random.default_rng(index)
    length = 3 + (index * 37) % 29  # 3..31 steps: episodes straddle image chunks of 8 frames
    steps = {
        "joint_pos": rng.standard_normal((length, 7)).astype(np.float32),
        "image_scene": rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (length, 4)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "terminated": np.zeros(length, bool),
    }
    steps["terminated"][-1] = index % 3 == 0
    final = {"joint_pos": rng.standard_normal(7).astype(np.float32),
             "image_scene": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)}
    return steps, final


def write_forever(path: str) -> None:
    """Child process: continue the store from its last commit until killed."""
    store = EpisodeStore.open_or_create(path, FEATURES, OBS_KEYS, {"control_hz": 10, "task": "crash"})
    index = store.n_episodes
    print("ready", index, flush=True)
    while True:
        steps, final = make_episode(index)
        for t in range(len(steps["action"])):
            store.append_step({name: values[t] for name, values in steps.items()})
        store.end_episode(final, success=index % 2 == 0, source=index % 4, seed=index)
        index += 1


def verify(store: EpisodeStore) -> None:
    n = store.n_episodes
    assert store.generation == n  # one commit per episode since creation
    expected = [make_episode(i) for i in range(n)]
    ends = store.episode_ends
    assert ends.tolist() == np.cumsum([len(steps["action"]) for steps, _ in expected]).tolist()
    assert store.n_steps == (ends[-1] if n else 0)
    table = store.episodes
    assert table["seed"].tolist() == list(range(n))
    assert table["source"].tolist() == [i % 4 for i in range(n)]
    assert table["success"].tolist() == [i % 2 == 0 for i in range(n)]
    loaded = store.load()
    for name in FEATURES:
        want = np.concatenate([steps[name] for steps, _ in expected]) if n else np.zeros(0)
        assert loaded[name].tobytes() == want.tobytes(), name
    finals = store.final_obs()
    for key in OBS_KEYS:
        want = np.stack([final[key] for _, final in expected]) if n else np.zeros(0)
        assert finals[key].tobytes() == want.tobytes(), key


def test_sigkill_never_corrupts_committed_episodes(tmp_path):
    path = tmp_path / "crash.zarr"
    rng = np.random.default_rng()
    script = CHILD.format(tests=str(Path(__file__).parent), path=str(path))
    history = []
    for _ in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            ready = child.stdout.readline()
            assert ready.startswith("ready"), f"writer did not start: {ready!r}"
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL

        reader = EpisodeStore.open(path, "r")  # read-only view of a freshly killed store
        verify(reader)
        committed = reader.n_episodes
        leftovers = sorted(path.rglob("*.partial"))
        with EpisodeStore.open(path, "a", expect_features=FEATURES) as store:
            assert store.n_episodes == committed
            assert not list(path.rglob("*.partial"))
            root = zarr.open_group(str(path), mode="r")
            assert all(root[f"data/{name}"].shape[0] == store.n_steps for name in FEATURES)
            assert root["meta/episode_ends"].shape[0] == committed
            verify(store)
        history.append((committed, len(leftovers)))
    counts = [committed for committed, _ in history]
    assert counts == sorted(counts) and counts[-1] > 0, history
