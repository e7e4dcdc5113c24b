"""Dataset tools and dataset/env compatibility on real Zarr stores (and a real MuJoCo env):
merge, split, filter, diffusion_policy import/export, ``check_compatible``, ``load_demonstrations``."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
import zarr

from robot_rl.cli import main
from robot_rl.data import EpisodeStore, FeatureSpec, SpecMismatchError, StoreError, features_from_spaces
from robot_rl.data.compat import EmptyDatasetError, check_compatible, load_demonstrations
from robot_rl.data.tools import (
    export_diffusion_policy,
    filter_store,
    import_diffusion_policy,
    merge_stores,
    split_store,
)
from robot_rl.envs import make_arm_env

FEATURES = {
    "joint_pos": FeatureSpec("float32", (7,), names=tuple(f"joint{i}" for i in range(1, 8))),
    "image_scene": FeatureSpec("uint8", (6, 6, 3)),
    "action": FeatureSpec("float32", (4,)),
    "reward": FeatureSpec("float32", ()),
    "terminated": FeatureSpec("bool", ()),
}
OBS_KEYS = ("joint_pos", "image_scene")
SOURCE_CYCLE = ("scripted", "human", "intervention", "policy")


def make_episode(index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Episode ``index``'s steps and final observation: a pure function of the index."""
    rng = np.random.default_rng(index)
    length = 3 + (index * 7) % 11  # straddles the 8-frame image chunks
    steps = {
        "joint_pos": rng.standard_normal((length, 7)).astype(np.float32),
        "image_scene": rng.integers(0, 256, (length, 6, 6, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (length, 4)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "terminated": np.arange(length) == length - 1 if index % 2 else np.zeros(length, bool),
    }
    final = {"joint_pos": rng.standard_normal(7).astype(np.float32),
             "image_scene": rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)}
    return steps, final


def build_store(path, indices, tasks, control_hz=10.0, features=FEATURES, **attrs) -> None:
    """A store holding episodes ``indices`` (seed = index; success every third; sources and
    ``tasks`` cycling)."""
    with EpisodeStore.create(path, features, OBS_KEYS, {"control_hz": control_hz, **attrs}) as store:
        for i in indices:
            steps, final = make_episode(i)
            store.append_episode(steps, final, success=i % 3 == 0, source=SOURCE_CYCLE[i % 4], seed=i,
                                 task=tasks[i % len(tasks)])


def assert_holds(path, indices, tasks) -> None:
    """The store at ``path`` holds exactly episodes ``indices`` of :func:`build_store`, in order."""
    store = EpisodeStore.open(path)
    assert store.n_episodes == len(indices)
    assert store.features == FEATURES and store.obs_keys == OBS_KEYS
    for position, i in enumerate(indices):
        episode = store.read_episode(position)
        steps, final = make_episode(i)
        for name, values in steps.items():
            assert episode.steps[name].tobytes() == values.tobytes(), (i, name)
        for key, value in final.items():
            assert episode.final_obs[key].tobytes() == value.tobytes(), (i, key)
        assert (episode.seed, episode.success, episode.source) == (i, i % 3 == 0, SOURCE_CYCLE[i % 4])
        assert episode.task == tasks[i % len(tasks)]
    assert store.episode_ends.tolist() == np.cumsum([len(make_episode(i)[0]["action"]) for i in indices]).tolist()


def leftovers(directory) -> list:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".partial"))


@pytest.fixture
def two_stores(tmp_path):
    """Two stores whose task lists differ in content and order."""
    build_store(tmp_path / "a.zarr", range(5), ["push", "reach"], robot="panda", operator="ann")
    build_store(tmp_path / "b.zarr", range(5, 12), ["pick", "push", None], robot="panda", operator="bob")
    return tmp_path / "a.zarr", tmp_path / "b.zarr"


def task_of(i: int) -> str | None:
    """The task build_store gave episode ``i`` in the two_stores fixture."""
    return ["push", "reach"][i % 2] if i < 5 else ["pick", "push", None][i % 3]


# --------------------------------------------------------------------------- append_episode
def test_append_episode_checks_its_input_and_keeps_the_store_intact(tmp_path):
    path = tmp_path / "s.zarr"
    build_store(path, [0], ["reach"])
    steps, final = make_episode(1)
    with EpisodeStore.open(path, "a") as store:
        with pytest.raises(ValueError, match="'image_scene' has shape"):
            store.append_episode({**steps, "image_scene": steps["image_scene"][:-1]}, final, success=False)
        with pytest.raises(ValueError, match=r"missing \['reward'\]"):
            store.append_episode({k: v for k, v in steps.items() if k != "reward"}, final, success=False)
        with pytest.raises(ValueError, match="unknown source 'robot'"):
            store.append_episode(steps, final, success=False, source="robot")
        store.append_step({name: values[0] for name, values in steps.items()})
        with pytest.raises(ValueError, match="1 steps of another episode are in flight"):
            store.append_episode(steps, final, success=False)
    assert_holds(path, [0], ["reach"])


# --------------------------------------------------------------------------- merge
def test_merge_keeps_episodes_tables_and_remaps_tasks(tmp_path, two_stores):
    out = tmp_path / "merged.zarr"
    calls = []
    summary = merge_stores(out, two_stores, progress=lambda done, total: calls.append((done, total)))
    assert summary == {"path": str(out), "episodes": 12, "steps": EpisodeStore.open(out).n_steps,
                       "successes": 4}
    assert calls[-1] == (12, 12)
    store = EpisodeStore.open(out)
    assert [store.read_episode(i).task for i in range(12)] == [task_of(i) for i in range(12)]
    for position in range(12):
        episode, (steps, final) = store.read_episode(position), make_episode(position)
        assert all(episode.steps[name].tobytes() == steps[name].tobytes() for name in FEATURES)
        assert all(episode.final_obs[key].tobytes() == final[key].tobytes() for key in OBS_KEYS)
        assert (episode.seed, episode.source) == (position, SOURCE_CYCLE[position % 4])
    assert store.features["joint_pos"].names == FEATURES["joint_pos"].names
    attrs = store.user_attrs
    assert attrs == {"control_hz": 10.0, "robot": "panda"}  # "operator" differed between inputs
    assert not leftovers(tmp_path)


def test_merge_refuses_mismatched_inputs_and_existing_outputs(tmp_path, two_stores):
    a, b = two_stores
    wider = {**FEATURES, "action": FeatureSpec("float32", (5,))}
    build_store(tmp_path / "wide.zarr", [], ["reach"], features=wider)
    with pytest.raises(SpecMismatchError, match=r"wide.zarr.*action: shape \(5,\) in the store, expected \(4,\)"):
        merge_stores(tmp_path / "out.zarr", [a, tmp_path / "wide.zarr"])
    build_store(tmp_path / "fast.zarr", [20], ["reach"], control_hz=20.0)
    with pytest.raises(SpecMismatchError, match="control rate 20.0 Hz vs 10.0 Hz"):
        merge_stores(tmp_path / "out.zarr", [a, tmp_path / "fast.zarr"])
    assert not (tmp_path / "out.zarr").exists() and not leftovers(tmp_path)
    with pytest.raises(StoreError, match="already exists; refusing to overwrite"):
        merge_stores(b, [a])
    assert_holds(b, range(5, 12), ["pick", "push", None])


# --------------------------------------------------------------------------- split
def test_split_by_episode(tmp_path):
    source = tmp_path / "ten.zarr"
    build_store(source, range(10), ["reach"])
    train, valid = tmp_path / "train.zarr", tmp_path / "valid.zarr"
    summary = split_store(source, train, valid, valid_fraction=0.3, seed=4)
    assert (summary["train"]["episodes"], summary["valid"]["episodes"]) == (7, 3)
    train_seeds = EpisodeStore.open(train).episodes["seed"].tolist()
    valid_seeds = EpisodeStore.open(valid).episodes["seed"].tolist()
    assert sorted(train_seeds + valid_seeds) == list(range(10))
    assert train_seeds == sorted(train_seeds) and valid_seeds == sorted(valid_seeds)
    assert_holds(train, train_seeds, ["reach"])
    assert_holds(valid, valid_seeds, ["reach"])

    again = split_store(source, tmp_path / "t2.zarr", tmp_path / "v2.zarr", valid_fraction=0.3, seed=4)
    assert EpisodeStore.open(tmp_path / "v2.zarr").episodes["seed"].tolist() == valid_seeds
    assert again["valid"]["steps"] == summary["valid"]["steps"]
    tiny = split_store(source, tmp_path / "t3.zarr", tmp_path / "v3.zarr", valid_fraction=0.01)
    assert tiny["valid"]["episodes"] == 1  # never an empty validation set

    build_store(tmp_path / "one.zarr", [0], ["reach"])
    with pytest.raises(StoreError, match="cannot split 1 episode"):
        split_store(tmp_path / "one.zarr", tmp_path / "t4.zarr", tmp_path / "v4.zarr")
    with pytest.raises(StoreError, match="already exists"):
        split_store(source, tmp_path / "t5.zarr", valid)
    assert not (tmp_path / "t5.zarr").exists() and not leftovers(tmp_path)


# --------------------------------------------------------------------------- filter
def test_filter_by_success_source_and_task(tmp_path, two_stores):
    merged = tmp_path / "merged.zarr"
    merge_stores(merged, two_stores)
    successful = filter_store(merged, tmp_path / "ok.zarr", successful_only=True)
    assert EpisodeStore.open(tmp_path / "ok.zarr").episodes["seed"].tolist() == [0, 3, 6, 9]
    assert successful["successes"] == successful["episodes"] == 4

    filter_store(merged, tmp_path / "people.zarr", sources=["human", "intervention"], tasks=["push"])
    people = EpisodeStore.open(tmp_path / "people.zarr")
    expected = [i for i in range(12) if SOURCE_CYCLE[i % 4] in ("human", "intervention") and task_of(i) == "push"]
    assert people.episodes["seed"].tolist() == expected
    assert people.tasks == ["push"]
    for position, i in enumerate(expected):
        assert people.read_episode(position).steps["image_scene"].tobytes() == make_episode(i)[0]["image_scene"].tobytes()

    with pytest.raises(StoreError, match=r"no episodes of tasks \['peg'\]"):
        filter_store(merged, tmp_path / "x.zarr", tasks=["peg"])
    with pytest.raises(StoreError, match="none of its 12 episodes pass the filter"):
        filter_store(merged, tmp_path / "x.zarr", successful_only=True, sources=["scripted"], tasks=["pick"])
    with pytest.raises(ValueError, match="unknown sources"):
        filter_store(merged, tmp_path / "x.zarr", sources=["keyboard"])
    assert not (tmp_path / "x.zarr").exists() and not leftovers(tmp_path)


# --------------------------------------------------------------------------- diffusion_policy
def test_diffusion_policy_export_import_round_trip(tmp_path, two_stores):
    merged, exported, back = tmp_path / "merged.zarr", tmp_path / "dp.zarr", tmp_path / "back.zarr"
    merge_stores(merged, two_stores)
    summary = export_diffusion_policy(merged, exported)
    assert (summary["episodes"], set(summary["features"])) == (12, set(FEATURES))

    # What a zarr 2 reader (diffusion_policy's ReplayBuffer) finds on disk.
    assert json.loads((exported / ".zgroup").read_text())["zarr_format"] == 2
    ends_meta = json.loads((exported / "meta" / "episode_ends" / ".zarray").read_text())
    assert (ends_meta["zarr_format"], ends_meta["dtype"]) == (2, "<i8")
    image_meta = json.loads((exported / "data" / "image_scene" / ".zarray").read_text())
    assert (image_meta["dtype"], image_meta["shape"]) == ("|u1", [EpisodeStore.open(merged).n_steps, 6, 6, 3])
    assert image_meta["compressor"]["id"] == "blosc"
    root = zarr.open_group(str(exported), mode="r", zarr_format=2)
    assert sorted(root["data"].array_keys()) == sorted(FEATURES)
    assert root["meta/episode_ends"][:].tolist() == EpisodeStore.open(merged).episode_ends.tolist()

    import_diffusion_policy(exported, back)
    original, imported = EpisodeStore.open(merged), EpisodeStore.open(back)
    assert imported.features == original.features and imported.obs_keys == original.obs_keys
    assert imported.episode_ends.tolist() == original.episode_ends.tolist()
    for name, values in original.load().items():
        assert imported.load([name])[name].tobytes() == values.tobytes(), name
    for key, values in original.final_obs().items():
        assert imported.final_obs()[key].tobytes() == values.tobytes(), key
    for name in ("success", "source", "seed"):
        assert imported.episodes[name].tolist() == original.episodes[name].tolist(), name
    assert [imported.read_episode(i).task for i in range(12)] == [task_of(i) for i in range(12)]
    assert imported.attrs["control_hz"] == 10.0 and imported.attrs["robot"] == "panda"
    assert imported.attrs["imported_from"]["layout"] == "diffusion_policy"
    with pytest.raises(StoreError, match="already a robot_rl episode store"):
        import_diffusion_policy(merged, tmp_path / "nope.zarr")


def write_zarr2_array(directory, values: np.ndarray, chunk_rows: int) -> None:
    """An uncompressed Zarr v2 array written by hand, as zarr 2.x lays it out."""
    directory.mkdir(parents=True)
    chunks = [chunk_rows, *values.shape[1:]]
    (directory / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": list(values.shape), "chunks": chunks, "dtype": values.dtype.str,
        "compressor": None, "fill_value": 0, "filters": None, "order": "C", "dimension_separator": "."}))
    for i, start in enumerate(range(0, len(values), chunk_rows)):
        chunk = np.zeros(chunks, values.dtype)
        part = values[start: start + chunk_rows]
        chunk[: len(part)] = part
        (directory / ".".join([str(i)] + ["0"] * (values.ndim - 1))).write_bytes(chunk.tobytes())


def test_import_a_hand_built_diffusion_policy_store(tmp_path):
    root = tmp_path / "pusht_like.zarr"
    rng = np.random.default_rng(0)
    columns = {"state": rng.standard_normal((12, 5)).astype(np.float32),
               "action": rng.uniform(0, 512, (12, 2)),  # float64, in task units
               "img": rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)}
    for group in ("", "data", "meta"):
        (root / group).mkdir(parents=True, exist_ok=True)
        (root / group / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    for name, values in columns.items():
        write_zarr2_array(root / "data" / name, values, chunk_rows=5)
    write_zarr2_array(root / "meta" / "episode_ends", np.array([3, 7, 12], np.int64), chunk_rows=3)

    with pytest.raises(StoreError, match="does not record its control rate"):
        import_diffusion_policy(root, tmp_path / "out.zarr")
    summary = import_diffusion_policy(root, tmp_path / "out.zarr", control_hz=10.0, task="push_t")
    assert (summary["episodes"], summary["steps"], summary["successes"]) == (3, 12, 0)
    store = EpisodeStore.open(tmp_path / "out.zarr")
    assert store.features == {"action": FeatureSpec("float32", (2,)), "img": FeatureSpec("uint8", (8, 8, 3)),
                              "state": FeatureSpec("float32", (5,)), "reward": FeatureSpec("float32", ()),
                              "terminated": FeatureSpec("bool", ())}
    assert set(store.obs_keys) == {"img", "state"}
    assert store.episode_ends.tolist() == [3, 7, 12]
    steps = store.load()
    assert steps["state"].tobytes() == columns["state"].tobytes()
    assert steps["img"].tobytes() == columns["img"].tobytes()
    assert steps["action"].tobytes() == columns["action"].astype(np.float32).tobytes()
    assert not steps["reward"].any() and not steps["terminated"].any()
    finals = store.final_obs()
    assert finals["state"].tobytes() == columns["state"][[2, 6, 11]].tobytes()  # the last step's observation
    table = store.episodes
    assert table["source"].tolist() == [1, 1, 1] and table["seed"].tolist() == [-1, -1, -1]
    assert not table["success"].any() and store.tasks == ["push_t"]

    zipped = tmp_path / "pusht_like.zarr.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for file in root.rglob("*"):
            archive.write(file, file.relative_to(root).as_posix())
    import_diffusion_policy(zipped, tmp_path / "from_zip.zarr", control_hz=10.0)
    assert EpisodeStore.open(tmp_path / "from_zip.zarr").load(["img"])["img"].tobytes() == columns["img"].tobytes()

    marked = import_diffusion_policy(root, tmp_path / "ok.zarr", control_hz=10.0, source="scripted", success=True)
    assert marked["successes"] == 3
    assert EpisodeStore.open(tmp_path / "ok.zarr").episodes["source"].tolist() == [2, 2, 2]

    (root / "meta" / "episode_ends" / "0").write_bytes(np.array([3, 3, 12], np.int64).tobytes())
    with pytest.raises(StoreError, match="episode 1 is empty"):
        import_diffusion_policy(root, tmp_path / "bad.zarr", control_hz=10.0)
    assert not (tmp_path / "bad.zarr").exists() and not leftovers(tmp_path)


def test_data_commands(tmp_path, two_stores, capsys):
    """The CLI wiring: JSON on stdout, store problems as one-line errors with exit code 2."""
    a, b = two_stores

    def run(*args: str) -> dict:
        assert main(["data", *map(str, args)]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("merge", tmp_path / "m.zarr", a, b)["episodes"] == 12
    split = run("split", tmp_path / "m.zarr", "--train", tmp_path / "t.zarr", "--valid", tmp_path / "v.zarr",
                "--valid-fraction", "0.25", "--seed", "1")
    assert (split["train"]["episodes"], split["valid"]["episodes"]) == (9, 3)
    assert run("filter", tmp_path / "m.zarr", tmp_path / "f.zarr", "--successful-only", "--source", "policy", "intervention")["episodes"] == 2
    assert run("export-diffusion-policy", tmp_path / "f.zarr", tmp_path / "dp.zarr")["episodes"] == 2
    assert run("import-diffusion-policy", tmp_path / "dp.zarr", tmp_path / "i.zarr", "--source", "human")["episodes"] == 2
    assert EpisodeStore.open(tmp_path / "i.zarr").episodes["source"].tolist() == [1, 1]
    assert main(["data", "merge", str(tmp_path / "m.zarr"), str(a)]) == 2
    assert "m.zarr: the output already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "split", str(a), "--train", "t.zarr", "--valid", "v.zarr", "--valid-fraction", "1.5"])
    assert "must be between 0 and 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- compatibility
@pytest.fixture
def reach_env():
    env = make_arm_env("reach")
    yield env
    env.close()


def env_store(path, env, episodes=2, success=True, changes=None, rename=None, control_hz=10.0) -> EpisodeStore:
    """A store with ``env``'s features (after ``changes``: name → spec or None to drop, and
    ``rename``: old → new name), holding ``episodes`` episodes of zeros."""
    features = dict(features_from_spaces(env.observation_space, env.action_space))
    for name, spec in (changes or {}).items():
        if spec is None:
            features.pop(name)
        else:
            features[name] = spec
    features = {(rename or {}).get(name, name): spec for name, spec in features.items()}
    obs_keys = [name for name in features if name not in ("action", "reward", "terminated")]
    with EpisodeStore.create(path, features, obs_keys, {"control_hz": control_hz}) as store:
        for seed in range(episodes):
            steps = {name: np.full((5, *spec.shape), seed, spec.dtype) for name, spec in features.items()}
            store.append_episode(steps, {key: steps[key][-1] for key in obs_keys}, success=success, seed=seed)
    return EpisodeStore.open(path)


@pytest.mark.parametrize("changes, control_hz, message", [
    ({"joint_pos": FeatureSpec("float32", (6,))}, 10.0, r"joint_pos: shape \(6,\) in the dataset, \(7,\) in the env"),
    ({"ee_pos": FeatureSpec("float64", (3,))}, 10.0, "ee_pos: dtype float64 in the dataset, float32 in the env"),
    ({"goal_offset": None}, 10.0, "goal_offset: the env has it, the dataset does not"),
    ({"image_scene": FeatureSpec("uint8", (8, 8, 3))}, 10.0, "image_scene: the dataset has it, the env does not"),
    ({"action": FeatureSpec("float32", (5,))}, 10.0, r"action: action dimension \(5,\) in the dataset, \(4,\) in the env"),
    ({}, 20.0, r"control rate: 20.0 Hz in the dataset, 10.0 Hz in the env \(control.control_hz\)"),
])
def test_check_compatible_names_each_difference(tmp_path, reach_env, changes, control_hz, message):
    store = env_store(tmp_path / "d.zarr", reach_env, changes=changes, control_hz=control_hz)
    with pytest.raises(SpecMismatchError, match=message):
        check_compatible(store, reach_env)


def test_rename_adapts_renamed_features(tmp_path, reach_env):
    store = env_store(tmp_path / "old.zarr", reach_env, rename={"goal_pos": "target_pos"})
    with pytest.raises(SpecMismatchError, match=r"goal_pos: the env has it.*target_pos: the dataset has it.*rename="):
        check_compatible(store, reach_env)
    check_compatible(store, reach_env, rename={"target_pos": "goal_pos"})
    with pytest.raises(ValueError, match=r"rename: \['nope'\] are not features"):
        check_compatible(store, reach_env, rename={"nope": "goal_pos"})
    with pytest.raises(ValueError, match=r"would be called \['ee_pos'\]"):
        check_compatible(store, reach_env, rename={"target_pos": "ee_pos"})

    other = env_store(tmp_path / "new.zarr", reach_env, episodes=3)
    with pytest.raises(SpecMismatchError, match="target_pos"):
        load_demonstrations([tmp_path / "old.zarr"], reach_env)
    buffer = load_demonstrations([tmp_path / "old.zarr"], reach_env, rename={"target_pos": "goal_pos"})
    assert (len(buffer), buffer.n_episodes) == (10, 2)
    assert set(buffer.obs_keys) == set(reach_env.observation_space.spaces)
    both = load_demonstrations([store.path, other.path], reach_env, rename={"target_pos": "goal_pos"}, capacity=20)
    assert (len(both), both.n_episodes) == (20, 4)  # the most recent episodes that fit
    batch = both.sample(64, np.random.default_rng(0))
    assert set(batch.obs) == set(reach_env.observation_space.spaces)
    assert set(np.unique(batch.obs["goal_pos"].numpy())) <= {0.0, 1.0, 2.0}


def test_empty_and_all_failure_datasets(tmp_path, reach_env):
    empty = env_store(tmp_path / "empty.zarr", reach_env, episodes=0)
    with pytest.raises(EmptyDatasetError, match="no committed episodes"):
        check_compatible(empty, reach_env)
    failures = env_store(tmp_path / "failed.zarr", reach_env, success=False)
    with pytest.warns(UserWarning, match="none of its 2 episodes succeeded"):
        check_compatible(failures, reach_env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_compatible(env_store(tmp_path / "good.zarr", reach_env), reach_env)
        assert len(load_demonstrations(tmp_path / "good.zarr", reach_env)) == 10
