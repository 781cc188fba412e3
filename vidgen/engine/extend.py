"""Longer than one window: how a video is continued, planned before anything loads.

A model makes at most the frames it was trained for in one call (Wan: 81). A longer video,
or a video that goes on from one the user has (`vidgen extend`), is made in windows: each
window is one pipeline call of at most that length, conditioned on the last K frames of the
video so far (the overlap), and adds its frames after the overlap. The output is the frames
before (unchanged) then each window's new frames; the window's own rendering of the overlap
is dropped, so no frame is repeated or missing at a join (vidgen.media.colormatch uses it to undo
the window's colour drift).

How a pipeline takes the frames it continues (`MODES`, by pipeline class):

- mask: Wan VACE. `video` holds the K kept frames then grey, `mask` is black (keep) on
  those K and white (make) after (WanVACEPipeline's docstring example: black = condition).
- image: image-to-video pipelines: the last frame is the start image, so K = 1.
- video: LTXConditionPipeline: the K frames as a video condition at frame 0 (strength 1);
  it takes 8k+1 frames (its trim_conditioning_sequence).

This module plans (windows, their frames, seeds and prompts; the refusals of bad input);
vidgen.engine.windows runs the plan. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vidgen.errors import UsageError


@dataclass(frozen=True)
class Mode:
    kind: str  # "mask", "image" or "video"
    overlap: int  # K when neither --overlap nor the preset says
    overlap_step: int = 1  # K must be overlap_step * k + overlap_offset
    overlap_offset: int = 0
    why: str = ""


# Pipelines vidgen can continue a video with, and how (covered by tests/test_extend.py on
# tiny real pipelines: WanVACEPipeline, WanImageToVideoPipeline, LTXConditionPipeline).
MODES: dict[str, Mode] = {
    # Wan2GP's default sliding window keeps 5 frames (deepbeepmeep/Wan2GP models/_settings.json,
    # "sliding_window_overlap": 5): one latent frame of 1 and one of 4 under Wan's VAE.
    "WanVACEPipeline": Mode("mask", 5),
    "WanImageToVideoPipeline": Mode("image", 1, why="continues from one frame, the last"),
    "LTXImageToVideoPipeline": Mode("image", 1, why="continues from one frame, the last"),
    # LTXConditionPipeline trims a video condition to 8k+1 frames; 9 is two latent frames.
    "LTXConditionPipeline": Mode("video", 9, 8, 1, why="conditions on 8k+1 frames"),
}


def mode_for(pipeline_class: str | None) -> Mode | None:
    return MODES.get(pipeline_class or "")


def refuse_unless_continuable(preset_name: str, pipeline_class: str | None) -> Mode:
    """The preset's mode, or one line and exit 2 for a preset whose pipeline cannot take frames."""
    mode = mode_for(pipeline_class)
    if mode is None:
        known = ", ".join(MODES)
        raise UsageError(
            f"preset {preset_name} ({pipeline_class or 'any pipeline'}) cannot continue a video; "
            f"windows need a pipeline that takes frames ({known}), e.g. --preset wan2.1-vace-1.3b"
        )
    return mode


def choose_overlap(mode: Mode, pipeline_class: str, asked: int | None) -> int:
    """K: --overlap (or the preset's), else the mode's; checked against what the pipeline takes."""
    overlap = mode.overlap if asked is None else asked
    if mode.kind == "image" and overlap != 1:
        raise UsageError(f"--overlap {overlap}: {pipeline_class} {mode.why}; leave out --overlap")
    if overlap < 1 or (overlap - mode.overlap_offset) % mode.overlap_step:
        raise UsageError(f"--overlap {overlap}: {pipeline_class} {mode.why or 'needs at least 1 frame'} (e.g. {mode.overlap})")
    return overlap


@dataclass
class Window:
    index: int  # from 1
    frames: int  # the pipeline call's length
    keep: int  # frames it continues (the overlap); 0 for a first window made from the prompt alone
    new: int  # frames it adds to the output (after its `keep`, the rest trimmed)
    start: int  # where those frames start in the output
    seed: int
    prompt: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


def valid_length(frames: int, step: int, offset: int, minimum: int) -> int:
    """The smallest frame count of the rule step*k + offset that is at least `frames` and `minimum`."""
    wanted = max(frames, minimum)
    return offset + step * max(0, math.ceil((wanted - offset) / step))


def plan_windows(
    *, before: int, add: int, window: int, overlap: int, rule, seed: int, prompts: list[str], first_from_prompt: bool = False
) -> list[Window]:
    """Windows that add `add` frames after `before` frames: full windows, then a last one only
    as long as the rule needs (its extra frames trimmed). With `first_from_prompt` the first
    window makes the video's start (no overlap). `prompts`: one per window or one for all."""
    if overlap >= window:
        raise UsageError(
            f"--overlap {overlap} is not less than a window of {window} frames: a window would add nothing (at most {window - 1})"
        )
    windows: list[Window] = []
    made, position = 0, before
    while made < add:
        keep = 0 if first_from_prompt and not windows else overlap
        new = min(window - keep, add - made)
        frames = window if new == window - keep else valid_length(keep + new, rule.frames_step, rule.frames_offset, rule.min_frames)
        index = len(windows)
        windows.append(Window(index + 1, frames, keep, new, position, seed + index, ""))
        made += new
        position += new
    for window_, prompt in zip(windows, window_prompts(prompts, windows)):
        window_.prompt = prompt
    return windows


def window_prompts(prompts: list[str], windows: list[Window], shots: list[tuple[int, int]] | None = None) -> list[str]:
    """One prompt per window: the one prompt, or with a storyboard (`shots`: each shot's
    [start, end) frames) the shot in which the window's middle new frame falls."""
    if not shots:
        return [prompts[0]] * len(windows)
    chosen = []
    for window in windows:
        middle = window.start + window.new // 2
        shot = next((number for number, (_, end) in enumerate(shots) if middle < end), len(shots) - 1)
        chosen.append(prompts[shot])
    return chosen


def check_input(frames: int, overlap: int, size: tuple[int, int], wanted: tuple[int, int], preset_name: str, multiple: int) -> None:
    """The input video against the run: long enough for the overlap, and the size the model makes."""
    if frames < overlap:
        raise UsageError(
            f"the input video has {frames} frame{'s' if frames != 1 else ''}; continuing it needs at least the overlap ({overlap})"
        )
    if size != wanted:
        width, height = size
        if width % multiple or height % multiple:
            raise UsageError(
                f"the input video is {width}x{height}; {preset_name} makes sides divisible by {multiple}: "
                f"resize the video first (the input's frames are kept as they are)"
            )
        raise UsageError(
            f"the input video is {width}x{height} and the run would make {wanted[0]}x{wanted[1]}: pass --size auto (the input's own size)"
        )


def describe(windows: list[Window], *, before: int, fps: float) -> list[str]:
    """A line per window for the terminal (and --dry-run)."""
    lines = []
    for window in windows:
        end = window.start + window.new
        source = f"continues {window.keep} frame{'s' if window.keep != 1 else ''}" if window.keep else "from the prompt"
        trimmed = window.frames - window.keep - window.new
        lines.append(
            f"window {window.index}/{len(windows)}: {window.frames} frames ({source}), adds frames {window.start}-{end - 1} "
            f"({window.new / fps:.2f} s){f', {trimmed} trimmed' if trimmed else ''}, seed {window.seed}: {window.prompt}"
        )
    total = before + sum(window.new for window in windows)
    lines.append(f"{total} frames in all ({total / fps:.2f} s at {fps:g} fps)" + (f", the first {before} from the input" if before else ""))
    return lines


def window_lines(recipe: dict[str, Any]) -> list[str]:
    """`vidgen inspect`: a line per window a video's recipe names."""
    return [
        f"window {window['index']}: frames {window['start']}-{window['start'] + window['new'] - 1}, continues {window['keep']}, "
        f"seed {window['seed']}: {window['prompt']}"
        for window in recipe.get("windows") or []
    ]
