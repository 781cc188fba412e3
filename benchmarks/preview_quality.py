"""How much a --preview resembles the video it forms into, on the built-in Shapes model.

    python benchmarks/preview_quality.py --count 20            # PSNR and the probe's attributes, previews vs videos

Each prompt (drawn from the Shapes grammar, reproducibly from --seed) is generated through
vidgen's own path with `--preview FILE.webp` (every latent frame, lossless) at the preset's
settings and the default interval. Every preview the run writes is kept as it is written;
the last one is also read back from its file. Each preview frame (latent frame j) is compared
with the video's frame 4j (the last of the frames latent j encodes, frame 0 for j = 0):
PSNR over RGB, and the probe's judgement (training.probe: colour, background, shape,
motion) of the preview frames against the video's. For scale: the PSNR of each video against
the next prompt's video (an unrelated clip of the same kind).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: training/ is not installed

from training import probe, shapes
from vidgen.engine import preview
from vidgen.engine.generate import VideoGenerator
from vidgen.engine.pipeline_cache import obtain_pipeline
from vidgen.engine.prepare import prepare_settings


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def matching_frames(video: np.ndarray, count: int, temporal: int) -> np.ndarray:
    return video[[min(j * temporal, len(video) - 1) for j in range(count)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="vidgen-preview-"))
    target = folder / "p.webp"
    overrides = {"preview": str(target), **({"steps": args.steps} if args.steps else {})}
    settings, _ = prepare_settings("probe", preset="shapes", model=None, overrides=overrides)
    loaded = obtain_pipeline(settings)
    generator = VideoGenerator(loaded)
    settings = generator.run_facts(settings).filled_in(settings)
    started = time.monotonic()
    preview.projection(loaded.pipe.vae)
    fit_seconds = time.monotonic() - started

    written: list[np.ndarray] = []  # every preview of the current video, as rendered
    render = preview.render

    def keeping(frames, path, **kwargs):
        written.append(frames.copy())
        return render(frames, path, **kwargs)

    preview.render = keeping  # the benchmark's own record of each preview; the file is still written
    rng = random.Random(args.seed)
    rows, videos = [], []
    temporal = loaded.pipe.vae_scale_factor_temporal
    for index in range(args.count):
        spec = shapes.sample_spec(rng)
        settings = replace(settings, prompt=shapes.caption(spec, rng))
        written.clear()
        video = generator.generate(settings, rng.randrange(2**31))
        videos.append(video)
        with Image.open(target) as animation:
            last = np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(animation)])
        reference = matching_frames(video, len(last), temporal)
        judged_video, judged_preview = probe.judge(reference), probe.judge(last)
        each_step = [
            psnr(np.stack([np.asarray(Image.fromarray(f).resize(reference.shape[2:0:-1], Image.BILINEAR)) for f in frames]), reference)
            for frames in written
        ]
        rows.append(
            {
                "prompt": settings.prompt,
                "psnr_last": psnr(last, reference),
                "psnr_each_preview": each_step,
                "agrees": {a: getattr(judged_video, a) == getattr(judged_preview, a) for a in probe.ATTRIBUTES},
                "right": {a: getattr(spec, a) == getattr(judged_preview, a) for a in probe.ATTRIBUTES},
            }
        )
        print(
            f"[{index + 1}/{args.count}] {settings.prompt!r}: PSNR {rows[-1]['psnr_last']:.1f} dB, each preview "
            f"{', '.join(f'{value:.1f}' for value in each_step)}",
            file=sys.stderr,
        )
    unrelated = [
        psnr(matching_frames(a, len(last), temporal), matching_frames(b, len(last), temporal))
        for a, b in zip(videos, videos[1:] + videos[:1])
    ]
    report = {
        "prompts": args.count,
        "seed": args.seed,
        "steps": settings.steps,
        "every": settings.preview_every,
        "projection_fit_seconds": round(fit_seconds, 3),
        "psnr_last_preview_db": {"median": float(np.median([r["psnr_last"] for r in rows])), "min": min(r["psnr_last"] for r in rows)},
        "psnr_each_preview_median_db": [
            float(np.median([r["psnr_each_preview"][i] for r in rows])) for i in range(len(rows[0]["psnr_each_preview"]))
        ],
        "psnr_unrelated_video_median_db": float(np.median(unrelated)),
        "probe_agrees_with_video": {a: float(np.mean([r["agrees"][a] for r in rows])) for a in probe.ATTRIBUTES},
        "probe_right_on_preview": {a: float(np.mean([r["right"][a] for r in rows])) for a in probe.ATTRIBUTES},
    }
    print(json.dumps(report, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({**report, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
