"""What --preview costs on the built-in Shapes model, inside one process (no import or load
time in the figures, which on a shared machine drown a few milliseconds).

    OMP_NUM_THREADS=1 python benchmarks/preview_cost.py --pairs 10 --steps 10

The same video (prompt, seed) is generated in turn with and without `--preview FILE.png` at
the default interval, after one warm-up of each (the projection is fitted and kept then, as
after a first run); each pair's ratio is taken, and the time spent inside the previewer
(x0 estimate, projection, PNG written and renamed) is summed for the runs with a preview.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vidgen.engine import preview
from vidgen.engine.generate import VideoGenerator
from vidgen.engine.pipeline_cache import obtain_pipeline
from vidgen.engine.prepare import prepare_settings


def compare(generator: VideoGenerator, plain, with_preview, pairs: int) -> dict:
    """`pairs` videos of each, in turn, after one warm-up of each (the projection fitted once and kept);
    the medians of the pairs' ratios, and the time spent inside the previewer."""
    inside = [0.0]
    after_step = preview.Previewer.after_step

    def timed(self, *a, **k):
        started = time.perf_counter()
        try:
            return after_step(self, *a, **k)
        finally:
            inside[0] += time.perf_counter() - started

    preview.Previewer.after_step = timed  # the benchmark's own stopwatch around the previewer
    try:
        generator.generate(plain, 1)
        generator.generate(with_preview, 1)  # warm-up: the projection fitted once and kept (and a first compile)
        rows = []
        for _ in range(pairs):
            times = {}
            for name, settings in (("preview", with_preview), ("plain", plain)):
                inside[0] = 0.0
                wall, cpu = time.perf_counter(), time.process_time()
                generator.generate(settings, 1)  # its frames come back decoded, on the CPU: the card is done
                times[name] = (time.perf_counter() - wall, time.process_time() - cpu, inside[0])
            rows.append(times)
    finally:
        preview.Previewer.after_step = after_step
    report = {
        "steps": plain.steps,
        "every": with_preview.preview_every,
        "pairs": pairs,
        "plain_wall_s_median": statistics.median(r["plain"][0] for r in rows),
        "preview_wall_s_median": statistics.median(r["preview"][0] for r in rows),
        "ratio_wall_median": statistics.median(r["preview"][0] / r["plain"][0] for r in rows),
        "ratio_cpu_median": statistics.median(r["preview"][1] / r["plain"][1] for r in rows),
        "previewer_s_per_video_median": statistics.median(r["preview"][2] for r in rows),
        "previewer_share_of_video_median": statistics.median(r["preview"][2] / r["preview"][0] for r in rows),
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's (10)")
    parser.add_argument("--prompt", default="a red circle moving right on a black background")
    args = parser.parse_args()
    torch.set_num_threads(1)

    target = Path(tempfile.mkdtemp(prefix="vidgen-preview-")) / "p.png"
    overrides = {"seed": 1, **({"steps": args.steps} if args.steps else {})}
    plain, _ = prepare_settings(args.prompt, preset="shapes", model=None, overrides=overrides)
    with_preview, _ = prepare_settings(args.prompt, preset="shapes", model=None, overrides={**overrides, "preview": str(target)})
    loaded = obtain_pipeline(plain)
    generator = VideoGenerator(loaded)
    plain, with_preview = (generator.run_facts(settings).filled_in(settings) for settings in (plain, with_preview))

    report = compare(generator, plain, with_preview, args.pairs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
