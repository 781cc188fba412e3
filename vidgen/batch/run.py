"""Steps 1-5 of a batch put together: read and plan, prepare DIR, make this process's share
of the videos (one manifest record each), then the main process reports.

The prompts file, DIR and the lines' image and video paths, when relative, are taken
from the run's folder, and `-` is its standard input: `env`, the process's own in-process,
a client's under `vidgen serve`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen import signals, ui
from vidgen.batch.check import flags_and_base_seed, read_plan
from vidgen.batch.executor import Executor, Lines
from vidgen.batch.folder import FolderLock, Manifest, finished_jobs, folder_identity, prepare_out_dir, remove_stale_temp_files
from vidgen.batch.gallery import write_gallery
from vidgen.batch.plan import Job
from vidgen.context import current
from vidgen.engine import parallel
from vidgen.engine.loading import check_parallel
from vidgen.engine.prepare import merge_settings
from vidgen.environment import PROCESS, Environment
from vidgen.errors import SECOND_SIGTERM, ExitCode, GenerationError, Interrupted, UsageError, VidgenError
from vidgen.processes import Processes, current_processes
from vidgen.settings.presets import choose_preset
from vidgen.settings.request import BatchRequest
from vidgen.threads import apply_threads


def _terminated_now():
    raise Interrupted(SECOND_SIGTERM, ExitCode.TERMINATED)


def stop_on_sigterm() -> signals.StopRequest:
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
class Prepared:
    """What every process knows once the folder is ready."""

    out_dir: Path
    jobs: list[Job]
    skipped: set[tuple[int, int]]
    manifest: Manifest
    run_start: int
    identity: tuple[int, int]


def prepare(
    prompts_file: str,
    out_dir_text: str,
    processes: Processes,
    lock: FolderLock,
    *,
    chosen,
    model,
    flags,
    base_seed,
    strict,
    resume,
    overwrite,
    env: Environment = PROCESS,
) -> Prepared:
    """Steps 1-3: read and plan (nothing created yet), then the folder."""
    jobs = read_plan(
        prompts_file,
        env.path(out_dir_text),
        env,
        chosen=chosen,
        model=model,
        flags=flags,
        base_seed=base_seed,
        strict=strict,
        flag_notes=processes.is_main,
        line_notes=True,
    )
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
    return Prepared(out_dir, jobs, skipped, manifest, manifest.size(), folder_identity(out_dir))


def run_batch(request: BatchRequest, env: Environment = PROCESS) -> ExitCode:
    """`vidgen batch`: returns SUCCESS only when every line's every video is done."""
    processes = current_processes()
    if not processes.is_main:
        ui.configure(quiet=True)  # one progress display and one summary: the main process's
    apply_threads(request.threads, local_processes=processes.local_count if processes.state is not None else None)

    model, strict = request.model, request.strict
    flags, base_seed = flags_and_base_seed(request.overrides)
    lock = FolderLock(env.path(request.out_dir))
    chosen = None
    try:
        prepared: Prepared | None = None
        error: VidgenError | None = None
        try:
            chosen = choose_preset(request.preset, model)
            prepared = prepare(
                request.prompts_file,
                request.out_dir,
                processes,
                lock,
                chosen=chosen,
                model=model,
                flags=flags,
                base_seed=base_seed,
                strict=strict,
                resume=request.resume,
                overwrite=request.overwrite,
                env=env,
            )
        except VidgenError as failure:
            error = failure
        processes.agree(error, one_voice=True)  # also the barrier: this run's records follow run_start
        code = _run(
            prepared, processes, env, chosen=chosen, model=model, flags=flags, strict=strict, as_json=request.as_json, debug=request.debug
        )
        if processes.is_main and request.overrides.get("gallery") is not False:
            write_gallery_page(prepared.out_dir)  # once, by the main process, after the others are done, under DIR's lock
        return code
    finally:
        lock.release()


def write_gallery_page(out_dir: Path) -> None:
    """DIR/index.html; a page that cannot be written is a warning: the videos are made."""
    try:
        ui.info(f"gallery: {write_gallery(out_dir)}")
    except VidgenError as error:
        ui.warn(f"cannot write the gallery page in {out_dir}: {error.message}")
    except Exception as error:  # the page's own failure (a full disk, a bug) must not fail a batch whose videos are made
        ui.warn(f"cannot write the gallery page in {out_dir}: {type(error).__name__}: {error}")


def _run(prepared: Prepared, processes: Processes, env: Environment, *, chosen, model, flags, strict, as_json, debug) -> ExitCode:
    """Steps 4-5: this process's share, then (main process) the report."""
    jobs, skipped, manifest = prepared.jobs, prepared.skipped, prepared.manifest
    pending = [job for job in jobs if job.key not in skipped]
    # --parallel: the group makes every video together; else each process takes its share.
    mine = pending if flags.get("parallel") else pending[processes.index :: processes.count]
    executor = Executor(prepared.out_dir, prepared.identity, Lines(chosen, model, flags, strict), env, processes, debug)
    if skipped and processes.is_main:
        ui.info(f"resuming: {len(skipped)} of {len(jobs)} videos already done")
    with stop_on_sigterm() as stop, ui.BatchProgress(sum(1 for job in mine if job.error is None)) as progress:
        for job in mine:
            if stop.requested or current().cancel.stop_requested():  # SIGTERM here, or to a server's client
                break
            record = executor.failed(job, job.error) if job.error is not None else executor.make(job, progress)
            if record is not None:  # in the manifest before the bar moves on: what it counts is recorded
                publish(record, manifest, prepared.out_dir, as_json=as_json)
            if job.error is None:
                progress.video_finished()
    if stop.requested or current().cancel.stop_requested():
        # Stopped on purpose: no waiting for the other processes (they got the signal
        # too from the launcher, or will finish their share on their own).
        report(jobs, skipped, outcomes(manifest, prepared.run_start), stopped=True)
        return ExitCode.TERMINATED

    # 5. everyone's outcome
    processes.wait_for_everyone()
    if not processes.is_main:
        return ExitCode.SUCCESS  # the main process reports for all, with the exit code
    return report(jobs, skipped, outcomes(manifest, prepared.run_start))


def outcomes(manifest: Manifest, start: int) -> dict[tuple[Any, Any], tuple[Any, Any]]:
    """(line, video) -> (status, error) of this run's records."""
    return {(record.get("line"), record.get("video")): (record.get("status"), record.get("error")) for record in manifest.records(start)}


def report(
    jobs: list[Job], skipped: set[tuple[int, int]], outcomes: dict[tuple[Any, Any], tuple[Any, Any]], *, stopped: bool = False
) -> ExitCode:
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
