"""One video made, whatever the front door: `make_video(job, generator, context)` and its
record, `VideoResult`.

`vidgen generate` (single.run), a batch's `Executor` (the local batch, its `--processes`
shards and Ray's actors) and so a server's jobs, which run those two, all make a video here:
what runs (generator.run_facts: the pipeline's defaults, dtype and class), the seed said,
the progress bar, one `runner.render` (frames, post-processing, the file written atomically), the warning that a
GIF or PNG folder carries no sound, and the record. What differs between the front doors is
data (`VideoJob`, `MakeContext`), not a branch: where the progress goes, whether this process
writes (a `--parallel` group's first only), and how the result is reported, which stays with
the caller (`vidgen generate` prints the path or `to_json()`, a batch adds its own fields and
appends the record to its manifest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidgen import ui
from vidgen.engine.runner import render
from vidgen.media.audio import wav_beside
from vidgen.media.post.plan import file_fields
from vidgen.media.readback import file_sha256
from vidgen.media.video import output_format
from vidgen.settings.table import GenerationSettings


@dataclass(frozen=True)
class Inputs:
    """What conditions a video, read before it is made (conditioning): `--image`,
    `--last-image`, `--video` (frames) and `--mask`."""

    image: Any = None
    last_image: Any = None
    video: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class VideoJob:
    """One video to make: its settings (merged and checked), its seed, where it goes (None:
    standard output, as MP4 bytes) and its inputs."""

    settings: GenerationSettings  # as asked: make_video fills in the pipeline's own defaults
    seed: int
    path: Path | None
    inputs: Inputs = Inputs()
    overwrite: bool = False  # decided by the caller: --overwrite, or a batch's own checks before it starts


@dataclass(frozen=True)
class MakeContext:
    """Where a video's progress goes and whether this process writes it."""

    bar: Callable[[str, int], ui.Progress] | None = (
        None  # (label, steps) -> a step bar; None: ui.progress; a batch's: a row under its overall bar
    )
    label: str = "video"
    write: bool = True  # False: a process of a `--parallel` group other than the first, which writes for the group
    parallel: str | None = None  # the denoiser's split as the loaded pipeline holds it (--parallel), recorded
    processes: int = 1  # the group's size, recorded with `parallel`


@dataclass(frozen=True)
class VideoResult:
    """What `vidgen generate --json` prints for a video, and what a batch's manifest record holds
    besides its own fields (`line`, `video`, `output`, `status`, `error`, `process`, ...).

    `frames`, `fps`, `width` and `height` are the written file's (after --interpolate and
    --upscale); `settings` is the recipe embedded in the file (the key a manifest has always
    used for it); `sha256` is the written file's (None for a PNG folder or standard output);
    `parallel`/`processes` only with --parallel and `windows` only for a video made in windows
    (vidgen.engine.windows), each left out of the JSON otherwise."""

    path: str  # absolute; "-": standard output
    prompt: str
    seed: int
    frames: int
    fps: float
    width: int
    height: int
    model: str
    preset: str | None
    quantize: str | None
    audio: bool
    seconds: float
    sha256: str | None
    settings: dict[str, Any]
    parallel: str | None = None
    processes: int | None = None
    windows: int | None = None
    data: bytes | None = field(default=None, repr=False, compare=False)  # the MP4 bytes for `-o -`; never in the JSON

    def to_json(self) -> dict[str, Any]:
        record = {
            "path": self.path,
            "prompt": self.prompt,
            "seed": self.seed,
            "frames": self.frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "preset": self.preset,
            "quantize": self.quantize,
        }
        if self.parallel is not None:
            record.update(parallel=self.parallel, processes=self.processes)
        if self.windows is not None:
            record["windows"] = self.windows
        record.update(audio=self.audio, seconds=self.seconds, sha256=self.sha256, settings=self.settings)
        return record


def result_of(
    settings: GenerationSettings,
    seed: int,
    path: Path | None,
    recipe: dict[str, Any],
    *,
    seconds: float,
    data: bytes | None = None,
    parallel: str | None = None,
    processes: int = 1,
    windows: int | None = None,
) -> VideoResult:
    """The record of a written video from its recipe (also vidgen.engine.windows', whose videos are many calls)."""
    written = path is not None and path.is_file()
    return VideoResult(
        path="-" if path is None else str(path.resolve()),
        prompt=settings.prompt,
        seed=seed,
        **file_fields(recipe, settings.fps),
        model=recipe["model"],
        preset=settings.preset,
        quantize=settings.quantize,
        audio=bool(recipe["audio"]),
        seconds=round(seconds, 3),
        sha256=file_sha256(path) if written else None,
        settings=recipe,
        parallel=parallel,
        processes=processes if parallel else None,
        windows=windows,
        data=data,
    )


def make_video(job: VideoJob, generator, context: MakeContext = MakeContext()) -> VideoResult | None:
    """Make one video with `generator` (generate.VideoGenerator) and write it (context.write);
    its record, or None where this process does not write. Errors are raised as they come
    (VidgenError, the pipeline's own): the caller decides whether they end the run."""
    facts = generator.run_facts(job.settings)  # what ran (dtype, class, the pipeline's defaults): the recipe records it
    settings = facts.filled_in(job.settings)  # the same settings again where a caller filled them in already
    ui.info(f"seed {job.seed}")
    started = time.monotonic()
    with (context.bar or ui.progress)(context.label, settings.steps or 0) as bar:
        recipe, data = render(
            generator,
            settings,
            job.seed,
            facts=facts,
            path=job.path,
            image=job.inputs.image,
            video=job.inputs.video,
            mask=job.inputs.mask,
            progress=bar,
            overwrite=job.overwrite,
            last_image=job.inputs.last_image,
            write=context.write,
        )
    if not context.write:
        return None
    path = job.path
    if recipe["audio"] and path is not None and output_format(path) in ("gif", "png"):
        kind = "a GIF carries" if output_format(path) == "gif" else "PNG frames carry"
        ui.warn(f"{kind} no sound: the audio is in {wav_beside(path)}")
    return result_of(
        settings,
        job.seed,
        path,
        recipe,
        seconds=time.monotonic() - started,
        data=data,
        parallel=context.parallel,
        processes=context.processes,
    )
