"""Quality cost of fast mode on the built-in model: fast output against lossless output.

    python benchmarks/fast_quality.py --count 20                      # --cache first-block (what --fast uses)
    python benchmarks/fast_quality.py --count 20 --cache taylorseer --json fast.json
    python benchmarks/fast_quality.py --model DIR --count 5           # another WanPipeline folder

Prompts and seeds are drawn from the Shapes caption grammar (reproducibly from --seed).
Each prompt is generated twice on the same seed through vidgen's own path, once lossless
and once with the step cache, both loaded once. Reported: PSNR of fast against lossless
(mean, median, worst), the share of prompts at or above 28 dB (issue 5's target), the
time of each, and training.probe's accuracy of each (issue 5: at most 2 points lost).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench import psnr  # noqa: E402
from training import probe, shapes  # noqa: E402
from vidgen.engine import loading as pipeline_loader  # noqa: E402
from vidgen.engine.generate import VideoGenerator  # noqa: E402
from vidgen.engine.prepare import prepare_settings  # noqa: E402

TARGET_PSNR_DB = 28.0


def evaluate(*, count: int, seed: int, cache: str, model: str | None, overrides: dict) -> dict:
    rng = random.Random(seed)
    lossless_settings, _ = prepare_settings("probe", preset="shapes", model=model, overrides={**overrides, "cache": "none"})
    fast_settings, _ = prepare_settings("probe", preset="shapes", model=model, overrides={**overrides, "cache": cache})
    lossless = VideoGenerator(pipeline_loader.load_pipeline(lossless_settings))
    fast = VideoGenerator(pipeline_loader.load_pipeline(fast_settings))
    psnrs, seconds = [], {"lossless": 0.0, "fast": 0.0}
    judged: dict[str, list] = {"lossless": [], "fast": []}
    for index in range(count):
        spec = shapes.sample_spec(rng)
        prompt, video_seed = shapes.caption(spec, rng), rng.randrange(2**31)
        videos = {}
        for name, generator, settings in (("lossless", lossless, lossless_settings), ("fast", fast, fast_settings)):
            started = time.monotonic()
            videos[name] = generator.generate(replace(settings, prompt=prompt), video_seed)
            seconds[name] += time.monotonic() - started
            judged[name].append((spec, probe.judge(videos[name])))
        psnrs.append(psnr(videos["lossless"], videos["fast"]))
        print(f"[{index + 1}/{count}] {prompt!r}: PSNR {psnrs[-1]:.2f} dB", file=sys.stderr)
    finite = [value for value in psnrs if value != float("inf")]
    return {
        "prompts": count,
        "seed": seed,
        "cache": cache,
        "settings": {
            "steps": lossless_settings.steps,
            "guidance": lossless_settings.guidance,
            "frames": lossless_settings.frames,
            "width": lossless_settings.width,
            "height": lossless_settings.height,
        },
        "psnr_db": {
            "mean": round(statistics.mean(finite), 2) if finite else "inf",
            "median": round(statistics.median(psnrs), 2) if finite else "inf",
            "worst": round(min(psnrs), 2) if finite else "inf",
            "identical_videos": len(psnrs) - len(finite),
            f"share_at_least_{TARGET_PSNR_DB:g}": round(sum(value >= TARGET_PSNR_DB for value in psnrs) / count, 3),
        },
        "seconds_per_video": {name: round(total / count, 3) for name, total in seconds.items()},
        "speedup": round(seconds["lossless"] / seconds["fast"], 3) if seconds["fast"] else None,
        "probe_accuracy": {name: probe.score(results) for name, results in judged.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="first-block")
    parser.add_argument("--model", help="a model folder other than the built-in weights")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    overrides = {"steps": args.steps} if args.steps else {}
    report = evaluate(count=args.count, seed=args.seed, cache=args.cache, model=args.model, overrides=overrides)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_path:
        Path(args.json_path).write_text(text + "\n")


if __name__ == "__main__":
    main()
