"""The replay benchmark's memory figure (``robot-rl bench replay``'s ``memory`` section) on a
small buffer: bytes per transition measured from the arrays, next to SB3's and a float32 layout."""

from __future__ import annotations

from math import prod

import numpy as np
import pytest

from robot_rl.bench import replay_bench as rb

FEATURES = {**rb.STATE_FEATURES, **rb.IMAGE_FEATURES, **rb.TRANSITION_FEATURES}
FRAME_BYTES = rb.IMAGE_SIZE * rb.IMAGE_SIZE * 3


def test_two_cameras_in_every_image_step():
    assert set(rb.IMAGE_FEATURES) == {"image_scene", "image_wrist"}
    frames = rb.camera_frames(8)
    steps, final = rb.synthetic_episode(FEATURES, 8, 0, frames)
    for key in rb.IMAGE_FEATURES:
        assert steps[key].shape == (8, rb.IMAGE_SIZE, rb.IMAGE_SIZE, 3) and steps[key].dtype == np.uint8
        np.testing.assert_array_equal(final[key], frames[key][7])
    assert not np.array_equal(frames["image_scene"], frames["image_wrist"])


def test_memory_of_two_128px_cameras_vs_sb3_and_float32():
    capacity = 5 * rb.EPISODE_STEPS
    frames = rb.camera_frames(rb.EPISODE_STEPS)
    buffer = rb.fill_buffer(FEATURES, capacity, frames)
    try:
        peer = rb.sb3_buffer(FEATURES, capacity, frames)
    except Exception:  # noqa: BLE001
        peer = None
    report = rb.memory_report(buffer, peer, FEATURES, goal=0.55)

    ours = report["ours"]
    assert ours["stored_steps"] == capacity and ours["episodes"] == 5
    # Every frame once per step, plus the per-episode final-observation ring (64 slots here).
    assert ours["arrays_bytes"]["_separate"] == capacity * 2 * FRAME_BYTES
    assert ours["arrays_bytes"]["_final_separate"] == ours["final_obs_ring_slots"] * 2 * FRAME_BYTES
    assert ours["bytes_per_transition"] == pytest.approx(sum(ours["arrays_bytes"].values()) / capacity)
    assert 2 * FRAME_BYTES < ours["bytes_per_transition"] < 2.2 * FRAME_BYTES

    float32 = report["float32_obs_and_next_obs"]
    obs_elements = sum(prod(spec.shape) for key, spec in FEATURES.items() if key not in rb.TRANSITION_FEATURES)
    assert float32["bytes_per_transition"] >= 2 * 4 * obs_elements
    assert "computed" in float32["how"]
    assert report["ratio_ours_vs_float32"] < 0.15

    if peer is None:
        pytest.skip("stable-baselines3 (the bench extra) is not installed")
    sb3 = report["sb3_dict_replay_buffer"]
    assert sb3["arrays_bytes"]["observations"] == sb3["arrays_bytes"]["next_observations"]
    assert sb3["bytes_per_transition"] > 4 * FRAME_BYTES
    assert report["ratio_ours_vs_sb3"] == pytest.approx(ours["bytes_per_transition"] / sb3["bytes_per_transition"])
    assert report["goal"] == 0.55 and report["meets_goal"] is True
