"""Issue 21's Wan workloads: what round21_big.py (part 1, 14B) and round21_small.py (parts 2 and 3, 1.3B) share.
benchmarks/round21.py runs the parts, one a process, and its docstring gives the plan, the budget and what was cut.

Every model here is built from benchmarks/configs/ with random weights straight on the device (nothing
downloaded; random prompt embeddings of the real shape, no text encoder), then goes through vidgen's own
path: `pipeline.prepare_pipeline` (scheduler, offloading, attention backend, step cache, compilation) and
`generate.VideoGenerator` for the timed call. Two things the script does itself, each said where it happens:
quantizing a config-built model (vidgen quantizes while `from_pretrained` reads weights, which a model built
from its config never goes through), and `torch.compile` modes (vidgen compiles with the default mode only).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench  # noqa: E402  (Timer, build_from_configs, psnr, the plain call)

CONFIGS = REPO / "benchmarks" / "configs"
# The dry run: the same architectures' code paths, two thin layers, 64x64, 9 frames, 16 text tokens.
THIN = {
    "transformer.json": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64, "freq_dim": 32},
    "vae.json": {"base_dim": 8},
    "workload.json": {"text_tokens": 16, "width": 64, "height": 64, "frames": 9},
}
GIB = 2**30
# Variants that only a CUDA card runs; elsewhere they are recorded as skipped with this reason.
CUDA_ONLY = {
    "_native_cudnn": "cuDNN attention (SDPA's CUDNN_ATTENTION) runs on CUDA only",
    "reduce-overhead": "CUDA graphs need a CUDA device",
}


class Skip(Exception):
    """A variant this machine cannot run (recorded with the reason, not as a failure)."""


def _torch():
    import torch

    return torch


def gib(count: float | None) -> float | None:
    return None if count is None else round(count / GIB, 3)


def sync(device: str) -> None:
    bench._sync(device)


def release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        _torch().cuda.empty_cache()


def resident_bytes(module: Any) -> int:
    """What a module's parameters and buffers hold in memory (a torchao weight counts its inner tensors)."""
    from vidgen.engine.acceleration import stored_bytes

    return sum(stored_bytes(tensor) for tensor in [*module.parameters(), *module.buffers()])


def config_folder(name: str, scratch: Path, dry: bool) -> Path:
    """benchmarks/configs/NAME, or for the dry run a copy shrunk to THIN (same classes, same code paths)."""
    source = CONFIGS / name
    if not dry:
        return source
    folder = scratch / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in ("transformer.json", "vae.json", "scheduler.json", "workload.json"):
        config = json.loads((source / file).read_text())
        config.update(THIN.get(file, {}))
        (folder / file).write_text(json.dumps(config, indent=1))
    return folder


class Wan:
    """One Wan workload on one device: configs, the plain diffusers pipeline, fresh models, vidgen's settings."""

    def __init__(self, folder: Path, device: str):
        self.folder, self.device = folder, device
        self.workload = {key: value for key, value in self.config("workload").items() if not key.startswith("_")}
        self.embeddings: dict[str, Any] = {}

    def config(self, name: str) -> dict:
        return json.loads((self.folder / f"{name}.json").read_text())

    def plain(self):
        """Plain diffusers' pipeline as bench.py builds it (transformer bf16, VAE float32 as the model card
        loads it) and the random prompt embeddings every variant shares."""
        pipe, self.embeddings = bench.build_from_configs(self.folder, self.device, self.workload)
        return pipe

    def transformer(self):
        """Random weights on the device, the same ones every call (seeded): built in float32 and cast to
        bf16 in place, as bench.py does (no CPU copy of 14B parameters; the float32 copy goes param by param)."""
        torch = _torch()
        from diffusers import WanTransformer3DModel

        torch.manual_seed(0)
        with torch.device(self.device):
            model = WanTransformer3DModel.from_config(self.config("transformer"))
        return model.to(torch.bfloat16).eval().requires_grad_(False)

    def vae(self, dtype: Any):
        torch = _torch()
        from diffusers import AutoencoderKLWan

        torch.manual_seed(1)
        with torch.device(self.device):
            model = AutoencoderKLWan.from_config(self.config("vae"))
        return model.to(dtype).eval().requires_grad_(False)

    def embed(self) -> None:
        """The random prompt embeddings (bench.build_from_configs' draw), where no plain pipeline was built."""
        self.embeddings = bench.random_embeddings(self.workload, self.device, _torch().bfloat16)

    def arguments(self, guidance: float | None = None) -> dict[str, Any]:
        w = self.workload
        return {
            **self.embeddings,
            "height": w["height"],
            "width": w["width"],
            "num_frames": w["frames"],
            "guidance_scale": w["guidance"] if guidance is None else guidance,
        }

    def settings(self, **overrides: Any):
        """vidgen's settings for the workload's preset. Steps are the real count (50), so that vidgen decides
        compilation as for a user's run; each call sets its own steps."""
        from vidgen.engine.prepare import prepare_settings

        w = self.workload
        values = {
            "steps": w["steps"],
            "frames": w["frames"],
            "width": w["width"],
            "height": w["height"],
            "guidance": w["guidance"],
            "seed": 0,
            "device": self.device,
            "dtype": "bfloat16",
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings, _ = prepare_settings(bench.PROMPT, preset=w["preset"], model=None, overrides=values)
        # No text encoder: the embeddings go in through the call's arguments, as in bench.py.
        return replace(settings, prompt=None, negative_prompt=None, call_kwargs={**settings.call_kwargs, **self.embeddings})

    def vidgen(self, transformer: Any, vae: Any, settings: Any):
        """vidgen's path after loading (placement, offloading, backend, cache, compilation) on these modules."""
        from diffusers import UniPCMultistepScheduler, WanPipeline

        from vidgen.engine import loading as loader

        scheduler = UniPCMultistepScheduler.from_config(self.config("scheduler"))
        pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae, scheduler=scheduler)
        return loader.prepare_pipeline(pipe, settings, device=self.device, dtype=_torch().bfloat16)


def quantize_like_vidgen(transformer: Any, method: str, device: str) -> dict[str, Any]:
    """`--quantize METHOD` on a config-built denoiser. vidgen's own check and config (vidgen.engine.quantize: the
    torchao config inside the diffusers TorchAoConfig that vidgen hands to from_pretrained), applied as
    diffusers' torchao quantizer applies it while loading: quantize_ on each nn.Linear except the model's
    _keep_in_fp32_modules (vidgen.engine.quantize's own matching rule). The script does this itself: a model built
    from its config is never read by from_pretrained."""
    torch = _torch()
    from torchao.quantization import quantize_

    from vidgen.engine import quantize

    quantize.check_runnable({"transformer": method}, device)  # a UsageError here: this machine cannot run it
    before = resident_bytes(transformer)
    predicted = quantize.quantized_bytes(before, quantize.quantizable_linear_shapes(transformer), method)
    config = quantize.component_config(method, "diffusers").get_apply_tensor_subclass()
    keep = list(getattr(transformer, "_keep_in_fp32_modules", None) or [])
    linears = [(name, module) for name, module in transformer.named_modules() if isinstance(module, torch.nn.Linear)]
    chosen = [module for name, module in linears if not quantize._skipped(name, keep, "diffusers")]
    for module in chosen:
        quantize_(module, config)
    return {
        "quantized_linears": f"{len(chosen)} of {len(linears)}",
        "transformer_bf16_gib": gib(before),
        "transformer_predicted_gib": gib(predicted),
    }


class StepTimer(bench.Timer):
    """bench.py's timer, also reading the peak at each step end: the denoising peak before the decode."""

    def on_step_end(self) -> None:
        super().on_step_end()
        if self.device.startswith("cuda"):
            self.denoise_peak = _torch().cuda.max_memory_allocated()


def warm_up(pipe: Any, arguments: dict[str, Any], steps: int, device: str) -> float:
    """Untimed steps (compilation, kernels, allocator) straight through the pipeline, without the decode
    (seconds a variant that the budget cannot spare; the VAE was warmed once per process)."""
    torch = _torch()
    started = time.perf_counter()
    if steps:
        with torch.inference_mode():
            pipe(**arguments, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(0), output_type="latent")
        sync(device)
    return round(time.perf_counter() - started, 3)


def warm_decoder(vae: Any, wan: Wan) -> None:
    """One small decode per VAE and process, so no timed decode pays the first call's set-up."""
    torch = _torch()
    config = vae.config
    shape = (
        1,
        config.z_dim,
        2,
        wan.workload["height"] // config.scale_factor_spatial,
        wan.workload["width"] // config.scale_factor_spatial,
    )
    with torch.inference_mode():
        vae.decode(torch.randn(shape).to(wan.device, vae.dtype))
    sync(wan.device)


def timed(call: Callable[[int, Any], Any], steps: int, device: str) -> tuple[dict[str, Any], Any]:
    """One timed pipeline call of `steps` steps, decode included; s/step is the median of its steps."""
    timer = StepTimer(device)
    bench._peak_memory_reset(device)
    timer.begin()
    frames = call(steps, timer)
    record = timer.report()
    marks = [timer.start, *timer.step_ends]
    record["step_seconds"] = [round(later - earlier, 3) for earlier, later in zip(marks, marks[1:])]
    record["peak_memory_gib"] = bench._peak_memory_gib(device)
    record["peak_denoise_gib"] = gib(getattr(timer, "denoise_peak", None))
    return record, bench.to_uint8(frames)


def vidgen_call(loaded: Any, settings: Any) -> Callable[[int, Any], Any]:
    from vidgen.engine.generate import VideoGenerator

    generator = VideoGenerator(loaded)

    def call(steps: int, timer: Any) -> Any:
        return generator.generate(replace(settings, steps=steps), 0, progress=bench._StepTimes(timer))

    return call


def computed_whole(record: dict[str, Any], steps: int) -> float | None:
    """A whole video of `steps` uniform steps from the timed call: steps x median s/step + the decode."""
    if record.get("seconds_per_step_median") is None or record.get("decode_seconds") is None:
        return None
    return round(steps * record["seconds_per_step_median"] + record["decode_seconds"], 2)


def cached_steps(record: dict[str, Any], full_step: float | None) -> int | None:
    """Steps a cache skipped: those under half a full step's time (plain diffusers' median)."""
    if not full_step or not record.get("step_seconds"):
        return None
    return sum(seconds < full_step / 2 for seconds in record["step_seconds"])


def estimate(steps: float, per_step: float | None, *, extra: float = 0.0) -> float | None:
    """Seconds a variant should take, from what this process measured so far; None (always run) before that."""
    return None if per_step is None else extra + steps * per_step


def cuda_only(name: str, device: str) -> None:
    if name in CUDA_ONLY and not device.startswith("cuda"):
        raise Skip(f"{CUDA_ONLY[name]}; this run is on {device}")


def cannot_run(device: str, *, backend: str | None = None, quantize: str | None = None, compile_mode: str | None = None) -> str | None:
    """Why this machine cannot run a variant, found in milliseconds, before its budget is weighed (so an
    unusable variant says why rather than "budget"): CUDA-only parts, vidgen's --quantize check, diffusers'
    requirements for an attention backend (a package missing or too old). None: try it."""
    from vidgen.engine import quantize as quantization
    from vidgen.errors import UsageError

    try:
        for name in (backend, compile_mode):
            if name:
                cuda_only(name, device)
        if quantize:
            quantization.check_runnable({"transformer": quantize}, device)
    except (Skip, UsageError) as why:
        return getattr(why, "message", None) or str(why)
    if backend:
        try:  # diffusers 0.42's own check, which set_attention_backend runs too (a private name: may move)
            from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements
        except ImportError:
            return None
        try:
            _check_attention_backend_requirements(AttentionBackendName(backend))
        except (RuntimeError, ValueError, ImportError) as error:
            return f"attention backend {backend} is not usable here: {' '.join(str(error).split())}"
    return None
