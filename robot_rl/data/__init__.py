"""Episode data: the Zarr :class:`EpisodeStore` (online replay and demonstrations share one
format), the RAM-tier :class:`ReplayBuffer`, the minibatch samplers (:class:`Sampler`:
uniform, prioritised, :class:`MixtureSampler`, hindsight-relabelled :class:`HindsightSampler`)
and :func:`store_info`.

The replay and sampler classes import torch, so they load on first use: processes that only record or
inspect episodes (teleoperation, ``robot-rl data info``) stay light.
"""

from typing import Any

from robot_rl.data.info import store_info
from robot_rl.data.store import (
    SOURCES,
    TRANSITION_FEATURES,
    Episode,
    EpisodeStore,
    FeatureSpec,
    SpecMismatchError,
    StoreError,
    features_from_spaces,
)

_LAZY_NAMES = {"Batch": "replay", "ReplayBuffer": "replay", "HindsightSampler": "hindsight", "MixtureSampler": "samplers",
               "PrioritizedSampler": "samplers", "Sampler": "samplers", "UniformSampler": "samplers"}

__all__ = [
    "SOURCES",
    "TRANSITION_FEATURES",
    "Batch",
    "Episode",
    "EpisodeStore",
    "FeatureSpec",
    "HindsightSampler",
    "MixtureSampler",
    "PrioritizedSampler",
    "ReplayBuffer",
    "Sampler",
    "SpecMismatchError",
    "StoreError",
    "UniformSampler",
    "features_from_spaces",
    "store_info",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        from importlib import import_module

        return getattr(import_module(f"robot_rl.data.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
