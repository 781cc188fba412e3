"""The built-in model on the CPU with its 3D convolutions on PyTorch's own kernel against oneDNN.

    .venv/bin/python benchmarks/cpu_conv3d.py              # 10 rounds, torch's default threads
    .venv/bin/python benchmarks/cpu_conv3d.py --threads 1 --json out.json

Loads the built-in model once through vidgen's own path (which routes the convolutions to
oneDNN, `acceleration.use_onednn_conv3d`), then alternates rounds with the routing taken off
(PyTorch picks `slow_conv3d` for these sizes) and put back. Each round times the VAE decode
of one fixed latent and one whole video as `vidgen` makes it (10 steps, decode, MP4 written),
and compares the frames of the two kinds. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PROMPT = "a red circle moving right on a black background"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()

    import torch

    from vidgen.engine import acceleration
    from vidgen.engine.generate import VideoGenerator
    from vidgen.engine.loading import load_pipeline
    from vidgen.engine.prepare import prepare_settings
    from vidgen.engine.runner import render
    from vidgen.media.readback import read_frames

    if options.threads:
        torch.set_num_threads(options.threads)
    settings, _ = prepare_settings(PROMPT, preset=None, model=None, overrides={"seed": 1})
    loaded = load_pipeline(settings)
    generator = VideoGenerator(loaded)
    facts = generator.run_facts(settings)  # what ran: the recipe records it
    vae = loaded.pipe.vae
    convolutions = [module for module in vae.modules() if isinstance(module, torch.nn.Conv3d)]
    latents = torch.randn(1, vae.config.z_dim, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    folder = Path(tempfile.mkdtemp(prefix="vg-conv3d-"))

    def use(kind: str) -> None:
        for module in convolutions:
            vars(module).pop("_conv_forward", None)  # PyTorch's own path
        if kind == "onednn":
            acceleration.use_onednn_conv3d(loaded.pipe)

    def one_round(kind: str) -> tuple[float, float]:
        use(kind)
        with torch.inference_mode():
            started = time.perf_counter()
            vae.decode(latents)
            decode = time.perf_counter() - started
        started = time.perf_counter()
        render(generator, settings, 1, facts=facts, path=folder / f"{kind}.mp4", overwrite=True)
        return decode, time.perf_counter() - started

    for kind in ("torch", "onednn"):  # warm-up
        one_round(kind)
    times: dict[str, dict[str, list[float]]] = {kind: {"decode": [], "video": []} for kind in ("torch", "onednn")}
    for index in range(options.rounds):
        for kind in ("torch", "onednn") if index % 2 == 0 else ("onednn", "torch"):
            decode, video = one_round(kind)
            times[kind]["decode"].append(round(decode, 3))
            times[kind]["video"].append(round(video, 3))
        print(
            f"round {index + 1}: "
            + ", ".join(f"{kind} decode {times[kind]['decode'][-1]:.3f} s video {times[kind]['video'][-1]:.3f} s" for kind in times),
            flush=True,
        )

    difference = read_frames(folder / "torch.mp4").astype(int) - read_frames(folder / "onednn.mp4").astype(int)
    result = {
        "threads": options.threads or f"torch default ({torch.get_num_threads()})",
        "convolutions": len(convolutions),
        "times": times,
        "median": {kind: {part: statistics.median(values) for part, values in parts.items()} for kind, parts in times.items()},
        "frames_max_abs_difference": int(abs(difference).max()),
        "frames_mean_abs_difference": float(abs(difference).mean()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}",
    }
    for part in ("decode", "video"):
        result[f"{part}_speedup"] = round(result["median"]["torch"][part] / result["median"]["onednn"][part], 2)
    print(json.dumps({key: value for key, value in result.items() if key != "times"}, indent=2))
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
