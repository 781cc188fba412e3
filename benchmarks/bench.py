"""Plain diffusers against vidgen's own path, in one process and one run.

    # CUDA: the reference workload of issue 5 (Wan 2.1 T2V 1.3B architecture, random weights
    # built from benchmarks/configs/wan2.1-t2v-1.3b, random 512x4096 text embeddings; nothing downloaded)
    python benchmarks/bench.py
    python benchmarks/bench.py --offload group --vae-tiling     # a memory mode, against plain diffusers

    # anywhere: a model folder (the built-in model's weights are the default once they exist)
    python benchmarks/bench.py --model tests-tiny-wan/ --steps 2 --device cpu

Variants, each on the same weights, seed and settings:
- `diffusers`: the pipeline as a user would call it (`.to(device)`, `pipe(...)`); for the
  config-built Wan: transformer in bf16 and VAE in float32, as the model card loads it;
- `vidgen`: vidgen's default path (pipeline.prepare_pipeline + VideoGenerator), that is
  with compilation on CUDA; lossless: its PSNR against `diffusers` is reported;
- `vidgen-fast`: the same with the `--fast` step cache; `vidgen-taylorseer`, `vidgen-pab`: the
  other `--cache` choices (`--variants` chooses).
`--decode` adds the VAE decode alone (random latents of the workload's shape): float32 as plain
diffusers loads it, vidgen's dtype, and each with `--vae-tiling`'s tiling.

For each: a warm-up call (`--warmup-steps`, compile cost included), then the timed call:
median seconds per denoising step (a step-end callback that synchronises), VAE decode
(last step end to frames), whole video, peak memory (torch.cuda.max_memory_allocated).
Writes JSON and a markdown table naming the device, versions and settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONFIGS = REPO / "benchmarks" / "configs"
DEFAULT_CONFIG = CONFIGS / "wan2.1-t2v-1.3b"
BUILTIN_WEIGHTS = REPO / "vidgen" / "embedded" / "weights" / "shapes"
PROMPT = "a red circle moves left on a black background"
# Variant name -> vidgen's --cache choice.
CACHE_VARIANTS = {"vidgen": "none", "vidgen-fast": "first-block", "vidgen-taylorseer": "taylorseer", "vidgen-pab": "pab"}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Timer:
    """Step-end times of one pipeline call, synchronised with the device."""

    device: str
    start: float = 0.0
    first_forward: float | None = None
    step_ends: list[float] = field(default_factory=list)

    def begin(self) -> None:
        _sync(self.device)
        self.start, self.first_forward, self.step_ends = time.perf_counter(), None, []

    def on_first_forward(self, module, args) -> None:  # a forward pre-hook; returns None
        if self.first_forward is None:
            _sync(self.device)
            self.first_forward = time.perf_counter()

    def on_step_end(self) -> None:
        _sync(self.device)
        self.step_ends.append(time.perf_counter())

    def report(self) -> dict[str, Any]:
        _sync(self.device)
        end = time.perf_counter()
        marks = [self.first_forward or self.start, *self.step_ends]
        steps = [later - earlier for earlier, later in zip(marks, marks[1:])]
        return {
            "seconds_per_step_median": round(statistics.median(steps), 4) if steps else None,
            "steps_timed": len(steps),
            "text_encoding_seconds": round((self.first_forward or self.start) - self.start, 4),
            "decode_seconds": round(end - self.step_ends[-1], 4) if self.step_ends else None,
            "whole_video_seconds": round(end - self.start, 4),
        }


def _peak_memory_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_gib(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return None  # no per-call peak on a CPU


def to_uint8(frames: Any) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def psnr(reference: np.ndarray, other: np.ndarray) -> float:
    """PSNR in dB of uint8 videos; inf when identical."""
    error = np.mean((reference.astype(np.float64) - other.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


# ---- the workloads ----


def build_from_configs(config_dir: Path, device: str, settings: dict[str, Any]):
    """A WanPipeline of the full-size architecture with random weights, straight on the
    device; no text encoder: random prompt embeddings of the right shape go in instead."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    def config(name: str) -> dict:
        return json.loads((config_dir / f"{name}.json").read_text())

    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanTransformer3DModel.from_config(config("transformer")).to(getattr(torch, settings["transformer_dtype"]))
        vae = AutoencoderKLWan.from_config(config("vae")).to(getattr(torch, settings["vae_dtype"]))
    for module in (transformer, vae):
        module.eval().requires_grad_(False)
    scheduler = UniPCMultistepScheduler.from_config(config("scheduler"))
    embeddings = random_embeddings(settings, device, transformer.dtype)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe, embeddings


def random_embeddings(settings: dict[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    """Random prompt and negative prompt embeddings of the text encoder's shape, the same draw every run."""
    import torch

    generator = torch.Generator("cpu").manual_seed(1)
    shape = (1, settings["text_tokens"], settings["text_dim"])
    return {name: torch.randn(shape, generator=generator).to(device, dtype) for name in ("prompt_embeds", "negative_prompt_embeds")}


class Variant:
    """One way of making the video: `prepare()` once (timed as load), then `call(steps, timer)`."""

    def __init__(
        self,
        name: str,
        prepare: Callable[[], Any],
        call: Callable[[int, Timer], np.ndarray],
        denoiser: Callable[[], Any],
        chosen: Callable[[], dict[str, Any]] = dict,
    ):
        self.name, self.prepare, self.call, self.denoiser, self.chosen = name, prepare, call, denoiser, chosen


def measure(variant: Variant, *, device: str, steps: int, warmup_steps: int) -> tuple[dict[str, Any], np.ndarray]:
    started = time.perf_counter()
    variant.prepare()
    _sync(device)
    record: dict[str, Any] = {"variant": variant.name, "load_seconds": round(time.perf_counter() - started, 4), **variant.chosen()}
    timer = Timer(device)
    hook = variant.denoiser().register_forward_pre_hook(timer.on_first_forward)
    try:
        if warmup_steps:
            timer.begin()
            variant.call(warmup_steps, timer)
            record["warmup_seconds"] = timer.report()["whole_video_seconds"]
            record["warmup_steps"] = warmup_steps
        _peak_memory_reset(device)
        timer.begin()
        frames = variant.call(steps, timer)
        record.update(timer.report())
    finally:
        hook.remove()
    record["peak_memory_gib"] = _peak_memory_gib(device)
    return record, to_uint8(frames)


def _plain_call(pipe, arguments: dict[str, Any], seed: int) -> Callable[[int, Timer], np.ndarray]:
    import torch

    def call(steps: int, timer: Timer) -> np.ndarray:
        def on_step_end(pipeline, step, timestep, callback_kwargs):
            timer.on_step_end()
            return callback_kwargs

        with torch.inference_mode():
            output = pipe(
                **arguments,
                num_inference_steps=steps,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
                callback_on_step_end=on_step_end,
            )
        return output.frames[0]

    return call


class _StepTimes:
    """The `progress` object VideoGenerator reports steps to: here it times them."""

    def __init__(self, timer: Timer):
        self.timer = timer

    def phase(self, name: str) -> None:
        pass

    def step(self, completed: int) -> None:
        self.timer.on_step_end()


def _vidgen_call(state: dict[str, Any], settings, seed: int) -> Callable[[int, Timer], np.ndarray]:
    def call(steps: int, timer: Timer) -> np.ndarray:
        ran = replace(state.get("settings", settings), steps=steps)  # the settings are frozen: a new value per step count
        return state["generator"].generate(ran, seed, progress=_StepTimes(timer))

    return call


def vidgen_settings(args, *, cache: str, preset: str | None, model: str | None):
    from vidgen.engine.prepare import prepare_settings

    overrides = {
        "steps": args.steps,
        "frames": args.frames,
        "width": args.width,
        "height": args.height,
        "guidance": args.guidance,
        "seed": args.seed,
        "device": args.device,
        "dtype": args.dtype,
        "offload": args.offload,
        "vae_tiling": args.vae_tiling or None,
        "cache": cache,
        "compile": args.compile,
        "attention_backend": args.attention_backend,
    }
    settings, _ = prepare_settings(PROMPT, preset=preset, model=model, overrides=overrides)
    return settings


def run(args) -> dict[str, Any]:
    import torch

    from vidgen.engine import devices
    from vidgen.engine import loading as loader
    from vidgen.engine.checkpoints import dtype_keyword
    from vidgen.engine.generate import VideoGenerator

    device = devices.resolve_device(args.device)
    args.device = device
    workload: dict[str, Any]

    if args.model is None:  # the full-size architecture from configs
        if not device.startswith("cuda") and not args.allow_cpu_full_size:
            raise SystemExit("the full-size workload needs CUDA; on a CPU pass --model DIR (or the built-in model's weights)")
        workload = json.loads((Path(args.config) / "workload.json").read_text())
        workload.pop("_comment", None)
        for key in ("steps", "frames", "width", "height", "guidance"):
            if getattr(args, key) is None:
                setattr(args, key, workload[key])
            workload[key] = getattr(args, key)
        pipe, embeddings = build_from_configs(Path(args.config), device, workload)
        plain_arguments = {
            **embeddings,
            "height": args.height,
            "width": args.width,
            "num_frames": args.frames,
            "guidance_scale": args.guidance,
        }
        args.dtype = args.dtype or workload["transformer_dtype"]
        preset, model = workload["preset"], str(args.config)
        source = f"random weights from {Path(args.config).relative_to(REPO) if Path(args.config).is_relative_to(REPO) else args.config}"

        def vidgen_variant(name: str, cache: str) -> Variant:
            state: dict[str, Any] = {}
            settings = vidgen_settings(args, cache=cache, preset=preset, model=None)
            # No text encoder: the same embeddings go in through the preset's call arguments.
            settings = replace(settings, prompt=None, negative_prompt=None, call_kwargs={**settings.call_kwargs, **embeddings})

            def prepare() -> None:
                vae = pipe.vae
                vidgen_dtype = devices.resolve_dtype(settings.dtype, device)
                if vae.dtype != vidgen_dtype:  # vidgen loads every component in one dtype
                    vae = type(vae).from_config(vae.config).to(device, vidgen_dtype)
                    vae.load_state_dict(pipe.vae.state_dict())
                    vae.eval().requires_grad_(False)
                from diffusers import WanPipeline

                mine = WanPipeline(tokenizer=None, text_encoder=None, transformer=pipe.transformer, vae=vae, scheduler=pipe.scheduler)
                if pipe.transformer.is_cache_enabled:
                    pipe.transformer.disable_cache()
                state["loaded"] = loader.prepare_pipeline(mine, settings, device=device, dtype=vidgen_dtype)
                state["generator"] = VideoGenerator(state["loaded"])

            return Variant(
                name, prepare, _vidgen_call(state, settings, args.seed), lambda: pipe.transformer, lambda: _chosen(state["loaded"])
            )

        plain = Variant("diffusers", lambda: None, _plain_call(pipe, plain_arguments, args.seed), lambda: pipe.transformer)
        # Order matters: compilation changes the transformer in place, so it comes last.
        ordered = {
            "diffusers": plain,
            **{name: vidgen_variant(name, cache) for name, cache in CACHE_VARIANTS.items() if name != "vidgen"},
            "vidgen": vidgen_variant("vidgen", "none"),
        }
    else:  # a model folder: what a user runs on any machine
        import diffusers

        # Import the pipeline's module now, so its import cost is nobody's load time.
        class_name = json.loads((Path(args.model) / "model_index.json").read_text())["_class_name"]
        getattr(diffusers, class_name)
        state_plain: dict[str, Any] = {}
        builtin = Path(args.model).resolve() == BUILTIN_WEIGHTS.resolve()
        preset = args.preset or ("shapes" if builtin else None)
        model = None if builtin else args.model
        base = vidgen_settings(args, cache="none", preset=preset, model=model)

        def prepare_plain() -> None:
            from diffusers import DiffusionPipeline

            dtype = devices.resolve_dtype(base.dtype, device)
            state_plain["pipe"] = DiffusionPipeline.from_pretrained(args.model, **{dtype_keyword(): dtype}).to(device)
            state_plain["pipe"].set_progress_bar_config(disable=True)

        def plain_call(steps: int, timer: Timer) -> np.ndarray:
            arguments = {
                "prompt": PROMPT,
                "negative_prompt": base.negative_prompt,
                "height": base.height,
                "width": base.width,
                "num_frames": base.frames,
                "guidance_scale": base.guidance,
                **base.call_kwargs,
            }
            return _plain_call(state_plain["pipe"], {k: v for k, v in arguments.items() if v is not None}, args.seed)(steps, timer)

        def vidgen_variant(name: str, cache: str) -> Variant:
            state: dict[str, Any] = {}
            settings = vidgen_settings(args, cache=cache, preset=preset, model=model)

            def prepare() -> None:
                state["loaded"] = loaded = loader.load_pipeline(settings)
                state["pipe"] = loaded.pipe
                state["generator"] = VideoGenerator(loaded)
                state["settings"] = state["generator"].run_facts(settings).filled_in(settings)

            return Variant(
                name,
                prepare,
                _vidgen_call(state, settings, args.seed),
                lambda: loader.acceleration.denoiser_of(state["pipe"]),
                lambda: _chosen(state["loaded"]),
            )

        plain = Variant("diffusers", prepare_plain, plain_call, lambda: loader.acceleration.denoiser_of(state_plain["pipe"]))
        ordered = {"diffusers": plain, **{name: vidgen_variant(name, cache) for name, cache in CACHE_VARIANTS.items()}}
        workload = {
            "model": args.model,
            "preset": preset,
            "width": base.width,
            "height": base.height,
            "frames": base.frames,
            "steps": args.steps or base.steps,
            "guidance": "pipeline default" if base.guidance is None else base.guidance,
            "dtype": base.dtype,
        }
        args.steps = args.steps or base.steps
        source = f"model folder {args.model}"

    results, frames = [], {}
    for name, variant in ordered.items():
        if name not in args.variants:
            continue
        print(f"[bench] {name} ...", file=sys.stderr)
        record, frames[name] = measure(variant, device=device, steps=args.steps, warmup_steps=args.warmup_steps)
        results.append(record)
    if args.decode:
        if args.model is not None:
            raise SystemExit("--decode measures the config-built workload (no --model)")
        results += measure_decode(pipe.vae, device, workload, vidgen_dtype=args.dtype)
    reference = frames.get("diffusers")
    by_name = {record["variant"]: record for record in results}
    plain_record = by_name.get("diffusers")
    for record in results:
        if reference is not None and record["variant"] in frames and record["variant"] != "diffusers":
            record["psnr_vs_diffusers_db"] = _round(psnr(reference, frames[record["variant"]]))
            record["max_abs_diff_vs_diffusers"] = int(np.abs(reference.astype(int) - frames[record["variant"]].astype(int)).max())
        if plain_record and record["variant"] != "diffusers":
            for key, speedup in (("seconds_per_step_median", "speedup_per_step"), ("whole_video_seconds", "speedup_whole_video")):
                if record.get(key) and plain_record.get(key):
                    record[speedup] = round(plain_record[key] / record[key], 3)

    import diffusers

    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
        },
        "source": source,
        "workload": workload,
        "options": {
            "offload": args.offload,
            "vae_tiling": args.vae_tiling,
            "compile": args.compile,
            "attention_backend": args.attention_backend,
            "warmup_steps": args.warmup_steps,
            "seed": args.seed,
        },
        "results": results,
    }


def _chosen(loaded) -> dict[str, Any]:
    """What vidgen's path decided: `--offload auto` becomes a mode, compilation on or off."""
    return {"offload": loaded.offload, "compiled": loaded.compiled, "cache": loaded.cache}


def measure_decode(vae, device: str, workload: dict[str, Any], *, vidgen_dtype: str) -> list[dict[str, Any]]:
    """The VAE decode alone, on random latents of the workload's shape: as plain diffusers loads
    the VAE (float32) and in vidgen's one dtype, each whole and tiled (what --vae-tiling does)."""
    import torch

    config = vae.config
    frames = (workload["frames"] - 1) // config.scale_factor_temporal + 1
    shape = (1, config.z_dim, frames, workload["height"] // config.scale_factor_spatial, workload["width"] // config.scale_factor_spatial)
    latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(2))
    records = []
    for dtype_name in dict.fromkeys(["float32", vidgen_dtype]):
        dtype = getattr(torch, dtype_name)
        decoder = type(vae).from_config(config).to(device, dtype)
        decoder.load_state_dict(vae.state_dict())
        decoder.eval().requires_grad_(False)
        for tiled in (False, True):
            decoder.enable_tiling() if tiled else decoder.disable_tiling()
            z = latents.to(device, dtype)
            with torch.inference_mode():
                decoder.decode(z[:, :, :2])  # warm-up: kernels and workspaces, off the clock
                _peak_memory_reset(device)
                _sync(device)
                started = time.perf_counter()
                decoder.decode(z)
                _sync(device)
            records.append(
                {
                    "variant": f"decode {dtype_name}{' tiled' if tiled else ''}",
                    "decode_seconds": round(time.perf_counter() - started, 4),
                    "peak_memory_gib": _peak_memory_gib(device),
                }
            )
        del decoder
    return records


def _round(value: float) -> float | str:
    return "inf" if value == float("inf") else round(value, 2)


COLUMNS = [
    ("variant", "variant"),
    ("seconds_per_step_median", "s/step (median)"),
    ("decode_seconds", "VAE decode s"),
    ("whole_video_seconds", "whole video s"),
    ("peak_memory_gib", "peak GiB"),
    ("warmup_seconds", "warm-up s"),
    ("load_seconds", "load s"),
    ("speedup_per_step", "speed-up/step"),
    ("speedup_whole_video", "speed-up/video"),
    ("psnr_vs_diffusers_db", "PSNR vs diffusers dB"),
    ("offload", "offload"),
    ("compiled", "compiled"),
]


def markdown(report: dict[str, Any]) -> str:
    w = report["workload"]
    lines = [
        f"## {report['device_name']} ({report['device']})",
        "",
        f"torch {report['versions']['torch']}, diffusers {report['versions']['diffusers']}, Python {report['versions']['python']}"
        + (f", CUDA {report['versions']['cuda']}" if report["versions"]["cuda"] else "")
        + f"; {report['cpu_threads']} CPU threads",
        f"Workload: {report['source']}; {w.get('width')}x{w.get('height')}, {w.get('frames')} frames, {w.get('steps')} steps, "
        f"guidance {w.get('guidance')}; options {json.dumps(report['options'])}",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for record in report["results"]:
        cells = ["-" if record.get(key) is None else str(record.get(key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a diffusers model folder (default on CPU: the built-in model's weights)")
    parser.add_argument("--preset", help="preset for --model (default: shapes for the built-in weights, else the pipeline's defaults)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="folder of configs for the random-weight workload (CUDA)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps of the untimed first call (compile cost shows here)")
    parser.add_argument(
        "--variants", default="diffusers,vidgen,vidgen-fast", help=f"comma-separated, from: diffusers, {', '.join(CACHE_VARIANTS)}"
    )
    parser.add_argument("--decode", action="store_true", help="also time the VAE decode alone, whole and tiled (config workload)")
    parser.add_argument("--offload", default=None, help="vidgen's --offload for the vidgen variants")
    parser.add_argument("--vae-tiling", action="store_true")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--attention-backend")
    parser.add_argument("--allow-cpu-full-size", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="bench", help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.model is None:
        from vidgen.engine.devices import resolve_device

        if not resolve_device(args.device).startswith("cuda") and not args.allow_cpu_full_size:
            if not (BUILTIN_WEIGHTS / "model_index.json").is_file():
                raise SystemExit("no CUDA and no built-in weights yet: pass --model DIR (a diffusers folder)")
            args.model = str(BUILTIN_WEIGHTS)
    report = run(args)
    Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
    Path(args.out + ".md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
