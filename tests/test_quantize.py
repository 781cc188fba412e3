"""vidgen.engine.quantize, at the library level: parsing, resolving against a model, the machine checks,
the configs, the sizes, and a tiny WanPipeline loaded quantized through diffusers on the CPU.

torchao is in the `test` extra; bitsandbytes is not (diffusers runs it on CUDA only), so its
one config test skips without it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vidgen.engine.quantize import (
    check_runnable,
    describe,
    method_problem,
    pipeline_quantization_config,
    quantizable_linear_shapes,
    quantized_bytes,
    resolve_components,
)
from vidgen.errors import ExitCode, UsageError
from vidgen.settings.grammar import parse_quantize

WAN_22_A14B_INDEX = {  # Wan-AI/Wan2.2-T2V-A14B-Diffusers' model_index.json, its components
    "_class_name": "WanPipeline",
    "boundary_ratio": 0.875,
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "transformer_2": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}
SVD_INDEX = {  # stabilityai/stable-video-diffusion-img2vid-xt: the denoiser is a `unet`
    "_class_name": "StableVideoDiffusionPipeline",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
    "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
}
KNOWN = "int8, int8-dynamic, fp8, fp8-dynamic, nf4, none"


def wan_index(folder) -> dict:
    return json.loads((folder / "model_index.json").read_text())


@pytest.mark.parametrize(
    "text, mapping",
    [
        ("int8", {"*": "int8"}),
        ("none", {}),
        ("transformer=fp8,text_encoder=int8", {"transformer": "fp8", "text_encoder": "int8"}),
        ("fp8, text_encoder = int8", {"*": "fp8", "text_encoder": "int8"}),
        ("transformer=none,text_encoder=int8", {"text_encoder": "int8"}),
    ],
)
def test_parse_quantize(text, mapping):
    assert parse_quantize(text) == mapping


@pytest.mark.parametrize(
    "text, message",
    [
        ("", f"--quantize needs a method ({KNOWN}) or COMPONENT=METHOD pairs"),
        ("int4", f"--quantize: unknown method 'int4' (known: {KNOWN})"),
        ("transformer=q8", f"--quantize: unknown method 'q8' (known: {KNOWN})"),
        ("transformer=", "--quantize: 'transformer=' is not METHOD or COMPONENT=METHOD (e.g. transformer=fp8,text_encoder=int8)"),
        ("=int8", "--quantize: '=int8' is not METHOD or COMPONENT=METHOD (e.g. transformer=fp8,text_encoder=int8)"),
        ("int8,", "--quantize: an empty item in 'int8,'"),
        ("int8,fp8", "--quantize gives the denoisers twice: 'int8,fp8'"),
        ("vae=int8,vae=fp8", "--quantize gives vae twice: 'vae=int8,vae=fp8'"),
        ("none,vae=int8", "--quantize: 'none' cannot be combined with other methods: 'none,vae=int8'"),
    ],
)
def test_parse_quantize_refuses_in_one_line(text, message):
    with pytest.raises(UsageError) as caught:
        parse_quantize(text)
    assert caught.value.message == message
    assert caught.value.exit_code == ExitCode.USAGE


def test_describe_is_stable_denoisers_first():
    assert describe({}) == "none"
    assert describe({"*": "int8"}) == "int8"
    assert describe({"text_encoder": "int8", "transformer_2": "fp8", "transformer": "fp8"}) == (
        "transformer=fp8,transformer_2=fp8,text_encoder=int8"
    )
    for mapping in ({}, {"*": "int8"}, {"vae": "int8", "*": "fp8", "text_encoder": "nf4"}):
        assert parse_quantize(describe(mapping)) == mapping  # what the recipe records reads back


def test_parsing_and_the_checks_import_no_torch():
    """`vidgen --help` and settings validation import this module: they must stay light."""
    code = (
        "import sys, vidgen.engine.quantize as q, vidgen.settings.grammar as g; q.describe(g.parse_quantize('fp8,text_encoder=int8'));"
        "q.method_problem('fp8-dynamic', device_kind='cuda', capability=(8, 0), torchao='0.18');"
        "q.check_runnable({'transformer': 'int8'}, 'cpu');"
        "print(sorted(m for m in ('torch', 'torchao', 'diffusers', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_resolve_components_finds_each_models_denoisers(tiny_wan_dir):
    assert resolve_components({"*": "int8"}, wan_index(tiny_wan_dir)) == {"transformer": "int8"}  # transformer_2: [null, null]
    assert resolve_components({"*": "fp8", "text_encoder": "int8"}, WAN_22_A14B_INDEX) == {
        "transformer": "fp8",
        "transformer_2": "fp8",
        "text_encoder": "int8",
    }
    assert resolve_components({"*": "int8", "transformer_2": "fp8"}, WAN_22_A14B_INDEX) == {"transformer": "int8", "transformer_2": "fp8"}
    assert resolve_components({"*": "int8"}, SVD_INDEX) == {"unet": "int8"}
    assert resolve_components({}, SVD_INDEX) == {}


@pytest.mark.parametrize(
    "choice, index, message",
    [
        (
            {"transformer_2": "fp8"},
            "wan",
            "--quantize transformer_2=fp8: WanPipeline has no component 'transformer_2' "
            "(it has: scheduler, text_encoder, tokenizer, transformer, vae)",
        ),
        (
            {"tokenizer": "int8"},
            "wan",
            "--quantize tokenizer=int8: tokenizer (T5Tokenizer) is not a model; models: text_encoder, transformer, vae",
        ),
        (
            {"*": "int8"},
            {"_class_name": "X", "vae": ["diffusers", "AutoencoderKL"]},
            "--quantize int8: X has no denoiser named transformer, transformer_2, unet (its components: vae); name one as COMPONENT=METHOD",
        ),
    ],
)
def test_resolve_components_refuses_in_one_line(choice, index, message, tiny_wan_dir):
    with pytest.raises(UsageError) as caught:
        resolve_components(choice, wan_index(tiny_wan_dir) if index == "wan" else index)
    assert caught.value.message == message


FP8_DYNAMIC = "--quantize fp8-dynamic needs a CUDA GPU of compute capability 8.9 or higher"


@pytest.mark.parametrize(
    "method, facts, problem",
    [
        ("int8", dict(device_kind="cpu", torchao="0.18.0"), None),
        ("fp8", dict(device_kind="cuda", capability=(7, 5), torchao="0.18.0"), None),
        ("none", dict(device_kind="cpu"), None),
        ("int8", dict(device_kind="cpu"), "--quantize int8 needs torchao: pip install 'vidgen[quant]'"),
        (
            "fp8",
            dict(device_kind="cuda", capability=(9, 0), torchao="0.17.0"),  # the old int8 weights below 0.18
            "--quantize fp8 needs torchao 0.18 or newer (installed: 0.17.0): pip install -U 'vidgen[quant]'",
        ),
        ("fp8-dynamic", dict(device_kind="cuda", capability=(8, 9), torchao="0.18.0"), None),
        ("fp8-dynamic", dict(device_kind="cuda", capability=(9, 0), torchao="0.18.0"), None),
        ("fp8-dynamic", dict(device_kind="xpu", torchao="0.18.0"), None),
        ("fp8-dynamic", dict(device_kind="rocm", capability="gfx942:sramecc+:xnack-", torchao="0.18.0"), None),
        (
            "fp8-dynamic",
            dict(device_kind="cuda", capability=(8, 0), torchao="0.18.0"),
            f"{FP8_DYNAMIC} (this one: 8.0); fp8 (weight-only) runs on it",
        ),
        (
            "fp8-dynamic",
            dict(device_kind="cuda", capability=(8, 6), torchao="0.18.0"),
            f"{FP8_DYNAMIC} (this one: 8.6); fp8 (weight-only) runs on it",
        ),
        (
            "fp8-dynamic",
            dict(device_kind="rocm", capability="gfx90a", torchao="0.18.0"),
            f"{FP8_DYNAMIC}, or an AMD MI300/MI350 (this one: gfx90a); fp8 (weight-only) runs on it",
        ),
        ("fp8-dynamic", dict(device_kind="cpu", torchao="0.18.0"), f"{FP8_DYNAMIC} (this device: cpu); fp8 (weight-only) runs here"),
        ("fp8-dynamic", dict(device_kind="mps", torchao="0.18.0"), f"{FP8_DYNAMIC} (this device: mps); fp8 (weight-only) runs here"),
        ("fp8-dynamic", dict(device_kind="cuda", capability=(9, 0)), "--quantize fp8-dynamic needs torchao: pip install 'vidgen[quant]'"),
        ("nf4", dict(device_kind="cuda", capability=(8, 6), bitsandbytes="0.45.0"), None),
        (
            "nf4",
            dict(device_kind="cpu", bitsandbytes="0.45.0"),
            "--quantize nf4 needs a CUDA GPU (bitsandbytes 4-bit, "
            "which diffusers runs there only; this device: cpu); int8 and fp8 run here",
        ),
        (
            "nf4",
            dict(device_kind="mps", bitsandbytes="0.45.0"),
            "--quantize nf4 needs a CUDA GPU (bitsandbytes 4-bit, "
            "which diffusers runs there only; this device: mps); int8 and fp8 run here",
        ),
        ("nf4", dict(device_kind="cuda", capability=(8, 6)), "--quantize nf4 needs bitsandbytes: pip install 'vidgen[quant-gpu]'"),
        (
            "nf4",
            dict(device_kind="cuda", capability=(8, 6), bitsandbytes="0.42.0"),
            "--quantize nf4 needs bitsandbytes 0.43.3 or newer (installed: 0.42.0): pip install -U 'vidgen[quant-gpu]'",
        ),
    ],
)
def test_method_problem(method, facts, problem):
    assert method_problem(method, **facts) == problem


def test_check_runnable_on_this_cpu():
    """The real facts of this machine (CPU, torchao from the test extra): int8 and fp8 run, the
    others are refused in one line, all of them together."""
    check_runnable({"transformer": "int8", "text_encoder": "fp8", "vae": "int8-dynamic"}, "cpu")
    check_runnable({}, "cpu")
    with pytest.raises(UsageError) as caught:
        check_runnable({"transformer": "fp8-dynamic", "text_encoder": "nf4"}, "cpu")
    assert caught.value.message == (
        f"{FP8_DYNAMIC} (this device: cpu); fp8 (weight-only) runs here; --quantize nf4 needs a CUDA GPU "
        "(bitsandbytes 4-bit, which diffusers runs there only; this device: cpu); int8 and fp8 run here"
    )
    assert caught.value.exit_code == ExitCode.USAGE


TORCHAO_CONFIG = {
    "int8": "Int8WeightOnlyConfig",
    "int8-dynamic": "Int8DynamicActivationInt8WeightConfig",
    "fp8": "Float8WeightOnlyConfig",
    "fp8-dynamic": "Float8DynamicActivationFloat8WeightConfig",
}


@pytest.mark.parametrize("method", sorted(TORCHAO_CONFIG))
def test_each_library_gets_its_own_torchao_config(method, tiny_wan_dir):
    import diffusers
    import transformers

    config = pipeline_quantization_config({"transformer": method, "text_encoder": "int8"}, wan_index(tiny_wan_dir))
    assert isinstance(config, diffusers.PipelineQuantizationConfig) and config.quant_backend is None
    assert sorted(config.quant_mapping) == ["text_encoder", "transformer"]
    transformer, text_encoder = config.quant_mapping["transformer"], config.quant_mapping["text_encoder"]
    assert type(transformer) is diffusers.TorchAoConfig and type(transformer.quant_type).__name__ == TORCHAO_CONFIG[method]
    assert type(text_encoder) is transformers.TorchAoConfig and type(text_encoder.quant_type).__name__ == "Int8WeightOnlyConfig"
    assert pipeline_quantization_config({}, wan_index(tiny_wan_dir)) is None  # diffusers refuses an empty mapping


def test_nf4_is_bitsandbytes_from_each_library(tiny_wan_dir):
    pytest.importorskip("bitsandbytes")  # GPU users' extra; diffusers' config refuses to exist without it
    import diffusers
    import torch
    import transformers

    config = pipeline_quantization_config(
        {"transformer": "nf4", "text_encoder": "nf4"}, wan_index(tiny_wan_dir), compute_dtype=torch.float16
    )
    for name, library in (("transformer", diffusers), ("text_encoder", transformers)):
        bnb = config.quant_mapping[name]
        assert type(bnb) is library.BitsAndBytesConfig
        assert (bnb.load_in_4bit, bnb.bnb_4bit_quant_type, bnb.bnb_4bit_compute_dtype) == (True, "nf4", torch.float16)


# --------------------------------------------------------------------------------------
# a tiny WanPipeline loaded quantized, as pipeline.load_pipeline will load it
# --------------------------------------------------------------------------------------

CALL = dict(prompt="a red fox running in the snow", num_inference_steps=2, height=32, width=32, num_frames=9)


def _call(pipe, output_type: str):
    import torch

    return pipe(**CALL, output_type=output_type, generator=torch.Generator().manual_seed(0)).frames


def _relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def _denoise_once(transformer):
    import torch

    torch.manual_seed(0)
    latents, text = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 8, 32)
    with torch.no_grad():
        return transformer(latents, torch.tensor([500.0]), text, return_dict=False)[0]


def _encode_once(text_encoder):
    import torch

    with torch.no_grad():
        return text_encoder(torch.tensor([[5, 6, 7, 8, 1]])).last_hidden_state


def _stored_bytes(model) -> int:
    """What a model's parameters take in memory, torchao tensors by their inner tensors."""
    from torchao.utils import TorchAOBaseTensor

    total = 0
    for parameter in model.parameters():
        if isinstance(parameter, TorchAOBaseTensor):
            total += sum(getattr(parameter, name).nbytes for name in parameter.tensor_data_names)
        else:
            total += parameter.nbytes
    return total


def _quantized_layers(model) -> int:
    import torch

    return sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear) and type(m.weight) is not torch.nn.Parameter)


@pytest.fixture(scope="module")
def unquantized(tiny_wan_dir):
    import diffusers
    import torch

    pipe = diffusers.WanPipeline.from_pretrained(tiny_wan_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe, _call(pipe, "latent"), _denoise_once(pipe.transformer), _encode_once(pipe.text_encoder)


# method: (tensor class in torchao.quantization, whether activations are quantized too, the largest relative
# error of one transformer pass and of the whole call's latents). Measured on this tiny model, with the text
# encoder at int8 (whose own output moves 0.86%): one pass int8 0.45%, int8-dynamic 0.80%, fp8 2.75% (e4m3
# keeps 3 mantissa bits); the call's latents int8 0.22%, int8-dynamic 1.2%, fp8 1.4%, where another seed
# moves them 136%. Bounds about twice the measured errors.
LOADED = {
    "int8": ("Int8Tensor", False, 0.01, 0.005),
    "int8-dynamic": ("Int8Tensor", True, 0.02, 0.03),
    "fp8": ("Float8Tensor", False, 0.05, 0.03),
}


@pytest.mark.parametrize("method", sorted(LOADED))
def test_tiny_wan_loads_quantized_and_stays_close(method, tiny_wan_dir, unquantized):
    import diffusers
    import torch
    import torchao.quantization

    reference, reference_latents, reference_pass, reference_text = unquantized
    index = wan_index(tiny_wan_dir)
    # What load_pipeline does: parse, resolve against the model, check the machine, build the config.
    mapping = resolve_components(parse_quantize(f"{method},text_encoder=int8"), index)
    assert mapping == {"transformer": method, "text_encoder": "int8"}
    check_runnable(mapping, "cpu")
    config = pipeline_quantization_config(mapping, index, compute_dtype=torch.float32)
    pipe = diffusers.WanPipeline.from_pretrained(tiny_wan_dir, dtype=torch.float32, quantization_config=config)
    pipe.set_progress_bar_config(disable=True)

    tensor_class, dynamic, pass_error, call_error = LOADED[method]
    linears = {name: m for name, m in pipe.transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    quantized = {name for name, m in linears.items() if type(m.weight) is getattr(torchao.quantization, tensor_class)}
    # Every Linear but Wan's `_keep_in_fp32_modules` time embedder; its norms and other tensors untouched.
    assert quantized == {name for name in linears if not name.startswith("condition_embedder.time_embedder.")}
    assert all((linears[name].weight.act_quant_kwargs is not None) == dynamic for name in quantized)
    untouched = [p for n, p in pipe.transformer.named_parameters() if "norm" in n or "scale_shift" in n or n.endswith("bias")]
    assert untouched and all(type(p) is torch.nn.Parameter for p in untouched)
    assert type(pipe.transformer.patch_embedding.weight) is torch.nn.Parameter  # a convolution
    text_linears = [m for m in pipe.text_encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert text_linears and all(type(m.weight) is torchao.quantization.Int8Tensor for m in text_linears)
    assert type(pipe.text_encoder.shared.weight) is torch.nn.Parameter  # the embedding
    assert all(type(p) is torch.nn.Parameter for p in pipe.vae.parameters())

    # The size estimate is what the loaded components take (a float32 load: 4 bytes a plain weight).
    for name, component_method in mapping.items():
        plain, loaded = getattr(reference, name), getattr(pipe, name)
        shapes = quantizable_linear_shapes(plain)
        assert len(shapes) == _quantized_layers(loaded)
        estimate = quantized_bytes(_stored_bytes(plain), shapes, component_method, weight_bytes=4)
        assert estimate == _stored_bytes(loaded) < _stored_bytes(plain)

    # Same inputs: one text encoder pass, one transformer pass, the whole call, each within its error.
    assert 0 < _relative(_encode_once(pipe.text_encoder), reference_text) < 0.02
    assert 0 < _relative(_denoise_once(pipe.transformer), reference_pass) < pass_error
    assert 0 < _relative(_call(pipe, "latent"), reference_latents) < call_error
    frames = _call(pipe, "np")  # decoded: a video
    assert frames.shape == (1, 9, 32, 32, 3) and np.isfinite(frames).all()
