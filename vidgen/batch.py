"""`vidgen batch`: a prompts file -> many videos in one folder, resumable, shardable.

Every process (one, or each of N under `accelerate launch`) runs the same steps and
splits the work only at step 4, so they all agree on the plan without talking:

1. read the prompts file (.txt, .jsonl, .csv, or `-` for standard input) as a stream
   (vidgen.prompts); a bad line keeps its error and becomes a failed record instead of
   stopping the batch, a file that cannot be a prompts file stops it before anything
   is created;
2. plan jobs: one small record per video. Settings merge preset < command line < line; a line
   without a seed gets one derived from the base seed (`--seed`, default 0) and its
   line number; outputs are named `LINE-SLUG-sSEED.mp4` or the line's `output`, always
   inside DIR;
3. prepare DIR: take its lock (one batch per folder; the kernel drops it when a process
   dies), repair a torn manifest end and remove vidgen's stale temp files (main
   process only, before anyone writes), and with --resume skip every video whose
   latest record says done and whose file still has the recorded SHA-256; every
   process learns whether all others got this far, so none waits for one that failed;
4. each process takes jobs i % N, loads the model once and appends one manifest record
   per finished or failed video (a single O_APPEND write, so processes never interleave);
   a first SIGTERM stops it after the current video, a second at once;
5. the main process waits for the others, reads this run's records and reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

from vidgen import ui
from vidgen.errors import ExitCode, GenerationError, Interrupted, UsageError, VidgenError
from vidgen.prompts import PromptLine, detect_format, open_prompts, read_prompt_lines

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".vidgen-batch.lock"  # hidden, and not a temp-file name: never removed as stale
DEFAULT_BASE_SEED = 0  # without --seed, reruns of the same file repeat the same videos
BATCH_SUFFIXES = (".mp4", ".webm", ".gif")  # files, so each has one SHA-256
SLUG_LENGTH = 40

# video.write_video's temporary names (`.STEM.8HEX.part.SUFFIX`) and
# check_output_path's probes: what a killed run can leave behind, and nothing else.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.part(\.[A-Za-z0-9]+)?$|^\.vidgen-probe-[0-9a-f]{8}$")

# Under accelerate a process may finish its share long before the slowest one; the
# end-of-batch barrier must not time out while the others still generate.
_BARRIER_TIMEOUT = timedelta(days=7)


# ---- 2. planning jobs ----


@dataclass(slots=True)
class Job:
    """One video to make (or a line that cannot run, recorded as failed). Small on
    purpose: a 100,000-line file makes 100,000 of them; the settings are merged again
    from `values` when the video is made."""

    line: int
    video: int  # 1-based among its line's --num-videos
    prompt: str
    seed: int | None = None
    output: str | None = None  # relative to DIR, POSIX separators
    values: dict[str, Any] | None = None  # the line's own values (shared by its videos)
    error: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.line, self.video)


def derive_seed(base_seed: int, line_number: int) -> int:
    """A line's seed from the base seed and its line number: stable across reruns,
    different per line, below 2**31 like drawn seeds (room for --num-videos)."""
    digest = hashlib.sha256(f"vidgen-batch:{base_seed}:{line_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


def short_slug(prompt: str) -> str:
    """The prompt's slug (only a-z, 0-9 and '-': it cannot name a path), cut at a word
    boundary so names stay short: `a-red-circle-moves-left-on-a-blue`."""
    from vidgen.generate import prompt_slug

    slug = prompt_slug(prompt, max_length=1000)
    if len(slug) <= SLUG_LENGTH:
        return slug
    # One more character than the limit: a '-' there means the word before it is whole.
    head, dash, _ = slug[: SLUG_LENGTH + 1].rpartition("-")
    return head if dash and len(head) >= SLUG_LENGTH // 2 else slug[:SLUG_LENGTH].rstrip("-")


def inside(out_dir: Path, relative: str) -> Path:
    """DIR/relative, refused if it resolves outside DIR (a symbolic link on the way)."""
    target = out_dir / relative
    if not target.resolve().is_relative_to(out_dir.resolve()):
        raise UsageError(f"output {relative!r} leads outside {out_dir} through a symbolic link")
    return target


def safe_output(text: str, out_dir: Path) -> str:
    """A line's `output`: a relative file path that stays inside DIR."""
    path = PurePosixPath(text.strip().replace("\\", "/"))
    if not text.strip() or "\x00" in text:
        raise UsageError(f"output {text!r} is not a file name")
    if path.is_absolute() or text.strip().startswith("~"):
        raise UsageError(f"output {text!r} must be relative to the output folder")
    if ".." in path.parts:
        raise UsageError(f"output {text!r} may not contain '..'")
    if any(part.startswith(".") for part in path.parts):
        raise UsageError(f"output {text!r} may not name hidden files or folders")
    if path.suffix.lower() not in BATCH_SUFFIXES:
        raise UsageError(f"output {text!r} must end in {', '.join(BATCH_SUFFIXES)}")
    inside(out_dir, path.as_posix())
    return path.as_posix()


def plan_jobs(lines: Iterable[PromptLine], *, chosen, model: str | None, flags: dict[str, Any], base_seed: int, out_dir: Path, strict: bool, shown_notes: set[str]) -> list[Job]:
    """Every video of every line, in file order; a line that cannot run is one failed job.
    Reads `lines` to the end, so a file refused as a whole is refused before any work."""
    from vidgen.generate import merge_settings

    jobs: list[Job] = []
    claimed: dict[str, int] = {}  # output -> the line that names it
    for line in lines:
        prompt = line.values.get("prompt", "")
        if line.error:
            jobs.append(Job(line.number, 1, prompt, error=line.error))
            continue
        values = dict(line.values)
        output = values.pop("output", None)
        values.setdefault("seed", derive_seed(base_seed, line.number))
        try:
            settings, notes = merge_settings(chosen, [flags, values], model=model, strict=strict)
            for note in notes:
                if note not in shown_notes:  # the command line's own notes were shown once
                    ui.warn(f"line {line.number}: {note}")
            seeds = [settings.seed + index for index in range(settings.num_videos)]
            if output is None:
                slug = short_slug(settings.prompt)
                names = [f"{line.number:04d}-{slug}-s{seed}.mp4" for seed in seeds]
            else:
                base = PurePosixPath(safe_output(output, out_dir))
                names = [str(base)] if len(seeds) == 1 else [str(base.with_name(f"{base.stem}-{i + 1}{base.suffix}")) for i in range(len(seeds))]
            for name in names:
                if name in claimed:
                    raise UsageError(f"output {name} is also line {claimed[name]}'s")
            for name in names:
                claimed[name] = line.number
        except VidgenError as error:
            jobs.append(Job(line.number, 1, prompt, error=error.message))
            continue
        jobs.extend(Job(line.number, index + 1, settings.prompt, seed, name, values) for index, (seed, name) in enumerate(zip(seeds, names)))
    return jobs


# ---- 3. the output folder: manifest, temp files, resume ----


class Manifest:
    """DIR/manifest.jsonl: one JSON record per finished or failed video, append-only.

    Each record is one os.write of one whole line to a file opened with O_APPEND, so
    records from concurrent processes never interleave; readers skip a torn line."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / MANIFEST_NAME

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def repair_torn_end(self) -> None:
        """A record cut short (disk full, power loss) must not swallow the next one."""
        if self.size() == 0:
            return
        with open(self.path, "rb") as file:
            file.seek(-1, os.SEEK_END)
            last = file.read(1)
        if last != b"\n":
            self._write(b"\n")

    def create(self) -> None:
        """Make sure it exists and can be appended to, before any work."""
        self._write(b"")  # the only write that may create the file

    def append(self, record: dict[str, Any]) -> None:
        self._write((json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8"))

    def _write(self, data: bytes) -> None:
        """One write of the whole record. Only DIR's own manifest is written: if DIR was
        removed, the append fails instead of making a new, partial manifest."""
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if not data else 0)
        try:
            fd = os.open(self.path, flags, 0o644)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise GenerationError(f"cannot append to {self.path}: short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            from vidgen.video import describe_os_error

            raise GenerationError(f"cannot append to {self.path}: {describe_os_error(error)}") from error

    def records(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """The records from byte `start` on, oldest first, read line by line (the file
        is never held whole); unreadable lines are skipped."""
        try:
            file = open(self.path, "rb")
        except FileNotFoundError:
            return
        with file:
            file.seek(start)
            for raw in file:
                try:
                    record = json.loads(raw)
                except (ValueError, RecursionError):
                    continue  # blank, or torn by a crash
                if isinstance(record, dict):
                    yield record

    def read(self, start: int = 0) -> list[dict[str, Any]]:
        return list(self.records(start))

    def latest_done(self) -> dict[str, tuple[Any, Any, Any]]:
        """output -> (prompt, seed, sha256) of its latest record if that says done: what
        --resume needs, and nothing more of each record."""
        latest: dict[str, tuple[Any, Any, Any] | None] = {}
        for record in self.records():
            output = record.get("output")
            if isinstance(output, str):
                latest[output] = (record.get("prompt"), record.get("seed"), record.get("sha256")) if record.get("status") == "done" else None
        return {output: done for output, done in latest.items() if done is not None}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temp_files(out_dir: Path) -> int:
    """Delete what a killed run left: only names matching vidgen's temp pattern."""
    removed = 0
    for folder, _, files in os.walk(out_dir, followlinks=False):
        for name in files:
            path = Path(folder) / name
            if _TEMP_NAME.match(name) and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def is_finished(job: Job, latest: dict[str, tuple[Any, Any, Any]], out_dir: Path) -> bool:
    """--resume: the latest record for this output says done, for the same prompt and
    seed, and the file is still there with the recorded checksum."""
    done = latest.get(job.output or "")
    if done is None:
        return False
    prompt, seed, sha256 = done
    if prompt != job.prompt or seed != job.seed:
        return False
    path = out_dir / job.output
    return path.is_file() and file_sha256(path) == sha256


def prepare_out_dir(text: str) -> Path:
    out_dir = Path(text).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out_dir}: {error.strerror or error}") from error
    if not out_dir.is_dir():
        raise UsageError(f"cannot use {out_dir} as the output folder: it is not a folder")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to output folder {out_dir}")
    return out_dir.resolve()


class FolderLock:
    """One batch at a time per DIR: an exclusive flock on DIR/.vidgen-batch.lock, held for
    the whole run. The kernel releases it when the process ends, however it ends (kill
    -9 included), so a dead batch never leaves the folder locked; the file itself stays."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UsageError(f"cannot write to output folder {self.path.parent}: {error.strerror or error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", errors="replace").strip()
            os.close(fd)
            who = f" (process {holder})" if holder.isdigit() else ""
            raise UsageError(
                f"another vidgen batch is writing to {self.path.parent}{who}; wait for it to finish "
                "(then --resume), or choose another --out-dir"
            ) from None
        except OSError as error:  # a file system without locks
            os.close(fd)
            raise UsageError(f"cannot lock {self.path}: {error.strerror or error}") from error
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # only for the message above
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def folder_identity(out_dir: Path) -> tuple[int, int]:
    status = out_dir.stat()
    return (status.st_dev, status.st_ino)


# ---- 4. processes ----


@dataclass
class Processes:
    """This process's place among those `accelerate launch` started (or the only one)."""

    index: int = 0
    count: int = 1
    device: str | None = None  # the device accelerate gives this process
    state: Any = None  # accelerate.PartialState, for the barriers
    local_count: int = 1  # processes on this machine (for their share of the CPU cores)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait_for_everyone(self) -> None:
        if self.state is not None and self.count > 1:
            self.state.wait_for_everyone()

    def agree(self, error: VidgenError | None) -> None:
        """A barrier at which every process learns whether any failed to get ready; then
        all raise the first error, so none waits forever for one that has stopped."""
        if self.state is None or self.count <= 1:
            if error is not None:
                raise error
            return
        from accelerate.utils import gather_object

        found = [item for item in gather_object([None if error is None else (error.message, int(error.exit_code))]) if item]
        if error is not None:
            raise error
        if found:
            message, code = found[0]
            raise VidgenError(message, ExitCode(code))


def launched_by_accelerate() -> bool:
    return bool(os.environ.get("WORLD_SIZE")) or any(key.startswith("ACCELERATE_") for key in os.environ)


def current_processes() -> Processes:
    """accelerate is imported only when it launched us: a plain run stays light."""
    if not launched_by_accelerate():
        return Processes()
    import torch
    from accelerate import PartialState

    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    # With no GPU (or `--cpu`), accelerate's gloo backend needs cpu=True to form the group.
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not has_accelerator
    state = PartialState(cpu=use_cpu, timeout=_BARRIER_TIMEOUT)
    device = "cpu" if state.device.type == "cpu" else str(state.device)
    local_count = int(os.environ.get("LOCAL_WORLD_SIZE") or state.num_processes)
    return Processes(state.process_index, state.num_processes, device, state, max(1, local_count))


# ---- 5. running ----


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _StopOnSigterm:
    """While the batch runs, a first SIGTERM asks it to stop after the current video
    (`requested`); a second stops it at once (Interrupted, exit 143). The video being
    written is then removed by write_video, so no partial file is left."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopOnSigterm":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise Interrupted("terminated (second SIGTERM); the video in progress was not written", ExitCode.TERMINATED)
        self.requested = True
        ui.info("SIGTERM: stopping after the current video (send it again to stop now)")

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


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
    generator: Any = None
    images: dict[str, Any] = field(default_factory=dict)
    input_video: tuple[str, Any] | None = None  # the last input video read: (path, frames); lines often share one

    def record(self, job: Job, status: str, *, settings: dict[str, Any] | None = None, sha256: str | None = None, seconds: float = 0.0, error: str | None = None) -> dict[str, Any]:
        record = {
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
        # A record that cannot be written (disk full, DIR removed) stops the batch: going
        # on would make videos that no manifest knows of.
        self.manifest.append(record)
        if status == "done":
            path = str(self.out_dir / job.output)
            if self.as_json:
                ui.emit_json({"path": path, **record})
            else:
                ui.emit_result(path)
        else:
            if self.as_json:
                ui.emit_json({"path": None, **record})
            ui.warn(f"line {job.line}" + (f" video {job.video}" if job.output else "") + f" failed: {error}")
        return record

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
        from vidgen.generate import VideoGenerator
        from vidgen.runner import obtain_pipeline

        self.generator = VideoGenerator(obtain_pipeline(settings))  # under `vidgen serve`, its cached one

    def run(self, job: Job, progress: ui.BatchProgress) -> None:
        from vidgen.generate import load_conditioning_image, load_input_video, merge_settings
        from vidgen.runner import render
        from vidgen.settings import fit_frames_to_video

        settings, _ = merge_settings(self.chosen, [self.flags, job.values], model=self.model, strict=self.strict)  # checked when planned
        if self.processes.device and settings.device == "auto":
            settings.device = self.processes.device  # accelerate's device for this process
        if self.generator is None:
            self._load(settings)  # once per process: loading settings come from flags only
        loaded = self.generator.loaded
        self.generator.fill_pipeline_defaults(settings)
        settings.dtype = loaded.dtype  # record what ran, not "auto"
        settings.pipeline_class = settings.pipeline_class or loaded.class_name

        self.check_folder()
        started = time.monotonic()
        try:
            target = inside(self.out_dir, job.output)  # again: the folder may have changed
            target.parent.mkdir(parents=True, exist_ok=True)
            if settings.image and settings.image not in self.images:
                self.images[settings.image] = load_conditioning_image(settings.image)
            image = self.images.get(settings.image) if settings.image else None
            video = None
            if settings.video:
                if self.input_video is None or self.input_video[0] != settings.video:
                    self.input_video = (settings.video, load_input_video(settings.video))
                video = self.input_video[1]
                for note in fit_frames_to_video(settings, self.chosen.constraints, len(video), strict=self.strict):
                    ui.warn(f"line {job.line}: {note}")
            with progress.video(f"line {job.line} video {job.video}", settings.steps or 0) as bar:
                # Overwriting is decided before the run (--resume, --overwrite); the
                # temp-then-rename in write_video keeps a killed run from truncating.
                recipe, _ = render(self.generator, settings, job.seed, path=target, image=image, video=video, progress=bar, overwrite=True)
        except VidgenError as error:
            if error.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
                raise  # Ctrl-C or a second SIGTERM stops the batch; --resume makes this video later
            self.check_folder()  # a write that failed because DIR is gone stops the batch
            self.record(job, "failed", settings=settings.as_dict(), seconds=time.monotonic() - started, error=error.message)
            return
        except OSError as error:  # making a subfolder for the line's output
            self.check_folder()
            self.record(job, "failed", settings=settings.as_dict(), seconds=time.monotonic() - started, error=f"cannot write {job.output}: {error.strerror or error}")
            return
        except Exception as error:  # a pipeline's own failure: this video fails, the batch goes on
            if self.debug:
                ui.print_traceback()
            self.record(job, "failed", settings=settings.as_dict(), seconds=time.monotonic() - started, error=f"unexpected {type(error).__name__}: {error}")
            return
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


def _prepare(prompts_file: str, out_dir_text: str, processes: Processes, lock: FolderLock, *, chosen, model, flags, base_seed, strict, resume, overwrite) -> _Prepared:
    """Steps 1-3: read and plan (nothing created yet), then the folder."""
    from vidgen.generate import merge_settings
    from vidgen.video import check_encoder

    # Bad flags fail the whole command now (exit 2), not every line one by one. The
    # prompt and image are placeholders: lines bring their own.
    probe = {"prompt": "batch", **flags, "seed": base_seed}
    if chosen.task == "image-to-video" and not probe.get("image"):
        probe["image"] = "from each line"
    if chosen.task == "video-to-video" and not probe.get("video"):
        probe["video"] = "from each line"
    _, flag_notes = merge_settings(chosen, [probe], model=model, strict=strict)
    if processes.is_main:
        for note in flag_notes:
            ui.warn(note)
    check_encoder("mp4")  # batch videos are MP4 unless a line names .webm or .gif

    # 1-2. the plan, identical in every process; the whole file is read before DIR is made
    out_dir = Path(out_dir_text).expanduser()
    file, name = open_prompts(prompts_file)
    with file:
        lines = read_prompt_lines(file, name, detect_format(file, name))
        jobs = plan_jobs(lines, chosen=chosen, model=model, flags=flags, base_seed=base_seed, out_dir=out_dir, strict=strict, shown_notes=set(flag_notes))
    if not jobs:
        raise UsageError(f"no prompts in {name}")
    out_dir = prepare_out_dir(out_dir_text)

    # 3. the folder
    manifest = Manifest(out_dir)
    if processes.is_main:
        lock.acquire()  # before reading the manifest: another batch may be writing it
    if resume:
        latest = manifest.latest_done()
        skipped = {job.key for job in jobs if job.output and is_finished(job, latest, out_dir)}
        del latest
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


def run_batch(prompts_file: str, out_dir_text: str, *, preset: str | None, model: str | None, overrides: dict[str, Any], strict: bool = False, resume: bool = False, overwrite: bool = False, as_json: bool = False, debug: bool = False, threads: int | None = None) -> ExitCode:
    """`vidgen batch`: returns SUCCESS only when every line's every video is done."""
    from vidgen.acceleration import apply_threads
    from vidgen.presets import choose_preset

    processes = current_processes()
    if not processes.is_main:
        ui.configure(quiet=True)  # one progress display and one summary: the main process's
    apply_threads(threads, local_processes=processes.local_count if processes.state is not None else None)

    flags = {key: value for key, value in overrides.items() if key != "seed"}
    base_seed = overrides.get("seed")
    base_seed = DEFAULT_BASE_SEED if base_seed is None else base_seed
    lock = FolderLock(Path(out_dir_text).expanduser())
    chosen = None
    try:
        prepared: _Prepared | None = None
        error: VidgenError | None = None
        try:
            chosen = choose_preset(preset, model)
            prepared = _prepare(prompts_file, out_dir_text, processes, lock, chosen=chosen, model=model, flags=flags,
                                base_seed=base_seed, strict=strict, resume=resume, overwrite=overwrite)  # fmt: skip
        except VidgenError as failure:
            error = failure
        processes.agree(error)  # also the barrier: this run's records follow run_start
        return _run(prepared, processes, chosen=chosen, model=model, flags=flags, strict=strict, as_json=as_json, debug=debug)
    finally:
        lock.release()


def _run(prepared: _Prepared, processes: Processes, *, chosen, model, flags, strict, as_json, debug) -> ExitCode:
    """Steps 4-5: this process's share, then (main process) the report."""
    jobs, skipped, manifest = prepared.jobs, prepared.skipped, prepared.manifest
    pending = [job for job in jobs if job.key not in skipped]
    mine = pending[processes.index :: processes.count]
    runner = _Runner(prepared.out_dir, manifest, processes, as_json, debug, chosen, model, flags, strict, prepared.identity)
    if skipped and processes.is_main:
        ui.info(f"resuming: {len(skipped)} of {len(jobs)} videos already done")
    with _StopOnSigterm() as stop, ui.BatchProgress(sum(1 for job in mine if job.error is None)) as progress:
        for job in mine:
            if stop.requested:
                break
            if job.error is not None:
                runner.record(job, "failed", error=job.error)
                continue
            runner.run(job, progress)
            progress.video_finished()
    if stop.requested:
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
