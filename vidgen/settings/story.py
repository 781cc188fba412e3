"""Storyboards: one long video from several prompts, each for a stretch of time.

`vidgen shots.txt --story --preset ltx-video-story -o film.mp4` reads PROMPT as a file with one
shot a line, its length then its prompt:

    4s a fox wakes up in its den
    3.5s the fox trots through the snow
    # comments and blank lines are skipped

The video lasts the shots' summed length (snapped to the model's frame rule, and refused whole,
in one line naming the line, when a shot is malformed or the total is beyond the model's
limit). LTXI2VLongMultiPromptPipeline makes it in overlapping windows of latent frames; each
window takes the prompt of the shot its middle frame falls in (`prompt_segments`), so a shot's
prompt changes only the windows of its stretch and the transitions beside them.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError

_SHOT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)s\s+(\S.*)$")
MAX_SHOTS = 1_000


def read_storyboard(path: str, env: Environment = PROCESS) -> tuple[tuple[float, str], ...]:
    """(seconds, prompt) per shot; any bad line refuses the whole storyboard, naming it."""
    source = env.path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read storyboard {path}: {getattr(error, 'strerror', None) or error}") from None
    shots = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = _SHOT.match(line)
        if not found:
            raise UsageError(
                f"storyboard {path} line {number}: a shot is its length then its prompt, e.g. '4s a fox wakes up in its den'; got {line!r}"
            )
        seconds = float(found.group(1))
        if not seconds > 0:
            raise UsageError(f"storyboard {path} line {number}: a shot must last more than 0 s, got {found.group(1)}s")
        shots.append((seconds, found.group(2).strip()))
    if not shots:
        raise UsageError(f"storyboard {path} has no shots (one a line: '4s a fox wakes up in its den')")
    if len(shots) > MAX_SHOTS:
        raise UsageError(f"storyboard {path} has {len(shots)} shots; at most {MAX_SHOTS}")
    return tuple(shots)


def expand(prompt: str, overrides: dict[str, Any], env: Environment = PROCESS) -> tuple[str, dict[str, Any]]:
    """With --story: the prompt (every shot's, joined by ' | ' as LTX's multi-prompt pipeline splits
    them) and the overrides with the storyboard's shots and its length in seconds."""
    if not overrides.get("story"):
        return prompt, overrides
    if overrides.get("frames") is not None or overrides.get("seconds") is not None:
        raise UsageError("a storyboard's length is its shots' summed length: leave out --frames and --seconds")
    shots = read_storyboard(prompt, env)
    return " | ".join(text for _, text in shots), {**overrides, "shots": shots, "seconds": sum(seconds for seconds, _ in shots)}


def check_length(settings, rule) -> None:
    """The summed length must fit the model: snapping may move it to the frame rule, never cut it."""
    if settings.shots and rule.max_frames is not None:
        wanted = round(sum(seconds for seconds, _ in settings.shots) * settings.fps)
        if wanted > rule.max_frames:
            limit = rule.max_frames / settings.fps
            raise UsageError(
                f"the storyboard lasts {wanted / settings.fps:g} s ({wanted} frames at {settings.fps:g} fps); "
                f"this model makes at most {rule.max_frames} frames ({limit:g} s)"
            )


def shot_frames(settings) -> list[tuple[int, int]]:
    """Each shot's [start, end) frames in the video as made (its share of the snapped length)."""
    total = sum(seconds for seconds, _ in settings.shots)
    bounds, elapsed = [], 0.0
    for seconds, _ in settings.shots:
        start = round(elapsed / total * settings.frames)
        elapsed += seconds
        bounds.append((start, round(elapsed / total * settings.frames)))
    return bounds


def segments(pipe: Any, settings, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """`prompt_segments` for LTXI2VLongMultiPromptPipeline: each of its windows (computed as it
    computes them, from its own module) gets the shot its middle frame falls in."""
    parameters = inspect.signature(type(pipe).__call__).parameters
    compression = pipe.vae_temporal_compression_ratio
    tile = max(1, arguments.get("temporal_tile_size", parameters["temporal_tile_size"].default) // compression)
    overlap = max(0, arguments.get("temporal_overlap", parameters["temporal_overlap"].default) // compression)
    split = sys.modules[type(pipe).__module__].split_into_temporal_windows
    windows = split((settings.frames - 1) // compression + 1, tile, overlap, compression)
    bounds = shot_frames(settings)
    result = []
    for index, (start, end) in enumerate(windows):
        middle = (start + end - 1) / 2 * compression  # a latent frame stands for `compression` video frames
        shot = next((number for number, (_, last) in enumerate(bounds) if middle < last), len(bounds) - 1)
        result.append({"start_window": index, "end_window": index, "text": settings.shots[shot][1]})
    return result


def record(settings) -> list[dict[str, Any]]:
    """The recipe's `story`: each shot's length, prompt and frames."""
    return [
        {"seconds": seconds, "prompt": text, "frames": list(frames)}
        for (seconds, text), frames in zip(settings.shots, shot_frames(settings))
    ]
