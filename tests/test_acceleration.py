"""Speed and memory options: step caches on the tiny Wan, and the choices made from numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from vidgen.engine import acceleration
from vidgen.errors import UsageError
from vidgen.media.readback import probe_video, read_recipe
from vidgen.settings.grammar import CACHE_METHODS

# speed options applied to tiny real pipelines: `model` (make check leaves it out).
pytestmark = pytest.mark.model

GIB = 2**30


def test_cache_first_block_writes_valid_mp4_and_records_cache(generate_tiny):
    result = generate_tiny("a red ball", "--cache", "first-block", "--seed", "3", "-o", "fast.mp4")
    assert result.exit_code == 0, result.stderr
    info = probe_video(Path("fast.mp4"))
    assert (info.frames, info.width, info.height) == (9, 32, 32)
    assert read_recipe(Path("fast.mp4"))["cache"] == "first-block"


def test_fast_is_the_default_cache_and_lossless_records_none(generate_tiny):
    assert generate_tiny("a ball", "--fast", "--seed", "1", "-o", "f.mp4").exit_code == 0
    assert read_recipe(Path("f.mp4"))["cache"] == acceleration.FAST_CACHE
    assert generate_tiny("a ball", "--seed", "1", "-o", "n.mp4").exit_code == 0
    assert read_recipe(Path("n.mp4"))["cache"] == "none"


def test_fast_with_another_cache_or_unknown_cache_is_usage_error(generate_tiny):
    result = generate_tiny("a ball", "--fast", "--cache", "pab", "-o", "x.mp4")
    assert result.exit_code == 2 and "--fast means --cache first-block" in result.stderr
    result = generate_tiny("a ball", "--cache", "turbo", "-o", "x.mp4")
    assert result.exit_code == 2 and "--cache must be one of" in result.stderr
    assert not Path("x.mp4").exists()


# The diffusers config each --cache name must install; a new name needs its line here.
CACHE_CONFIGS = {"first-block": "FirstBlockCacheConfig", "taylorseer": "TaylorSeerCacheConfig", "pab": "PyramidAttentionBroadcastConfig"}


def test_every_cache_method_is_named_here():
    assert set(CACHE_CONFIGS) == set(CACHE_METHODS) - {"none"}


@pytest.mark.parametrize("name", [name for name in CACHE_METHODS if name != "none"])
def test_every_cache_method_installs_on_wan(name):
    import diffusers

    from tests.tiny_pipelines import make_tiny_pipeline

    pipe = make_tiny_pipeline("WanPipeline")
    acceleration.apply_cache(pipe, name)
    assert pipe.transformer.is_cache_enabled
    assert type(pipe.transformer._cache_config) is getattr(diffusers, CACHE_CONFIGS[name])


def test_denoiser_without_cache_support_is_a_clear_error():
    import torch

    pipe = SimpleNamespace(transformer=torch.nn.Linear(2, 2))
    with pytest.raises(UsageError, match="has no step-cache support"):
        acceleration.apply_cache(pipe, "first-block")


@pytest.mark.parametrize(
    "total, largest, free, on_cuda, expected",
    [
        (10 * GIB, 6 * GIB, 80 * GIB, True, "none"),  # fits with room to spare
        (10 * GIB, 6 * GIB, 15 * GIB, True, "none"),  # exactly 1.5x
        (10 * GIB, 6 * GIB, 14 * GIB, True, "model"),  # not all, but the largest fits
        (10 * GIB, 6 * GIB, 9 * GIB, True, "model"),
        (10 * GIB, 6 * GIB, 8 * GIB, True, "group"),  # not even the largest: stream groups in
        (10 * GIB, 6 * GIB, 8 * GIB, False, "sequential"),
    ],
)
def test_auto_offload_choice_from_numbers(total, largest, free, on_cuda, expected):
    assert acceleration.choose_offload(total, largest, free, on_cuda=on_cuda) == expected


# `--dtype auto` on a CUDA card without bfloat16: a model known to give black frames in float16 runs in
# float32 where its float32 weights fit with the run's offloading (--dry-run's estimate), else is refused.
@pytest.mark.parametrize(
    "float16_safe, total, largest, free, offload, expected",
    [
        (True, 40 * GIB, 20 * GIB, 16 * GIB, "none", "float16"),  # a model that runs in float16 keeps it
        (False, 10 * GIB, 6 * GIB, 15 * GIB, "none", "float32"),  # all of it fits, with headroom
        (False, 40 * GIB, 20 * GIB, 30 * GIB, "model", "float32"),  # the largest component fits
        (False, 40 * GIB, 20 * GIB, 16 * GIB, "group", "float32"),  # layers streamed in
        (False, 40 * GIB, 20 * GIB, 16 * GIB, "auto", "float32"),  # auto picks an offload that fits
        (False, 40 * GIB, 20 * GIB, 31 * GIB, "none", "--offload model"),  # refused, with the way out
        (False, 40 * GIB, 20 * GIB, 16 * GIB, "model", "--offload group"),
        (False, None, None, 80 * GIB, "none", "vidgen pull cogvideox-5b"),  # sizes unknown: nothing to judge by
    ],
)
def test_dtype_auto_without_bfloat16_from_numbers(float16_safe, total, largest, free, offload, expected):
    def choose():
        return acceleration.dtype_without_bfloat16(
            float16_safe=float16_safe,
            float32_bytes=total,
            largest_float32_bytes=largest,
            free_bytes=free,
            offload=offload,
            preset="cogvideox-5b",
        )

    if expected.startswith(("float", "bfloat")):
        assert choose() == expected
        return
    with pytest.raises(UsageError) as error:
        choose()
    assert "cogvideox-5b gives black or NaN frames in float16 and this card has no bfloat16" in str(error.value)
    assert expected in str(error.value)


def test_presets_known_to_fail_in_float16_say_so():
    """The presets of CogVideo #559 / #637 and HunyuanVideo #60, and a run's settings carry it."""
    from vidgen.settings.layers import build_settings
    from vidgen.settings.presets import list_presets

    presets, _ = list_presets()
    assert {preset.name for preset in presets if not preset.float16} == {
        "cogvideox-5b",
        "cogvideox-5b-i2v",
        "cogvideox1.5-5b",
        "hunyuanvideo",
        "hunyuanvideo-i2v",
    }
    marked = next(preset for preset in presets if preset.name == "cogvideox-5b")
    assert build_settings(marked, [{"prompt": "x"}]).float16_safe is False


@pytest.mark.parametrize(
    "requested, device, steps, cache, offload, expected",
    [
        (None, "cuda", 50, "none", "none", True),
        (None, "cuda:1", 50, "none", "model", True),
        (None, "cuda", 4, "none", "none", False),  # too few steps to pay back the warm-up
        (None, "cpu", 50, "none", "none", False),
        (None, "cuda", 50, "first-block", "none", False),
        (None, "cuda", 50, "none", "group", False),
        (True, "cpu", 2, "none", "none", True),  # explicit wins
        (False, "cuda", 50, "none", "none", False),
    ],
)
def test_compile_by_default_only_where_it_pays(requested, device, steps, cache, offload, expected):
    assert acceleration.should_compile(requested, device=device, steps=steps, cache=cache, offload=offload) is expected


@pytest.mark.parametrize(
    "requested, parameters, expected",
    [
        (None, 1_300_000_000, True),  # Wan 2.1 1.3B
        (None, 7_000_000, False),  # the built-in model: its steps take milliseconds
        (None, None, True),  # size unknown before loading: the other rules decide
        (True, 7_000_000, True),  # explicit wins
    ],
)
def test_small_denoisers_are_not_compiled_by_default(requested, parameters, expected):
    decided = acceleration.should_compile(requested, device="cuda", steps=20, cache="none", offload="none", denoiser_parameters=parameters)
    assert decided is expected


def test_parameter_count_of_the_tiny_pipelines_denoiser(tiny_wan_dir):
    from diffusers import WanTransformer3DModel

    transformer = WanTransformer3DModel.from_pretrained(tiny_wan_dir, subfolder="transformer")
    count = acceleration.parameter_count(acceleration.denoiser_of(type("Pipe", (), {"transformer": transformer})()))
    assert count == sum(p.numel() for p in transformer.parameters()) and 0 < count < acceleration.MIN_PARAMETERS_TO_COMPILE
    assert acceleration.parameter_count(None) is None


def test_persistent_compile_cache_goes_under_the_given_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    acceleration.use_persistent_compile_cache(tmp_path / "compile-cache")
    import os

    import torch._inductor.config as inductor_config

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile-cache")
    assert inductor_config.fx_graph_cache is True


def test_unknown_attention_backend_is_usage_error(generate_tiny):
    result = generate_tiny("a ball", "--attention-backend", "warp-drive", "-o", "a.mp4")
    assert result.exit_code == 2 and "unknown attention backend 'warp-drive'" in result.stderr


def test_native_attention_backend_runs_on_cpu(generate_tiny, pipeline_calls):
    from diffusers import WanPipeline

    calls = pipeline_calls(WanPipeline)
    result = generate_tiny("a ball", "--attention-backend", "native", "--seed", "1", "-o", "a.mp4")
    assert result.exit_code == 0, result.stderr
    # Every attention processor of the denoiser the pipeline ran with uses the backend asked for
    # (left alone, they have none: diffusers' default).
    [call] = calls
    backends = {
        getattr(module.processor, "_attention_backend", "no processor")
        for module in call.pipe.transformer.modules()
        if hasattr(module, "processor")
    }
    assert backends == {"native"}


def _conv_kernels(run) -> set[str]:
    """The convolution kernels PyTorch ran for `run()`."""
    from torch.profiler import profile

    with profile() as profiled:
        run()
    return {event.key for event in profiled.key_averages() if "conv" in event.key}


def test_cpu_conv3d_runs_on_onednn_with_the_same_values():
    import torch
    from diffusers import AutoencoderKLWan

    from vidgen.settings.locations import BUILTIN_WEIGHTS_DIR

    vae = AutoencoderKLWan.from_pretrained(BUILTIN_WEIGHTS_DIR / "shapes", subfolder="vae").eval()
    latents = torch.randn(1, vae.config.z_dim, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    decoded = {}

    def decode(name):
        with torch.inference_mode():
            decoded[name] = vae.decode(latents).sample

    kernels_before = _conv_kernels(lambda: decode("torch"))
    assert "aten::slow_conv3d_forward" in kernels_before  # PyTorch's own choice for these sizes
    routed = acceleration.use_onednn_conv3d(SimpleNamespace(components={"vae": vae, "scheduler": object()}))
    assert routed == sum(isinstance(module, torch.nn.Conv3d) for module in vae.modules()) > 0
    assert acceleration.use_onednn_conv3d(SimpleNamespace(components={"vae": vae})) == 0  # once per module
    kernels_after = _conv_kernels(lambda: decode("onednn"))
    assert "aten::mkldnn_convolution" in kernels_after and "aten::slow_conv3d_forward" not in kernels_after
    assert decoded["onednn"].shape == decoded["torch"].shape
    assert torch.allclose(decoded["onednn"], decoded["torch"], atol=1e-4)


def test_routed_conv3d_leaves_training_and_other_dtypes_to_torch():
    import torch

    conv = torch.nn.Conv3d(4, 4, 3, padding=1)
    reference = torch.nn.Conv3d(4, 4, 3, padding=1)
    reference.load_state_dict(conv.state_dict())
    assert acceleration.use_onednn_conv3d(SimpleNamespace(components={"m": conv})) == 1
    inputs = torch.randn(1, 4, 3, 6, 6, requires_grad=True)
    # Training: the kernels PyTorch picks itself, forward and backward (oneDNN's would give
    # the same gradients, so the gradients alone cannot tell the paths apart).
    routed_kernels = _conv_kernels(lambda: conv(inputs).square().sum().backward())
    assert conv.weight.grad is not None and inputs.grad is not None
    reference_kernels = _conv_kernels(lambda: reference(inputs.detach().requires_grad_()).square().sum().backward())
    assert routed_kernels == reference_kernels and "aten::mkldnn_convolution" not in routed_kernels
    assert torch.allclose(conv.weight.grad, reference.weight.grad, atol=1e-5)
    half = inputs.detach().bfloat16()
    assert _conv_kernels(lambda: conv.bfloat16()(half)) == _conv_kernels(lambda: reference.bfloat16()(half))


def test_routed_conv3d_falls_back_for_good_where_onednn_fails(monkeypatch):
    import torch

    conv = torch.nn.Conv3d(2, 2, 3)
    acceleration.use_onednn_conv3d(SimpleNamespace(components={"m": conv}))
    inputs = torch.randn(1, 2, 3, 5, 5)
    with torch.no_grad():
        expected = torch.nn.functional.conv3d(inputs, conv.weight, conv.bias)

        def fails(*args):
            raise RuntimeError("could not create a primitive")

        monkeypatch.setattr(torch, "mkldnn_convolution", fails)
        assert torch.allclose(conv(inputs), expected, atol=1e-6)
        monkeypatch.undo()
        assert "mkldnn_convolution" not in str(_conv_kernels(lambda: conv(inputs)))  # stays on PyTorch's path


def test_run_dtype_asks_the_decision_with_the_models_float32_size(tiny_wan_dir, tmp_path, monkeypatch):
    """run_dtype on a "CUDA card without bfloat16" (its facts patched in): the tiny model's own weights,
    read from its folder as --dry-run reads them, decide between float32 and a refusal."""
    import torch

    from vidgen.engine import checkpoints
    from vidgen.engine import devices as pipeline
    from vidgen.settings.layers import build_settings
    from vidgen.settings.presets import read_preset

    path = tmp_path / "marked.toml"
    path.write_text(f'model = "{tiny_wan_dir}"\npipeline = "WanPipeline"\nfloat16 = false\n')
    settings = build_settings(read_preset(path), [{"prompt": "x", "dtype": "auto"}])
    float32_bytes = sum(size.parameters * 4 for size in checkpoints.component_sizes(tiny_wan_dir).values())
    monkeypatch.setattr(pipeline, "has_bfloat16", lambda: False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * float32_bytes, 4 * float32_bytes))
    assert pipeline.run_dtype(settings, "cuda") == torch.float32
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (float32_bytes, 4 * float32_bytes))
    with pytest.raises(UsageError, match="gives black or NaN frames in float16"):
        pipeline.run_dtype(settings, "cuda")
    settings = dataclasses.replace(settings, float16_safe=True)  # an unmarked preset keeps float16 there
    assert pipeline.run_dtype(settings, "cuda") == torch.float16
