"""Camera learning: encoders, encoder files, frozen features, privileged-free observations,
pixel learners. Real MuJoCo renders and real Zarr stores; small images keep it fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from robot_rl.agents import AgentConfig, make_agent
from robot_rl.agents.config import EncoderConfig
from robot_rl.config import ConfigError
from robot_rl.data import EpisodeStore
from robot_rl.data.compat import load_demonstrations
from robot_rl.data.recorder import recording_attrs
from robot_rl.data.store import features_from_spaces
from robot_rl.envs import GoalObservation
from robot_rl.envs.experts import make_expert
from robot_rl.training.config import load_train_config
from robot_rl.vision.encoders import (
    EncoderMismatchError,
    EncoderSpec,
    ImageEncoder,
    ResNetTrunk,
    SpatialSoftmax,
    load_resnet_weights,
    random_shift,
)
from robot_rl.vision.features import FEATURES_KEY, CameraFeatures, load_encoder, save_encoder
from robot_rl.vision.pretrain import PretrainSettings, pretrain_encoder

SIZE = 32
CAMERAS = ("image_scene", "image_wrist")
PIXELS = {"images": True, "image_height": SIZE, "image_width": SIZE, "privileged": False}


def small_spec(**changes) -> EncoderSpec:
    return EncoderSpec(**{"cameras": CAMERAS, "image_shape": (SIZE, SIZE, 3), "channels": 8, "feature_dim": 16,
                          **changes})


def frames(batch: int = 4, size: int = SIZE) -> dict[str, torch.Tensor]:
    return {key: torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8) for key in CAMERAS}


# ---------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("pool", ["spatial_softmax", "spatial_embedding", "flatten"])
def test_image_encoder_gives_bounded_features_per_camera(pool):
    encoder = ImageEncoder(small_spec(pool=pool))
    features = encoder(frames())
    assert features.shape == (4, 2 * 16)
    assert features.abs().max() <= 1.0  # tanh bottleneck


def test_spatial_softmax_finds_the_bright_spot():
    maps = torch.full((1, 1, 5, 5), -50.0)
    maps[0, 0, 4, 0] = 50.0  # bottom-left
    assert SpatialSoftmax(5, 5)(maps)[0].tolist() == pytest.approx([-1.0, 1.0], abs=1e-4)


def test_random_shift_crops_the_padded_image():
    images = torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8)
    assert torch.equal(random_shift(images, 0), images)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2).float(), (2, 2, 2, 2), mode="replicate")
    padded = padded.permute(0, 2, 3, 1).to(torch.uint8)
    for sample in range(16):
        crops = [padded[sample, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(shifted[sample], crop) for crop in crops)
    assert not all(torch.equal(shifted[s], images[s]) for s in range(16))  # some sample moved


def test_resnet_weights_in_torchvision_layout_load_and_a_wrong_file_is_named(tmp_path):
    reference = ResNetTrunk(3, 2)  # a ResNet-18 trunk with torchvision's parameter names
    state = {**reference.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "resnet18.pth")
    encoder = ImageEncoder(small_spec(trunk="resnet18", image_shape=(64, 64, 3)))
    load_resnet_weights(encoder, tmp_path / "resnet18.pth")
    loaded = encoder.cameras["image_wrist"].trunk.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in reference.state_dict().items())
    smaller = ImageEncoder(small_spec(trunk="resnet10", image_shape=(64, 64, 3)))
    with pytest.raises(EncoderMismatchError, match="not a torchvision resnet10 state dict.*unexpected"):
        load_resnet_weights(smaller, tmp_path / "resnet18.pth")


def test_encoder_file_round_trip_and_foreign_files(tmp_path):
    encoder = ImageEncoder(small_spec())
    save_encoder(tmp_path / "enc.pt", encoder, {"note": "test"})
    loaded, report = load_encoder(tmp_path / "enc.pt")
    assert report == {"note": "test"} and loaded.spec == encoder.spec
    batch = frames()
    assert torch.equal(loaded(batch), encoder.eval()(batch))
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(EncoderMismatchError, match="not a robot_rl encoder file"):
        load_encoder(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(EncoderMismatchError, match="not a robot_rl encoder file"):
        load_encoder(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError, match="robot-rl encoder pretrain"):
        load_encoder(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------- observations
def test_unprivileged_observation_leaves_out_object_poses_and_experts_still_solve(make_env):
    env = make_env("lift", overrides={"observation": {"privileged": False}})
    observation, _ = env.reset(seed=0)
    assert not {"cube_pos", "cube_quat", "cube_offset"} & set(observation)
    assert set(env.unwrapped.privileged_observation()) == {"cube_pos", "cube_quat", "cube_offset"}
    expert = make_expert(env)
    expert.reset()
    done, info = False, {}
    while not done:
        observation, _, terminated, truncated, info = env.step(expert.act(observation))
        done = terminated or truncated
    assert info["is_success"]


def test_goal_relabelling_is_refused_without_the_achieved_goal(make_env):
    with pytest.raises(ValueError, match="privileged: false leaves out"):
        GoalObservation(make_env("pick", overrides={"observation": {"privileged": False}}))
    with pytest.raises(ConfigError, match="her.strategy"):
        load_train_config(overrides={"env": {"task": {"name": "push"}, "observation": {"privileged": False}},
                                     "her": {"strategy": "future"}})
    # reach's achieved goal is the tool position, which a real arm reports
    load_train_config(overrides={"env": {"task": {"name": "reach"}, "observation": {"privileged": False}},
                                 "her": {"strategy": "future"}})


def test_camera_features_wrapper_and_mismatched_cameras(make_env):
    encoder = ImageEncoder(small_spec()).eval()
    env = CameraFeatures(make_env("lift", overrides={"observation": PIXELS}), encoder)
    observation, _ = env.reset(seed=0)
    assert observation[FEATURES_KEY].shape == (32,) and observation[FEATURES_KEY].dtype == np.float32
    with torch.no_grad():
        expected = encoder({key: torch.from_numpy(observation[key])[None] for key in CAMERAS})[0].numpy()
    np.testing.assert_allclose(observation[FEATURES_KEY], expected, atol=1e-6)
    bigger = make_env("lift", overrides={"observation": {**PIXELS, "image_height": 48}})
    with pytest.raises(EncoderMismatchError, match=r"'image_scene' is \(48, 32, 3\), the encoder expects \(32, 32, 3\)"):
        CameraFeatures(bigger, encoder)
    wrist_only = make_env("lift", overrides={"observation": {**PIXELS, "cameras": ["wrist"]}})
    with pytest.raises(EncoderMismatchError, match="camera 'image_scene' is missing"):
        CameraFeatures(wrist_only, encoder)


def test_demonstrations_without_features_get_them_computed_from_their_frames(make_env, tmp_path):
    raw = make_env("lift", overrides={"observation": PIXELS})
    store_path = tmp_path / "demos.zarr"
    features = features_from_spaces(raw.observation_space, raw.action_space)
    with EpisodeStore.create(store_path, features, list(raw.observation_space.spaces), recording_attrs(raw)) as store:
        observation, _ = raw.reset(seed=0)
        for _ in range(3):
            action = raw.action_space.sample()
            store.append_step({**observation, "action": action, "reward": np.float32(0), "terminated": False})
            observation, *_ = raw.step(action)
        store.end_episode(observation, success=True)
    encoder = ImageEncoder(small_spec()).eval()
    env = CameraFeatures(make_env("lift", overrides={"observation": PIXELS}), encoder)
    keys = ["ee_pos", FEATURES_KEY]
    buffer = load_demonstrations(store_path, env, obs_keys=keys)
    batch = buffer.empty_batch(3)
    buffer.gather(batch, 0, np.arange(3), 1, 0.99)
    with EpisodeStore.open(store_path, "r") as store:
        images = store.load(list(CAMERAS))
    with torch.no_grad():
        expected = encoder({key: torch.from_numpy(images[key]) for key in CAMERAS}).numpy()
    np.testing.assert_allclose(batch.obs[FEATURES_KEY].numpy(), expected, atol=1e-5)
    assert "image_scene" not in batch.obs  # the learner's keys only: no frames in RAM


# ---------------------------------------------------------------------------- learners
def pixel_space() -> spaces.Dict:
    return spaces.Dict({"ee_pos": spaces.Box(-1, 1, (3,), np.float32),
                        **{key: spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8) for key in CAMERAS}})


@pytest.mark.parametrize("algo", ["sac", "td3", "awac"])
def test_finetune_encoder_learns_from_the_critic_only(algo):
    config = AgentConfig(algo=algo, batch_size=8, hidden_sizes=(32, 32),
                         encoder=EncoderConfig(mode="finetune", channels=8, feature_dim=16))
    agent = make_agent(pixel_space(), spaces.Box(-1, 1, (4,), np.float32), config)
    assert agent.input_keys == ["ee_pos", *CAMERAS]
    batch = _batch(8)
    encoder_params = list(agent.encoder.parameters())
    before = [p.detach().clone() for p in encoder_params]
    actor_loss = {"sac": lambda: agent.actor_objective(batch)[0],
                  "td3": lambda: agent.actor_loss(batch)[0],
                  "awac": lambda: agent.actor.log_prob(agent.actor_features(batch.obs), batch.action).mean()}[algo]()
    actor_loss.backward()
    assert all(p.grad is None for p in encoder_params)  # no gradient from the actor
    agent.update_critic(batch)
    assert any(not torch.equal(b, p) for b, p in zip(before, encoder_params))  # the critic trained it
    action = agent.act({key: value[0].numpy() for key, value in batch.obs.items()}, deterministic=True)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    clone = make_agent(pixel_space(), spaces.Box(-1, 1, (4,), np.float32), config)
    clone.load_state_dict(agent.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(clone.encoder.parameters(), encoder_params))


def _batch(size: int):
    from types import SimpleNamespace

    def observation():
        return {"ee_pos": torch.rand(size, 3), **frames(size)}

    return SimpleNamespace(obs=observation(), next_obs=observation(), action=torch.rand(size, 4) * 2 - 1,
                           reward=torch.rand(size), discount=torch.full((size,), 0.99))


def test_pixel_config_needs_images_and_frozen_needs_a_file():
    with pytest.raises(ConfigError, match="env.observation.images: true"):
        load_train_config(overrides={"agent": {"encoder": {"mode": "finetune"}}})
    with pytest.raises(ConfigError, match="encoder file"):
        load_train_config(overrides={"agent": {"encoder": {"mode": "frozen"}}})


def test_pretrained_encoder_file_runs_a_frozen_training(make_env, tmp_path):
    """Pretrain on real renders (tiny), then train with the frozen features and resume."""
    from robot_rl.training.loop import train

    env = make_env("lift", overrides={"observation": PIXELS})
    settings = PretrainSettings(frames=120, epochs=1, batch_size=32, channels=8, feature_dim=8)
    report = pretrain_encoder(env, tmp_path / "enc.pt", settings)
    assert report["frames"] == 120 and "cube_pos[2]" in report["targets"]
    overrides = {"env": {"task": {"name": "lift"}, "observation": PIXELS},
                 "agent": {"batch_size": 16, "hidden_sizes": [32, 32],
                           "encoder": {"mode": "frozen", "weights": str(tmp_path / "enc.pt")}},
                 "train": {"total_steps": 120, "warmup_steps": 60, "eval_every": 120, "eval_episodes": 1,
                           "checkpoint_every": 50, "progress": False}}
    config = load_train_config(overrides=overrides)
    train(config, tmp_path / "run")
    with EpisodeStore.open(tmp_path / "run" / "seed_0" / "replay.zarr", "r") as store:
        assert store.n_steps >= 120 and store.features[FEATURES_KEY].shape == (16,)
        assert {"image_scene", "image_wrist"} <= set(store.features)


# ---------------------------------------------------------------------------- learned rewards
def confident_classifier(tmp_path, says_success: bool):
    """A classifier file whose head is biased to always (or never) say success."""
    from robot_rl.vision.reward_classifier import SuccessClassifier

    classifier = SuccessClassifier(small_spec(feature_dim=8))
    with torch.no_grad():
        classifier.head[-1].weight.zero_()
        classifier.head[-1].bias.fill_(20.0 if says_success else -20.0)
    return classifier.save(tmp_path / f"classifier_{says_success}.pt")


def test_classifier_reward_env_rewards_ends_and_counts_its_mistakes(make_env, tmp_path):
    from robot_rl.vision.reward_classifier import ClassifierReward
    from robot_rl.vision.reward_env import ClassifierRewardEnv

    inner = make_env("lift", overrides={"observation": PIXELS, "task": {"terminate_on_success": False}})
    env = ClassifierRewardEnv(inner, ClassifierReward.load(confident_classifier(tmp_path, True), hold_steps=2),
                              terminate_on_success=True)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert (reward, terminated, info["is_success"]) == (0.0, False, False)  # the hold gate: 1 of 2 steps
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert (reward, terminated, info["is_success"], info["true_success"]) == (1.0, True, True, False)
    assert env.episode_log() == {"true_success": 0.0, "classifier_fp_steps": 1.0, "classifier_fn_steps": 0.0,
                                 "classifier_fpr": 0.5}
    wrong_size = make_env("lift", overrides={"observation": {**PIXELS, "image_width": 40}})
    with pytest.raises(EncoderMismatchError, match="image_scene"):
        ClassifierRewardEnv(wrong_size, ClassifierReward.load(confident_classifier(tmp_path, True)), True)


def test_training_with_a_classifier_reward_logs_the_true_success(tmp_path):
    from robot_rl.training.loop import train

    with pytest.raises(ConfigError, match="classifier:PATH"):
        load_train_config(overrides={"reward": {"source": "classifier"}})
    with pytest.raises(ConfigError, match="her.strategy"):
        load_train_config(overrides={"reward": {"source": "classifier", "classifier": "c.pt"},
                                     "her": {"strategy": "future"}})
    config = load_train_config(overrides={
        "env": {"task": {"name": "lift"}, "observation": PIXELS},
        "reward": {"source": "classifier", "classifier": str(confident_classifier(tmp_path, False))},
        "agent": {"batch_size": 16, "hidden_sizes": [32, 32]},
        "train": {"total_steps": 100, "warmup_steps": 60, "eval_every": 100, "eval_episodes": 1, "progress": False}})
    train(config, tmp_path / "run")
    import csv

    rows = list(csv.DictReader(open(tmp_path / "run" / "seed_0" / "logs" / "episodes.csv")))
    assert rows and all(float(row["return"]) == 0.0 for row in rows)  # the classifier never says success
    assert {"true_success", "classifier_fpr"} <= set(rows[0])


def test_a_frame_that_changes_shape_or_dtype_mid_run_is_named():
    config = AgentConfig(hidden_sizes=(32, 32), encoder=EncoderConfig(mode="finetune", channels=8, feature_dim=16))
    agent = make_agent(pixel_space(), spaces.Box(-1, 1, (4,), np.float32), config)
    observation = {"ee_pos": np.zeros(3, np.float32),
                   **{key: np.zeros((SIZE, SIZE, 3), np.uint8) for key in CAMERAS}}
    agent.act(observation)
    with pytest.raises(EncoderMismatchError, match=r"'image_wrist' is \(16, 16, 3\)"):
        agent.act({**observation, "image_wrist": np.zeros((16, 16, 3), np.uint8)})
    with pytest.raises(EncoderMismatchError, match="'image_scene' is float32"):
        agent.act({**observation, "image_scene": np.zeros((SIZE, SIZE, 3), np.float32)})
    with pytest.raises(EncoderMismatchError, match="camera 'image_scene' is missing"):
        agent.act({key: value for key, value in observation.items() if key != "image_scene"})


def test_frame_stack_keeps_the_last_frames_oldest_first(make_env):
    env = make_env("lift", overrides={"observation": {**PIXELS, "frame_stack": 3}})
    assert env.observation_space["image_wrist"].shape == (SIZE, SIZE, 9)
    observation, _ = env.reset(seed=0)
    first = observation["image_wrist"]
    assert np.array_equal(first[..., :3], first[..., 3:6]) and np.array_equal(first[..., 3:6], first[..., 6:])
    frames = [first[..., 6:]]
    for _ in range(3):
        observation, *_ = env.step(np.array([0.0, 0.0, 1.0, 1.0], np.float32))  # the view changes as it rises
        frames.append(observation["image_wrist"][..., 6:])
        assert env.observation_space.contains(observation)
    stacked = observation["image_wrist"]
    assert all(np.array_equal(stacked[..., 3 * i:3 * i + 3], frames[i + 1]) for i in range(3))
    assert not np.array_equal(frames[1], frames[3])
    encoder = ImageEncoder(small_spec(image_shape=(SIZE, SIZE, 9)))  # encoders read the stacked channels
    assert encoder({key: torch.from_numpy(observation[key])[None] for key in CAMERAS}).shape == (1, 32)


def test_relabel_copies_a_store_with_the_classifiers_rewards(make_env, tmp_path):
    from robot_rl.cli import main
    from robot_rl.data.recorder import open_recording_store
    from robot_rl.training.recorder import EpisodeRecorder
    from robot_rl.data.recorder import RandomSource

    env = make_env("lift", overrides={"observation": PIXELS})
    source = tmp_path / "random.zarr"
    with open_recording_store(source, env) as store:
        EpisodeRecorder(env, store, RandomSource(env)).record(2)
    out = tmp_path / "relabelled.zarr"
    assert main(["reward", "relabel", "--classifier", str(confident_classifier(tmp_path, True)), "--data", str(source),
                 "--out", str(out), "--hold-steps", "2"]) == 0
    with EpisodeStore.open(source, "r") as before, EpisodeStore.open(out, "r") as after:
        assert after.n_episodes == 2 and after.features == before.features
        rewards = after.load(["reward"])["reward"].reshape(2, -1)
        assert np.all(rewards[:, :1] == 0) and np.all(rewards[:, 1:] == 1)  # the hold gate: 2 steps
        assert after.episodes["success"].all() and not before.episodes["success"].any()
        assert np.array_equal(after.load(["image_scene"])["image_scene"], before.load(["image_scene"])["image_scene"])
    assert main(["reward", "relabel", "--classifier", str(confident_classifier(tmp_path, True)), "--data", str(source),
                 "--out", str(out)]) != 0  # never overwrites
