"""Score the built-in Shapes model the way a person would judge its videos.

    python benchmarks/probe_shapes.py --count 100                 # random prompts from the grammar
    python benchmarks/probe_shapes.py --count 40 --held-out       # only combinations kept out of training
    python benchmarks/probe_shapes.py --model runs/export --json probe.json
    python benchmarks/probe_shapes.py --count 100 --cache first-block   # fast mode's accuracy
    python benchmarks/probe_shapes.py --count 100 --ceiling       # the autoencoder's round trips: the ceiling
    python benchmarks/probe_shapes.py --count 100 --decoder runs/n/decoder/best   # the same model, another decoder
    python benchmarks/probe_shapes.py --count 100 --quantize int8   # the denoiser quantized while loading (vidgen --quantize)

Prompts and seeds are drawn at random (reproducibly from --seed). Each video goes through vidgen's own
loading and generation path, then training.probe reads it back from the pixels: background,
object colour, shape, motion, and the share of frames where the object is visible.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: training/ is not installed

from training import probe, shapes
from vidgen.engine import loading as pipeline_loader
from vidgen.engine.generate import VideoGenerator
from vidgen.engine.prepare import prepare_settings


def swap_decoder(pipe, folder: str) -> None:
    """Decode with a decoder-stage folder's AutoencoderKLWan (its layout may differ: a wider decoder), keeping
    the pipeline's latent statistics: another decoder judged on the same generations, before any export."""
    from diffusers import AutoencoderKLWan

    from training.model import with_latent_stats

    vae = with_latent_stats(AutoencoderKLWan.from_pretrained(folder), pipe.vae.config.latents_mean, pipe.vae.config.latents_std)
    pipe.vae = vae.to(device=pipe.vae.device, dtype=pipe.vae.dtype)


def check_quantized(pipe, method: str) -> None:
    """--quantize: the loaded denoiser's Linear weights must be torchao tensors, or the scores mean nothing."""
    import torch
    from torchao.utils import TorchAOBaseTensor

    linears = [m for m in pipe.transformer.modules() if isinstance(m, torch.nn.Linear)]
    quantized = [m for m in linears if isinstance(m.weight, TorchAOBaseTensor)]
    print(
        f"--quantize {method}: {len(quantized)} of {len(linears)} Linear weights in the transformer are torchao tensors "
        f"({type(quantized[0].weight).__name__ if quantized else 'none'})",
        file=sys.stderr,
    )
    assert quantized, f"--quantize {method}: the transformer's Linear weights are not torchao tensors"


def evaluate(*, count: int, seed: int, held_out: bool, model: str | None, overrides: dict, decoder: str | None = None) -> dict:
    rng = random.Random(seed)
    settings, _ = prepare_settings("probe", preset="shapes", model=model, overrides=overrides)
    loaded = pipeline_loader.load_pipeline(settings)
    if overrides.get("quantize", "none") != "none":
        check_quantized(loaded.pipe, overrides["quantize"])
    if decoder:
        swap_decoder(loaded.pipe, decoder)
    generator = VideoGenerator(loaded)
    results, confusions, started = [], Counter(), time.monotonic()
    for index in range(count):
        spec = shapes.sample_spec(rng, held_out=held_out)
        settings = replace(settings, prompt=shapes.caption(spec, rng))
        frames = generator.generate(settings, rng.randrange(2**31))
        judgement = probe.judge(frames)
        results.append((spec, judgement))
        for attribute in probe.ATTRIBUTES:
            expected, seen = getattr(spec, attribute), getattr(judgement, attribute)
            if expected != seen:
                confusions[f"{attribute}: {expected} -> {seen}"] += 1
        print(f"[{index + 1}/{count}] {settings.prompt!r}: {judgement.as_dict()}", file=sys.stderr)
    report = probe.score(results)
    return {
        "prompts": count,
        "held_out": held_out,
        "seed": seed,
        "settings": {
            "steps": settings.steps,
            "guidance": settings.guidance,
            "frames": settings.frames,
            "width": settings.width,
            "height": settings.height,
            "cache": settings.cache,
            "quantize": settings.quantize,
        },
        "accuracy": report,
        "seconds_per_video": round((time.monotonic() - started) / count, 3),
        "most_common_errors": confusions.most_common(10),
    }


def evaluate_ceiling(*, count: int, seed: int, held_out: bool, model: str | None, canonical: bool) -> dict:
    """The same prompts' clips rendered, encoded and decoded by the model's own autoencoder: what a perfect
    denoiser could score at best through this decoder."""
    import numpy as np
    import torch

    settings, _ = prepare_settings("probe", preset="shapes", model=model, overrides={})
    vae = pipeline_loader.load_pipeline(settings).pipe.vae
    rng = random.Random(seed)
    results, started = [], time.monotonic()
    for _ in range(count):
        spec = shapes.sample_spec(rng, held_out=held_out, canonical=canonical)
        shapes.caption(spec, rng)  # drawn as evaluate() draws them, so the clips are the same ones
        rng.randrange(2**31)
        clip = torch.from_numpy(shapes.render_clip(spec)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        with torch.no_grad():
            decoded = vae.decode(vae.encode(clip).latent_dist.mode()).sample
        frames = ((decoded[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 3, 0).numpy().astype(np.uint8)
        results.append((spec, probe.judge(frames)))
    layout = shapes.CANONICAL_NOTE if canonical else "anywhere in the frame"
    return {
        "prompts": count,
        "held_out": held_out,
        "seed": seed,
        "ceiling": f"autoencoder round trips of rendered clips ({layout})",
        "accuracy": probe.score(results),
        "seconds_per_video": round((time.monotonic() - started) / count, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", action="store_true", help="only attribute combinations never seen in training")
    parser.add_argument("--model", help="a model folder other than the built-in weights (e.g. a training export)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--cache", help="a step cache (vidgen --cache): scores fast mode")
    parser.add_argument("--quantize", help="quantize while loading (vidgen --quantize): int8, fp8, ... scores the quantized model")
    parser.add_argument("--ceiling", action="store_true", help="score autoencoder round trips instead of generations")
    parser.add_argument("--canonical", action="store_true", help="with --ceiling: clips in the canonical layout")
    parser.add_argument("--decoder", help="an AutoencoderKLWan folder (a decoder stage's best/) to decode with instead")
    parser.add_argument("--json", dest="json_path", help="also write the report here")
    args = parser.parse_args()
    overrides = {
        k: v
        for k, v in {"steps": args.steps, "guidance": args.guidance, "cache": args.cache, "quantize": args.quantize}.items()
        if v is not None
    }
    if args.ceiling:
        report = evaluate_ceiling(count=args.count, seed=args.seed, held_out=args.held_out, model=args.model, canonical=args.canonical)
    else:
        report = evaluate(
            count=args.count, seed=args.seed, held_out=args.held_out, model=args.model, overrides=overrides, decoder=args.decoder
        )
        report["decoder"] = args.decoder
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_path:
        with open(args.json_path, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
