"""The methods that need no download, on the ffmpeg that imageio-ffmpeg bundles:

- `repeat`: each frame N times (what a player does with a low frame rate);
- `blend`: ffmpeg's `framerate` filter, a weighted mix of the two neighbours (it copies
  instead across a scene cut);
- `minterpolate`: ffmpeg's motion-compensated interpolation (block motion estimation,
  adaptive overlapped-block compensation, variable-size blocks: the options the ffmpeg
  wiki's "minterpolate" example uses);
- `scale`: Lanczos resampling.

Frames go to ffmpeg as raw RGB on its standard input and come back on its standard output,
written from a thread so that neither pipe fills while the other waits. ffmpeg's filters
work in YUV: the in-between frames come back from it, the input frames are put back as
they were (plan.py's frame rule), so only new frames carry its colour rounding.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from vidgen.errors import GenerationError
from vidgen.media.video import ffmpeg_exe
from vidgen.threads import configured_threads

Report = Callable[[int, int], None]  # (frames done, frames in all)

FILTERS = {
    "blend": "framerate=fps={rate}",
    "minterpolate": "minterpolate=fps={rate}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1",
}


def interpolate(frames: np.ndarray, fps: float, factor: int, method: str, report: Report) -> np.ndarray:
    """N x n frames (plan.py's rule) by `repeat`, `blend` or `minterpolate`."""
    count = len(frames)
    if method == "repeat" or count == 1:
        report(count, count)
        return np.repeat(frames, factor, axis=0)
    rate = Fraction(fps).limit_denominator() * factor
    # Two copies of the last frame give ffmpeg a frame after the last in-between it must make
    # (each filter drops its last interval otherwise); between equal frames it makes copies.
    padded = np.concatenate([frames, frames[-1:], frames[-1:]])
    wanted = factor * (count - 1) + 1
    made = run_filter(padded, fps, f"format=yuv444p,{FILTERS[method].format(rate=rate)}", report=report, limit=wanted, expected=wanted)
    if len(made) < wanted:
        raise GenerationError(f"ffmpeg's {method} made {len(made)} of {wanted} frames")
    out = np.repeat(frames, factor, axis=0)  # the input frames in place, the last one held
    new = np.ones(len(out), dtype=bool)
    new[::factor] = False
    new[wanted:] = False
    out[new] = made[:wanted][new[:wanted]]
    return out


def scale(frames: np.ndarray, width: int, height: int, report: Report) -> np.ndarray:
    """Every frame resized to width x height with a Lanczos filter."""
    return run_filter(
        frames,
        1,
        f"scale={width}:{height}:flags=lanczos+accurate_rnd+full_chroma_int",
        size=(width, height),
        report=report,
        expected=len(frames),
    )


def run_filter(
    frames: np.ndarray,
    fps: float,
    graph: str,
    *,
    report: Report,
    size: tuple[int, int] | None = None,
    limit: int | None = None,
    expected: int | None = None,
) -> np.ndarray:
    """`frames` through the filter graph `graph`; the frames it gives back (at most `limit`),
    each `size` (width, height; default the input's)."""
    exe = ffmpeg_exe()
    count, height, width = frames.shape[:3]
    out_width, out_height = size or (width, height)
    rate = str(Fraction(fps).limit_denominator())
    command = [
        exe,
        "-nostdin",
        "-v",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-r",
        rate,
        "-i",
        "-",
        "-vf",
        graph,
        *_thread_options(),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    frame_bytes = out_width * out_height * 3
    total = expected or limit or count
    made: list[np.ndarray] = []
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty ffmpeg cannot block
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
        writer = threading.Thread(target=_feed, args=(process, frames), daemon=True)
        writer.start()
        try:
            while limit is None or len(made) < limit:
                data = process.stdout.read(frame_bytes)
                if len(data) < frame_bytes:
                    break
                made.append(np.frombuffer(data, dtype=np.uint8).reshape(out_height, out_width, 3))
                report(min(len(made), total), total)
            process.stdout.close()
            returncode = process.wait()
        except BaseException:
            process.kill()  # Ctrl-C: stop ffmpeg (its own session: the terminal's signal reaches only vidgen)
            process.wait()
            raise
        finally:
            writer.join()
        if returncode != 0 and not (limit is not None and len(made) >= limit):  # stopped early on purpose: a broken pipe
            stderr.seek(0)
            lines = [line for line in stderr.read().decode("utf-8", errors="replace").splitlines() if line.strip()]
            raise GenerationError(f"ffmpeg ({exe}) failed on `{graph}` with exit {returncode}: {lines[-1] if lines else 'no message'}")
    if not made:
        raise GenerationError(f"ffmpeg ({exe}) gave no frames for `{graph}`")
    return np.stack(made)


def _thread_options() -> list[str]:
    """--threads / VIDGEN_THREADS reach ffmpeg's filters too (minterpolate runs its slices on them)."""
    threads = configured_threads()
    return ["-filter_threads", str(threads)] if threads else []


def _feed(process: subprocess.Popen, frames: np.ndarray) -> None:
    try:
        for frame in frames:
            process.stdin.write(np.ascontiguousarray(frame).tobytes())
        process.stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass  # ffmpeg stopped (an error, or enough frames read): its exit status says which
