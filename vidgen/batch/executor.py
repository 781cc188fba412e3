"""Step 4 of a batch, one video: `Executor`, the public interface that makes a batch's videos
in one process and returns each one's manifest record.

The local batch (run.py, and so each `--processes` shard and a server's batch job) and each
of Ray's actors (cluster.py) hold one Executor: `load(settings)` keeps one pipeline while the
lines' loading settings stay the same, `make(job, progress)` makes a video through
vidgen.engine.making.make_video and returns its record, `failed(job, error)` the record of a video
that cannot be made. Publishing a record (the manifest, standard output) is the caller's: the
local batch appends it at once, a Ray actor hands it to the driver, which appends it.

A record is the video's `VideoResult` (making.py) without `path` (DIR can move: `output` is
relative to it) and the batch's own fields: `line`, `video`, `output`, `status`, `error`,
`process`, `finished_at`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidgen import ui
from vidgen.batch.folder import folder_identity
from vidgen.batch.plan import Job, inside
from vidgen.engine import parallel
from vidgen.engine.generate import VideoGenerator
from vidgen.engine.making import Inputs, MakeContext, VideoJob, VideoResult, make_video
from vidgen.engine.pipeline_cache import loading_key, obtain_pipeline
from vidgen.engine.prepare import merge_settings
from vidgen.environment import PROCESS, Environment
from vidgen.errors import ExitCode, GenerationError, VidgenError
from vidgen.media.conditioning import load_conditioning_image, load_input_video
from vidgen.processes import Processes
from vidgen.settings.layers import fit_frames_to_video
from vidgen.settings.runfacts import RunFacts
from vidgen.settings.table import GenerationSettings


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Lines:
    """What every line's settings are merged from again when its video is made: the preset
    (presets.Preset), `--model`, the command line's settings and `--strict`."""

    chosen: Any
    model: str | None
    flags: dict[str, Any]
    strict: bool


@dataclass
class Executor:
    """Makes a batch's videos in this process, one at a time, into `out_dir`.

    `identity` is DIR's (device, inode) when the batch started (folder.folder_identity): a
    video is not made into a folder that replaced it. `processes` is this process's place in
    a launcher's group; in a `--parallel` group the first process writes and records for all."""

    out_dir: Path
    identity: tuple[int, int]
    lines: Lines
    env: Environment = PROCESS  # where a line's relative image and video paths are
    processes: Processes = field(default_factory=Processes)
    debug: bool = False  # a pipeline's own failure shows its traceback
    generator: Any = None
    loaded_key: Any = None  # pipeline_cache.loading_key of the pipeline in hand
    images: dict[str, Any] = field(default_factory=dict)
    input_video: tuple[str, Any] | None = None  # the last input video read: (path, frames); lines often share one

    @property
    def speaks(self) -> bool:
        """Whether this process writes its videos and records: each its own, but in a
        `--parallel` group only the first, for the group."""
        return self.processes.is_main or not self.lines.flags.get("parallel")

    def settings(self, job: Job) -> GenerationSettings:
        """A line's settings, merged again (they were checked when the batch was planned)."""
        lines = self.lines
        settings, _ = merge_settings(lines.chosen, [lines.flags, job.line_values()], model=lines.model, strict=lines.strict, env=self.env)
        if self.processes.device and settings.device == "auto":
            settings = replace(settings, device=self.processes.device)  # accelerate's device for this process
        return settings

    def load(self, settings: GenerationSettings) -> VideoGenerator:
        """The pipeline for these loading settings: the one in hand, or (a line that sets one,
        such as quantize) another, loaded after the one in hand is let go."""
        key = loading_key(settings)
        if self.generator is None or key != self.loaded_key:
            self.generator = None  # its memory goes before the next pipeline loads
            self.generator = VideoGenerator(obtain_pipeline(settings))  # under `vidgen serve`, its cached one
            self.loaded_key = key
        return self.generator

    def check_folder(self) -> None:
        """DIR must still be the folder the batch started in: writing on into a new one
        (removed, or replaced) would scatter the batch over two manifests."""
        try:
            same = folder_identity(self.out_dir) == self.identity
        except OSError:
            same = False
        if not same:
            raise GenerationError(
                f"output folder {self.out_dir} was removed or replaced during the batch; stopped (make it again and run with --resume)"
            )

    def make(self, job: Job, progress: ui.BatchProgress) -> dict[str, Any] | None:
        """Make `job`'s video; its record (`done` or `failed`), or None where this process
        does not record (a `--parallel` group's others). A failed video is a failed record;
        Ctrl-C, a second SIGTERM and DIR gone are raised: they stop the batch."""
        settings = self.settings(job)
        generator = self.load(settings)
        facts = generator.run_facts(settings)  # what ran (dtype, class, the pipeline's defaults): the records hold it
        settings = facts.filled_in(settings)
        self.check_folder()
        started = time.monotonic()
        try:
            target = inside(self.out_dir, job.output)  # again: the folder may have changed
            target.parent.mkdir(parents=True, exist_ok=True)
            settings, inputs = self._inputs(job, settings)
            if settings.parallel:  # this line's size and frames must divide among the group
                parallel.check_sequence(
                    generator.loaded.pipe,
                    settings.parallel,
                    self.processes.count,
                    frames=settings.frames,
                    height=settings.height,
                    width=settings.width,
                )
            # Overwriting is decided before the run (--resume, --overwrite); the
            # temp-then-rename in write_video keeps a killed run from truncating.
            context = MakeContext(
                progress.video,
                f"line {job.line} video {job.video}",
                write=self.speaks,
                parallel=generator.loaded.parallel,
                processes=self.processes.count,
            )
            result = make_video(VideoJob(settings, job.seed, target, inputs, overwrite=True), generator, context)
        except VidgenError as error:
            if error.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
                raise  # Ctrl-C or a second SIGTERM stops the batch; --resume makes this video later
            self.check_folder()  # a write that failed because DIR is gone stops the batch
            return self.failed(job, error.message, settings=recorded(settings, facts), seconds=time.monotonic() - started)
        except OSError as error:  # making a subfolder for the line's output
            self.check_folder()
            return self.failed(
                job,
                f"cannot write {job.output}: {error.strerror or error}",
                settings=recorded(settings, facts),
                seconds=time.monotonic() - started,
            )
        except Exception as error:  # a pipeline's own failure: this video fails, the batch goes on
            if self.debug:
                ui.print_traceback()
            return self.failed(
                job, f"unexpected {type(error).__name__}: {error}", settings=recorded(settings, facts), seconds=time.monotonic() - started
            )
        return None if result is None else self.done(job, result)

    def _inputs(self, job: Job, settings: GenerationSettings) -> tuple[GenerationSettings, Inputs]:
        """The line's image, last image and input video, each read once while lines share it;
        the settings with --frames fitted to the input video."""
        for named in (settings.image, settings.last_image):
            if named and named not in self.images:
                self.images[named] = load_conditioning_image(named, self.env)
        video = None
        if settings.video:
            if self.input_video is None or self.input_video[0] != settings.video:
                self.input_video = (settings.video, load_input_video(settings.video, self.env))
            video = self.input_video[1]
            settings, notes = fit_frames_to_video(settings, self.lines.chosen.constraints, len(video), strict=self.lines.strict)
            for note in notes:
                ui.warn(f"line {job.line}: {note}")
        image = self.images.get(settings.image) if settings.image else None
        return settings, Inputs(image=image, last_image=self.images.get(settings.last_image), video=video)

    def done(self, job: Job, result: VideoResult) -> dict[str, Any]:
        """The record of a video made: its VideoResult (less `path`) and the batch's fields."""
        made = {key: value for key, value in result.to_json().items() if key != "path"}
        return {
            "line": job.line,
            "video": job.video,
            **made,
            "output": job.output,
            "status": "done",
            "error": None,
            "process": self.processes.index,
            "finished_at": _now(),
        }

    def failed(self, job: Job, error: str, *, settings: dict[str, Any] | None = None, seconds: float = 0.0) -> dict[str, Any] | None:
        """The record of a video not made (None where this process does not record): its
        settings (`recorded`), when the line got that far."""
        if not self.speaks:
            return None
        return {
            "line": job.line,
            "video": job.video,
            "prompt": job.prompt,
            "seed": job.seed,
            "sha256": None,
            "seconds": round(seconds, 3),
            "settings": settings,
            "output": job.output,
            "status": "failed",
            "error": error,
            "process": self.processes.index,
            "finished_at": _now(),
        }


def recorded(settings: GenerationSettings, facts: RunFacts) -> dict[str, Any]:
    """A failed video's settings as a record holds them: as merged, with what ran (dtype, class)."""
    return {**settings.as_dict(), **facts.recorded(settings)}
