"""The big models on small cards, through the real command: --quantize and single-file
denoisers (--transformer), on tiny pipelines built here (vidgen/quantize.py and
vidgen/checkpoints.py have their own library tests)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from tests.tiny_checkpoints import build_checkpoint_pipeline, write_checkpoints

from vidgen import pipeline as pipeline_module
from vidgen.readback import read_frames, read_recipe

TINY = ("--steps", "2", "--size", "32x32", "--frames", "9", "--seed", "3", "--no-server")


@pytest.fixture
def loaded_pipelines(monkeypatch):
    """The pipelines vidgen loads during a command, as it prepared them (a spy that keeps
    what the real prepare_pipeline returns)."""
    seen = []
    original = pipeline_module.prepare_pipeline

    @functools.wraps(original)
    def keep(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(pipeline_module, "prepare_pipeline", keep)
    return seen


def _linear_weight_classes(module) -> set[str]:
    import torch

    return {type(layer.weight).__name__ for layer in module.modules() if isinstance(layer, torch.nn.Linear)}


@pytest.mark.parametrize(("method", "tensor_class"), [("int8", "Int8Tensor"), ("fp8", "Float8Tensor")])
def test_quantize_loads_torchao_weights_and_writes_the_video(run_cli, tiny_wan_dir, loaded_pipelines, tmp_path, method, tensor_class):
    out = tmp_path / f"{method}.mp4"
    result = run_cli("a red circle", "--model", tiny_wan_dir, *TINY, "--quantize", method, "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    transformer = loaded_pipelines[0].pipe.transformer
    assert tensor_class in _linear_weight_classes(transformer)
    assert _linear_weight_classes(loaded_pipelines[0].pipe.text_encoder) == {"Parameter"}  # the denoiser only, by default
    assert read_frames(out).shape == (9, 32, 32, 3)
    assert read_recipe(out)["quantize"] == method
    assert json.loads(result.stdout)["quantize"] == method


def test_quantize_per_component_reaches_the_text_encoder(run_cli, tiny_wan_dir, loaded_pipelines, tmp_path):
    out = tmp_path / "both.mp4"
    result = run_cli("a red circle", "--model", tiny_wan_dir, *TINY, "--quantize", "transformer=fp8,text_encoder=int8", "-o", out)
    assert result.exit_code == 0, result.stderr
    pipe = loaded_pipelines[0].pipe
    assert "Float8Tensor" in _linear_weight_classes(pipe.transformer)
    assert "Int8Tensor" in _linear_weight_classes(pipe.text_encoder)
    assert read_recipe(out)["quantize"] == "transformer=fp8,text_encoder=int8"


@pytest.mark.parametrize(("method", "needs"), [("nf4", "needs a CUDA GPU"), ("fp8-dynamic", "needs a CUDA GPU"),
                                               ("int9", "unknown method 'int9'")])  # fmt: skip
def test_quantize_the_cpu_cannot_run_is_one_line_before_loading(run_cli, tiny_wan_dir, loaded_pipelines, tmp_path, method, needs):
    result = run_cli("a red circle", "--model", tiny_wan_dir, *TINY, "--quantize", method, "-o", tmp_path / "x.mp4")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and needs in lines[0], result.stderr
    assert loaded_pipelines == [] and not (tmp_path / "x.mp4").exists()


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A tiny Wan pipeline folder whose transformer is wide enough for GGUF blocks, and
    single files written from that transformer."""
    from diffusers import WanTransformer3DModel

    root = tmp_path_factory.mktemp("big-models")
    folder = build_checkpoint_pipeline(root / "tiny-wan-wide")
    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer").eval()
    return folder, write_checkpoints(transformer, root / "files")


def test_gguf_transformer_replaces_the_denoiser_and_stays_close(run_cli, wide, loaded_pipelines, tmp_path):
    folder, files = wide
    plain, quantized = tmp_path / "plain.mp4", tmp_path / "q8.mp4"
    assert run_cli("a red circle", "--model", folder, *TINY, "-o", plain).exit_code == 0
    result = run_cli("a red circle", "--model", folder, *TINY, "--transformer", files.paths["Q8_0"], "-o", quantized)
    assert result.exit_code == 0, result.stderr
    from diffusers.quantizers.gguf.utils import GGUFLinear

    assert any(isinstance(layer, GGUFLinear) for layer in loaded_pipelines[-1].pipe.transformer.modules())
    assert read_recipe(quantized)["transformer"] == str(files.paths["Q8_0"])
    difference = np.abs(read_frames(quantized).astype(int) - read_frames(plain).astype(int))
    assert difference.max() <= 8, difference.max()  # measured: at most 2 levels of 255 (Q8_0 on this tiny model)


def test_scaled_fp8_and_a_misfit_file_are_refused_in_one_line(run_cli, wide, loaded_pipelines, tmp_path):
    folder, files = wide
    for kind, says in (("scaled-fp8", "scaled"), ("other-width", "does not fit")):
        result = run_cli("a red circle", "--model", folder, *TINY, "--transformer", files.paths[kind], "-o", tmp_path / "x.mp4")
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and says in lines[0], result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_file_and_quantize_on_the_same_denoiser_is_refused(run_cli, wide, tmp_path):
    folder, files = wide
    result = run_cli("a red circle", "--model", folder, *TINY, "--transformer", files.paths["Q4_0"], "--quantize", "int8", "-o", tmp_path / "x.mp4")
    assert result.exit_code == 2 and "--quantize applies to transformer, which --transformer loads from a file" in result.stderr
