"""The big models on small cards, through the real command: --quantize and single-file
denoisers (--transformer), on tiny pipelines built here (vidgen/engine/quantize.py and
vidgen/engine/checkpoints.py have their own library tests)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from tests.tiny_checkpoints import build_checkpoint_pipeline, write_checkpoints
from vidgen.engine import loading as pipeline_module
from vidgen.media.readback import read_frames, read_recipe

# tiny real pipelines, quantized and single-file denoisers (and the offline Hub retries): `model` (make check leaves it out).
pytestmark = pytest.mark.model

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
    # What --offload auto counts: the bytes the quantized weights hold, not their float32 size.
    from vidgen.engine.acceleration import stored_bytes

    held = sum(stored_bytes(parameter) for parameter in transformer.parameters())
    full = sum(parameter.numel() * 4 for parameter in transformer.parameters())
    assert held < 0.5 * full, (held, full)
    assert json.loads(result.stdout)["quantize"] == method


def test_quantize_per_component_reaches_the_text_encoder(run_cli, tiny_wan_dir, loaded_pipelines, tmp_path):
    out = tmp_path / "both.mp4"
    result = run_cli("a red circle", "--model", tiny_wan_dir, *TINY, "--quantize", "transformer=fp8,text_encoder=int8", "-o", out)
    assert result.exit_code == 0, result.stderr
    pipe = loaded_pipelines[0].pipe
    assert "Float8Tensor" in _linear_weight_classes(pipe.transformer)
    assert "Int8Tensor" in _linear_weight_classes(pipe.text_encoder)
    assert read_recipe(out)["quantize"] == "transformer=fp8,text_encoder=int8"


@pytest.mark.parametrize(
    ("method", "needs"), [("nf4", "needs a CUDA GPU"), ("fp8-dynamic", "needs a CUDA GPU"), ("int9", "unknown method 'int9'")]
)
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
    result = run_cli(
        "a red circle", "--model", folder, *TINY, "--transformer", files.paths["Q4_0"], "--quantize", "int8", "-o", tmp_path / "x.mp4"
    )
    assert result.exit_code == 2 and "--quantize applies to transformer, which --transformer loads from a file" in result.stderr


def _safetensors_data_bytes(folder) -> int:
    """What a component's safetensors files hold beyond their headers, read by hand."""
    import struct

    total = 0
    for path in folder.glob("*.safetensors"):
        with open(path, "rb") as file:
            header_length = struct.unpack("<Q", file.read(8))[0]
        total += path.stat().st_size - 8 - header_length
    return total


@pytest.mark.parametrize(("class_name", "variant"), [("WanPipeline", None), ("WanPipeline", "wan2.2-t2v-a14b"), ("LTXPipeline", None)])
def test_dry_run_gives_the_files_sizes_and_reads_no_weights(run_cli, tiny_pipeline_dir, loaded_pipelines, tmp_path, class_name, variant):
    folder = tiny_pipeline_dir(class_name, variant)
    result = run_cli("a red circle", "--model", folder, "--dry-run", "--json", "-o", tmp_path / "x.mp4")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pipeline"] == json.loads((folder / "model_index.json").read_text())["_class_name"]
    assert report["components"] and set(report["components"]) >= {"transformer", "vae"}
    for name, component in report["components"].items():
        assert component["disk_bytes"] == _safetensors_data_bytes(folder / name), name
        assert component["memory_bytes"] == component["parameters"] * 4, name  # float32 on the CPU
    assert report["memory_bytes"] == sum(component["memory_bytes"] for component in report["components"].values())
    assert report["offload_auto"] == "none" and loaded_pipelines == [] and not (tmp_path / "x.mp4").exists()
    human = run_cli("a red circle", "--model", folder, "--dry-run")
    assert human.exit_code == 0 and "component transformer:" in human.stdout and "offload auto: none" in human.stdout


def test_dry_run_counts_quantized_and_single_file_sizes(run_cli, wide):
    folder, files = wide
    plain = json.loads(run_cli("a red circle", "--model", folder, "--dry-run", "--json").stdout)["components"]["transformer"]
    int8 = json.loads(run_cli("a red circle", "--model", folder, "--dry-run", "--json", "--quantize", "int8").stdout)["components"][
        "transformer"
    ]
    assert int8["quantize"] == "int8" and int8["disk_bytes"] == plain["disk_bytes"]
    assert plain["memory_bytes"] * 0.25 < int8["memory_bytes"] < plain["memory_bytes"] * 0.5  # float32 blocks at one byte a weight
    q4 = json.loads(run_cli("a red circle", "--model", folder, "--dry-run", "--json", "--transformer", files.paths["Q4_0"]).stdout)
    transformer = q4["components"]["transformer"]
    from gguf import GGUFReader

    assert transformer["disk_bytes"] == sum(int(tensor.n_bytes) for tensor in GGUFReader(files.paths["Q4_0"]).tensors)
    assert transformer["memory_bytes"] == transformer["disk_bytes"] and transformer["source"] == str(files.paths["Q4_0"])


def test_a_model_not_on_disk_gets_its_settings_and_a_note(run_cli):
    result = run_cli("a fox", "--preset", "wan2.1-t2v-14b", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["steps"] and report["components"] is None and report["memory_bytes"] is None
    assert any("vidgen pull wan2.1-t2v-14b" in note for note in report["notes"])


def test_offline_without_hf_hub_offline_is_one_line_and_no_retries(tmp_path):
    """As a new user would meet it: no network, HF_HUB_OFFLINE not set. huggingface_hub alone
    retries for 24 s and prints `Retrying in 1s [Retry 1/5]` five times; vidgen asks once."""
    import os
    import subprocess
    import sys

    from vidgen.engine import hub

    if hub.hub_reachable():
        pytest.skip("the Hugging Face Hub answers from this machine")
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    env["HF_HOME"] = str(tmp_path / "hf")
    for args in (
        ["a fox", "--preset", "wan2.1-t2v-1.3b", "--no-server", "-o", str(tmp_path / "x.mp4")],
        ["pull", "wan2.1-t2v-1.3b"],
        ["pull", "city96/Wan2.1-T2V-14B-gguf/wan2.1-t2v-14b-Q4_K_M.gguf"],
    ):
        done = subprocess.run([sys.executable, "-m", "vidgen", *args], env=env, capture_output=True, text=True, cwd=tmp_path)
        errors = [line for line in done.stderr.splitlines() if not line.startswith("downloading ")]
        assert done.returncode == 1 and len(errors) == 1 and "cannot reach the Hugging Face Hub" in errors[0], (args, done.stderr)


# 14B in bf16: 36 GB of weights, its denoiser 28 GB; quantized to 8 bits: 22 GB, the largest 14 GB.
# A step fits when its weights times acceleration.OFFLOAD_HEADROOM (1.5) fit in free memory.
@pytest.mark.parametrize(
    ("free_gb", "quantized", "offload", "advice"),
    [
        (34, False, "none", "--quantize fp8 (or int8)"),  # 22 x 1.5 = 33 fits
        (30, True, "none", "--offload model"),  # 33 does not fit; the largest, 14 x 1.5 = 21, does
        (12, False, "none", "--quantize fp8 (or int8) and --offload group"),
        (12, True, "model", "--offload group"),
        (12, True, "group", "--offload sequential"),  # already the step that should have fitted: the next one
    ],
)
def test_out_of_memory_names_the_cheapest_next_step_that_fits(free_gb, quantized, offload, advice):
    from vidgen.engine.acceleration import memory_advice

    gb = 10**9
    total, largest = (22 * gb, 14 * gb) if quantized else (36 * gb, 28 * gb)
    got = memory_advice(
        total_bytes=total, denoiser_bytes=largest, largest_bytes=largest, free_bytes=free_gb * gb, quantized=quantized, offload=offload
    )
    assert got == advice


def test_a_prompts_file_line_may_quantize(run_cli, tiny_wan_dir, loaded_pipelines, tmp_path):
    """A line's quantize is a loading setting: the batch loads the pipeline it names for that
    line (and the plain one again for the next)."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a red circle", "quantize": "int8"}\n{"prompt": "a blue square"}\n')
    out = tmp_path / "out"
    result = run_cli(
        "batch", prompts, "-O", out, "--model", tiny_wan_dir, "--steps", "2", "--size", "32x32", "--frames", "9", "--no-server"
    )
    assert result.exit_code == 0, result.stderr
    assert [("Int8Tensor" in _linear_weight_classes(loaded.pipe.transformer)) for loaded in loaded_pipelines] == [True, False]
    recipes = sorted((read_recipe(path)["prompt"], read_recipe(path)["quantize"]) for path in out.glob("*.mp4"))
    assert recipes == [("a blue square", None), ("a red circle", "int8")]
