"""Frames -> files, with the recipe inside, written atomically; and reading them back.

Formats by the output's suffix:
- `.mp4`  H.264 (libx264), yuv420p, CRF, +faststart: plays in browsers and phones.
- `.webm` VP9 (libvpx-vp9), constant quality CRF.
- `.gif`  looping GIF (Pillow).
- a folder (no suffix, or a trailing slash): numbered PNG frames plus recipe.json.
The ffmpeg used is the one imageio-ffmpeg bundles, so nothing else needs installing.

The recipe (prompt, seed, model, settings, vidgen version) is JSON in the MP4/WebM
`comment` tag, the GIF comment and PNG text chunks; `read_recipe()` gets it back.
Each file is written under a temporary name in the target folder and renamed when
complete, so an interrupted run never leaves a truncated file under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidgen.errors import GenerationError, UsageError

VIDEO_SUFFIXES = {".mp4": "mp4", ".webm": "webm", ".gif": "gif"}
RECIPE_FILE = "recipe.json"  # beside the frames in a PNG folder
PNG_RECIPE_KEY = "vidgen:recipe"


def output_format(path: Path | str) -> str:
    """mp4, webm, gif or png (a folder of frames)."""
    text = str(path)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir() or path.suffix == "":
        return "png"
    fmt = VIDEO_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot write {path.suffix} files: use .mp4, .webm, .gif, or a folder for PNG frames")
    return fmt


def check_output_path(path: Path, *, overwrite: bool) -> None:
    """Fail before any generation if `path` cannot be written or would be overwritten."""
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"output folder does not exist: {folder}")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists (pass --overwrite to replace it)")
    if path.is_dir() and overwrite and any(path.iterdir()) and not (path / RECIPE_FILE).is_file():
        raise UsageError(f"{path} is a folder that vidgen did not write; refusing to replace it")
    # Really try: permission bits lie for root and read-only file systems.
    probe = folder / f".vidgen-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to output folder {folder}: {error.strerror}") from error


def _temporary_sibling(path: Path) -> Path:
    """A hidden name in the same folder (same file system, so os.replace is atomic)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part{path.suffix}")


def _to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return np.ascontiguousarray(frames)


def _ffmpeg_codec(fmt: str, crf: int) -> tuple[str, list[str]]:
    """Codec and its options: H.264 for MP4; VP9 (constant quality needs -b:v 0) for WebM."""
    if fmt == "mp4":
        return "libx264", ["-crf", str(crf), "-preset", "medium", "-movflags", "+faststart"]
    return "libvpx-vp9", ["-crf", str(crf), "-b:v", "0", "-row-mt", "1"]


def _write_with_ffmpeg(frames: np.ndarray, path: Path, fps: float, fmt: str, crf: int, comment: str) -> None:
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    codec, output_params = _ffmpeg_codec(fmt, crf)
    output_params += ["-metadata", f"comment={comment}"]
    if width % 2 or height % 2:  # yuv420p needs even sides: pad by one pixel
        output_params += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec=codec,
        pix_fmt_out="yuv420p",
        quality=None,  # the CRF is in output_params
        macro_block_size=1,  # never rescale; sizes are checked before generating
        ffmpeg_log_level="error",
        output_params=output_params,
    )
    try:
        writer.send(None)  # start ffmpeg
        for frame in frames:
            writer.send(frame)
    finally:
        writer.close()  # waits for ffmpeg, or stops it if we are failing


def _write_gif(frames: np.ndarray, path: Path, fps: float, comment: str) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),  # browsers clamp delays under 20 ms
        loop=0,
        comment=comment.encode("utf-8"),
    )


def _write_png_folder(frames: np.ndarray, folder: Path, recipe_json: str) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    folder.mkdir()
    text = PngInfo()
    text.add_itxt(PNG_RECIPE_KEY, recipe_json)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{index:05d}.png", pnginfo=text)
    (folder / RECIPE_FILE).write_text(recipe_json + "\n")


def write_video(frames: np.ndarray, path: Path, *, fps: float, crf: int = 18, recipe: dict[str, Any], overwrite: bool = False) -> Path:
    """Write `frames` (uint8, T H W 3) to `path` atomically; return the final path."""
    frames = _to_uint8_frames(frames)
    fmt = output_format(path)
    recipe_json = json.dumps(recipe, ensure_ascii=False, sort_keys=True)
    temporary = _temporary_sibling(path)
    try:
        if fmt in ("mp4", "webm"):
            _write_with_ffmpeg(frames, temporary, fps, fmt, crf, recipe_json)
        elif fmt == "gif":
            _write_gif(frames, temporary, fps, recipe_json)
        else:
            _write_png_folder(frames, temporary, recipe_json)
        if path.exists() and not overwrite:
            raise UsageError(f"{path} appeared while generating (pass --overwrite to replace it)")
        if path.is_dir():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty folder
        os.replace(temporary, path)
    except BaseException as error:
        _remove(temporary)
        if isinstance(error, (OSError, RuntimeError)):
            raise GenerationError(f"cannot write {path}: {error}") from error
        raise
    return path


def encode_mp4_bytes(frames: np.ndarray, *, fps: float, crf: int = 18, recipe: dict[str, Any]) -> bytes:
    """The MP4 file as bytes (for `-o -`). A real file in between keeps +faststart."""
    with tempfile.TemporaryDirectory(prefix="vidgen-") as folder:
        path = write_video(frames, Path(folder) / "video.mp4", fps=fps, crf=crf, recipe=recipe)
        return path.read_bytes()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---- reading back (inspect, tests) ----


@dataclass
class VideoInfo:
    frames: int
    width: int
    height: int
    fps: float
    seconds: float


def _unescape_ffmetadata(value: str) -> str:
    """ffmetadata escapes = ; # \\ and newline with a backslash."""
    out, chars = [], iter(value)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


def _read_ffmetadata(path: Path) -> dict[str, str]:
    import imageio_ffmpeg

    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise UsageError(f"cannot read {path}: {result.stderr.decode(errors='replace').strip() or 'not a video'}")
    tags: dict[str, str] = {}
    # Values may hold escaped newlines: join a line ending in an odd run of backslashes.
    pending = ""
    for line in result.stdout.decode("utf-8", errors="replace").split("\n"):
        line = pending + line
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending = line + "\n"
            continue
        pending = ""
        if not line or line.startswith((";", "#", "[")) or "=" not in line:
            continue
        # The key ends at the first unescaped '='.
        index = 0
        while index < len(line):
            if line[index] == "\\":
                index += 2
                continue
            if line[index] == "=":
                break
            index += 1
        tags[_unescape_ffmetadata(line[:index]).lower()] = _unescape_ffmetadata(line[index + 1 :])
    return tags


def read_recipe(path: Path) -> dict[str, Any] | None:
    """The recipe vidgen embedded in a video, GIF or PNG folder; None if absent."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    text: str | None
    if path.is_dir():
        recipe_file = path / RECIPE_FILE
        text = recipe_file.read_text() if recipe_file.is_file() else None
    elif path.suffix.lower() == ".gif":
        from PIL import Image

        with Image.open(path) as image:
            comment = image.info.get("comment")
        text = comment.decode("utf-8") if isinstance(comment, bytes) else comment
    elif path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as image:
            text = image.info.get(PNG_RECIPE_KEY)
    else:
        text = _read_ffmetadata(path).get("comment")
    if not text:
        return None
    try:
        recipe = json.loads(text)
    except ValueError:
        return None
    return recipe if isinstance(recipe, dict) else None


def _open_video(path: Path):
    """imageio-ffmpeg's frame reader (RGB) and the video's metadata; not a video: UsageError."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        return reader, next(reader)
    except (OSError, RuntimeError, StopIteration) as error:  # imageio-ffmpeg's "could not load meta"
        reader.close()
        raise UsageError(f"cannot read {path}: not a video") from error


def read_frames(path: Path) -> np.ndarray:
    """All frames as uint8 (T, H, W, 3)."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(path.glob("frame_*.png"))])
    if path.suffix.lower() == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as image:
            return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    reader, meta = _open_video(path)
    width, height = meta["size"]
    frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    return np.stack(frames)


def probe_video(path: Path) -> VideoInfo:
    """Frame count, size, fps and duration, by decoding (ffprobe is not bundled)."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".gif":
        frames = read_frames(path)
        recipe = read_recipe(path) or {}
        fps = float(recipe.get("fps") or 0)
        if path.suffix.lower() == ".gif":
            from PIL import Image

            with Image.open(path) as image:
                fps = 1000 / image.info.get("duration", 1000 / fps if fps else 100)
        count, height, width = frames.shape[:3]
        return VideoInfo(count, width, height, round(fps, 3), round(count / fps, 3) if fps else 0.0)
    import imageio_ffmpeg

    reader, meta = _open_video(path)
    reader.close()
    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    width, height = meta["size"]
    return VideoInfo(count, width, height, float(meta["fps"]), round(seconds, 3))


def describe(path: Path) -> dict[str, Any]:
    """`vidgen inspect`: the file's frames, size, fps and duration, and its recipe."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    info = probe_video(path)
    return {
        "path": str(path.resolve()),
        "frames": info.frames,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "seconds": info.seconds,
        "recipe": read_recipe(path),
    }
