"""Reading back what vidgen wrote (`vidgen inspect`, conditioning on a video, tests).

- `read_recipe()` gets the recipe that vidgen.media.video embedded: the MP4/WebM `comment`
  tag (read as ffmetadata), the GIF comment, a PNG's text chunk, or a PNG folder's
  recipe.json;
- `read_frames()` decodes every frame as uint8 (T, H, W, 3); `read_frames_at()` only the
  frames asked for (contact sheets, poster frames), holding no others;
- `probe_video()` counts frames and reads size, fps and duration by decoding, since
  imageio-ffmpeg ships no ffprobe;
- `describe()` is all of that for `vidgen inspect`, with `describe_audio()`'s soundtrack;
- `file_sha256()`: a written file's checksum (a batch's manifest, `--json`'s records).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageSequence

from vidgen.errors import UsageError
from vidgen.media.audio import probe_audio, wav_beside
from vidgen.media.post.plan import file_fields
from vidgen.media.video import PNG_RECIPE_KEY, RECIPE_FILE, ffmpeg_exe


def file_sha256(path: Path) -> str:
    """A written file's SHA-256 (a batch's manifest, `vidgen generate --json`), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        with Image.open(path) as image:
            comment = image.info.get("comment")
        text = comment.decode("utf-8") if isinstance(comment, bytes) else comment
    elif path.suffix.lower() == ".png":
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
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(path.glob("frame_*.png"))])
    if path.suffix.lower() == ".gif":
        with Image.open(path) as image:
            return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    reader, meta = _open_video(path)
    width, height = meta["size"]
    frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    return np.stack(frames)


def read_frames_at(path: Path, indices: list[int]) -> np.ndarray:
    """The frames at `indices` (in that order; repeats allowed) as uint8 (len, H, W, 3).
    Frames are decoded in order and only the wanted ones kept; decoding stops after the
    last one wanted. An index past the end is a UsageError."""
    path = Path(path)
    wanted = set(indices)
    kept: dict[int, np.ndarray] = {}
    if path.is_dir():
        files = sorted(path.glob("frame_*.png"))
        kept = {index: np.asarray(Image.open(files[index]).convert("RGB")) for index in wanted if 0 <= index < len(files)}
    elif path.suffix.lower() == ".gif":
        with Image.open(path) as image:
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                if index in wanted:
                    kept[index] = np.asarray(frame.convert("RGB"))
                if len(kept) == len(wanted):
                    break
    else:
        reader, meta = _open_video(path)
        width, height = meta["size"]
        try:
            for index, raw in enumerate(reader):
                if index in wanted:
                    kept[index] = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
                if len(kept) == len(wanted):
                    break
        finally:
            reader.close()
    missing = sorted(wanted - kept.keys())
    if missing:
        raise UsageError(f"{path} has no frame {missing[0]}")
    return np.stack([kept[index] for index in indices])


def probe_video(path: Path) -> VideoInfo:
    """Frame count, size, fps and duration, by decoding (ffprobe is not bundled)."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".gif":
        frames = read_frames(path)
        recipe = read_recipe(path) or {}
        fps = float(file_fields(recipe, recipe.get("fps"))["fps"] or 0)  # after --interpolate, the last step's
        if path.suffix.lower() == ".gif":
            with Image.open(path) as image:
                fps = 1000 / image.info.get("duration", 1000 / fps if fps else 100)
        count, height, width = frames.shape[:3]
        return VideoInfo(count, width, height, round(fps, 3), round(count / fps, 3) if fps else 0.0)
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
        "audio": describe_audio(path),
        "recipe": read_recipe(path),
    }


def describe_audio(path: Path) -> dict[str, Any] | None:
    """The soundtrack of a video, or of the WAV beside a GIF or PNG folder; None if none."""
    source = path
    if path.is_dir() or path.suffix.lower() == ".gif":
        source = wav_beside(path)
        if not source.is_file():
            return None
    try:
        stream = probe_audio(source, ffmpeg_exe())
    except ValueError as error:
        raise UsageError(f"cannot read {source}: {error}") from error
    if stream is not None and source != path:
        stream["file"] = str(source.resolve())
    return stream
