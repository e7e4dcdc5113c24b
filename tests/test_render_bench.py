"""``robot-rl bench render`` with tiny settings: real MuJoCo stepping and offscreen rendering; the
JSON has every figure and the figures are consistent (the speed goals live in benchmarks/)."""

from __future__ import annotations

import json

import pytest

from robot_rl.bench.render_bench import CAMERAS, run_render_benchmark
from robot_rl.cli import main


def test_bench_render_cli_writes_sane_json(tmp_path, capsys):
    out = tmp_path / "render.json"
    assert main(["bench", "render", "--sizes", "16", "24", "--seconds", "0.05", "--repeats", "2",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert result["benchmark"] == "render"
    assert result["command"].endswith("robot-rl bench render --sizes 16 24 --seconds 0.05 --repeats 2 --seed 0 "
                                      f"--json {out}")
    assert result["settings"]["sizes"] == [16, 24] and result["settings"]["cameras"] == list(CAMERAS)
    machine = result["machine"]
    assert machine["mujoco_gl"] and machine["cpu_count"] >= 1 and "load_average_1m_at_end" in machine
    assert "gl_renderer" in machine
    state = result["state_env"]["steps_per_s"]
    assert len(state["raw"]) == 2 and state["median"] > 0
    assert result["state_env"]["ms_per_step"] == pytest.approx(1000 / state["median"])
    for size in ("16", "24"):
        case = result["sizes"][size]
        assert len(case["env_steps_per_s_images"]["raw"]) == 2 and case["env_steps_per_s_images"]["median"] > 0
        assert set(case["render_fps"]) == set(CAMERAS)
        assert all(len(fps["raw"]) == 2 and fps["median"] > 0 for fps in case["render_fps"].values())
        ms = case["ms_per_step"]
        assert ms["images"] == pytest.approx(1000 / case["env_steps_per_s_images"]["median"])
        assert ms["physics_and_env"] == pytest.approx(result["state_env"]["ms_per_step"])
        assert ms["rendering_from_fps"] > 0 and len(ms["rendering_raw"]) == 2
        assert case["bottleneck"] == ("rendering" if ms["rendering"] > ms["physics_and_env"] else "physics")
        slower = case["slower_camera"]
        assert case["render_fps"][slower]["median"] == min(fps["median"] for fps in case["render_fps"].values())
        assert 0.5 <= case["slower_camera_share_of_rendering"] <= 1.0


def test_bench_render_rejects_bad_settings():
    with pytest.raises(ValueError, match="seconds"):
        run_render_benchmark(sizes=(16,), seconds=0)
    with pytest.raises(ValueError, match="sizes"):
        run_render_benchmark(sizes=(), seconds=0.1)
