"""Episode data: the Zarr :class:`EpisodeStore` (online replay and demonstrations share one
format), the RAM-tier :class:`ReplayBuffer` and :class:`MixtureSampler`, and :func:`store_info`.

The replay classes import torch, so they load on first use: processes that only record or
inspect episodes (teleoperation, ``robot-rl data info``) stay light.
"""

from typing import Any

from robot_rl.data.info import store_info
from robot_rl.data.store import (
    SOURCES,
    Episode,
    EpisodeStore,
    FeatureSpec,
    SpecMismatchError,
    StoreError,
    features_from_spaces,
)

_REPLAY_NAMES = ("Batch", "MixtureSampler", "ReplayBuffer")

__all__ = [
    "SOURCES",
    "Batch",
    "Episode",
    "EpisodeStore",
    "FeatureSpec",
    "MixtureSampler",
    "ReplayBuffer",
    "SpecMismatchError",
    "StoreError",
    "features_from_spaces",
    "store_info",
]


def __getattr__(name: str) -> Any:
    if name in _REPLAY_NAMES:
        from robot_rl.data import replay

        return getattr(replay, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
