"""Pipelines whose guidance lives in a guider component (diffusers' modular guiders), not in a
`guidance_scale` argument: HunyuanVideo 1.5 (HunyuanVideo15Pipeline and its image-to-video
class) is the first. The scale is in `pipe.guider.config`; a new scale is a new guider."""

from __future__ import annotations

from typing import Any


def _guider(pipe: Any) -> Any:
    guider = getattr(pipe, "guider", None)
    return guider if "guidance_scale" in getattr(guider, "config", {}) else None


def guider_scale(pipe: Any) -> float | None:
    """The guidance the pipeline's guider runs at (recorded in the recipe when none was asked), or None."""
    guider = _guider(pipe)
    return None if guider is None else guider.config["guidance_scale"]


def set_guider_scale(pipe: Any, guidance: float | None) -> bool:
    """Give the pipeline a guider copy at `guidance` (kept when already at it). True when the
    guidance went in this way, so the call itself takes no `guidance_scale`."""
    guider = _guider(pipe)
    if guidance is None or guider is None:
        return False
    if guider.config["guidance_scale"] != guidance:
        pipe.guider = guider.new(guidance_scale=guidance)
    return True
