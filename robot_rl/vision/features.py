"""Encoder weights files, and frozen camera features cached once per frame.

An encoder file (``torch.save`` of a dict, written by :func:`save_encoder`, e.g. by ``robot-rl
encoder pretrain``) holds the :class:`~robot_rl.vision.encoders.EncoderSpec` (cameras, image
shape, layers), the weights and a report of how they were made, so a run can say exactly why a
file does not fit its cameras.

Frozen mode (``encoder.mode: frozen``): :class:`CameraFeatures` runs the frozen encoder once per
frame as the env produces it and adds the result to the observation as ``camera_features``
(float32). The store records it beside the images, the learners read it like any state vector, so
updates cost what state-based updates cost. Demonstrations recorded without it get it computed
from their images when they are loaded (:attr:`CameraFeatures.derived_features`, used by
:func:`robot_rl.data.compat.load_demonstrations`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from robot_rl.vision.encoders import EncoderMismatchError, EncoderSpec, ImageEncoder, check_images

ENCODER_FORMAT = "robot_rl.encoder/1"
FEATURES_KEY = "camera_features"


def save_encoder(path: str | Path, encoder: ImageEncoder, report: Mapping[str, Any] | None = None) -> None:
    """Write ``encoder`` (spec, weights) and ``report`` (how it was made) to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": ENCODER_FORMAT, "spec": dataclasses.asdict(encoder.spec),
                "state_dict": encoder.state_dict(), "report": dict(report or {})}, path)


def load_encoder(path: str | Path) -> tuple[ImageEncoder, dict[str, Any]]:
    """The encoder saved at ``path`` (in eval mode) and its report; a clear error for a missing
    file or a file that is not an encoder file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder file {path} does not exist (make one with robot-rl encoder pretrain)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files: say what the file was meant to be
        raise EncoderMismatchError(f"{path} is not a robot_rl encoder file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, Mapping) or payload.get("format") != ENCODER_FORMAT:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise EncoderMismatchError(f"{path} is not a robot_rl encoder file (format {found!r}, expected "
                                   f"{ENCODER_FORMAT!r}); a torchvision ResNet state dict goes to "
                                   f"encoder.resnet_weights instead")
    fields = dict(payload["spec"])
    spec = EncoderSpec(**{**fields, "cameras": tuple(fields["cameras"]), "image_shape": tuple(fields["image_shape"])})
    encoder = ImageEncoder(spec)
    encoder.load_state_dict(payload["state_dict"])
    return encoder.eval().requires_grad_(False), dict(payload.get("report", {}))


class FrozenFeatures:
    """A frozen encoder as a batched function of stored frames: camera key → ``(N, H, W, C)``
    uint8 arrays in, ``(N, output_dim)`` float32 out (in chunks, without gradients)."""

    def __init__(self, encoder: ImageEncoder, chunk: int = 256) -> None:
        self.encoder = encoder.eval().requires_grad_(False)
        self.inputs = encoder.spec.cameras
        self.dim = encoder.spec.output_dim
        self.chunk = chunk

    @torch.no_grad()
    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        check_images(self.encoder.spec, {key: arrays[key].shape[1:] for key in self.inputs if key in arrays},
                     {key: str(arrays[key].dtype) for key in self.inputs if key in arrays}, "the frames")
        count = len(arrays[self.inputs[0]])
        out = np.empty((count, self.dim), np.float32)
        for start in range(0, count, self.chunk):
            rows = slice(start, start + self.chunk)
            batch = {key: torch.from_numpy(np.ascontiguousarray(arrays[key][rows])) for key in self.inputs}
            out[rows] = self.encoder(batch).numpy()
        return out


class CameraFeatures(gym.ObservationWrapper):
    """Adds ``camera_features`` (the frozen encoder's output for this step's frames) to a
    ``Dict`` observation; the images stay, so the store keeps them.

    The env's cameras must fit the encoder (keys, image shape, uint8): checked here, and again
    at every step, so a camera that changes shape or dtype mid-run stops the run with a message
    naming it instead of feeding the learner garbage."""

    def __init__(self, env: gym.Env, encoder: ImageEncoder) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"CameraFeatures needs a Dict observation with camera images, got {space}")
        check_images(encoder.spec, {key: box.shape for key, box in space.spaces.items()},
                     {key: str(box.dtype) for key, box in space.spaces.items()}, "the env's observation space")
        if FEATURES_KEY in space.spaces:
            raise ValueError(f"the observation already has a {FEATURES_KEY!r} entry")
        self.features = FrozenFeatures(encoder)
        # learners read the features; a store or demo loader computes them for frames recorded without
        self.derived_features = {FEATURES_KEY: self.features}
        self.observation_space = spaces.Dict({
            **space.spaces, FEATURES_KEY: spaces.Box(-1.0, 1.0, shape=(self.features.dim,), dtype=np.float32)})

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = {}
        for key in self.features.inputs:
            if key not in observation:
                raise EncoderMismatchError(f"camera {key!r} is missing from this step's observation "
                                           f"(it has {sorted(observation)})")
            frames[key] = np.asarray(observation[key])[None]
        return {**observation, FEATURES_KEY: self.features(frames)[0]}

