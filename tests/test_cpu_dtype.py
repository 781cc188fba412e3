"""A GPU preset's half precision gives way to float32 on a CPU, unless --dtype asks for it."""

from __future__ import annotations

from pathlib import Path

from vidgen.media.readback import read_recipe


def test_preset_bf16_becomes_float32_on_cpu(generate_tiny):
    result = generate_tiny("a ball", "--preset", "wan2.1-t2v-1.3b", "--device", "cpu", "--seed", "1", "-o", "a.mp4")
    assert result.exit_code == 0, result.stderr
    assert "using float32 on the CPU instead of the preset's bfloat16" in result.stderr
    assert read_recipe(Path("a.mp4"))["dtype"] == "float32"


def test_explicit_dtype_wins_on_cpu(generate_tiny):
    result = generate_tiny("a ball", "--preset", "wan2.1-t2v-1.3b", "--device", "cpu", "--dtype", "bf16", "--seed", "1", "-o", "b.mp4")
    assert result.exit_code == 0, result.stderr
    assert "using float32" not in result.stderr
    assert read_recipe(Path("b.mp4"))["dtype"] == "bfloat16"
