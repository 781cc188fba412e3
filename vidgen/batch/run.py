"""Steps 1-5 of a batch put together: read and plan, prepare DIR, make this process's share
of the videos (one manifest record each), then the main process reports.

The prompts file, DIR and the lines' image and video paths, when relative, are taken
from the run's folder, and `-` is its standard input: `env`, the process's own in-process,
a client's under `vidgen serve`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from vidgen import latents, parallel, signals, ui
from vidgen.acceleration import apply_threads
from vidgen.batch.folder import FolderLock, Manifest, file_sha256, finished_jobs, folder_identity, prepare_out_dir, remove_stale_temp_files
from vidgen.batch.gallery import write_gallery
from vidgen.batch.plan import DEFAULT_BASE_SEED, Job, inside, plan_jobs
from vidgen.context import current
from vidgen.processes import Processes, current_processes
from vidgen.errors import SECOND_SIGTERM, ExitCode, GenerationError, Interrupted, UsageError, VidgenError
from vidgen.conditioning import load_conditioning_image, load_input_video
from vidgen.environment import PROCESS, Environment
from vidgen.generate import VideoGenerator, merge_settings
from vidgen.pipeline import check_parallel
from vidgen.presets import choose_preset
from vidgen.prompts import detect_format, open_prompts, read_prompt_lines
from vidgen.request import BatchRequest
from vidgen.runner import loading_key, obtain_pipeline, render
from vidgen.settings import fit_frames_to_video
from vidgen.video import check_encoder


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _terminated_now():
    raise Interrupted(SECOND_SIGTERM, ExitCode.TERMINATED)


def _stop_on_sigterm() -> signals.StopRequest:
    """A first SIGTERM stops the batch after the current video; a second at once
    (Interrupted, exit 143), and write_video then removes the video being written."""
    return signals.after_current_video(second=_terminated_now)


def publish(record: dict[str, Any], manifest: Manifest, out_dir: Path, *, as_json: bool) -> None:
    """A video's record into the manifest, then its path or JSON on stdout (a failure: a warning)."""
    # A record that cannot be written (disk full, DIR removed) stops the batch: going
    # on would make videos that no manifest knows of.
    manifest.append(record)
    if record["status"] == "done":
        path = str(out_dir / record["output"])
        if as_json:
            ui.emit_json({"path": path, **record})
        else:
            ui.emit_result(path)
    else:
        if as_json:
            ui.emit_json({"path": None, **record})
        ui.warn(f"line {record['line']}" + (f" video {record['video']}" if record["output"] else "") + f" failed: {record['error']}")


@dataclass
class _Runner:
    """Generates this process's share, one manifest record per video."""

    out_dir: Path
    manifest: Manifest
    processes: Processes
    as_json: bool
    debug: bool
    chosen: Any  # the preset, for merging each line's settings again
    model: str | None
    flags: dict[str, Any]
    strict: bool
    identity: tuple[int, int]  # DIR's (device, inode) when the batch started
    env: Environment = PROCESS  # where a line's relative image and video paths are
    generator: Any = None
    loaded_key: Any = None  # runner.loading_key of the pipeline in hand
    images: dict[str, Any] = field(default_factory=dict)
    input_video: tuple[str, Any] | None = None  # the last input video read: (path, frames); lines often share one

    @property
    def speaks(self) -> bool:
        """Whether this process writes its videos and records: each its own, but in a
        `--parallel` group only the first, for the group."""
        return self.processes.is_main or not self.flags.get("parallel")

    def record(self, job: Job, status: str, **fields: Any) -> dict[str, Any] | None:
        if not self.speaks:
            return None
        record = self.build_record(job, status, **fields)
        publish(record, self.manifest, self.out_dir, as_json=self.as_json)
        return record

    def build_record(self, job: Job, status: str, *, settings: dict[str, Any] | None = None, sha256: str | None = None, seconds: float = 0.0, error: str | None = None) -> dict[str, Any]:
        return {
            "line": job.line,
            "video": job.video,
            "prompt": job.prompt,
            "seed": job.seed,
            "output": job.output,
            "status": status,
            "sha256": sha256,
            "seconds": round(seconds, 3),
            "error": error,
            "settings": settings,
            "process": self.processes.index,
            "finished_at": _now(),
        }

    def check_folder(self) -> None:
        """DIR must still be the folder the batch started in: writing on into a new one
        (removed, or replaced) would scatter the batch over two manifests."""
        try:
            same = folder_identity(self.out_dir) == self.identity
        except OSError:
            same = False
        if not same:
            raise GenerationError(f"output folder {self.out_dir} was removed or replaced during the batch; stopped (make it again and run with --resume)")

    def _load(self, settings) -> None:
        """The pipeline for this job's loading settings: the one in hand, or (a line that sets one,
        such as quantize) another, loaded after the one in hand is let go."""
        key = loading_key(settings)
        if self.generator is not None and key == self.loaded_key:
            return
        self.generator = None  # its memory goes before the next pipeline loads
        self.generator = VideoGenerator(obtain_pipeline(settings))  # under `vidgen serve`, its cached one
        self.loaded_key = key

    def run(self, job: Job, progress: ui.BatchProgress) -> None:
        settings, _ = merge_settings(self.chosen, [self.flags, job.line_values()], model=self.model, strict=self.strict, env=self.env)  # checked when planned
        if self.processes.device and settings.device == "auto":
            settings = replace(settings, device=self.processes.device)  # accelerate's device for this process
        self._load(settings)
        loaded = self.generator.loaded
        facts = self.generator.run_facts(settings)  # what ran (dtype, class, the pipeline's defaults): the records hold it
        settings = facts.filled_in(settings)

        self.check_folder()
        started = time.monotonic()
        try:
            target = inside(self.out_dir, job.output)  # again: the folder may have changed
            target.parent.mkdir(parents=True, exist_ok=True)
            for named in (settings.image, settings.last_image):
                if named and named not in self.images:
                    self.images[named] = load_conditioning_image(named, self.env)
            image = self.images.get(settings.image) if settings.image else None
            video = None
            if settings.video:
                if self.input_video is None or self.input_video[0] != settings.video:
                    self.input_video = (settings.video, load_input_video(settings.video, self.env))
                video = self.input_video[1]
                settings, notes = fit_frames_to_video(settings, self.chosen.constraints, len(video), strict=self.strict)
                for note in notes:
                    ui.warn(f"line {job.line}: {note}")
            if settings.parallel:  # this line's size and frames must divide among the group
                parallel.check_sequence(loaded.pipe, settings.parallel, self.processes.count, frames=settings.frames, height=settings.height,
                                        width=settings.width)  # fmt: skip
            with progress.video(f"line {job.line} video {job.video}", settings.steps or 0) as bar:
                # Overwriting is decided before the run (--resume, --overwrite); the
                # temp-then-rename in write_video keeps a killed run from truncating.
                recipe, _ = render(self.generator, settings, job.seed, facts=facts, path=target, image=image, video=video, progress=bar, overwrite=True,
                                   last_image=self.images.get(settings.last_image), write=self.speaks)  # fmt: skip
        except VidgenError as error:
            if error.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
                raise  # Ctrl-C or a second SIGTERM stops the batch; --resume makes this video later
            self.check_folder()  # a write that failed because DIR is gone stops the batch
            self.record(job, "failed", settings={**settings.as_dict(), **facts.recorded(settings)}, seconds=time.monotonic() - started, error=error.message)
            return
        except OSError as error:  # making a subfolder for the line's output
            self.check_folder()
            self.record(job, "failed", settings={**settings.as_dict(), **facts.recorded(settings)}, seconds=time.monotonic() - started, error=f"cannot write {job.output}: {error.strerror or error}")
            return
        except Exception as error:  # a pipeline's own failure: this video fails, the batch goes on
            if self.debug:
                ui.print_traceback()
            self.record(job, "failed", settings={**settings.as_dict(), **facts.recorded(settings)}, seconds=time.monotonic() - started, error=f"unexpected {type(error).__name__}: {error}")
            return
        if self.speaks:
            self.record(job, "done", settings=recipe, sha256=file_sha256(target), seconds=time.monotonic() - started)


@dataclass
class _Prepared:
    """What every process knows once the folder is ready."""

    out_dir: Path
    jobs: list[Job]
    skipped: set[tuple[int, int]]
    manifest: Manifest
    run_start: int
    identity: tuple[int, int]


def _read_plan(prompts_file: str, out_dir: Path, env: Environment, *, chosen, model, flags, base_seed, strict, flag_notes: bool, line_notes: bool) -> list[Job]:
    """Steps 1-2: check the flags, read the whole file and plan; nothing is created.
    The command line's notes and each line's are shown if asked for."""
    # Bad flags fail the whole command now (exit 2), not every line one by one. The
    # prompt and image are placeholders: lines bring their own.
    probe = {"prompt": "batch", **flags, "seed": base_seed}
    if chosen.task == "image-to-video" and not probe.get("image"):
        probe["image"] = "from each line"
    if chosen.task == "video-to-video" and not probe.get("video"):
        probe["video"] = "from each line"
    # --size auto reads a batch-wide --image now (its note once), a line's own with the line.
    probed, notes = merge_settings(chosen, [probe], model=model, strict=strict, env=env if flags.get("image") else None)
    latents.check_covered(probed.pipeline_class, probed)  # --preview, --save-latents: the Wan family's
    for note in notes if flag_notes else ():
        ui.warn(note)
    check_encoder("mp4")  # batch videos are MP4 unless a line names .webm or .gif

    # the plan, identical in every process; the whole file is read before DIR is made
    file, name = open_prompts(prompts_file, env)
    with file:
        lines = read_prompt_lines(file, name, detect_format(file, name))
        jobs = plan_jobs(lines, chosen=chosen, model=model, flags=flags, base_seed=base_seed, out_dir=out_dir, strict=strict,
                         shown_notes=set(notes), warn=ui.warn if line_notes else None, env=env)  # fmt: skip
    if not jobs:
        raise UsageError(f"no prompts in {name}")
    return jobs


def check_batch(request: BatchRequest, env: Environment = PROCESS) -> int:
    """Everything a batch checks before it creates anything (options, preset, the whole
    prompts file), without notes: for `--processes`, before any process starts. Returns
    the number of jobs planned; a bad input raises its VidgenError."""
    flags, base_seed = _flags_and_base_seed(request.overrides)
    chosen = choose_preset(request.preset, request.model)
    jobs = _read_plan(request.prompts_file, env.path(request.out_dir), env, chosen=chosen, model=request.model, flags=flags, base_seed=base_seed,
                      strict=request.strict, flag_notes=False, line_notes=False)  # fmt: skip
    return len(jobs)


def _flags_and_base_seed(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """--seed is the base seed lines derive theirs from, not a setting of every line;
    --no-gallery is the batch's (run_batch reads it), not a setting either."""
    flags = {key: value for key, value in overrides.items() if key not in ("seed", "gallery")}
    base_seed = overrides.get("seed")
    return flags, DEFAULT_BASE_SEED if base_seed is None else base_seed


def _prepare(prompts_file: str, out_dir_text: str, processes: Processes, lock: FolderLock, *, chosen, model, flags, base_seed, strict, resume,
             overwrite, env: Environment = PROCESS) -> _Prepared:  # fmt: skip
    """Steps 1-3: read and plan (nothing created yet), then the folder."""
    jobs = _read_plan(prompts_file, env.path(out_dir_text), env, chosen=chosen, model=model, flags=flags, base_seed=base_seed, strict=strict,
                      flag_notes=processes.is_main, line_notes=True)  # fmt: skip
    if flags.get("parallel"):
        # Every job's loading settings are the batch's (parallel is no line key), so the first job's stand for all.
        settings, _ = merge_settings(chosen, [flags, jobs[0].line_values()], model=model, strict=strict, env=env)
        parallel.check_group(settings.parallel, processes.count, command="batch")
        check_parallel(settings, processes.count)
    out_dir = prepare_out_dir(str(env.path(out_dir_text)))

    # 3. the folder
    manifest = Manifest(out_dir)
    if processes.is_main:
        lock.acquire()  # before reading the manifest: another batch may be writing it
    if resume:
        skipped = finished_jobs(manifest, jobs, out_dir)
    else:
        skipped = set()
        existing = [job.output for job in jobs if job.output and (out_dir / job.output).exists()]
        if existing and not overwrite:
            raise UsageError(
                f"{out_dir} already holds {len(existing)} of this batch's videos ({existing[0]}, ...): "
                "pass --resume to keep the finished ones, or --overwrite to make them again"
            )
    if processes.is_main:
        try:
            manifest.repair_torn_end()
            manifest.create()  # fails now (exit 2) if it cannot be written
        except (OSError, GenerationError) as error:
            raise UsageError(f"cannot write {manifest.path}: {error}") from error
        if remove_stale_temp_files(out_dir):
            ui.info(f"removed temporary files of an interrupted run in {out_dir}")
    return _Prepared(out_dir, jobs, skipped, manifest, manifest.size(), folder_identity(out_dir))


def run_batch(request: BatchRequest, env: Environment = PROCESS) -> ExitCode:
    """`vidgen batch`: returns SUCCESS only when every line's every video is done."""
    processes = current_processes()
    if not processes.is_main:
        ui.configure(quiet=True)  # one progress display and one summary: the main process's
    apply_threads(request.threads, local_processes=processes.local_count if processes.state is not None else None)

    model, strict = request.model, request.strict
    flags, base_seed = _flags_and_base_seed(request.overrides)
    lock = FolderLock(env.path(request.out_dir))
    chosen = None
    try:
        prepared: _Prepared | None = None
        error: VidgenError | None = None
        try:
            chosen = choose_preset(request.preset, model)
            prepared = _prepare(request.prompts_file, request.out_dir, processes, lock, chosen=chosen, model=model, flags=flags,
                                base_seed=base_seed, strict=strict, resume=request.resume, overwrite=request.overwrite, env=env)  # fmt: skip
        except VidgenError as failure:
            error = failure
        processes.agree(error, one_voice=True)  # also the barrier: this run's records follow run_start
        code = _run(prepared, processes, env, chosen=chosen, model=model, flags=flags, strict=strict, as_json=request.as_json, debug=request.debug)
        if processes.is_main and request.overrides.get("gallery") is not False:
            _write_gallery(prepared.out_dir)  # once, by the main process, after the others are done, under DIR's lock
        return code
    finally:
        lock.release()


def _write_gallery(out_dir: Path) -> None:
    """DIR/index.html; a page that cannot be written is a warning: the videos are made."""
    try:
        ui.info(f"gallery: {write_gallery(out_dir)}")
    except VidgenError as error:
        ui.warn(f"cannot write the gallery page in {out_dir}: {error.message}")
    except Exception as error:  # the page's own failure (a full disk, a bug) must not fail a batch whose videos are made
        ui.warn(f"cannot write the gallery page in {out_dir}: {type(error).__name__}: {error}")


def _run(prepared: _Prepared, processes: Processes, env: Environment, *, chosen, model, flags, strict, as_json, debug) -> ExitCode:
    """Steps 4-5: this process's share, then (main process) the report."""
    jobs, skipped, manifest = prepared.jobs, prepared.skipped, prepared.manifest
    pending = [job for job in jobs if job.key not in skipped]
    # --parallel: the group makes every video together; else each process takes its share.
    mine = pending if flags.get("parallel") else pending[processes.index :: processes.count]
    runner = _Runner(prepared.out_dir, manifest, processes, as_json, debug, chosen, model, flags, strict, prepared.identity, env)
    if skipped and processes.is_main:
        ui.info(f"resuming: {len(skipped)} of {len(jobs)} videos already done")
    with _stop_on_sigterm() as stop, ui.BatchProgress(sum(1 for job in mine if job.error is None)) as progress:
        for job in mine:
            if stop.requested or current().cancel.stop_requested():  # SIGTERM here, or to a server's client
                break
            if job.error is not None:
                runner.record(job, "failed", error=job.error)
                continue
            runner.run(job, progress)
            progress.video_finished()
    if stop.requested or current().cancel.stop_requested():
        # Stopped on purpose: no waiting for the other processes (they got the signal
        # too from the launcher, or will finish their share on their own).
        report(jobs, skipped, _outcomes(manifest, prepared.run_start), stopped=True)
        return ExitCode.TERMINATED

    # 5. everyone's outcome
    processes.wait_for_everyone()
    if not processes.is_main:
        return ExitCode.SUCCESS  # the main process reports for all, with the exit code
    return report(jobs, skipped, _outcomes(manifest, prepared.run_start))


def _outcomes(manifest: Manifest, start: int) -> dict[tuple[Any, Any], tuple[Any, Any]]:
    """(line, video) -> (status, error) of this run's records."""
    return {(record.get("line"), record.get("video")): (record.get("status"), record.get("error")) for record in manifest.records(start)}


def report(jobs: list[Job], skipped: set[tuple[int, int]], outcomes: dict[tuple[Any, Any], tuple[Any, Any]], *, stopped: bool = False) -> ExitCode:
    """The summary on stderr: totals, and a table of what failed."""
    done = failed = not_run = 0
    rows: list[list[str]] = []
    for job in jobs:
        if job.key in skipped:
            continue
        status, error = outcomes.get(job.key, (None, None))
        if status == "done":
            done += 1
            continue
        if status is None and stopped:
            not_run += 1  # made by the next --resume
            continue
        failed += 1
        error = error if status is not None else "no record: its process stopped before finishing it"
        prompt = job.prompt if len(job.prompt) <= 40 else job.prompt[:39] + "…"
        rows.append([str(job.line), str(job.video) if job.output else "-", prompt, str(error)])
    counts = f"batch: {done} videos done, {len(skipped)} already done (--resume), {failed} failed"
    if stopped:
        counts += f", {not_run} not started (stopped by SIGTERM; run again with --resume)"
    if rows:
        ui.report_table("failed", ["line", "video", "prompt", "error"], rows[:1000])
        if len(rows) > 1000:
            ui.warn(f"... and {len(rows) - 1000} more failed lines (all of them are in the manifest)")
    if rows or stopped:
        ui.warn(counts)
        return ExitCode.TERMINATED if stopped else ExitCode.FAILURE
    ui.info(counts)
    return ExitCode.SUCCESS
