"""FramePack (HunyuanVideoFramepackPipeline, framepack-i2v): the video made in sections."""

from __future__ import annotations

import inspect
from typing import Any

# FramePack (HunyuanVideoFramepackPipeline) makes its video in sections of latent_window_size
# latent frames each: it takes num_frames only to count sections (rounded up), and returns
# sections x latent_window_size x the VAE's time compression + 1 frames (36k+1 with its
# default window of 9). --frames is the video's own count (the preset's rule is 36k+1).
FRAMEPACK_WINDOW = "latent_window_size"


def framepack_sections(pipe: Any, frames: int, window: int) -> tuple[int, int]:
    """(sections, the num_frames that makes the pipeline run that many) for `frames` output frames."""
    temporal = getattr(pipe, "vae_scale_factor_temporal", 4)
    sections = max(1, (frames - 1) // (window * temporal))
    return sections, sections * ((window - 1) * temporal + 1)


def framepack_window(parameters: set[str], arguments: dict[str, Any], pipe: Any) -> int | None:
    if FRAMEPACK_WINDOW not in parameters:
        return None
    return arguments.get(FRAMEPACK_WINDOW) or inspect.signature(type(pipe).__call__).parameters[FRAMEPACK_WINDOW].default
