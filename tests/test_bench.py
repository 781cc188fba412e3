"""benchmarks/bench.py on a CPU with the tiny Wan model: it runs and reports every field."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_cpu_tiny_model_writes_json_and_markdown(tiny_wan_dir, tmp_path, capsys):
    bench = _bench_module()
    out = tmp_path / "bench"
    bench.main(
        [
            "--model",
            str(tiny_wan_dir),
            "--device",
            "cpu",
            "--steps",
            "2",
            "--frames",
            "9",
            "--width",
            "32",
            "--height",
            "32",
            "--warmup-steps",
            "1",
            "--out",
            str(out),
        ]
    )

    report = json.loads(out.with_suffix(".json").read_text())
    assert report["device"] == "cpu" and report["device_name"]
    assert report["versions"]["torch"] and report["versions"]["diffusers"]
    assert report["workload"]["steps"] == 2 and report["workload"]["frames"] == 9
    names = [record["variant"] for record in report["results"]]
    assert names == ["diffusers", "vidgen", "vidgen-fast"]
    for record in report["results"]:
        for key in ("seconds_per_step_median", "decode_seconds", "whole_video_seconds", "warmup_seconds", "load_seconds"):
            assert isinstance(record[key], float) and record[key] >= 0, key
        assert record["steps_timed"] == 2
        assert "peak_memory_gib" in record  # None on a CPU
    vidgen = report["results"][1]
    assert "psnr_vs_diffusers_db" in vidgen and "speedup_per_step" in vidgen
    # vidgen's lossless path on a CPU is plain diffusers' computation: identical frames.
    assert vidgen["max_abs_diff_vs_diffusers"] == 0

    table = out.with_suffix(".md").read_text()
    assert report["device_name"] in table and "diffusers " + report["versions"]["diffusers"] in table
    assert "| vidgen-fast |" in table and "s/step (median)" in table


def test_psnr_of_identical_and_different_videos():
    import numpy as np

    bench = _bench_module()
    video = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert bench.psnr(video, video) == float("inf")
    assert 40 < bench.psnr(video, video + 1) < 50  # MSE 1 -> 48.1 dB
