"""Pretrain a camera encoder in simulation, with nothing downloaded: predict tool and object state.

Frames come from the real env (cameras as configured, e.g. scene + wrist at 64 px) driven by
the task's scripted expert with per-episode Gaussian action noise, and by uniformly random
actions in a share of the episodes, so the frames cover the states a learner will see: the cube
resting, pushed, in the hand and in the air. The target of every frame is what a simulator
knows and the cameras show: the tool position and finger opening, and the task's object
positions (its ``privileged_keys`` without the orientations, whose sign is ambiguous for a
symmetric cube), each standardised. The encoder (per-camera trunk → pooling → 64-d bottleneck,
DrQ random shift as augmentation) is trained with a linear head on top; the bottleneck then
linearly encodes that state, which is what a frozen encoder should hand a learner.

Episodes, not frames, are held out for the report: per target R² and RMSE in the target's units.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from robot_rl.agents.base import adam
from robot_rl.vision.encoders import EncoderSpec, ImageEncoder, Pool, Trunk, image_keys
from robot_rl.vision.features import save_encoder

TOOL_TARGETS = ("ee_pos", "gripper_width")


@dataclass(frozen=True)
class PretrainSettings:
    frames: int = 20_000
    epochs: int = 8
    batch_size: int = 128
    lr: float = 3e-4
    hold_out: float = 0.1  # share of episodes held out for the report
    random_episodes: float = 0.2  # share of episodes with uniformly random actions
    max_noise: float = 0.6  # the expert's action noise σ is drawn per episode from U(0, max_noise)
    augment_pad: int = 4
    seed: int = 0
    trunk: Trunk = "conv"
    pool: Pool = "spatial_softmax"
    channels: int = 32
    feature_dim: int = 64


@dataclass
class Frames:
    images: dict[str, np.ndarray]  # camera key → (N, H, W, C) uint8
    targets: np.ndarray  # (N, T) float32
    target_names: list[str]  # one per column, e.g. "cube_pos[2]"
    episode: np.ndarray  # (N,) episode index of each frame


def _scene_state(env: gym.Env, observation: dict[str, np.ndarray], keys: list[str]) -> dict[str, np.ndarray]:
    """``keys`` of the observation, object poses included even where the observation leaves them out."""
    values = {**observation, **env.unwrapped.privileged_observation()}
    return {key: np.asarray(values[key], np.float32).ravel() for key in keys}


def collect_frames(env: gym.Env, settings: PretrainSettings, progress: Callable[[int], None] | None = None) -> Frames:
    """``settings.frames`` frames of ``env`` (images on) with their state targets."""
    from robot_rl.envs.experts import make_expert

    task = env.unwrapped.task
    cameras = image_keys(list(env.observation_space.spaces))
    if not cameras:
        raise ValueError("encoder pretraining needs camera images: set env.observation.images=true")
    observed = task.observation_space()
    object_keys = [key for key in task.privileged_keys if key in observed and not key.endswith("_quat")]
    keys = [*TOOL_TARGETS, *object_keys]
    expert = make_expert(env)
    rng = np.random.default_rng(settings.seed)
    images = {key: [] for key in cameras}
    targets, episodes = [], []
    episode = 0
    while len(targets) < settings.frames:
        observation, _ = env.reset(seed=settings.seed * 100_003 + episode)
        expert.reset()
        random_actions = rng.random() < settings.random_episodes
        noise = rng.uniform(0.0, settings.max_noise)
        done = False
        while not done and len(targets) < settings.frames:
            for key in cameras:
                images[key].append(observation[key])
            state = _scene_state(env, observation, keys)
            targets.append(np.concatenate(list(state.values())))
            episodes.append(episode)
            if progress is not None:
                progress(1)
            if random_actions:
                action = env.action_space.sample()
            else:
                action = expert.act(observation) + noise * rng.standard_normal(env.action_space.shape)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
            observation, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        episode += 1
    names = [f"{key}[{i}]" for key, value in state.items() for i in range(len(value))]
    return Frames({key: np.stack(frames) for key, frames in images.items()}, np.stack(targets), names,
                  np.asarray(episodes))


def train_encoder(frames: Frames, settings: PretrainSettings,
                  progress: Callable[[int], None] | None = None) -> tuple[ImageEncoder, dict[str, Any]]:
    """Fit encoder + linear head to the standardised targets; the encoder and a report
    (per-target R² and RMSE on held-out episodes, losses, timings)."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    cameras = tuple(sorted(frames.images))
    shapes = {frames.images[key].shape[1:] for key in cameras}
    if len(shapes) != 1:
        raise ValueError(f"every camera must have the same image shape, got {sorted(shapes)}")
    spec = EncoderSpec(cameras=cameras, image_shape=tuple(shapes.pop()), trunk=settings.trunk,
                       channels=settings.channels, pool=settings.pool, feature_dim=settings.feature_dim)
    encoder = ImageEncoder(spec, augment_pad=settings.augment_pad)
    head = nn.Linear(spec.output_dim, frames.targets.shape[1])
    optimizer = adam([*encoder.parameters(), *head.parameters()], settings.lr)

    unique = np.unique(frames.episode)
    held = rng.choice(unique, size=max(1, int(round(settings.hold_out * len(unique)))), replace=False)
    test = np.isin(frames.episode, held)
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    mean = frames.targets[train_rows].mean(axis=0)
    std = frames.targets[train_rows].std(axis=0) + 1e-6
    standardised = torch.from_numpy((frames.targets - mean) / std)

    def batch(rows: np.ndarray) -> dict[str, torch.Tensor]:
        return {key: torch.from_numpy(frames.images[key][rows]) for key in cameras}

    start, losses = time.perf_counter(), []
    encoder.train()
    for _ in range(settings.epochs):
        order = rng.permutation(train_rows)
        for first in range(0, len(order), settings.batch_size):
            rows = np.sort(order[first:first + settings.batch_size])
            loss = ((head(encoder(batch(rows), augment=True)) - standardised[rows]) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if progress is not None:
                progress(len(rows))
    encoder.eval()
    with torch.no_grad():
        predicted = torch.cat([head(encoder(batch(test_rows[i:i + 512]))) for i in range(0, len(test_rows), 512)])
    predicted = predicted.numpy() * std + mean
    truth = frames.targets[test_rows]
    residual = ((predicted - truth) ** 2).mean(axis=0)
    r2 = 1.0 - residual / (truth.var(axis=0) + 1e-12)
    report = {
        "frames": int(len(frames.targets)), "episodes": int(len(unique)), "held_out_episodes": int(len(held)),
        "held_out_frames": int(len(test_rows)), "train_seconds": round(time.perf_counter() - start, 1),
        "final_train_loss": float(np.mean(losses[-50:])),
        "targets": {name: {"r2": round(float(r), 4), "rmse": round(float(np.sqrt(e)), 5)}
                    for name, r, e in zip(frames.target_names, r2, residual)},
        "settings": dataclasses.asdict(settings),
    }
    return encoder.eval().requires_grad_(False), report


def pretrain_encoder(env: gym.Env, out: str | Path, settings: PretrainSettings,
                     progress: Callable[[str, int, int], Any] | None = None) -> dict[str, Any]:
    """Collect frames from ``env``, train, write the encoder file ``out``; returns the report.
    ``progress(stage, total, advance)`` drives a progress bar per stage."""
    frames = collect_frames(env, settings, progress and (lambda n: progress("render", settings.frames, n)))
    total = settings.epochs * int(round(len(frames.targets) * (1 - settings.hold_out)))
    encoder, report = train_encoder(frames, settings, progress and (lambda n: progress("train", total, n)))
    report["task"] = env.unwrapped.config.task.name
    save_encoder(out, encoder, report)
    return report
