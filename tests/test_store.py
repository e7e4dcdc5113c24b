"""EpisodeStore on a real Zarr directory: round trip, resume, schema errors, crash leftovers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from gymnasium import spaces

from robot_rl.data import (
    EpisodeStore,
    FeatureSpec,
    SpecMismatchError,
    StoreError,
    features_from_spaces,
    store_info,
)

FEATURES = {
    "joint_pos": FeatureSpec("float32", (7,), names=tuple(f"joint{i}" for i in range(1, 8))),
    "ee_pos": FeatureSpec("float32", (3,)),
    "goal_pos": FeatureSpec("float32", (3,)),
    "image_scene": FeatureSpec("uint8", (16, 16, 3)),
    "action": FeatureSpec("float32", (4,)),
    "reward": FeatureSpec("float32", ()),
    "terminated": FeatureSpec("bool", ()),
}
OBS_KEYS = ("joint_pos", "ee_pos", "goal_pos", "image_scene")
ATTRS = {"control_hz": 10.0, "task": "reach", "env": {"robot": "panda", "action_mode": "ee_delta"}}


def make_episode(index: int, length: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Deterministic content for episode ``index``: steps and final observation."""
    rng = np.random.default_rng(index)
    steps = {}
    for name, spec in FEATURES.items():
        if spec.dtype == "uint8":
            steps[name] = rng.integers(0, 256, (length, *spec.shape), dtype=np.uint8)
        elif spec.dtype == "bool":
            steps[name] = np.zeros(length, bool)
        else:
            steps[name] = rng.standard_normal((length, *spec.shape)).astype(spec.dtype)
    steps["terminated"][-1] = index % 2 == 0
    final = {key: steps[key][-1] + (1 if key == "image_scene" else 0.5) for key in OBS_KEYS}
    return steps, final


def write_episode(store: EpisodeStore, index: int, length: int, **row) -> None:
    steps, final = make_episode(index, length)
    for t in range(length):
        store.append_step({name: values[t] for name, values in steps.items()})
    store.end_episode(final, **{"success": index % 3 == 0, "seed": 100 + index, **row})


def assert_episode(store: EpisodeStore, index: int, length: int) -> None:
    steps, final = make_episode(index, length)
    episode = store.read_episode(index)
    assert episode.steps.keys() == steps.keys()
    for name, values in steps.items():
        assert episode.steps[name].dtype == values.dtype
        assert episode.steps[name].tobytes() == values.tobytes(), name
    for key, value in final.items():
        assert episode.final_obs[key].tobytes() == value.astype(FEATURES[key].dtype).tobytes(), key


def partial_files(path) -> list:
    return sorted(path.rglob("*.partial"))


LENGTHS = [5, 12, 1, 9]


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "episodes.zarr"
    with EpisodeStore.create(path, FEATURES, OBS_KEYS, ATTRS) as store:
        write_episode(store, 0, LENGTHS[0])
        write_episode(store, 1, LENGTHS[1], source="human", task="push")
        write_episode(store, 2, LENGTHS[2], source="scripted", task=None)
        store.flush()
        assert store.n_episodes == 3
    return path


def test_round_trip_is_byte_identical(filled):
    store = EpisodeStore.open(filled)
    assert (store.n_episodes, store.n_steps, store.generation) == (3, 18, 3)
    assert store.episode_ends.tolist() == [5, 17, 18]
    assert store.features == FEATURES
    assert store.features["joint_pos"].names == tuple(f"joint{i}" for i in range(1, 8))
    assert store.obs_keys == OBS_KEYS
    for index in range(3):
        assert_episode(store, index, LENGTHS[index])
    table = store.episodes
    assert table["length"].tolist() == LENGTHS[:3]
    assert table["success"].tolist() == [True, False, False]
    assert table["source"].tolist() == [0, 1, 2]
    assert table["seed"].tolist() == [100, 101, 102]
    assert [store.tasks[code] for code in table["task"]] == ["reach", "push", "reach"]
    episode = store.read_episode(-2)
    assert (episode.source, episode.task, episode.seed, episode.length) == ("human", "push", 101, 12)
    attrs = store.attrs
    assert attrs["env"] == ATTRS["env"] and attrs["control_hz"] == 10.0
    assert attrs["commit"] == {"n_episodes": 3, "n_steps": 18, "generation": 3}

    everything = store.load()
    for name in FEATURES:
        expected = np.concatenate([make_episode(i, LENGTHS[i])[0][name] for i in range(3)])
        assert everything[name].tobytes() == expected.tobytes()
    picked = store.load(["action", "image_scene"], episodes=[2, 0, 1])
    expected = np.concatenate([make_episode(i, LENGTHS[i])[0]["image_scene"] for i in (2, 0, 1)])
    assert picked.keys() == {"action", "image_scene"}
    assert picked["image_scene"].tobytes() == expected.tobytes()
    small_blocks = store.load(["joint_pos"], episodes=[0, 1], block_steps=1)["joint_pos"]
    assert small_blocks.tobytes() == everything["joint_pos"][:17].tobytes()
    finals = store.final_obs([1])
    assert finals["goal_pos"][0].tobytes() == make_episode(1, 12)[1]["goal_pos"].astype(np.float32).tobytes()
    with pytest.raises(IndexError, match="3 committed episodes"):
        store.read_episode(3)
    with pytest.raises(KeyError, match="nope"):
        store.load(["nope"])


def test_plain_zarr_readers_see_the_layout(filled):
    """diffusion_policy-style consumers read data/<feature> and meta/episode_ends directly."""
    root = zarr.open_group(str(filled), mode="r")
    assert root["meta/episode_ends"][:].tolist() == [5, 17, 18]
    assert root["meta/episode_ends"].chunks == (2**16,)
    assert root["data/image_scene"].chunks == (8, 16, 16, 3)
    assert root["data/action"].chunks == (8192, 4)
    assert root["data/action"].shape == (18, 4)
    assert root.attrs["format"] == "robot_rl.episodes"


def test_resume_appending_across_reopen(filled):
    with EpisodeStore.open(filled, "a", expect_features=FEATURES) as store:
        assert store.n_episodes == 3
        write_episode(store, 3, LENGTHS[3])
    with EpisodeStore.open_or_create(filled, FEATURES, OBS_KEYS, ATTRS) as store:
        write_episode(store, 4, 7, source="intervention")
    store = EpisodeStore.open(filled)
    assert (store.n_episodes, store.n_steps, store.generation) == (5, 34, 5)
    for index, length in enumerate([*LENGTHS, 7]):
        assert_episode(store, index, length)
    assert store.episodes["source"].tolist() == [0, 1, 2, 0, 3]


def test_writer_surfaces_errors_and_keeps_the_last_commit(tmp_path):
    path = tmp_path / "broken.zarr"
    store = EpisodeStore.create(path, FEATURES, OBS_KEYS, ATTRS)
    chunk_dir = path / "data" / "action" / "c"
    chunk_dir.write_text("not a directory")  # every chunk write of data/action now fails
    write_episode(store, 0, 4)
    with pytest.raises(StoreError, match="background writer failed"):
        store.flush()
    with pytest.raises(StoreError, match="background writer failed"):
        store.append_step({})
    with pytest.raises(StoreError, match="background writer failed"):
        store.close()
    chunk_dir.unlink()
    with EpisodeStore.open(path, "a") as reopened:
        assert (reopened.n_episodes, reopened.n_steps) == (0, 0)
        assert zarr.open_array(str(path / "data" / "joint_pos"), mode="r").shape == (0, 7)
        write_episode(reopened, 0, 4)
    assert_episode(EpisodeStore.open(path), 0, 4)


def test_feature_mismatch_names_the_features(filled):
    expected = dict(FEATURES)
    expected["action"] = FeatureSpec("float64", (4,))
    expected["joint_pos"] = FeatureSpec("float32", (9,))
    del expected["goal_pos"]
    expected["image_wrist"] = FeatureSpec("uint8", (16, 16, 3))
    with pytest.raises(SpecMismatchError) as info:
        EpisodeStore.open(filled, "a", expect_features=expected)
    message = str(info.value)
    assert str(filled) in message
    assert "action: dtype float32 in the store, expected float64" in message
    assert "joint_pos: shape (7,) in the store, expected (9,)" in message
    assert "goal_pos: in the store but not expected" in message
    assert "image_wrist: missing from the store" in message
    with pytest.raises(SpecMismatchError, match="action"):
        EpisodeStore.open_or_create(filled, expected, OBS_KEYS, ATTRS)


def test_not_a_store_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    (tmp_path / "file.zarr").write_text("hello")
    with pytest.raises(StoreError, match="not a directory"):
        EpisodeStore.open(tmp_path / "file.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(StoreError, match="no zarr.json"):
        EpisodeStore.open(tmp_path / "empty.zarr")
    foreign = zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    foreign.create_array("data", shape=(3,), dtype="int32")
    with pytest.raises(StoreError, match=r"foreign.zarr: a Zarr store, but not a robot_rl episode store"):
        EpisodeStore.open(tmp_path / "foreign.zarr", "a")
    with pytest.raises(StoreError, match="already exists"):
        EpisodeStore.create(tmp_path / "foreign.zarr", FEATURES, OBS_KEYS, ATTRS)


def test_damaged_store_errors(filled, tmp_path):
    missing = tmp_path / "missing_array.zarr"
    shutil.copytree(filled, missing)
    shutil.rmtree(missing / "data" / "goal_pos")
    with pytest.raises(StoreError, match=r"missing_array.zarr: array data/goal_pos is missing"):
        EpisodeStore.open(missing)

    beyond = tmp_path / "beyond.zarr"
    shutil.copytree(filled, beyond)
    document = json.loads((beyond / "zarr.json").read_text())
    document["attributes"]["commit"] = {"n_episodes": 4, "n_steps": 30, "generation": 4}
    (beyond / "zarr.json").write_text(json.dumps(document))
    with pytest.raises(StoreError, match="commit record points beyond the data"):
        EpisodeStore.open(beyond, "a")


def test_create_validates_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="control_hz"):
        EpisodeStore.create(tmp_path / "a.zarr", FEATURES, OBS_KEYS, {"task": "reach"})
    with pytest.raises(ValueError, match="reserved keys"):
        EpisodeStore.create(tmp_path / "b.zarr", FEATURES, OBS_KEYS, {**ATTRS, "commit": 1})
    with pytest.raises(ValueError, match="obs_keys"):
        EpisodeStore.create(tmp_path / "c.zarr", FEATURES, ("wrist",), ATTRS)
    assert not list(tmp_path.iterdir())  # nothing half-created


def test_bad_steps_are_rejected_with_the_feature_name(tmp_path):
    with EpisodeStore.create(tmp_path / "s.zarr", FEATURES, OBS_KEYS, ATTRS) as store:
        steps, final = make_episode(0, 2)
        step = {name: values[0] for name, values in steps.items()}
        with pytest.raises(ValueError, match="'joint_pos': expected shape"):
            store.append_step({**step, "joint_pos": np.zeros(6, np.float32)})
        with pytest.raises(ValueError, match="missing.*'reward'"):
            store.append_step({k: v for k, v in step.items() if k != "reward"})
        with pytest.raises(ValueError, match="unexpected.*'extra'"):
            store.append_step({**step, "extra": 1.0})
        with pytest.raises(ValueError, match="no steps"):
            store.end_episode(final, success=False)
        store.append_step(step)
        with pytest.raises(ValueError, match="final_obs is missing observation 'goal_pos'"):
            store.end_episode({k: v for k, v in final.items() if k != "goal_pos"}, success=False)
        with pytest.raises(ValueError, match="unknown source 'robot'"):
            store.end_episode(final, success=False, source="robot")
        store.discard_episode()
        assert store.steps_in_flight == 0
        with pytest.raises(StoreError, match="another process or store object"):
            EpisodeStore.open(tmp_path / "s.zarr", "a")
    with pytest.raises(StoreError, match="read-only"):
        EpisodeStore.open(tmp_path / "s.zarr").append_step(step)


def test_half_written_state_is_trimmed_to_the_commit(filled):
    # What a kill in the middle of a commit leaves behind: arrays resized past the commit with
    # junk (or fill values) in the new rows, and temporary files of interrupted writes.
    root = zarr.open_group(str(filled), mode="r+")
    for name in ("joint_pos", "image_scene", "reward"):
        array = root[f"data/{name}"]
        array.resize((40, *array.shape[1:]))
        array[18:40] = 7
    root["data/action"].resize((30, 4))  # resized, never written: fill values
    root["meta/episode_ends"].resize((5,))
    root["meta/episode_ends"][3:] = [99, 123]
    root["meta/final_goal_pos"].resize((4, 3))
    leftovers = [filled / "zarr.json.commit.partial", filled / "data" / "image_scene" / "c" / "2.1a2b.partial"]
    for leftover in leftovers:
        leftover.write_bytes(b"\0junk")

    reader = EpisodeStore.open(filled, "r")  # read-only: view up to the commit, touch nothing
    assert (reader.n_episodes, reader.n_steps) == (3, 18)
    assert reader.load(["joint_pos"])["joint_pos"].shape == (18, 7)
    assert partial_files(filled) == sorted(leftovers)

    with EpisodeStore.open(filled, "a") as store:
        assert (store.n_episodes, store.n_steps, store.generation) == (3, 18, 3)
        assert partial_files(filled) == []
        trimmed = zarr.open_group(str(filled), mode="r")
        for name in FEATURES:
            assert trimmed[f"data/{name}"].shape[0] == 18, name
        assert trimmed["meta/episode_ends"].shape == (3,)
        assert trimmed["meta/final_goal_pos"].shape == (3, 3)
        write_episode(store, 3, LENGTHS[3])  # new rows overwrite the junk completely
    store = EpisodeStore.open(filled)
    assert (store.n_episodes, store.n_steps) == (4, 27)
    for index, length in enumerate(LENGTHS):
        assert_episode(store, index, length)


def test_store_info(filled):
    info = store_info(filled)
    assert {"path", "episodes", "steps", "features", "sources", "success_rate", "control_hz", "tasks",
            "generation"} <= info.keys()
    assert (info["episodes"], info["steps"], info["generation"]) == (3, 18, 3)
    assert info["features"]["image_scene"] == {"dtype": "uint8", "shape": [16, 16, 3], "names": None}
    assert info["sources"] == {"policy": 1, "human": 1, "scripted": 1, "intervention": 0}
    assert info["success_rate"] == pytest.approx(1 / 3)
    assert info["tasks"] == {"reach": 2, "push": 1}
    assert info["control_hz"] == 10.0 and info["task"] == "reach"
    assert info["attrs"]["env"] == ATTRS["env"]
    json.dumps(info)


def test_features_from_spaces():
    observation = spaces.Dict({
        "joint_pos": spaces.Box(-1, 1, (7,), np.float32),
        "image_scene": spaces.Box(0, 255, (8, 8, 3), np.uint8),
    })
    features = features_from_spaces(observation, spaces.Box(-1, 1, (4,), np.float32))
    assert features == {
        "joint_pos": FeatureSpec("float32", (7,)),
        "image_scene": FeatureSpec("uint8", (8, 8, 3)),
        "action": FeatureSpec("float32", (4,)),
        "reward": FeatureSpec("float32", ()),
        "terminated": FeatureSpec("bool", ()),
    }


# --------------------------------------------------------------------------- damaged chunks
def test_verify_lists_every_damaged_or_missing_chunk_and_reads_fail_clearly(filled, capsys):
    from robot_rl.cli import main
    from robot_rl.data.schema import CorruptDataError
    from robot_rl.data.verify import verify_store

    assert verify_store(filled) == {"path": str(filled), "ok": True, "arrays": 18, "chunks": 22, "problems": []}
    (filled / "data" / "image_scene" / "c" / "1" / "0" / "0" / "0").write_bytes(b"bit rot")  # rows 8..15
    (filled / "meta" / "final_ee_pos" / "c" / "0" / "0").unlink()  # Zarr alone would read zeros here
    report = verify_store(filled)
    assert not report["ok"]
    assert [(p["array"], p["chunk"], tuple(p["rows"])) for p in report["problems"]] == [
        ("data/image_scene", 1, (8, 16)), ("meta/final_ee_pos", 0, (0, 3))]
    assert "Zstd decompression error" in report["problems"][0]["error"]
    assert report["problems"][1]["error"].startswith("chunk file is missing")

    store = EpisodeStore.open(filled)  # the tables are intact: opening works ...
    episode = store.read_episode(0)  # ... and so does an episode outside the damaged chunk ...
    assert episode.steps["image_scene"].tobytes() == make_episode(0, LENGTHS[0])[0]["image_scene"].tobytes()
    assert not episode.final_obs["ee_pos"].any()  # ... but the missing chunk silently reads as zeros
    with pytest.raises(CorruptDataError, match=r"cannot read data/image_scene \(rows 5\.\.16\).*data verify"):
        store.read_episode(1)

    assert main(["data", "info", str(filled)]) == 0  # info reads no data chunk, and says so
    assert "chunk contents not checked" in capsys.readouterr().out
    assert store_info(filled)["chunks_checked"] is False
    assert main(["data", "verify", str(filled)]) == 1
    out, err = capsys.readouterr()
    assert "data/image_scene chunk 1 (rows 8..15, file data/image_scene/c/1/0/0/0): RuntimeError: Zstd" in out
    assert "meta/final_ee_pos chunk 0 (rows 0..2, file meta/final_ee_pos/c/0/0): chunk file is missing" in out
    assert err.strip().splitlines()[-1].endswith("2 damaged or missing chunk(s) (listed on stdout); "
                                                 "committed episodes that use them cannot be trusted")
