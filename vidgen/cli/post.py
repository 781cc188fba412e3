"""`vidgen post IN -o OUT --interpolate N --upscale N`: any video vidgen reads, processed
after the fact as `generate --interpolate/--upscale` would have, written atomically.

The flow: 1. the plan and its model files checked (the settings table's limits and checks),
2. the output checked, 3. the input read (frames, frame rate, recipe, sound), 4. the steps
applied with a progress bar each, 5. the recipe (the input's, or one naming the input) with
the steps added, 6. the file written by vidgen.media.video with the sound fitted to it.
Everything a user can get wrong is refused in steps 1 to 3, before any frame is made.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vidgen import __version__, ui
from vidgen.engine.runner import audio_record
from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError
from vidgen.media.audio import Audio, fit_to_video, read_audio, wav_beside
from vidgen.media.post import weights
from vidgen.media.post.apply import apply
from vidgen.media.post.plan import PostPlan, plan_problem
from vidgen.media.readback import probe_video, read_frames, read_recipe
from vidgen.media.video import check_output_path, ffmpeg_exe, output_format, write_video
from vidgen.settings.setting import MAX_SIDE
from vidgen.settings.table import BY_NAME


def check_values(values: dict[str, Any]) -> None:
    """The table's limits, choices and checks for the options given (as settings.validate
    does for a generation); every problem in one line."""
    problems = []
    for name, value in values.items():
        setting = BY_NAME[name]
        if value is None:
            continue
        if setting.minimum is not None and not setting.minimum <= value <= setting.maximum:
            problems.append(f"{setting.label} must be from {setting.minimum:g} to {setting.maximum:g}, got {value}")
        if setting.choices is not None and value not in setting.choices:
            problems.append(f"{setting.label} must be one of {', '.join(setting.choices)}, got {value!r}")
        if setting.check is not None and (problem := setting.check(value)):
            problems.append(problem)
    if problems:
        raise UsageError("; ".join(problems))


def default_output(source: Path) -> Path:
    """clip.mp4 -> clip-post.mp4; frames/ -> frames-post/ (beside the input)."""
    if source.is_dir():
        return source.with_name(f"{source.name}-post")
    return source.with_name(f"{source.stem}-post{source.suffix}")


def read_sound(source: Path) -> Audio | None:
    """The input's soundtrack: its own stream, or the WAV beside a GIF or PNG folder."""
    where = wav_beside(source) if source.is_dir() or source.suffix.lower() == ".gif" else source
    if not where.is_file():
        return None
    try:
        return read_audio(where, ffmpeg_exe())
    except ValueError as error:
        raise UsageError(f"cannot read {where}: {error}") from error


class _Bars:
    """One progress bar a step (apply() reports each step's frames under its label)."""

    def __init__(self):
        self.label, self.bar = None, None

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label:
            self.close()
            self.label, self.bar = label, ui.progress(label, total).__enter__()
        self.bar.step(done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.label, self.bar = None, None


def run_post(
    file: str, output: str | None, values: dict[str, Any], *, overwrite: bool = False, as_json: bool = False, env: Environment = PROCESS
) -> dict[str, Any]:
    """Process `file` into `output` (default: beside it, named -post); report the path or JSON."""
    source = env.path(file)
    if not source.exists():
        raise UsageError(f"no such file: {source}")
    # 1. The plan, checked.
    values = dict(values)
    crf = values.pop("crf", None)
    check_values(values)
    plan = PostPlan.of(values)
    if problem := plan_problem(values):
        raise UsageError(problem)
    if not plan.steps:
        raise UsageError("nothing to do: give --interpolate N, --upscale N, --interpolate-model FILE or --upscale-model FILE")
    # 2. The output, checked.
    target = env.path(output) if output else default_output(source)
    if target.resolve() == source.resolve():
        raise UsageError(f"{target} is the input; give another -o")
    check_output_path(target, overwrite=overwrite)
    # 3. The input.
    info = probe_video(source)  # not a video: UsageError
    if not info.fps > 0:
        raise UsageError(f"cannot tell the frame rate of {source} (a PNG folder without vidgen's recipe.json)")
    upscale = next((step.factor for step in plan.steps if step.kind == "upscale"), 1)  # 0: a model's own, known once loaded
    if max(info.width, info.height) * upscale > MAX_SIDE:
        raise UsageError(f"{info.width}x{info.height} upscaled {upscale}x is wider than {MAX_SIDE} pixels, the encoders' limit")
    frames = read_frames(source)
    recipe = read_recipe(source)
    sound = read_sound(source)

    # 4. The steps.
    started = time.monotonic()
    bars = _Bars()
    try:
        frames, fps, steps = apply(frames, info.fps, plan, bars)
    finally:
        bars.close()
    # 5. The recipe: the input's, with the steps added.
    if recipe is None:
        recipe = {
            "vidgen_version": __version__,
            "source": {
                "file": source.name,
                **({"sha256": weights.sha256(source)} if source.is_file() else {}),
                "frames": info.frames,
                "fps": info.fps,
                "width": info.width,
                "height": info.height,
            },
        }
    recipe["post"] = [*(recipe.get("post") or []), *steps]
    fmt = output_format(target)
    if sound is not None:
        sound = fit_to_video(sound, len(frames), fps)
    recipe["audio"] = audio_record(sound, fmt)
    # 6. The file.
    ui.writing(target)
    write_video(
        frames, target, fps=fps, crf=crf if crf is not None else BY_NAME["crf"].default, recipe=recipe, overwrite=overwrite, audio=sound
    )
    count, height, width = frames.shape[:3]
    result = {
        "path": str(target.resolve()),
        "frames": count,
        "fps": round(fps, 6),
        "width": width,
        "height": height,
        "audio": sound is not None,
        "steps": steps,
        "seconds": round(time.monotonic() - started, 3),
    }
    if sound is not None and fmt in ("gif", "png"):
        ui.warn(f"{'a GIF carries' if fmt == 'gif' else 'PNG frames carry'} no sound: the audio is in {wav_beside(target)}")
    if as_json:
        ui.emit_json(result)
    else:
        ui.emit_result(result["path"])
    return result
