"""The inputs that condition a video: the start or reference image (--image), the input
video (--video) and a VACE mask (--mask), read from files and fitted to the run.

Every unreadable or empty input is bad input (exit 2), found before any weights load.
A relative path is taken from the run's folder (`env`: a server job's is its client's);
messages name it as it was given.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError, first_line
from vidgen.media.readback import read_frames


def load_conditioning_image(path: str, env: Environment = PROCESS):
    """The --image of an image-to-video preset, as a PIL image; unreadable -> exit 2."""
    # here, not at the top: diffusers takes 3 s on top of torch, and a command refused in its
    # checks (bad settings, output exists) stops before it; only --image or the pipeline loads it
    from diffusers.utils import load_image

    if not path.startswith(("http://", "https://")) and not env.path(path).is_file():
        raise UsageError(f"image not found: {path}")
    try:
        return load_image(str(env.path(path)) if "://" not in path else path)
    except Exception as error:  # PIL raises several kinds for a bad file
        raise UsageError(f"cannot read image {path}: {error}") from error


_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height (a phone's portrait photo)


def image_size(path: str, env: Environment = PROCESS) -> tuple[int, int]:
    """The --image's (width, height) as the pipeline will get it (EXIF orientation applied, as
    diffusers' load_image does), from its header only: --size auto needs it before anything
    loads. Missing or unreadable -> exit 2."""
    if "://" in path:
        return load_conditioning_image(path, env).size
    if not env.path(path).is_file():
        raise UsageError(f"image not found: {path}")
    try:
        with Image.open(env.path(path)) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112)
    except Exception as error:  # PIL raises several kinds for a bad file
        raise UsageError(f"cannot read image {path}: {first_line(error)}") from error
    return (height, width) if orientation in _TURNED else (width, height)


def load_input_video(path: str, env: Environment = PROCESS) -> np.ndarray:
    """The --video of a video-to-video preset as uint8 frames (T, H, W, 3): any file
    imageio's ffmpeg reads, a GIF, or a folder of PNG frames; unreadable or empty -> exit 2."""
    source = env.path(path)
    if not source.exists():
        raise UsageError(f"video not found: {path}")
    return _frames_or_refuse(lambda: read_frames(source), "video", path)


def _frames_or_refuse(read, what: str, path: str) -> np.ndarray:
    """`read()`'s frames (T, H, W, 3), or one line and exit 2 for a file that is unreadable or empty."""
    try:
        frames = read()
    except Exception as error:  # ffmpeg, PIL and numpy raise several kinds for a bad file
        raise UsageError(f"cannot read {what} {path}: {first_line(error)}") from error
    if frames.ndim != 4 or len(frames) == 0:
        raise UsageError(f"{what} {path} has no frames")
    return frames


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # a --mask that is one image


def load_input_mask(path: str, env: Environment = PROCESS) -> tuple[np.ndarray, bool]:
    """The --mask of a VACE preset as uint8 frames (T, H, W, 3), white = regenerate, and
    whether it is one image for every frame (PNG, JPEG, ...) rather than a video (any file
    imageio's ffmpeg reads, a GIF, or a folder of PNG frames). Unreadable or empty -> exit 2."""
    source = env.path(path)
    if not source.exists():
        raise UsageError(f"mask not found: {path}")
    single_image = source.is_file() and source.suffix.lower() in _IMAGE_SUFFIXES

    def read() -> np.ndarray:
        if not single_image:
            return read_frames(source)
        with Image.open(source) as image:
            return np.asarray(image.convert("RGB"))[None]

    return _frames_or_refuse(read, "mask", path), single_image


def fit_mask(mask: tuple[np.ndarray, bool], path: str, video_frames: int) -> np.ndarray:
    """One mask frame per video frame used: an image repeated, a video's first ones; a
    mask video shorter than that is bad input."""
    frames, single_image = mask
    if single_image:
        return frames.repeat(video_frames, axis=0)
    if len(frames) < video_frames:
        raise UsageError(
            f"mask {path} has {len(frames)} frames; the video uses {video_frames} (give one mask frame per video frame, or a single image)"
        )
    return frames[:video_frames]
