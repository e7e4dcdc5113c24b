"""The learner benchmark's pixel study (``robot-rl bench learner --pixels SIZE``) on tiny images,
a small batch and a very short timing: the JSON's keys, positive rates and consistent ratios."""

from __future__ import annotations

import importlib.util
import json
import statistics

import pytest

from robot_rl.bench import learner_bench as lb
from robot_rl.cli import main
from robot_rl.cli.errors import EXIT_USAGE

SIZE = 36  # the smallest image SB3's NatureCNN accepts (8x8/4, 4x4/2, 3x3/1)
CASE_KEYS = {"updates_per_s", "updates_per_cpu_s", "seconds_per_10k_updates", "cpu_seconds_per_10k_updates",
             "gflop_per_update", "raw", "raw_cpu", "others_cpu", "what", "observation"}



def test_pixel_study_reports_every_case(one_thread):
    result = lb.pixel_study(SIZE, repeats=2, seconds=0.05, batch=16, replay_steps=2 * 100)
    json.dumps(result)  # JSON-ready
    assert result["image_shape"] == [SIZE, SIZE, 3] and result["cameras"] == ["image_scene", "image_wrist"]
    assert result["proprio_dim"] == 22 and result["action_dim"] == 4 and result["batch"] == 16
    assert result["replay_steps"] == 200
    cases = result["cases"]
    peer = importlib.util.find_spec("stable_baselines3") is not None
    assert set(cases) == {"ours_frozen", "ours_finetune", *(["sb3_sac_multiinput"] if peer else [])}, result["peer"]
    for name, case in cases.items():
        assert CASE_KEYS <= set(case), name
        assert len(case["raw"]) == len(case["raw_cpu"]) == 2
        assert all(rate > 0 for rate in case["raw"] + case["raw_cpu"])
        assert case["updates_per_s"] == statistics.median(case["raw"])
        assert case["seconds_per_10k_updates"] == pytest.approx(1e4 / case["updates_per_s"])
        assert case["gflop_per_update"] is None or case["gflop_per_update"] > 0

    frozen, finetune = cases["ours_frozen"], cases["ours_finetune"]
    assert frozen["observation"] == {"camera_features": [128, "float32"], "proprio": [22, "float32"]}
    assert finetune["observation"]["image_scene"] == [SIZE, SIZE, 3, "uint8"]
    assert finetune["encoder"]["mode"] == "finetune" and finetune["encoder_spec"]["feature_dim"] == 64
    assert frozen["obs_feature_dim"] == finetune["obs_feature_dim"] == 22 + 2 * 64
    assert frozen["frozen_encode_ms_per_env_step"] > 0
    # the encoder's convolutions: far more work per update than the same heads on features
    assert finetune["gflop_per_update"] > 3 * frozen["gflop_per_update"]

    ratios = result["ratios"]
    assert ratios["finetune_vs_frozen"] == pytest.approx(statistics.median(
        a / b for a, b in zip(finetune["raw"], frozen["raw"])))
    if "sb3_sac_multiinput" in cases:
        sb3 = cases["sb3_sac_multiinput"]
        assert sb3["observation"]["image_wrist"] == [3, SIZE, SIZE, "uint8"]  # stored channel-first
        assert sb3["features_extractor"] == "CombinedExtractor"
        assert ratios["ours_finetune_vs_sb3"] > 0


def test_pixel_study_without_the_peer_and_below_natures_cnn_size(one_thread):
    result = lb.pixel_study(32, repeats=1, seconds=0.02, batch=8, replay_steps=50, peer=False)
    assert set(result["cases"]) == {"ours_frozen", "ours_finetune"} and result["peer"] == "not measured"
    assert "ours_finetune_vs_sb3" not in result["ratios"]


def test_cli_wires_pixels_and_writes_the_command(tmp_path, monkeypatch, capsys):
    calls = {}

    def fake(**kwargs):
        calls.update(kwargs)
        return {"benchmark": "learner", "pixel_study": {}}

    monkeypatch.setattr(lb, "run_learner_benchmark", fake)
    path = tmp_path / "pixels.json"
    assert main(["bench", "learner", "--threads", "1", "--repeats", "2", "--seconds", "1.5", "--pixels", "64", "64",
                 "96", "--only-pixels", "--json", str(path)]) == 0
    assert calls["pixels"] == (64, 96) and calls["only_pixels"] and calls["threads"] == 1
    written = json.loads(path.read_text())
    assert written["command"].endswith(f"robot-rl bench learner --repeats 2 --seconds 1.5 --device cpu --threads 1 "
                                       f"--pixels 64 96 --only-pixels --json {path}")
    capsys.readouterr()
    assert main(["bench", "learner", "--only-pixels"]) == EXIT_USAGE
    assert "--only-pixels: give the image sizes with --pixels" in capsys.readouterr().err
