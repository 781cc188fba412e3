"""Speed and memory options applied to a loaded pipeline (pipeline.py calls these).

Each option is measured against plain diffusers by `benchmarks/bench.py`; what is on by
default is only what was measured to help without changing the output (docs/benchmarks.md,
the H100 baseline and the GPU rounds):
- regional compilation of the denoiser's repeated blocks on CUDA, with Inductor's caches
  kept under VIDGEN_HOME so a second invocation does not compile again;
- the attention backend stays PyTorch SDPA (cuDNN on H100, measured faster than the
  flash backends); `--attention-backend` overrides it;
- step caching (`--cache`, `--fast`) trades a small quality loss for speed and is opt-in;
- `--offload auto` picks the lightest offloading that fits in free GPU memory;
- on the CPU, float32 3D convolutions run on oneDNN in channels-last layout (the video
  VAEs' decoders are stacks of them), where PyTorch's own choice is its slow reference kernel.

This module loads no model and prints nothing; torch and diffusers are imported lazily.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from vidgen.errors import UsageError
from vidgen.settings.grammar import CACHE_METHODS, DENOISERS

# Step caches on diffusers' `transformer.enable_cache(...)` hooks. Left out: MagCache needs
# magnitude ratios calibrated per checkpoint and scheduler (diffusers 0.42 ships them only
# for Flux; a calibration run costs a whole uncached video); FasterCache's reuse of the
# unconditional branch expects both guidance passes in one batch, and on WanPipeline
# (two separate passes) diffusers 0.42.1 fails with an IndexError.
FAST_CACHE = "first-block"  # what --fast means: adaptive, no per-model tuning
FIRST_BLOCK_THRESHOLD = 0.05  # diffusers' default; higher skips more steps

# Below this many steps compilation (about 25 s for Wan 1.3B on an H100) cannot pay back.
MIN_STEPS_TO_COMPILE = 10
# Nor for a small denoiser, whose steps take milliseconds: on an H200 the built-in 7 M model's
# first CUDA run was still compiling after 20 s (docs/benchmarks.md).
MIN_PARAMETERS_TO_COMPILE = 100_000_000
# Weights times this must fit in free memory for no offloading: activations, the VAE
# decode (12 GiB for 81 frames at 480p: docs/benchmarks.md's H100 baseline) and the allocator need room too.
OFFLOAD_HEADROOM = 1.5


# ---- step caching ----


def cache_config(name: str, pipe: Any) -> Any:
    """The diffusers config object for cache method `name` (not "none")."""
    import diffusers  # here, not at the top: vidgen --help imports this module (diffusers takes seconds)

    def current_timestep() -> Any:
        return pipe.current_timestep

    if name == "first-block":
        return diffusers.FirstBlockCacheConfig(threshold=FIRST_BLOCK_THRESHOLD)
    if name == "taylorseer":
        import torch  # here, not at the top: vidgen --help imports this module (torch takes seconds)

        # Lite mode predicts the final projection and skips every block on cached steps; its
        # module patterns are generic, while the default ones miss Wan's attn1/attn2.
        # Factors in float32: bfloat16 would round the Taylor terms of a float32 model.
        return diffusers.TaylorSeerCacheConfig(
            cache_interval=5, disable_cache_before_step=3, max_order=1, taylor_factors_dtype=torch.float32, use_lite_mode=True
        )
    if name == "pab":
        return diffusers.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=current_timestep,
        )
    raise UsageError(f"unknown cache {name!r} (use one of: {', '.join(CACHE_METHODS)})")


def denoiser_of(pipe: Any) -> Any:
    """The pipeline's (first) denoiser, or None."""
    return next((denoiser for name in DENOISERS if (denoiser := getattr(pipe, name, None)) is not None), None)


def apply_cache(pipe: Any, name: str) -> None:
    """Install step-caching hooks on the pipeline's denoiser; a clear error if it has none."""
    if name == "none":
        return
    if name not in CACHE_METHODS:
        raise UsageError(f"unknown cache {name!r} (use one of: {', '.join(CACHE_METHODS)})")
    denoiser = denoiser_of(pipe)
    if denoiser is None or not hasattr(denoiser, "enable_cache"):
        raise UsageError(f"--cache {name}: the denoiser of {type(pipe).__name__} has no step-cache support in diffusers")
    if name == "pab" and not hasattr(type(pipe), "current_timestep"):
        raise UsageError(f"--cache {name} needs a pipeline that reports its current timestep; {type(pipe).__name__} does not")
    try:
        denoiser.enable_cache(cache_config(name, pipe))
    except (ValueError, TypeError, AttributeError) as error:
        # For example First-Block Cache needs a block type diffusers knows (Wan, Flux, ...).
        raise UsageError(f"--cache {name} does not work with {type(denoiser).__name__}: {error}") from error


# ---- compilation ----


def should_compile(
    requested: bool | None, *, device: str, steps: int | None, cache: str, offload: str, denoiser_parameters: int | None = None
) -> bool:
    """--compile/--no-compile win; by default compile on CUDA when the run is long enough
    and the denoiser large enough to pay back the warm-up, without step caches or
    group/sequential offloading (whose hooks would break a full graph). An unknown size
    (before loading) does not rule it out."""
    if requested is not None:
        return requested
    return (
        device.startswith("cuda")
        and (steps or 0) >= MIN_STEPS_TO_COMPILE
        and cache == "none"
        and offload in ("none", "model")
        and (denoiser_parameters is None or denoiser_parameters >= MIN_PARAMETERS_TO_COMPILE)
    )


def parameter_count(module: Any) -> int | None:
    if module is None or not hasattr(module, "parameters"):
        return None
    return sum(parameter.numel() for parameter in module.parameters())


def parameter_bytes(module: Any) -> int:
    """Bytes of a module's parameters as they sit in memory (0 for none)."""
    if module is None or not hasattr(module, "parameters"):
        return 0
    return sum(parameter.numel() * parameter.element_size() for parameter in module.parameters())


def use_persistent_compile_cache(folder: Path) -> None:
    """Keep Inductor's FX graph, AOTAutograd and Triton caches in `folder`, so the second
    invocation loads compiled kernels instead of compiling again. An explicit
    TORCHINDUCTOR_CACHE_DIR is respected."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder))
    # here, not at the top: vidgen --help imports this module (torch takes seconds)
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    if hasattr(functorch_config, "enable_autograd_cache"):
        functorch_config.enable_autograd_cache = True


def compile_denoiser(pipe: Any, *, fullgraph: bool = True) -> bool:
    """Regional compilation: each repeated transformer block is compiled once and reused
    (seconds instead of minutes for the whole model). False if the model has no
    repeated blocks declared."""
    denoiser = denoiser_of(pipe)
    if denoiser is None or not getattr(denoiser, "_repeated_blocks", None):
        return False
    denoiser.compile_repeated_blocks(fullgraph=fullgraph)
    return True


# ---- attention ----


def attention_backends() -> list[str]:
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
    )  # here, not at the top: vidgen --help imports this module (diffusers takes seconds)

    return [backend.value for backend in AttentionBackendName]


def set_attention_backend(pipe: Any, name: str) -> None:
    known = attention_backends()
    if name not in known:
        raise UsageError(f"unknown attention backend {name!r} (diffusers knows: {', '.join(known)})")
    denoiser = denoiser_of(pipe)
    if denoiser is None or not hasattr(denoiser, "set_attention_backend"):
        raise UsageError(f"{type(pipe).__name__} cannot switch attention backends")
    try:
        denoiser.set_attention_backend(name)
    except (ImportError, RuntimeError, ValueError) as error:
        raise UsageError(f"attention backend {name} is not usable here: {error}") from error


# ---- CPU convolutions ----


def use_onednn_conv3d(pipe: Any) -> int:
    """Route the pipeline's float32 3D convolutions on the CPU to oneDNN in channels-last
    layout; returns how many convolutions were routed. PyTorch picks its kernel with a
    size rule written for 2D images (batch x channels x first two dims above 20,480), so a
    video VAE's batch-1 convolutions of 32 or 64 channels fall to `slow_conv3d`: the
    built-in model's decoder spent 0.50 of its 0.75 s there (2-core VM). oneDNN on
    channels-last input decodes the same latents in 0.25 s, values equal to 5e-6 and the
    frames identical (benchmarks/cpu_conv3d.py, docs/benchmarks.md). Weights are left as they are; anything else (CUDA, half
    precision, gradients, padding modes other than zeros) takes PyTorch's own path."""
    import torch  # here, not at the top: vidgen --help imports this module (torch takes seconds)

    if not torch.backends.mkldnn.is_available():
        return 0
    routed = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for module in component.modules():
            if (
                isinstance(module, torch.nn.Conv3d)
                and not module.transposed
                and module.padding_mode == "zeros"
                and isinstance(module.padding, tuple)
                and "_conv_forward" not in vars(module)
            ):
                module._conv_forward = functools.partial(onednn_conv3d, module, module._conv_forward)
                routed += 1
    return routed


def onednn_conv3d(module: Any, torch_path: Any, input: Any, weight: Any, bias: Any) -> Any:
    import torch  # here, not at the top: vidgen --help imports this module (torch takes seconds)

    if (
        input.device.type != "cpu"
        or input.dtype != torch.float32
        or weight.dtype != torch.float32
        or not torch.backends.mkldnn.enabled
        or (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad))
    ):
        return torch_path(input, weight, bias)
    try:
        return torch.mkldnn_convolution(
            input.contiguous(memory_format=torch.channels_last_3d),
            weight,
            bias,
            module.padding,
            module.stride,
            module.dilation,
            module.groups,
        )
    except RuntimeError:
        # Measured on x86 only: where this oneDNN build cannot run the convolution, this
        # module goes back to PyTorch's own path for good.
        module._conv_forward = torch_path
        return torch_path(input, weight, bias)


# ---- offloading ----


def choose_offload(total_weight_bytes: int, largest_component_bytes: int, free_bytes: int, *, on_cuda: bool) -> str:
    """The lightest offloading that fits, from numbers alone (tested without a GPU):
    everything on the card if the weights with headroom fit; else one model at a time if
    the largest one fits; else groups of layers streamed in (CUDA streams overlap the
    copies with compute); else layer by layer."""
    if total_weight_bytes * OFFLOAD_HEADROOM <= free_bytes:
        return "none"
    if largest_component_bytes * OFFLOAD_HEADROOM <= free_bytes:
        return "model"
    if on_cuda:
        return "group"
    return "sequential"


def dtype_without_bfloat16(
    *, float16_safe: bool, float32_bytes: int | None, largest_float32_bytes: int | None, free_bytes: int, offload: str, preset: str
) -> str:
    """`--dtype auto` on a CUDA card that does not compute in bfloat16, from numbers alone (tested without
    a GPU): float16; but a model its preset marks `float16 = false` gives black or NaN frames in float16,
    seen only after the whole run (CogVideo #559, HunyuanVideo #60), so float32 when its float32 weights
    fit the card with the run's --offload (--dry-run's estimate: all of them for none, the largest for
    model; group and sequential stream layers in, and auto picks what fits), else a refusal saying why."""
    if float16_safe:
        return "float16"
    why = f"{preset} gives black or NaN frames in float16 and this card has no bfloat16"
    if float32_bytes is None or largest_float32_bytes is None:
        raise UsageError(f"{why}; float32 may fit, but the model's size is unknown until `vidgen pull {preset}` (or pass --dtype float32)")
    needed = {"none": float32_bytes, "model": largest_float32_bytes}.get(offload, 0)
    if needed * OFFLOAD_HEADROOM <= free_bytes:
        return "float32"
    fits = "model" if offload == "none" and largest_float32_bytes * OFFLOAD_HEADROOM <= free_bytes else "group"
    raise UsageError(
        f"{why}, and in float32 it needs {needed / 1e9:.1f} GB with --offload {offload} ({free_bytes / 1e9:.1f} GB "
        f"free): use --offload {fits}, or --dtype float16 to try anyway"
    )


def memory_advice(*, total_bytes: int, denoiser_bytes: int, largest_bytes: int, free_bytes: int, quantized: bool, offload: str) -> str:
    """After a CUDA out-of-memory error: the cheapest next step that the estimate says fits.
    Quantizing the denoiser to 8 bits halves a bf16 one and keeps every step on the card,
    so it comes first; then lighter-to-heavier offloading (choose_offload's rule)."""
    if not quantized and (total_bytes - denoiser_bytes / 2) * OFFLOAD_HEADROOM <= free_bytes:
        return "--quantize fp8 (or int8)"
    ladder = ("none", "model", "group", "sequential")
    fits = choose_offload(total_bytes, largest_bytes, free_bytes, on_cuda=True)
    if offload in ladder and ladder.index(fits) <= ladder.index(offload):
        fits = ladder[min(ladder.index(offload) + 1, len(ladder) - 1)]
    if not quantized and fits in ("group", "sequential"):
        return f"--quantize fp8 (or int8) and --offload {fits}"
    return f"--offload {fits}"


def weight_bytes(pipe: Any) -> list[int]:
    """Bytes of parameters and buffers of each torch module in the pipeline."""
    import torch  # here, not at the top: vidgen --help imports this module (torch takes seconds)

    sizes = []
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            tensors = list(component.parameters()) + list(component.buffers())
            sizes.append(sum(stored_bytes(t) for t in tensors))
    return sizes


def stored_bytes(tensor: Any) -> int:
    """Bytes a tensor really holds: a torchao quantized weight (--quantize) is a wrapper whose
    numel x element_size is its unquantized size; what it stores is its inner tensors."""
    names = list(getattr(type(tensor), "tensor_data_names", ()))
    names += [name for name in getattr(type(tensor), "optional_tensor_data_names", ()) if getattr(tensor, name, None) is not None]
    if names:
        return sum(stored_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()
