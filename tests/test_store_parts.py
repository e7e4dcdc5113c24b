"""The pieces EpisodeStore is made of: schema, lock, episode buffer, reader beside a writer."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import robot_rl.data.store as store_module
from robot_rl.data.episode_buffer import EpisodeBuffer
from robot_rl.data.layout import StoreLock
from robot_rl.data.schema import TRANSITION_FEATURES, FeatureSpec, StoreError, source_code, transition_specs
from robot_rl.data.store import EpisodeStore

FEATURES = {
    "joint_pos": FeatureSpec("float32", (7,)),
    "image_scene": FeatureSpec("uint8", (8, 8, 3)),
    **transition_specs((4,)),
}
OBS_KEYS = ("joint_pos", "image_scene")


def make_episode(index: int, length: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(index)
    steps = {name: rng.integers(0, 100, (length, *spec.shape)).astype(spec.dtype) for name, spec in FEATURES.items()}
    final = {key: rng.integers(0, 100, FEATURES[key].shape).astype(FEATURES[key].dtype) for key in OBS_KEYS}
    return steps, final


def test_public_names_of_the_store_module_stay_importable():
    names = ["FORMAT", "SCHEMA_VERSION", "SOURCES", "SOURCE_NAMES", "EPISODE_TABLES", "EPISODE_ENDS_CHUNK",
             "TABLE_CHUNK", "LOWDIM_CHUNK", "IMAGE_CHUNK", "RESERVE_ROWS", "RESERVE_CHUNKS", "RESERVED_ATTRS",
             "TRANSITION_FEATURES", "StoreError", "SpecMismatchError", "FeatureSpec", "features_from_spaces",
             "Episode", "EpisodeStore", "episode_blocks"]
    assert all(hasattr(store_module, name) for name in names)


def test_transition_schema_is_defined_once():
    assert tuple(transition_specs((3,))) == TRANSITION_FEATURES
    assert transition_specs((3,))["action"] == FeatureSpec("float32", (3,))
    assert source_code("human") == source_code(1) == 1
    with pytest.raises(ValueError, match="unknown source code 9"):
        source_code(9)


def test_lock_is_exclusive_and_released(tmp_path):
    lock = StoreLock(tmp_path)
    with pytest.raises(StoreError, match="another process or store object"):
        StoreLock(tmp_path)
    lock.release()
    lock.release()  # idempotent
    StoreLock(tmp_path).release()


def test_episode_buffer_grows_and_hands_over_read_only_rows():
    buffer = EpisodeBuffer(FEATURES, capacity=2)
    steps, _ = make_episode(0, 5)
    for t in range(5):
        buffer.append({name: values[t] for name, values in steps.items()})
    taken = buffer.take(next_capacity=8)
    assert buffer.n == 0
    for name, values in steps.items():
        assert np.array_equal(taken[name], values)
        assert not taken[name].flags.writeable


def test_reader_beside_a_writer_sees_only_committed_episodes(tmp_path):
    path = tmp_path / "live.zarr"
    with EpisodeStore.create(path, FEATURES, OBS_KEYS, {"control_hz": 10}) as writer:
        for index in range(2):
            writer.append_episode(*make_episode(index, 5), success=True)
        writer.flush()
        steps, final = make_episode(2, 4)
        for t in range(4):  # an episode in flight, not queued
            writer.append_step({name: values[t] for name, values in steps.items()})
        # the writer reserves rows ahead of the data: the arrays are longer than the commit
        assert zarr.open_array(str(path / "data" / "joint_pos"), mode="r").shape[0] > 10

        reader = EpisodeStore.open(path, "r")
        assert (reader.n_episodes, reader.n_steps, reader.mode) == (2, 10, "r")
        assert reader.load(["joint_pos"])["joint_pos"].shape == (10, 7)
        assert reader.final_obs()["image_scene"].shape == (2, 8, 8, 3)
        with pytest.raises(IndexError):
            reader.read_episode(2)

        writer.end_episode(final, success=False)
        writer.flush()
        assert (writer.n_episodes, writer.n_steps) == (3, 14)
        assert reader.n_episodes == 2  # a reader is the commit it opened at
        assert EpisodeStore.open(path, "r").n_episodes == 3
    assert zarr.open_array(str(path / "data" / "joint_pos"), mode="r").shape[0] == 14  # trimmed on close
