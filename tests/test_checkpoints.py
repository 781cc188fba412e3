"""Single-file checkpoints (vidgen/engine/checkpoints.py) on a tiny Wan transformer.

GGUF Q8_0/Q4_0/Q5_1, a ComfyUI-prefixed bf16 and an fp8_e4m3fn safetensors file, all in
Wan's original key names (tests/tiny_checkpoints.py), load through `from_single_file`
against the tiny preset folder's config and compute close to the original; a scaled-fp8
file, a file of another width and a class without `from_single_file` are refused in one
line before loading; the sizes read from headers are what the files hold; a Hub file
that cannot be fetched is one line within seconds.
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import huggingface_hub
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import WanTransformer3DModel
from diffusers.quantizers.gguf.utils import GGUFLinear
from safetensors.torch import load_file

from tests.tiny_checkpoints import build_checkpoint_pipeline, write_checkpoints
from vidgen.engine import checkpoints, hub
from vidgen.errors import ModelNotAvailableError, UsageError

WAN = "WanTransformer3DModel"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(preset folder, its transformer, the single files written from it), once."""
    root = tmp_path_factory.mktemp("checkpoints")
    folder = build_checkpoint_pipeline(root / "tiny-wan-wide")
    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer").eval()
    return folder, transformer, write_checkpoints(transformer, root / "files")


def _output(model) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 2, 8, 8, generator=generator)
    text = torch.randn(1, 8, 32, generator=generator)
    with torch.no_grad():
        return model(latents, torch.tensor([500.0]), text).sample


def _load(tiny, kind: str):
    folder, _, files = tiny
    return checkpoints.load_transformer(files.paths[kind], transformer_class=WAN, config_folder=folder, dtype=torch.float32)


# Largest |difference| from the float32 original's output (whose largest |value| is 2.11),
# measured: Q8_0 0.0083, Q5_1 0.066, Q4_0 0.159, bf16 0.0048, fp8_e4m3fn 0.059.
TOLERANCE = {"Q8_0": 0.02, "Q5_1": 0.15, "Q4_0": 0.3, "comfy-bf16": 0.01, "fp8": 0.12}


@pytest.mark.parametrize("kind", TOLERANCE)
def test_single_file_loads_and_computes_close_to_the_original(tiny, kind):
    model = _load(tiny, kind)
    linears = [module for name, module in model.named_modules() if name.startswith("blocks.") and isinstance(module, torch.nn.Linear)]
    assert len(linears) == 2 * 10  # q, k, v, out of both attentions and the two feed-forward layers, per block
    if kind.startswith("Q"):  # the weights stay quantized and are dequantized at each forward
        assert all(type(module) is GGUFLinear and module.weight.quant_type.name == kind for module in linears)
    else:
        assert all(type(module) is torch.nn.Linear and module.weight.dtype == torch.float32 for module in linears)
    difference = (_output(model) - _output(tiny[1])).abs().max().item()
    assert 0 < difference < TOLERANCE[kind]  # not 0: the file's rounding, not the original weights


def _one_line_usage_error(call) -> str:
    with pytest.raises(UsageError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 2
    return message


def test_scaled_fp8_is_refused_before_loading(tiny):
    message = _one_line_usage_error(lambda: _load(tiny, "scaled-fp8"))
    assert re.match(r'tiny-wan-fp8_scaled\.safetensors is a "scaled fp8" file \([\w.]+\.scale_weight\): ', message)
    assert "NaN" in message


def test_a_file_of_another_width_is_refused_naming_the_first_mismatch(tiny):
    message = _one_line_usage_error(lambda: _load(tiny, "other-width"))
    assert "tiny-wan-other-width.safetensors does not fit WanTransformer3DModel of " in message
    # The first tensor of the model's own order, in the file's name and in diffusers'.
    assert "head.modulation is 1x2x32 in the file, 1x2x64 in the model (scale_shift_table) (and " in message


def test_a_missing_tensor_is_refused_and_an_extra_one_reported(tiny):
    folder, _, files = tiny
    info = checkpoints.inspect_checkpoint(files.paths["Q4_0"])
    check = partial(checkpoints.check_checkpoint, transformer_class=WAN, config_folder=folder)
    assert check(info) == []
    fewer = {name: tensor for name, tensor in info.tensors.items() if not name.startswith("blocks.1.")}  # 27 tensors
    message = _one_line_usage_error(lambda: check(replace(info, tensors=fewer)))
    assert message.endswith(": it has no blocks.1.scale_shift_table (and 26 more); a checkpoint of another model or size?")
    extra = {**info.tensors, "vace_blocks.0.proj.weight": checkpoints.TensorInfo((64, 64), "F16", 8192)}
    assert check(replace(info, tensors=extra)) == ["vace_blocks.0.proj.weight"]


@pytest.mark.parametrize(
    "name",
    ["CogVideoXTransformer3DModel", "HunyuanVideo15Transformer3DModel", "Kandinsky5Transformer3DModel", "SanaVideoTransformer3DModel"],
)
def test_a_class_without_single_file_loading_is_refused(tiny, name):
    folder, _, files = tiny
    info = checkpoints.inspect_checkpoint(files.paths["Q8_0"])
    message = _one_line_usage_error(lambda: checkpoints.check_checkpoint(info, transformer_class=name, config_folder=folder))
    assert message.startswith(f"{name} cannot be loaded from a single file")


def _safetensors_data_bytes(path: Path) -> int:
    with open(path, "rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
    return path.stat().st_size - 8 - header_length


def _block_linear_parameters(model) -> int:
    return sum(module.weight.numel() for module in model.blocks.modules() if isinstance(module, torch.nn.Linear))


def test_headers_give_what_the_files_hold(tiny):
    _, transformer, files = tiny
    parameters = sum(tensor.numel() for tensor in transformer.state_dict().values())
    for kind, path in files.paths.items():
        info = checkpoints.inspect_checkpoint(path)
        assert info.format == path.suffix[1:] and info.file_bytes == path.stat().st_size
        assert info.comfy_prefix == (kind == "comfy-bf16") and info.scaled_fp8 == (kind == "scaled-fp8")
        if info.format == "gguf":  # GGUF: exactly the types, logical shapes and packed bytes written
            written = {name: (info_.dtype, info_.shape, info_.nbytes) for name, info_ in info.tensors.items()}
            assert written == files.gguf_written[kind]
        else:
            loaded = load_file(path)
            assert {name: tuple(t.shape) for name, t in loaded.items()} == {name: i.shape for name, i in info.tensors.items()}
            assert info.total_bytes == _safetensors_data_bytes(path) == sum(t.numel() * t.element_size() for t in loaded.values())
        if kind not in ("scaled-fp8", "other-width"):
            assert info.size.parameters == parameters
            assert info.size.block_linear_parameters == _block_linear_parameters(transformer)
    q4 = checkpoints.inspect_checkpoint(files.paths["Q4_0"])
    ffn = q4.tensors["blocks.0.ffn.0.weight"]
    assert (ffn.shape, ffn.dtype, ffn.nbytes) == ((128, 64), "Q4_0", 128 * 64 // 32 * 18)  # 32 values in 18 bytes
    assert q4.size.block_linear_bytes == q4.size.block_linear_parameters // 32 * 18


def test_component_sizes_of_a_pipeline_folder(tiny, tmp_path):
    folder, transformer, _ = tiny
    sizes = checkpoints.component_sizes(folder)
    assert set(sizes) == {"text_encoder", "transformer", "vae"}
    for size in sizes.values():
        assert size.bytes == sum(_safetensors_data_bytes(path) for path in size.files)
        assert size.parameters == sum(t.numel() for path in size.files for t in load_file(path).values())
    assert sizes["transformer"].block_linear_parameters == _block_linear_parameters(transformer)
    assert sizes["transformer"].block_linear_bytes == 4 * _block_linear_parameters(transformer)  # float32
    # A sharded component is read through its index; the model built from the config on
    # the meta device (no weights) gives the same figures.
    transformer.save_pretrained(tmp_path / "transformer", max_shard_size="200KB")
    sharded = checkpoints.component_sizes(tmp_path)["transformer"]
    assert len(sharded.files) > 1 and replace(sharded, files=()) == replace(sizes["transformer"], files=())
    with init_empty_weights(include_buffers=True):
        meta = WanTransformer3DModel.from_config(transformer.config)
    assert checkpoints.model_size(meta) == replace(sharded, files=())


# ---- finding files: local, REPO/FILENAME, offline ----


def test_bad_specs_are_one_line(tmp_path):
    for spec, start in [
        ("model.ckpt", "model.ckpt: a single-file checkpoint must be"),
        (str(tmp_path / "absent.gguf"), "checkpoint not found: "),
        ("./absent.safetensors", "checkpoint not found: "),
        ("no-repo.gguf", "checkpoint not found: "),
    ]:
        assert _one_line_usage_error(lambda spec=spec: hub.resolve_checkpoint(spec)).startswith(start)


@pytest.fixture
def online_user(monkeypatch, tmp_path):
    """No HF_HUB_OFFLINE (conftest sets it for every other test) and an empty Hub cache."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_a_cached_hub_file_is_used_without_the_network(online_user, monkeypatch):
    snapshot = online_user / "models--org--name" / "snapshots" / ("a" * 40)
    (snapshot / "sub" / "dir").mkdir(parents=True)
    (snapshot / "sub" / "dir" / "file.gguf").write_bytes(b"GGUF")
    (online_user / "models--org--name" / "refs").mkdir()
    (online_user / "models--org--name" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub, "get_session", lambda: pytest.fail("the network was used"))
    assert hub.resolve_checkpoint("org/name/sub/dir/file.gguf") == snapshot / "sub" / "dir" / "file.gguf"


def test_a_hub_that_hangs_counts_as_unreachable_after_the_timeout(online_user, monkeypatch):
    class Hanging:
        def head(self, *args, **kwargs):
            time.sleep(5)

    monkeypatch.setattr(huggingface_hub, "get_session", Hanging)
    start = time.monotonic()
    assert hub.hub_reachable(timeout=0.3) is False
    assert time.monotonic() - start < 1.5


def test_offline_flag_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotAvailableError, match="^org/name/file.gguf is not downloaded and HF_HUB_OFFLINE is set; "):
        hub.resolve_checkpoint("org/name/file.gguf")


# This machine and CI have no route to huggingface.co: a new user's first try, offline,
# without HF_HUB_OFFLINE. (huggingface_hub alone: 24 s and 10 `Retrying` lines.)
def test_an_unreachable_hub_is_one_line_within_seconds(online_user, capfd):
    if hub.hub_reachable():
        pytest.skip("needs a machine that cannot reach the Hugging Face Hub")
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as caught:  # a name that would be a quick 404 if it were reachable
        hub.resolve_checkpoint("city96/Wan2.1-T2V-14B-gguf/vidgen-test-absent-Q4_K_M.gguf")
    assert time.monotonic() - start < hub.HUB_TIMEOUT + 2
    assert str(caught.value).startswith("cannot reach the Hugging Face Hub to download city96/Wan2.1-T2V-14B-gguf/vidgen-test-absent")
    assert "\n" not in str(caught.value)
    assert "Retry" not in capfd.readouterr().err
