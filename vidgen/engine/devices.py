"""Where and in what a pipeline runs: the device (`auto`: CUDA, else Apple MPS, else XPU, else
CPU; an absent backend is bad input) and the dtype (`auto`: float32 on a CPU, bfloat16 where the
card computes in it, else float16, or float32 for a model that gives black frames in float16 when
it fits). Read by the loader (loading.py), the server's cache key and --dry-run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vidgen.engine import acceleration, checkpoints
from vidgen.engine.hub import cached_folder
from vidgen.errors import UsageError
from vidgen.settings.table import GenerationSettings


def resolve_device(name: str) -> str:
    """`auto` is CUDA, else Apple MPS, else XPU, else CPU; an absent backend is bad input."""

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        if hasattr(torch, "xpu") and torch.xpu.is_available():
            return "xpu"
        return "cpu"
    backend = name.split(":")[0]
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "xpu": hasattr(torch, "xpu") and torch.xpu.is_available(),
    }
    if not available.get(backend, False):
        raise UsageError(f"device {name!r} is not available on this machine (torch {torch.__version__})")
    return name


def has_bfloat16() -> bool:
    """Whether the CUDA card computes in bfloat16 itself (Ampere and later, ROCm); emulation does not count."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.3 has no emulation to leave out
        return torch.cuda.is_bf16_supported()


def resolve_dtype(name: str, device: str):
    """`auto`: float32 on CPU (fast and exact there), bfloat16 on GPUs that have it, else float16
    (run_dtype makes that float32 for a model that gives black frames in float16)."""

    if name == "auto":
        if device.startswith("cpu"):
            return torch.float32
        if device.startswith("cuda") and not has_bfloat16():
            return torch.float16
        return torch.bfloat16
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _float32_sizes(settings: GenerationSettings) -> tuple[int | None, int | None]:
    """(all weights, the largest component) at float32, from the model folder's headers (as --dry-run);
    (None, None) when the weights are not on disk."""
    location = settings.location
    folder = Path(location.location) if location.is_local else cached_folder(location, settings.revision)
    sizes = [size.parameters * 4 for size in checkpoints.component_sizes(folder).values()] if folder else []
    return (sum(sizes), max(sizes)) if sizes else (None, None)


def run_dtype(settings: GenerationSettings, device: str):
    """The dtype a run loads in: --dtype's, except that on a CPU a preset's bf16/fp16 gives way
    to float32 (slow there, no fast kernels, and fp16 can fail) unless the user asked for it."""
    if settings.dtype == "auto" and device.startswith("cuda") and not has_bfloat16() and not settings.float16_safe:
        total, largest = _float32_sizes(settings)
        free_bytes = torch.cuda.mem_get_info(torch.device(device))[0]
        return getattr(
            torch,
            acceleration.dtype_without_bfloat16(
                float16_safe=False,
                float32_bytes=total,
                largest_float32_bytes=largest,
                free_bytes=free_bytes,
                offload=settings.offload,
                preset=settings.preset,
            ),
        )
    dtype = resolve_dtype(settings.dtype, device)
    if device.startswith("cpu") and dtype != torch.float32 and not settings.dtype_explicit:
        return torch.float32
    return dtype
