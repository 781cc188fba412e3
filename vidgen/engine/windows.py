"""Windows, run: `vidgen extend IN PROMPT`, and `vidgen PROMPT` longer than one window of a
preset that can continue a video (vidgen.engine.extend plans them; this module makes them).

One pipeline call a window, each continuing the last frames of the video so far; the frames
made so far are held in CPU memory as uint8 (the card holds one window's latents at a time)
and, after each window but the last, written beside the output as OUT.so-far.mp4 with its
recipe, so that a failed or interrupted run leaves them on disk and `vidgen extend` can go
on from them. Each window's new frames are colour-matched to the frames they continue
(vidgen.media.colormatch, --color-match). The recipe names every window (seed, prompt, frames).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vidgen import ui
from vidgen.engine.extend import (
    Mode,
    Window,
    check_input,
    choose_overlap,
    describe,
    mode_for,
    plan_windows,
    refuse_unless_continuable,
    window_prompts,
)
from vidgen.engine.generate import VideoGenerator
from vidgen.engine.making import VideoResult, result_of
from vidgen.engine.pipeline_cache import obtain_pipeline
from vidgen.engine.prepare import merge_settings
from vidgen.engine.runner import build_recipe
from vidgen.environment import PROCESS, Environment
from vidgen.errors import GenerationError, UsageError
from vidgen.media import colormatch
from vidgen.media.conditioning import load_conditioning_image, load_input_video
from vidgen.media.post.apply import after_decode
from vidgen.media.readback import probe_video
from vidgen.media.video import check_encoder, check_output_path, encode_mp4_bytes, output_format, prompt_slug, write_video
from vidgen.settings import story
from vidgen.settings.layers import build_settings, draw_seed, frames_rule_text, nearest_valid_frames
from vidgen.settings.presets import Preset, choose_preset
from vidgen.settings.runfacts import RunFacts
from vidgen.settings.table import BY_NAME, GenerationSettings

GREY = 128  # the frames VACE makes, under a white mask (diffusers' WanVACEPipeline example fills them with 128)
SO_FAR = ".so-far.mp4"


def _asked_frames(overrides: dict[str, Any], fps: float) -> int | None:
    if overrides.get("frames") is not None:
        return overrides["frames"]
    if overrides.get("seconds") is not None:
        return round(overrides["seconds"] * fps)
    return None


def wanted(preset: str | None, model: str | None, overrides: dict[str, Any]) -> bool:
    """Whether `vidgen generate` with these options runs in windows: a preset that can continue
    a video, no --video, and more frames than one window (or Wan VACE from the prompt alone,
    or a storyboard)."""
    if overrides.get("video"):
        return False
    chosen = choose_preset(preset, model)
    if mode_for(chosen.pipeline) is None or chosen.stages:
        return False
    if overrides.get("story") or chosen.task == "video-to-video":
        return True
    fps = overrides.get("fps") or chosen.defaults.get("fps") or BY_NAME["fps"].default
    frames = _asked_frames(overrides, fps)
    window = overrides.get("window") or chosen.defaults.get("frames") or chosen.constraints.max_frames
    return frames is not None and window is not None and frames > window


@dataclass
class WindowedRun:
    settings: GenerationSettings  # frames: one window's length
    chosen: Preset
    mode: Mode
    windows: list[Window]
    before: np.ndarray | None = None  # the input video's frames (vidgen extend)
    source: str | None = None  # the input as given
    image: Any = None  # VACE's reference image, or the first window's start image

    @property
    def frames(self) -> int:
        return (0 if self.before is None else len(self.before)) + sum(window.new for window in self.windows)


def prepare(
    prompt: str,
    *,
    preset: str | None,
    model: str | None,
    overrides: dict[str, Any],
    strict: bool = False,
    env: Environment = PROCESS,
    source: str | None = None,
) -> WindowedRun:
    """Settings, windows and inputs, every bad input refused before anything loads. `source`:
    the video to continue (vidgen extend); --frames and --seconds then say how much to add."""
    chosen = choose_preset(preset, model)
    mode = refuse_unless_continuable(chosen.name, chosen.pipeline)
    if chosen.stages:
        raise UsageError(f"preset {chosen.name} makes its video in stages; windows need a preset of one pipeline call")
    if source is not None and mode.kind != "mask" and overrides.get("image"):
        raise UsageError(f"{chosen.pipeline} continues from the input's last frame: vidgen extend with {chosen.name} takes no --image")
    if overrides.get("num_videos") not in (None, 1):
        raise UsageError("a video made in windows is one video at a time: leave out --num-videos")
    if overrides.get("parallel"):
        raise UsageError("--parallel splits one pipeline call; windows are several: leave out --parallel")
    before, info = None, None
    if source is not None:
        before = load_input_video(source, env)
        info = probe_video(env.path(source))
        overrides = {**overrides, "fps": info.fps or chosen.defaults.get("fps") or BY_NAME["fps"].default}  # the input plays as it did
    prompt, overrides = story.expand(prompt, overrides, env)
    # Windows after the first are made as the mode says; a first window made from scratch is the
    # preset's own call, from the prompt for Wan VACE (no --video), from --image for image-to-video.
    layered = replace(chosen, task="text-to-video") if source is not None or chosen.task == "video-to-video" else chosen
    asked = build_settings(layered, [{"prompt": prompt, **overrides}], model=model)
    given = overrides.get("frames") is not None or overrides.get("seconds") is not None
    rule = chosen.constraints
    window = asked.window or chosen.defaults.get("frames") or rule.max_frames
    if window is None:
        raise UsageError(f"preset {chosen.name} names no window length: give --window N")
    snapped = nearest_valid_frames(window, rule)
    if snapped != window and strict:
        raise UsageError(f"--window {window} is not valid ({frames_rule_text(rule)}; nearest {snapped}) (--strict)")
    if snapped != window:
        ui.warn(f"window {window} -> {snapped}: this model takes {frames_rule_text(rule)} frames")
    rest = {key: value for key, value in overrides.items() if key not in ("frames", "seconds")}
    # --size auto (the image-to-video presets' default) continues a video at its own size (check_input
    # still wants the model's multiple).
    settings, changes = merge_settings(
        layered,
        [{"prompt": prompt, **rest, "frames": snapped}],
        model=model,
        strict=strict,
        env=env,
        video_size=None if info is None else (info.width, info.height),
    )
    for change in changes:
        ui.warn(change)
    overlap = choose_overlap(mode, chosen.pipeline, settings.overlap)
    if settings.seed is None:
        settings = replace(settings, seed=draw_seed())
    if before is not None:
        check_input(len(before), overlap, (info.width, info.height), (settings.width, settings.height), chosen.name, rule.size_multiple)
        add = asked.frames if given else snapped - overlap
        windows = plan_windows(
            before=len(before), add=add, window=snapped, overlap=overlap, rule=rule, seed=settings.seed, prompts=[prompt]
        )
    else:
        total = asked.frames if given else snapped
        windows = plan_windows(
            before=0, add=total, window=snapped, overlap=overlap, rule=rule, seed=settings.seed, prompts=[prompt], first_from_prompt=True
        )
    if settings.shots:  # a storyboard: each window its shot's prompt
        bounds, elapsed, length = [], 0.0, sum(seconds for seconds, _ in settings.shots)
        total = sum(window.new for window in windows)
        for seconds, _ in settings.shots:
            start = round(elapsed / length * total)
            elapsed += seconds
            bounds.append((start, round(elapsed / length * total)))
        for window, text in zip(windows, window_prompts([text for _, text in settings.shots], windows, bounds)):
            window.prompt = text
    settings = replace(settings, overlap=overlap, window=snapped)
    image = load_conditioning_image(settings.image, env) if settings.image else None
    return WindowedRun(settings, chosen, mode, windows, before, source, image)


def show_plan(run: WindowedRun) -> list[str]:
    """The lines said before the work starts (and by --dry-run)."""
    head = f"{len(run.windows)} window{'s' if len(run.windows) != 1 else ''} of at most {run.settings.window} frames, overlap {run.settings.overlap}"
    if run.source is not None:
        head = f"continuing {run.source} ({len(run.before)} frames) in " + head
    return [head] + describe(run.windows, before=0 if run.before is None else len(run.before), fps=run.settings.fps)


def dry_run_report(run: WindowedRun) -> dict[str, Any]:
    settings = run.settings
    return {
        "prompt": settings.prompt,
        "preset": settings.preset,
        "model": settings.location.location,
        "pipeline": settings.pipeline_class,
        "input": run.source,
        "input_frames": None if run.before is None else len(run.before),
        "width": settings.width,
        "height": settings.height,
        "fps": settings.fps,
        "window": settings.window,
        "overlap": settings.overlap,
        "color_match": settings.color_match,
        "frames": run.frames,
        "windows": [window.record() for window in run.windows],
        "lines": show_plan(run),
    }


# ---- making them ----


def _output_path(run: WindowedRun, output: str | None, overwrite: bool, as_json: bool, env: Environment) -> Path | None:
    """As vidgen generate plans one output: None is standard output."""
    if output == "-":
        if as_json:
            raise UsageError("--json and -o - both need standard output; give an output path with --json")
        check_encoder("mp4")
        return None
    path = env.path(output) if output else env.folder() / f"{prompt_slug(run.settings.prompt)}-{run.settings.seed}.mp4"
    output_format(path)
    check_output_path(path, overwrite=overwrite)
    return path


def so_far_path(path: Path | None, run: WindowedRun, env: Environment) -> Path:
    """Where the windows made so far are kept: beside the output (OUT.so-far.mp4)."""
    if path is None:
        return env.folder() / f"{prompt_slug(run.settings.prompt)}-{run.settings.seed}{SO_FAR}"
    return path.with_name(path.name.rstrip("/") + SO_FAR)


def _recipe(run: WindowedRun, frames: np.ndarray, done: list[Window], facts: RunFacts) -> dict[str, Any]:
    recipe = build_recipe(replace(run.settings, frames=len(frames)), run.settings.seed, frames, facts)
    recipe["windows"] = [window.record() for window in done]
    if run.source is not None:
        recipe["extended_from"] = {"path": run.source, "frames": len(run.before)}
    recipe["audio"] = False
    return recipe


def _make_window(generator: VideoGenerator, run: WindowedRun, window: Window, video: np.ndarray | None, progress) -> np.ndarray:
    """One pipeline call: the window's frames (T, H, W, 3) as the pipeline made them."""
    settings = replace(run.settings, frames=window.frames, prompt=window.prompt, input_frames=window.frames, shots=())
    reference = run.image if run.mode.kind == "mask" else None
    if not window.keep:  # the first window of a new video: the preset's own call
        return generator.generate(settings, window.seed, image=run.image, progress=progress)
    kept = video[-window.keep :]
    if run.mode.kind == "mask":
        make = window.frames - window.keep
        control = np.concatenate([kept, np.full((make, *kept.shape[1:]), GREY, np.uint8)])
        mask = np.concatenate([np.zeros_like(kept), np.full((make, *kept.shape[1:]), 255, np.uint8)])
        return generator.generate(settings, window.seed, image=reference, video=control, mask=mask, progress=progress)
    if run.mode.kind == "image":
        return generator.generate(settings, window.seed, image=Image.fromarray(kept[-1]), progress=progress)
    return generator.generate(replace(settings, input_frames=window.keep), window.seed, video=kept, progress=progress)


def _join(run: WindowedRun, window: Window, made: np.ndarray, video: np.ndarray | None) -> np.ndarray:
    """The video so far with the window's new frames after it (colour-matched)."""
    if video is not None and made.shape[1:] != video.shape[1:]:
        raise GenerationError(f"window {window.index} came out {made.shape[2]}x{made.shape[1]}, not {video.shape[2]}x{video.shape[1]}")
    if len(made) < window.keep + window.new:
        raise GenerationError(f"window {window.index} made {len(made)} frames, not {window.frames}")
    new = made[window.keep : window.keep + window.new]
    if window.keep and run.settings.color_match > 0:
        new = colormatch.match_window(new, made[: window.keep], video[-window.keep :], run.settings.color_match)
    return new if video is None else np.concatenate([video, new])


def make(
    run: WindowedRun, *, path: Path | None, overwrite: bool, env: Environment = PROCESS
) -> tuple[np.ndarray, float, dict[str, Any], bytes | None]:
    """Every window in order; the video written to `path` (None: returned as MP4 bytes): its frames and fps as written."""
    location = run.settings.location
    loaded = obtain_pipeline(run.settings, pull_hint=f"vidgen pull {run.chosen.name if run.chosen.source else location.location}")
    generator = VideoGenerator(loaded)
    facts = generator.run_facts(run.settings)  # what ran (dtype, class, the pipeline's defaults): the recipe records it
    run = replace(run, settings=facts.filled_in(run.settings))  # every window runs with the pipeline's defaults filled in
    settings = run.settings
    keep_at = so_far_path(path, run, env)
    video, done = run.before, []
    try:
        for window in run.windows:
            with ui.progress(f"window {window.index}/{len(run.windows)}", settings.steps or 0) as bar:
                made = _make_window(generator, run, window, video, bar)
                video = _join(run, window, made, video)
                del made
                if loaded.device.startswith("cuda"):  # the next window starts from an empty card
                    gc.collect()
                    torch.cuda.empty_cache()
                done.append(window)
                if window is not run.windows[-1]:
                    bar.phase("write")
                    write_video(video, keep_at, fps=settings.fps, crf=settings.crf, recipe=_recipe(run, video, done, facts), overwrite=True)
    except (Exception, KeyboardInterrupt):
        if done and keep_at.exists():
            remaining = run.frames - len(video)
            ui.warn(
                f"windows 1-{len(done)} of {len(run.windows)} are in {keep_at} ({len(video)} frames); go on with: vidgen extend "
                f"{keep_at} PROMPT --preset {run.chosen.name} --frames {remaining} -o OUTPUT"
            )
        raise
    recipe = _recipe(run, video, done, facts)
    with ui.progress("video", 100) as bar:
        frames, fps = after_decode(video, settings, recipe, bar)  # --interpolate, --upscale (vidgen/post), on the whole video
    data = None
    if path is None:
        data = encode_mp4_bytes(frames, fps=fps, crf=settings.crf, recipe=recipe)
    else:
        ui.writing(path)
        write_video(frames, path, fps=fps, crf=settings.crf, recipe=recipe, overwrite=overwrite)
    if keep_at.exists() and (run.source is None or env.path(run.source).resolve() != keep_at.resolve()):
        keep_at.unlink()  # the whole video is written: the windows so far are in it
    return frames, fps, recipe, data


def run_windows(
    prompt: str,
    *,
    preset: str | None,
    model: str | None,
    overrides: dict[str, Any],
    strict: bool = False,
    output: str | None = None,
    overwrite: bool = False,
    as_json: bool = False,
    env: Environment = PROCESS,
    source: str | None = None,
) -> VideoResult:
    """`vidgen extend` (with `source`) or a windowed `vidgen generate`: plan, say the plan, make, report."""
    run = prepare(prompt, preset=preset, model=model, overrides=overrides, strict=strict, env=env, source=source)
    path = _output_path(run, output, overwrite, as_json, env)
    for line in show_plan(run):
        ui.info(line)
    started = time.monotonic()
    _, _, recipe, data = make(run, path=path, overwrite=overwrite, env=env)
    result = result_of(
        run.settings, run.settings.seed, path, recipe, seconds=time.monotonic() - started, data=data, windows=len(run.windows)
    )  # frames, fps, width, height: after --interpolate/--upscale
    if path is None:
        ui.emit_bytes(data)
    elif as_json:
        ui.emit_json(result.to_json())
    else:
        ui.emit_result(result.path)
    return result
