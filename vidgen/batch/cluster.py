"""`vidgen batch --ray [ADDRESS]`: a batch's videos made by a pool of Ray actors, each holding
one loaded pipeline, on a local Ray or an existing cluster; the driver keeps the folder.

The driver (this process) does what a plain batch does before and after the videos
(vidgen.batch.run: read and plan, DIR's lock, the manifest's torn end, --resume's skips, the
report) and is the only process that writes the manifest. The videos are one Ray Data job:
`map_batches` over the pending jobs with an actor class (one GPU each, or CPU slots on a
CPU-only cluster), one video a task. An actor writes its video into DIR as a plain batch does
(a temporary name, then a rename) and returns the video's manifest record, which streams back
to the driver: appended there (one whole line, fsync'd), then printed.

Faults. Ray Data restarts a dead actor and retries its tasks without end by default
(max_restarts=-1, max_task_retries=-1), on a new worker process, on another node if its own
was lost. A video that kills every worker it is given (out of memory) would then loop for
ever, and Ray Data cannot say from the driver which task was retried; so vidgen counts tries
itself, in a small actor beside the driver (`_Tries`): a worker asks for the try number
before it starts a video, and a try past MAX_TRIES becomes a failed record instead
("its worker died N times"). The same counter feeds the progress bar's "retried".
A killed driver leaves what a killed plain batch leaves: whole records, whole videos (some
without a record yet, made again by --resume) and temporary files (removed by the next run);
Ray ends a job's workers when its driver goes.

DIR must be one folder for every node (a shared filesystem): each actor first reads a probe
file the driver wrote there, and a node that cannot see it stops the batch (exit 2) rather
than scatter videos over local disks that no manifest knows of (docs/scaling.md).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vidgen import ui
from vidgen.batch.check import flags_and_base_seed
from vidgen.batch.executor import Executor, Lines
from vidgen.batch.folder import FolderLock, folder_identity, remove_stale_temp_files
from vidgen.batch.plan import Job
from vidgen.batch.run import Prepared, outcomes, prepare, publish, report, stop_on_sigterm, write_gallery_page
from vidgen.environment import PROCESS, Environment
from vidgen.errors import ExitCode, UsageError, VidgenError
from vidgen.processes import Processes, launched_by_accelerate
from vidgen.settings.presets import choose_preset
from vidgen.settings.request import BatchRequest
from vidgen.threads import apply_threads

try:  # an extra: `pip install 'vidgen[ray]'`; this module is imported only for --ray
    import ray
    import ray.data
except ImportError:  # pragma: no cover - depends on the installation
    ray = None

LOCAL = "local"  # `--ray` without an address: a Ray started here for this batch
MAX_TRIES = 3  # a video whose worker died this many times is a failed line


class _Tries:
    """How many times each video was started (a Ray actor beside the driver, no CPU)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[int, int], int] = {}

    def start(self, key: tuple[int, int]) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    def retried(self) -> int:
        return sum(1 for count in self.counts.values() if count > 1)


class _VideoWorker:
    """A Ray Data actor: one loaded pipeline, a video per call, its record as JSON text."""

    def __init__(self, *, out_dir: str, probe: tuple[str, str], lines: Lines, cwd: str, threads: int | None, tries, debug: bool):
        ui.configure(quiet=True)  # its output goes to Ray's log files; the driver reports
        apply_threads(threads)
        self.where = f"{ray.util.get_node_ip_address()}/{os.getpid()}"  # the manifest's `worker`
        self.tries = tries
        folder = Path(out_dir)
        try:
            shared = (folder / probe[0]).read_text() == probe[1]
        except OSError:
            shared = False
        self.problem = (
            None
            if shared
            else (
                f"the output folder {out_dir} is not shared with the Ray node {self.where.split('/')[0]}: --ray needs a folder "
                "every node can write under the same path (a shared filesystem)"
            )
        )
        identity = folder_identity(folder) if shared else (0, 0)  # this node's view: st_dev differs between NFS clients
        self.executor = Executor(folder, identity, lines, Environment(cwd=Path(cwd)), Processes(), debug)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        return {"record": [json.dumps(self._make(Job(**json.loads(text))), default=str) for text in batch["job"]]}

    def _make(self, job: Job) -> dict[str, Any]:
        if self.problem:
            return {"fatal": self.problem, "code": int(ExitCode.USAGE)}
        attempt = ray.get(self.tries.start.remote(job.key))
        if attempt > MAX_TRIES:
            died = f"{MAX_TRIES} times" if MAX_TRIES != 1 else "once"
            record = self.executor.failed(job, f"its worker died {died} while making it (killed, out of memory, or its node lost)")
        else:
            try:
                record = self.executor.make(job, ui.BatchProgress(0))
            except VidgenError as error:  # DIR removed or replaced: the whole batch stops
                return {"fatal": error.message, "code": int(error.exit_code)}
        return {**record, "worker": self.where, "try": attempt}


def _connect(address: str, debug: bool) -> None:
    """A Ray started here (LOCAL), or the cluster at `address` (`auto`, `HOST:PORT`, `ray://HOST:10001`)."""
    quiet = logging.DEBUG if debug else logging.ERROR  # Ray's notes (a local instance started, its token) are not vidgen's
    if not debug:  # nor its core's log lines on stderr (retries while it connects; they stay in Ray's log files)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:  # a GCS address: ray.init retries a closed port for many minutes
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as error:
            raise UsageError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}") from None
    saved = os.dup(2)
    try:
        if not debug:  # Ray's core says "Set ray log level ..." on fd 2 as it starts, whatever the level
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        if address == LOCAL:
            ray.init(include_dashboard=False, logging_level=quiet, log_to_driver=debug)
        else:
            ray.init(address=address, logging_level=quiet, log_to_driver=debug)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UsageError(
            f"cannot reach a Ray cluster at {address}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # vidgen's own bar: videos done, failed and retried
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(quiet)


def _worker_resources(workers: int | None, threads: int | None, pending: int) -> tuple[int, dict[str, Any]]:
    """How many actors and what each takes: a GPU each when the cluster has GPUs, else
    `--threads` CPUs (default 1); as many as fit, unless `--processes` says."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    each = {"num_gpus": 1} if gpus else {"num_cpus": threads or 1}
    fit = gpus or max(1, int(resources.get("CPU", 1)) // (threads or 1))
    return max(1, min(workers or fit, pending)), each


def run_on_ray(address: str, request: BatchRequest, *, workers: int | None = None, env: Environment = PROCESS) -> ExitCode:
    """`vidgen batch ... --ray [ADDRESS]`: SUCCESS only when every line's every video is done."""
    if ray is None:
        raise UsageError("--ray needs Ray: pip install 'vidgen[ray]'")
    if launched_by_accelerate():
        raise UsageError("--ray starts its own workers: give it without `accelerate launch`")
    if workers is not None and workers < 1:
        raise UsageError(f"--processes must be at least 1, got {workers}")
    model, strict, as_json, debug = request.model, request.strict, request.as_json, request.debug
    flags, base_seed = flags_and_base_seed(request.overrides)
    lock = FolderLock(env.path(request.out_dir))
    try:
        chosen = choose_preset(request.preset, model)
        prepared = prepare(
            request.prompts_file,
            request.out_dir,
            Processes(),
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
        if prepared.skipped:
            ui.info(f"resuming: {len(prepared.skipped)} of {len(prepared.jobs)} videos already done")
        lines = Lines(chosen, model, flags, strict)
        here = Executor(prepared.out_dir, prepared.identity, lines, env, Processes(), debug)
        for job in prepared.jobs:  # lines that cannot run: failed records now, as a plain batch makes them
            if job.error is not None and job.key not in prepared.skipped:
                publish(here.failed(job, job.error), prepared.manifest, prepared.out_dir, as_json=as_json)
        pending = [job for job in prepared.jobs if job.error is None and job.key not in prepared.skipped]
        if not pending:
            code = report(prepared.jobs, prepared.skipped, outcomes(prepared.manifest, prepared.run_start))
        else:
            settings = dict(lines=lines, cwd=str(env.folder()), threads=request.threads, debug=debug)
            with ui.others_output_to_stderr():
                _connect(address, debug)
                try:
                    code = _make_videos(prepared, pending, settings, workers=workers, as_json=as_json)
                finally:
                    ray.shutdown()  # a local Ray stops; on a cluster, the job's actors go
        if request.overrides.get("gallery") is not False:
            write_gallery_page(prepared.out_dir)  # the driver's, as a plain batch's main process writes it
        return code
    finally:
        lock.release()


def _make_videos(prepared: Prepared, pending: list[Job], settings: dict[str, Any], *, workers: int | None, as_json: bool) -> ExitCode:
    """The Ray Data job: records stream back and are written here, one per video."""
    count, each = _worker_resources(workers, settings["threads"], len(pending))
    ui.info(
        f"ray: {count} worker{'s' if count != 1 else ''} ({'a GPU' if 'num_gpus' in each else str(each['num_cpus']) + ' CPU'} each) for {len(pending)} videos"
    )
    probe = (
        f".vidgen-probe-{secrets.token_hex(4)}",
        secrets.token_hex(16),
    )  # a temp-file name: a killed driver's is removed by the next run
    (prepared.out_dir / probe[0]).write_text(probe[1])
    tries = ray.remote(num_cpus=0)(_Tries).remote()
    items = [{"job": json.dumps(asdict(job))} for job in pending]
    # One video a block, so a retry repeats one video; one task at a time per actor, so a dead
    # actor holds back only the video it was making (its retry waits for its restart) while
    # the others take the rest. Ray Data's defaults (max_restarts=-1, max_task_retries=-1) are
    # relied on: a dead actor restarts, its task runs again.
    pool = ray.data.ActorPoolStrategy(size=count, max_tasks_in_flight_per_actor=1)
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _VideoWorker,
        batch_size=1,
        compute=pool,
        fn_constructor_kwargs=dict(out_dir=str(prepared.out_dir), probe=probe, tries=tries, **settings),
        **each,
    )
    seen: set[tuple[int, int]] = set()
    done = failed = 0
    try:
        with stop_on_sigterm() as stop, ui.BatchProgress(len(pending)) as progress:
            for row in dataset.iter_rows():
                record = json.loads(row["record"])
                if "fatal" in record:
                    raise VidgenError(record["fatal"], ExitCode(record["code"]))
                key = (record["line"], record["video"])
                if key in seen:
                    continue  # a task Ray ran again after it had returned: its first record stands
                seen.add(key)
                publish(record, prepared.manifest, prepared.out_dir, as_json=as_json)
                done, failed = done + (record["status"] == "done"), failed + (record["status"] != "done")
                progress.video_finished()
                progress.describe(f"videos: {done} done, {failed} failed, {ray.get(tries.retried.remote())} retried")
                if stop.requested:  # a first SIGTERM: stop taking videos; --resume makes the rest
                    break
        retried = ray.get(tries.retried.remote())
        if not stop.requested:  # every worker is done: what a killed one was writing goes (one batch per DIR: the lock)
            remove_stale_temp_files(prepared.out_dir)
    finally:
        (prepared.out_dir / probe[0]).unlink(missing_ok=True)
    if retried:
        ui.info(f"ray: {retried} video{'s' if retried != 1 else ''} retried after a worker died")
    return report(prepared.jobs, prepared.skipped, outcomes(prepared.manifest, prepared.run_start), stopped=stop.requested)
