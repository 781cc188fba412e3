"""`--parallel`: one video made by a group of processes (one per GPU), through diffusers'
context parallelism.

Every process of the group loads the whole pipeline, uses the same seed and settings and
runs the same denoising loop; inside the denoiser, diffusers splits the sequence of
latent tokens among the processes (`transformer.enable_parallelism`): Ulysses swaps
heads for tokens with an all-to-all around each attention, ring attention passes the
keys and values around. Each process computes attention for its share only, so a video
takes about 1/N of the attention time on N GPUs. The first process writes the file, the
recipe and the JSON; the others print nothing but errors.

The group is the one `accelerate launch` or `torchrun` started (vidgen.processes); vidgen
does not start it itself for one video, so that the GPUs, hosts and rendezvous stay the
launcher's business. `vidgen batch --processes N --parallel ...` is the exception: batch
already launches its processes.

Checks, all before any weights are read: the spec's syntax (in the table's check, with
no torch imported), the group (a launcher, degrees that multiply to its size), ring on
a CPU, a denoiser without a context-parallel plan, heads the Ulysses degree does not
divide. The one left for after loading is the length of the token sequence, which
depends on the model's compression: it must divide among the processes too.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vidgen.errors import UsageError
from vidgen.settings.grammar import TRANSFORMERS
from vidgen.settings.grammar import parse_parallel as parse  # the spec's grammar is the table's

# A message, not a lookup: which denoisers declare `_cp_plan` in diffusers 0.42.
HAS_PLAN = "Wan (not VACE), LTX-Video, LTX-2, Helios, ChronoEdit and Cosmos 3"
LAUNCH_HINT = "accelerate launch --num_processes N -m vidgen ... or torchrun --nproc-per-node N -m vidgen ..."


def degrees(text: str, processes: int) -> tuple[int, int]:
    """(ulysses, ring) for a group of `processes`; their product must be the group's size,
    so that no process idles and the mesh covers the group."""
    parts = parse(text)
    fixed = 1
    for degree in parts.values():
        fixed *= degree or 1
    missing = [kind for kind, degree in parts.items() if degree is None]
    if missing:
        if processes % fixed:
            raise UsageError(f"--parallel {text}: {fixed} does not divide the {processes} processes")
        parts[missing[0]] = processes // fixed
    ulysses, ring = parts.get("ulysses") or 1, parts.get("ring") or 1
    if ulysses * ring != processes:
        raise UsageError(
            f"--parallel {text} needs {ulysses * ring} processes; this group has {processes} "
            "(the degrees multiply to the number of processes)"
        )
    if ulysses * ring == 1:
        raise UsageError(f"--parallel {text}: a degree of 1 shares nothing; give 2 or more")
    return ulysses, ring


def check_group(spec: str | None, processes: int, *, command: str = "generate") -> tuple[int, int] | None:
    """The group against --parallel: a spec needs a launcher's group, and a group making
    one video needs a spec (else every process would write the same file)."""
    if spec is None:
        if processes > 1 and command == "generate":
            raise UsageError(
                f"{processes} processes would each make the same video: pass --parallel ulysses to make it "
                "together, or use vidgen batch for many videos"
            )
        return None
    if processes < 2:
        raise UsageError(
            f"--parallel needs a group of processes, one per GPU: {LAUNCH_HINT}"
            + (" (or vidgen batch --processes N)" if command == "batch" else "")
        )
    return degrees(spec, processes)


def check_model(
    spec: str,
    ulysses: int,
    ring: int,
    *,
    pipeline_class: str,
    denoisers: dict[str, str],
    heads: dict[str, int | None],
    device: str,
    settings_cache: str,
) -> None:
    """Before loading (vidgen.engine.loading.check_parallel reads what this needs): no step cache;
    ring needs a GPU kernel; every denoiser needs a plan and heads the Ulysses degree
    divides. `denoisers` maps component -> class name, `heads` -> its config's attention
    heads (None: unknown)."""
    if ring > 1 and device == "cpu":
        # Ring attention merges partial results by their log-sum-exp, which only the flash
        # and cuDNN kernels return; PyTorch's CPU attention does not.
        raise UsageError(f"--parallel {spec}: ring attention needs a GPU (flash or cuDNN attention); on a CPU use --parallel ulysses")
    import diffusers  # here, not at the top: importing this module stays light (diffusers only when a group is set up)

    if settings_cache != "none":
        # A step cache decides per process whether to skip a step, from its own share of the
        # tokens: processes could decide differently and then wait for each other forever.
        raise UsageError(
            f"--parallel and --cache {settings_cache} do not go together (each process would decide alone "
            "which steps to skip); leave out --cache or --fast"
        )
    if not denoisers:
        raise UsageError(f"--parallel: {pipeline_class} has no transformer denoiser to split (it has one for {HAS_PLAN})")

    for component, class_name in denoisers.items():
        model_class = getattr(diffusers, class_name, None)
        if model_class is None or not getattr(model_class, "_cp_plan", None):
            raise UsageError(
                f"--parallel: the denoiser {class_name} has no context-parallel plan in diffusers "
                f"{diffusers.__version__} (it has one for {HAS_PLAN})"
            )
        count = heads.get(component)
        if count and count % ulysses:
            raise UsageError(f"--parallel {spec}: the denoiser's {count} attention heads do not divide among {ulysses} processes")


@contextmanager
def _device_count_at_least_one() -> Iterator[None]:
    """diffusers places each process on `rank % torch.accelerator.device_count()`, which is
    0 on a CPU-only torch (a ZeroDivisionError); the device it computes is then unused on
    the CPU, where the gloo group does the talking. 1 for the duration of the set-up."""
    import torch  # here, not at the top: see check_model

    real = torch.accelerator.device_count
    if real() > 0:
        yield
        return
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = real


def enable(pipe: Any, spec: str) -> None:
    """Split every denoiser of `pipe` (Wan 2.2 A14B has two) among the group's processes."""
    import torch.distributed  # here, not at the top: see check_model
    from diffusers import ContextParallelConfig

    ulysses, ring = degrees(spec, torch.distributed.get_world_size())
    # torch's own deprecation, raised inside diffusers' gather at every step of every process.
    warnings.filterwarnings("ignore", message=r".*all_gather_tensor.* is deprecated", category=FutureWarning)
    for name in TRANSFORMERS:  # the denoisers that declare a _cp_plan
        denoiser = getattr(pipe, name, None)
        if denoiser is None:
            continue
        with _device_count_at_least_one():
            denoiser.enable_parallelism(config=ContextParallelConfig(ulysses_degree=ulysses, ring_degree=ring))
        _one_head_masks(sys.modules[type(denoiser).__module__])


def describe(pipe: Any) -> str | None:
    """`ulysses=N,ring=M` as the denoiser holds it once enabled (read back, not the request); None: not split."""
    config = getattr(getattr(pipe, "transformer", None), "_parallel_config", None)
    context = getattr(config, "context_parallel_config", None)
    return None if context is None else f"ulysses={context.ulysses_degree},ring={context.ring_degree}"


def _one_head_masks(module: Any) -> None:
    """LTX-Video's attention repeats its text mask for every head ([batch, heads, 1, keys]);
    diffusers 0.42's Ulysses gives each process a share of the heads but passes the mask of
    all of them, and the attention fails to broadcast. The heads' masks are copies of one:
    that one broadcasts over any share. Wraps the module's `dispatch_attention_fn` once;
    a mask whose heads differ is passed on untouched."""
    dispatch = getattr(module, "dispatch_attention_fn", None)
    if dispatch is None or getattr(dispatch, "_vidgen_one_head", False):
        return

    def dispatch_with_one_head_mask(*args: Any, attn_mask: Any = None, **kwargs: Any) -> Any:
        if attn_mask is not None and attn_mask.ndim == 4 and attn_mask.shape[1] > 1 and kwargs.get("parallel_config") is not None:
            first = attn_mask[:, :1]
            if bool((attn_mask == first).all()):
                attn_mask = first
        return dispatch(*args, attn_mask=attn_mask, **kwargs)

    dispatch_with_one_head_mask._vidgen_one_head = True  # type: ignore[attr-defined]
    module.dispatch_attention_fn = dispatch_with_one_head_mask


def check_sequence(pipe: Any, spec: str, processes: int, *, frames: int, height: int, width: int) -> None:
    """The latent token sequence must divide among the processes (diffusers asserts it at
    the first step). Computed where the pipeline exposes its compression (Wan, LTX);
    elsewhere the first step's own check is turned into the same message."""
    tokens = sequence_length(pipe, frames=frames, height=height, width=width)
    if tokens is not None and tokens % processes:
        raise UsageError(
            f"--parallel {spec}: {width}x{height} with {frames} frames makes {tokens} latent tokens, "
            f"which do not divide among {processes} processes; change --size or --frames"
        )


def sequence_length(pipe: Any, *, frames: int, height: int, width: int) -> int | None:
    """Latent frames x rows x columns after the VAE's compression and the denoiser's patches."""
    # Wan's pipelines name the VAE's compression one way, LTX's another.
    spatial = getattr(pipe, "vae_scale_factor_spatial", None) or getattr(pipe, "vae_spatial_compression_ratio", None)
    temporal = getattr(pipe, "vae_scale_factor_temporal", None) or getattr(pipe, "vae_temporal_compression_ratio", None)
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    if not spatial or not temporal or config is None:
        return None
    patch = config.get("patch_size", 1)
    if isinstance(patch, (list, tuple)):  # Wan: (t, h, w)
        patch_t, patch_h, patch_w = patch
    else:  # LTX: a side, and patch_size_t
        patch_t, patch_h, patch_w = config.get("patch_size_t", 1) or 1, patch, patch
    latent_frames = (frames - 1) // temporal + 1
    return (latent_frames // patch_t) * (height // spatial // patch_h) * (width // spatial // patch_w)
