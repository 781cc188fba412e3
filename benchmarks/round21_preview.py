"""What `--preview` costs on Wan 2.1 1.3B at 480p (issue 36's addition to the round): the same video made in
turn with and without `--preview FILE.png` at the default interval, in one process, on vidgen's path after
loading (compiled on CUDA), after one warm-up of each: the medians of the pairs' wall ratios and the time
spent inside the previewer (preview_cost.compare, which benchmarks/preview_cost.py runs on the built-in
model). Random weights and embeddings from the configs (round21_wan.Wan): the timing does not depend on them.
The target (docs/benchmarks.md, "Live previews"): at most 5% slower at the default interval."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.round21_wan import Wan

STEPS = 10  # two previews at the default interval (every 5 steps); a real video's 50 would not fit the round


def part_preview(run, wan: Wan, pairs: int) -> None:
    import torch

    from benchmarks.preview_cost import compare
    from vidgen.engine.generate import VideoGenerator

    def action() -> dict[str, Any]:
        wan.embed()
        target = Path(tempfile.mkdtemp(prefix="vidgen-preview-")) / "p.png"
        plain = wan.settings(steps=STEPS)
        with_preview = wan.settings(steps=STEPS, preview=str(target))
        loaded = wan.vidgen(wan.transformer(), wan.vae(torch.bfloat16), plain)
        generator = VideoGenerator(loaded)
        plain, with_preview = (generator.run_facts(settings).filled_in(settings) for settings in (plain, with_preview))
        report = compare(generator, plain, with_preview, pairs)
        return {
            "variant": f"--preview, every {report['every']} of {report['steps']} steps",
            "compiled": loaded.compiled,
            "note": (
                f"{pairs} pairs: a video {report['plain_wall_s_median']:.2f} s without, {report['preview_wall_s_median']:.2f} s with; "
                f"ratio {report['ratio_wall_median']:.3f}; inside the previewer {report['previewer_s_per_video_median']:.3f} s a video "
                f"({100 * report['previewer_share_of_video_median']:.1f}%)"
            ),
            "preview": report,
        }

    run("--preview", action, None)
