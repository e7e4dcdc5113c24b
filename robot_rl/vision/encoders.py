"""Camera encoders: per-camera conv trunks, spatial pooling, DrQ's random shift.

An :class:`ImageEncoder` maps ``image_<camera>`` entries of a batch (uint8, ``(B, H, W, C)``, as
the envs and the replay keep them) to one feature vector per sample: each camera has its own
trunk (a small conv net, or a ResNet in torchvision's layout), its own spatial pooling and a
LayerNorm + tanh bottleneck; the cameras' features are concatenated in sorted key order. Images
become float only inside :meth:`ImageEncoder.forward`, so replay and batches stay uint8.

Trunks:

- ``conv``: DrQ/SAC-AE's encoder, ``conv_layers`` convolutions of ``channels`` 3×3 filters, the
  first ``strided_layers`` of them with stride 2 (DrQ: 1 on 84 px; the default 2 costs a quarter
  of the compute on 64 px frames, which is what makes a CPU run affordable).
- ``resnet10`` / ``resnet18``: ResNet with one / two basic blocks per stage (SERL uses a
  ResNet-10), parameter names as ``torchvision.models.resnet18`` so a local weights file of that
  layout loads (:func:`load_resnet_weights`; nothing is ever downloaded). Batch norm always runs
  on its stored (loaded) statistics, because RL minibatches are too correlated for batch
  statistics.

Pooling (``pool``): ``spatial_softmax`` (expected image coordinates of each channel's soft
arg-max, 2 numbers per channel; Levine et al. 2016), ``spatial_embedding`` (SERL's learned
per-channel spatial weights, ``embedding_features`` numbers per channel) or ``flatten``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

Trunk = Literal["conv", "resnet10", "resnet18"]
Pool = Literal["spatial_softmax", "spatial_embedding", "flatten"]
IMAGE_PREFIX = "image_"


@dataclass(frozen=True)
class EncoderSpec:
    """Architecture of an :class:`ImageEncoder`; saved with every weights file, so a file says
    which cameras, image shapes and layers it was made for."""

    cameras: tuple[str, ...]  # observation keys, e.g. ("image_scene", "image_wrist"), sorted
    image_shape: tuple[int, int, int]  # (H, W, C) of every camera
    trunk: Trunk = "conv"
    channels: int = 32
    conv_layers: int = 4
    strided_layers: int = 2
    pool: Pool = "spatial_softmax"
    embedding_features: int = 8
    feature_dim: int = 64  # per camera, after the bottleneck

    @property
    def output_dim(self) -> int:
        return self.feature_dim * len(self.cameras)


def image_keys(keys: Sequence[str]) -> list[str]:
    """The ``image_<camera>`` keys among ``keys``, sorted."""
    return sorted(key for key in keys if key.startswith(IMAGE_PREFIX))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, C)`` → float ``(B, C, H, W)`` in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: shift each image by a random integer offset in [−pad, pad] per axis,
    repeating the edge pixels (the same as padding by ``pad`` with edge replication and cropping
    back). Channels-last ``(B, H, W, C)`` of any dtype in and out, so it runs on the uint8 frames,
    before they become float: one gather for the whole batch."""
    if pad <= 0:
        return images
    batch, height, width = images.shape[:3]
    shift = torch.randint(-pad, pad + 1, (batch, 2), device=images.device, generator=generator)
    rows = (torch.arange(height, device=images.device) + shift[:, :1]).clamp_(0, height - 1)  # (B, H)
    cols = (torch.arange(width, device=images.device) + shift[:, 1:]).clamp_(0, width - 1)  # (B, W)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    return images[batch_index, rows[:, :, None], cols[:, None, :]]


class SpatialSoftmax(nn.Module):
    """Per channel, the expected (x, y) in [−1, 1] under softmax(feature map): ``(B, 2C)``."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        attention = maps.flatten(2).softmax(dim=-1)  # (B, C, HW)
        return (attention @ self.grid).flatten(1)  # (B, C, 2)


class SpatialEmbedding(nn.Module):
    """SERL's pooling: per channel, ``features`` learned weightings of the spatial positions:
    ``(B, C · features)``."""

    def __init__(self, channels: int, height: int, width: int, features: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(channels, height * width, features))
        nn.init.xavier_uniform_(self.kernel.view(channels, -1))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # (B, C, HW) · (C, HW, F) summed over HW → (B, C, F)
        return torch.einsum("bcp,cpf->bcf", maps.flatten(2), self.kernel).flatten(1)


def conv_trunk(in_channels: int, channels: int, layers: int, strided: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    for layer in range(layers):
        modules += [nn.Conv2d(in_channels if layer == 0 else channels, channels, 3, stride=2 if layer < strided else 1),
                    nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block (same parameter names)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)), inplace=True)


class ResNetTrunk(nn.Module):
    """ResNet-10 (1 block per stage) or ResNet-18 (2), torchvision's names, without pool and fc.

    Batch norm always runs on its stored statistics (see the module docstring)."""

    def __init__(self, in_channels: int, blocks_per_stage: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        width = 64
        for stage, channels in enumerate((64, 128, 256, 512), start=1):
            blocks = [BasicBlock(width, channels, 1 if stage == 1 else 2)]
            blocks += [BasicBlock(channels, channels, 1) for _ in range(blocks_per_stage - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            width = channels
        self.out_channels = width

    def train(self, mode: bool = True) -> ResNetTrunk:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def make_trunk(spec: EncoderSpec) -> nn.Module:
    in_channels = spec.image_shape[2]
    if spec.trunk == "conv":
        return conv_trunk(in_channels, spec.channels, spec.conv_layers, spec.strided_layers)
    return ResNetTrunk(in_channels, 1 if spec.trunk == "resnet10" else 2)


class CameraEncoder(nn.Module):
    """One camera: trunk → pooling → Linear → LayerNorm → tanh, ``(B, feature_dim)``."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.trunk = make_trunk(spec)
        height, width, channels = spec.image_shape
        with torch.no_grad():
            _, out_channels, map_h, map_w = self.trunk(torch.zeros(1, channels, height, width)).shape
        if spec.pool == "spatial_softmax":
            self.pool: nn.Module = SpatialSoftmax(map_h, map_w)
            pooled = 2 * out_channels
        elif spec.pool == "spatial_embedding":
            self.pool = SpatialEmbedding(out_channels, map_h, map_w, spec.embedding_features)
            pooled = out_channels * spec.embedding_features
        else:
            self.pool = nn.Flatten()
            pooled = out_channels * map_h * map_w
        self.bottleneck = nn.Sequential(nn.Linear(pooled, spec.feature_dim), nn.LayerNorm(spec.feature_dim), nn.Tanh())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """float ``(B, C, H, W)`` in [0, 1] → ``(B, feature_dim)``."""
        return self.bottleneck(self.pool(self.trunk(images)))


class ImageEncoder(nn.Module):
    """Every camera of ``spec`` through its own :class:`CameraEncoder`; ``(B, output_dim)``.

    ``augment_pad`` > 0 applies :func:`random_shift` (DrQ) when ``forward`` is asked to augment
    (by default: in training mode)."""

    def __init__(self, spec: EncoderSpec, augment_pad: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.augment_pad = augment_pad
        self.cameras = nn.ModuleDict({key: CameraEncoder(spec) for key in spec.cameras})

    def forward(self, observation: Mapping[str, torch.Tensor], augment: bool | None = None) -> torch.Tensor:
        augment = self.training if augment is None else augment
        features = []
        for key, encoder in self.cameras.items():
            images = observation[key]
            if augment and self.augment_pad:
                images = random_shift(images, self.augment_pad)
            features.append(encoder(to_float(images)))
        return torch.cat(features, dim=-1)


def trainable_encoder(observation_space: Any, config: Any) -> ImageEncoder:
    """The learner-owned encoder of ``agent.encoder`` (:class:`robot_rl.agents.config.EncoderConfig`)
    for the cameras of ``observation_space`` (a ``Dict``): from the encoder file ``config.weights``
    (whose cameras and image shape must fit), else built from the config's architecture, with
    ``config.resnet_weights`` loaded into a ResNet trunk."""
    from robot_rl.vision.features import load_encoder

    shapes = {key: box.shape for key, box in observation_space.spaces.items()}
    dtypes = {key: str(box.dtype) for key, box in observation_space.spaces.items()}
    if config.weights:
        loaded, _ = load_encoder(config.weights)
        check_images(loaded.spec, shapes, dtypes, "the observation")
        encoder = ImageEncoder(loaded.spec, config.augment_pad)
        encoder.load_state_dict(loaded.state_dict())
        return encoder.requires_grad_(True).train()
    cameras = tuple(image_keys(list(shapes)))
    if not cameras:
        raise EncoderMismatchError("agent.encoder.mode finetune: the observation has no image_<camera> entries "
                                   "(set env.observation.images: true)")
    image_shapes = {shapes[key] for key in cameras}
    if len(image_shapes) != 1:
        raise EncoderMismatchError(f"every camera must have the same image shape, got {sorted(image_shapes)}")
    spec = EncoderSpec(cameras=cameras, image_shape=tuple(image_shapes.pop()), trunk=config.trunk,
                       channels=config.channels, strided_layers=config.strided_layers, pool=config.pool,
                       feature_dim=config.feature_dim)
    check_images(spec, shapes, dtypes, "the observation")
    encoder = ImageEncoder(spec, config.augment_pad)
    if config.resnet_weights:
        load_resnet_weights(encoder, config.resnet_weights)
    return encoder


class EncoderMismatchError(ValueError):
    """Images or a weights file do not fit an encoder (other cameras, image size, architecture)."""


def check_images(spec: EncoderSpec, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str] | None = None,
                 source: str = "the observation") -> None:
    """Raise :class:`EncoderMismatchError` naming every camera of ``spec`` that ``shapes`` (key →
    image shape) lacks or has at another shape or (``dtypes``) dtype."""
    problems = []
    for key in spec.cameras:
        if key not in shapes:
            problems.append(f"camera {key!r} is missing (it has {', '.join(image_keys(list(shapes))) or 'no images'})")
        elif tuple(shapes[key]) != spec.image_shape:
            problems.append(f"{key!r} is {tuple(shapes[key])}, the encoder expects {spec.image_shape}")
        elif dtypes is not None and dtypes.get(key, "uint8") != "uint8":
            problems.append(f"{key!r} is {dtypes[key]}, the encoder expects uint8")
    if problems:
        raise EncoderMismatchError(f"{source} does not fit the encoder: " + "; ".join(problems))


def load_resnet_weights(encoder: ImageEncoder, path: str | Path) -> None:
    """Load a torchvision-layout ResNet state dict (e.g. ``resnet18-f37072fd.pth`` the user has
    on disk) into every camera's trunk; ``fc.*`` is ignored. A file of another architecture is an
    :class:`EncoderMismatchError` listing what differs."""
    if encoder.spec.trunk == "conv":
        raise EncoderMismatchError("ResNet weights need encoder trunk resnet10 or resnet18, not conv")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise EncoderMismatchError(f"{path}: expected a state dict (name → tensor), got {type(state).__name__}")
    state = {name: tensor for name, tensor in state.items() if not name.startswith("fc.")}
    for key, camera in encoder.cameras.items():
        expected = camera.trunk.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(name for name in set(expected) & set(state) if expected[name].shape != state[name].shape)
        if missing or unexpected or wrong:
            parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                     f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                     f"wrong shapes: {[(n, tuple(state[n].shape), tuple(expected[n].shape)) for n in wrong[:3]]}" if wrong else ""]
            raise EncoderMismatchError(f"{path} is not a torchvision {encoder.spec.trunk} state dict for "
                                       f"{encoder.spec.image_shape[2]}-channel images: "
                                       + "; ".join(part for part in parts if part))
        camera.trunk.load_state_dict(state)
