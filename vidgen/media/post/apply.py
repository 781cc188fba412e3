"""A post-processing plan applied to decoded frames, step by step, each step recorded.

`apply()` is what `vidgen post` and runner.render (generate, batch, serve) call between the
decode and the write. The recipe's `post` is the list of step records: the step, its method
and factor, the model file and its sha256 when a model is used, and the frames, size and
frame rate after it. Loaded models are kept for the next video of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vidgen import ui
from vidgen.media.post import ffmpeg, weights
from vidgen.media.post.plan import PostPlan, Step

Report = Callable[[str, int, int], None]  # (what, done, total)

_models: dict[tuple, Any] = {}  # (kind, path, size, mtime) -> the loaded network: one of each kind kept


def _loaded(kind: str, path: Path) -> Any:
    from vidgen.media.post import rife, upscaler  # here, not at the top: torch, only when a model file is given

    stat = path.stat()
    key = (kind, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _models:
        for old in [old for old in _models if old[0] == kind]:
            del _models[old]
        _models[key] = rife.load(path) if kind == "rife" else upscaler.Upscaler(path)
    return _models[key]


def apply(frames: np.ndarray, fps: float, plan: PostPlan, report: Report) -> tuple[np.ndarray, float, list[dict[str, Any]]]:
    """(frames, fps, step records) after every step of `plan`."""
    records = []
    for step in plan.steps:
        label = f"{step.kind} {'x' + str(step.factor) + ' ' if step.factor else ''}{step.method}"
        progress = lambda done, total, label=label: report(label, done, total)  # noqa: E731
        record: dict[str, Any] = {"step": step.kind, "method": step.method, "factor": step.factor}
        if step.kind == "interpolate":
            frames = _interpolate(frames, fps, step, progress, record)
            fps = fps * step.factor
        else:
            frames = _upscale(frames, step, progress, record)
        count, height, width = frames.shape[:3]
        record.update(frames=count, width=width, height=height, fps=round(fps, 6))
        records.append(record)
    return frames, fps, records


def _interpolate(frames: np.ndarray, fps: float, step: Step, progress, record: dict[str, Any]) -> np.ndarray:
    if step.method != "rife":
        return ffmpeg.interpolate(frames, fps, step.factor, step.method, progress)
    from vidgen.media.post import rife  # here, not at the top: torch

    path = Path(step.model)
    record["model"] = {**weights.record(path), "architecture": "RIFE HD (ECCV2022-RIFE IFNet_HDv3)", "device": str(rife.device())}
    return rife.interpolate(_loaded("rife", path), frames, step.factor, progress)


def _upscale(frames: np.ndarray, step: Step, progress, record: dict[str, Any]) -> np.ndarray:
    height, width = frames.shape[1:3]
    if step.method == "lanczos":
        return ffmpeg.scale(frames, width * step.factor, height * step.factor, progress)
    path = Path(step.model)
    upscaler = _loaded("upscaler", path)
    record["model"] = {
        **weights.record(path),
        "architecture": upscaler.architecture,
        "scale": upscaler.scale,
        "device": str(upscaler.device),
    }
    frames = upscaler.upscale(frames, progress)
    factor = step.factor or upscaler.scale
    record["factor"] = factor
    if factor != upscaler.scale:  # a 4x model asked for 2x: its output, resized
        ui.info(f"{path.name} upscales {upscaler.scale}x: its frames resized to {factor}x with Lanczos")
        record["resized"] = "lanczos"
        frames = ffmpeg.scale(frames, width * factor, height * factor, progress)
    return frames


def after_decode(frames: np.ndarray, settings: Any, recipe: dict[str, Any], progress: Any) -> tuple[np.ndarray, float]:
    """A generation's --interpolate and --upscale (runner.render, before the write): the
    frames and fps to write, the steps added to `recipe`. Progress shows each step's share
    of its frames on the video's bar."""
    plan = PostPlan.of(settings)
    if not plan.steps:
        return frames, settings.fps
    shown = {"label": None}

    def report(label: str, done: int, total: int) -> None:
        if label != shown["label"]:
            progress.phase(label)
            shown["label"] = label
        progress.step(round(progress.total_steps * done / max(total, 1)))

    frames, fps, recipe["post"] = apply(frames, settings.fps, plan, report)
    return frames, fps
