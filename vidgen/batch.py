"""`vidgen batch`: a prompts file -> many videos in one folder, resumable, shardable.

Every process (one, or each of N under `accelerate launch`) runs the same steps and
splits the work only at step 4, so they all agree on the plan without talking:

1. read the prompts file (.txt, .jsonl, .csv, or `-` for standard input) into lines;
   a bad line keeps its error and becomes a failed record instead of stopping the batch;
2. plan jobs: one per video. Settings merge preset < command line < line; a line
   without a seed gets one derived from the base seed (`--seed`, default 0) and its
   line number; outputs are named `LINE-SLUG-sSEED.mp4` or the line's `output`, always
   inside DIR;
3. prepare DIR: repair a torn manifest end and remove vidgen's stale temp files (main
   process only, before anyone writes), and with --resume skip every video whose
   latest record says done and whose file still has the recorded SHA-256;
4. each process takes jobs i % N, loads the model once and appends one manifest record
   per finished or failed video (a single O_APPEND write, so processes never interleave);
5. the main process waits for the others, reads this run's records and reports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from vidgen import ui
from vidgen.errors import ExitCode, GenerationError, UsageError, VidgenError
from vidgen.settings import GenerationSettings

MANIFEST_NAME = "manifest.jsonl"
DEFAULT_BASE_SEED = 0  # without --seed, reruns of the same file repeat the same videos
BATCH_SUFFIXES = (".mp4", ".webm", ".gif")  # files, so each has one SHA-256
SLUG_LENGTH = 40

# What a .jsonl object or a .csv header may name, and the type each value must have.
LINE_KEYS: dict[str, type] = {
    "prompt": str,
    "negative_prompt": str,
    "seed": int,
    "frames": int,
    "fps": float,
    "steps": int,
    "guidance": float,
    "width": int,
    "height": int,
    "image": str,
    "output": str,
    "num_videos": int,
}

# video.write_video's temporary names (`.STEM.8HEX.part.SUFFIX`) and
# check_output_path's probes: what a killed run can leave behind, and nothing else.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.part(\.[A-Za-z0-9]+)?$|^\.vidgen-probe-[0-9a-f]{8}$")

# Under accelerate a process may finish its share long before the slowest one; the
# end-of-batch barrier must not time out while the others still generate.
_BARRIER_TIMEOUT = timedelta(days=7)


# ---- 1. reading the prompts file ----


@dataclass
class PromptLine:
    number: int  # 1-based line in the file: stable, so seeds and names are too
    values: dict[str, Any]  # checked per-line values, prompt included
    error: str | None = None


class _LineProblem(Exception):
    """One line cannot be used; the batch records it and goes on."""

    def __init__(self, message: str, prompt: str = ""):
        super().__init__(message)
        self.prompt = prompt  # for the record and the summary, when the line had one


def read_prompts_text(source: str) -> tuple[str, str]:
    """The text of the prompts file and a name for messages; `-` is standard input."""
    if source == "-":
        return sys.stdin.read(), "standard input"
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8-sig"), str(path)
    except UnicodeDecodeError as error:
        raise UsageError(f"cannot read prompts file {path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise UsageError(f"cannot read prompts file {path}: {error.strerror or error}") from error


def detect_format(name: str, text: str) -> str:
    """txt, jsonl or csv: by the file's suffix, else (standard input, other suffixes)
    by the first line that is not blank or a comment."""
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".txt"):
        return suffix[1:]
    first = next((line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    if first.startswith("{"):
        return "jsonl"
    header = [cell.strip() for cell in next(csv.reader([first]), [])]
    if len(header) > 1 and "prompt" in header:
        return "csv"
    return "txt"


def _coerce(key: str, value: Any, *, from_text: bool) -> Any:
    """A value of LINE_KEYS[key]'s type; CSV cells arrive as text and are parsed."""
    kind = LINE_KEYS[key]
    if kind is str:
        if not isinstance(value, str):
            raise _LineProblem(f"{key} must be text, got {json.dumps(value)}")
        return value
    if from_text:
        try:
            value = kind(value.strip())
        except ValueError:
            wanted = "a whole number" if kind is int else "a number"
            raise _LineProblem(f"{key} must be {wanted}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _LineProblem(f"{key} must be a number, got {json.dumps(value)}")
    if kind is int and not isinstance(value, int):
        raise _LineProblem(f"{key} must be a whole number, got {value}")
    if not math.isfinite(value):
        raise _LineProblem(f"{key} must be finite, got {value}")
    return value


def _check_values(raw: dict[str, Any], *, from_text: bool) -> dict[str, Any]:
    prompt = raw.get("prompt") if isinstance(raw.get("prompt"), str) else ""
    unknown = sorted(set(raw) - set(LINE_KEYS))
    if unknown:
        raise _LineProblem(f"unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(LINE_KEYS)})", prompt)
    values = {}
    for key, value in raw.items():
        if value is None or (from_text and not value.strip()):
            continue  # absent: the command line's value (or the preset's) applies
        try:
            values[key] = _coerce(key, value, from_text=from_text)
        except _LineProblem as problem:
            raise _LineProblem(str(problem), prompt) from None
    if not str(values.get("prompt", "")).strip():
        raise _LineProblem("missing prompt")
    values["prompt"] = values["prompt"].strip()
    return values


def _line(number: int, parse) -> PromptLine:
    try:
        return PromptLine(number, parse())
    except _LineProblem as problem:
        return PromptLine(number, {"prompt": problem.prompt}, str(problem))


def parse_prompts(text: str, fmt: str) -> list[PromptLine]:
    lines: list[PromptLine] = []
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text))
        header: list[str] | None = None
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                continue
            number = reader.line_num
            if len(row) > len(header):
                lines.append(PromptLine(number, {}, f"{len(row)} cells but the header names {len(header)}"))
                continue
            lines.append(_line(number, lambda row=row: _check_values(dict(zip(header, row)), from_text=True)))
        return lines

    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if fmt == "txt":
            lines.append(PromptLine(number, {"prompt": stripped}))
            continue

        def parse_json(stripped=stripped) -> dict[str, Any]:
            try:
                obj = json.loads(stripped)
            except ValueError as error:
                raise _LineProblem(f"invalid JSON: {error}") from None
            if not isinstance(obj, dict):
                raise _LineProblem("not a JSON object")
            return _check_values(obj, from_text=False)

        lines.append(_line(number, parse_json))
    return lines


# ---- 2. planning jobs ----


@dataclass
class Job:
    """One video to make (or a line that cannot run, recorded as failed)."""

    line: int
    video: int  # 1-based among its line's --num-videos
    prompt: str
    seed: int | None = None
    output: str | None = None  # relative to DIR, POSIX separators
    settings: GenerationSettings | None = None
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


def plan_jobs(lines: list[PromptLine], *, chosen, model: str | None, flags: dict[str, Any], base_seed: int, out_dir: Path, strict: bool, shown_notes: set[str]) -> list[Job]:
    """Every video of every line, in file order; a line that cannot run is one failed job."""
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
        jobs.extend(Job(line.number, index + 1, settings.prompt, seed, name, settings) for index, (seed, name) in enumerate(zip(seeds, names)))
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
        self._write(b"")

    def append(self, record: dict[str, Any]) -> None:
        self._write((json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8"))

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise GenerationError(f"cannot append to {self.path}: short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, start: int = 0) -> list[dict[str, Any]]:
        """The records from byte `start` on, oldest first; unreadable lines are skipped."""
        try:
            with open(self.path, "rb") as file:
                file.seek(start)
                data = file.read()
        except FileNotFoundError:
            return []
        records = []
        for raw in data.split(b"\n"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # blank, or torn by a crash
            if isinstance(record, dict):
                records.append(record)
        return records


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


def is_finished(job: Job, latest: dict[str, dict[str, Any]], out_dir: Path) -> bool:
    """--resume: the latest record for this output says done, for the same prompt and
    seed, and the file is still there with the recorded checksum."""
    record = latest.get(job.output or "")
    if not record or record.get("status") != "done":
        return False
    if record.get("prompt") != job.prompt or record.get("seed") != job.seed:
        return False
    path = out_dir / job.output
    return path.is_file() and file_sha256(path) == record.get("sha256")


def prepare_out_dir(text: str) -> Path:
    out_dir = Path(text).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out_dir}: {error.strerror or error}") from error
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to output folder {out_dir}")
    return out_dir.resolve()


# ---- 4. processes ----


@dataclass
class Processes:
    """This process's place among those `accelerate launch` started (or the only one)."""

    index: int = 0
    count: int = 1
    device: str | None = None  # the device accelerate gives this process
    state: Any = None  # accelerate.PartialState, for the barriers

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait_for_everyone(self) -> None:
        if self.state is not None and self.count > 1:
            self.state.wait_for_everyone()


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
    return Processes(state.process_index, state.num_processes, device, state)


# ---- 5. running ----


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Runner:
    """Generates this process's share, one manifest record per video."""

    out_dir: Path
    manifest: Manifest
    processes: Processes
    as_json: bool
    debug: bool
    generator: Any = None
    images: dict[str, Any] = field(default_factory=dict)

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

    def _load(self, settings: GenerationSettings) -> None:
        from vidgen import pipeline as pipeline_loader
        from vidgen.generate import VideoGenerator
        from vidgen.presets import resolve_model_location

        location = resolve_model_location(settings.model)
        started = time.monotonic()
        with ui.status(f"loading {location.location}"):
            loaded = pipeline_loader.load_pipeline(settings)
        ui.info(f"loaded {loaded.class_name} from {location.location} on {loaded.device} ({loaded.dtype}) in {time.monotonic() - started:.1f}s")
        self.generator = VideoGenerator(loaded)

    def run(self, job: Job, progress: ui.BatchProgress) -> None:
        from vidgen.generate import build_recipe, load_conditioning_image
        from vidgen.video import write_video

        settings = job.settings
        if self.processes.device and settings.device == "auto":
            settings.device = self.processes.device  # accelerate's device for this process
        if self.generator is None:
            self._load(settings)  # once per process: loading settings come from flags only
        loaded = self.generator.loaded
        self.generator.fill_pipeline_defaults(settings)
        settings.dtype = loaded.dtype  # record what ran, not "auto"
        settings.pipeline_class = settings.pipeline_class or loaded.class_name

        started = time.monotonic()
        try:
            target = inside(self.out_dir, job.output)  # again: the folder may have changed
            target.parent.mkdir(parents=True, exist_ok=True)
            if settings.image and settings.image not in self.images:
                self.images[settings.image] = load_conditioning_image(settings.image)
            image = self.images.get(settings.image) if settings.image else None
            with progress.video(f"line {job.line} video {job.video}", settings.steps or 0) as bar:
                frames = self.generator.generate(settings, job.seed, image=image, progress=bar)
                bar.phase("write")
                recipe = build_recipe(settings, job.seed, frames)
                # Overwriting is decided before the run (--resume, --overwrite); the
                # temp-then-rename in write_video keeps a killed run from truncating.
                write_video(frames, target, fps=settings.fps, crf=settings.crf, recipe=recipe, overwrite=True)
        except VidgenError as error:
            if error.exit_code == ExitCode.INTERRUPTED:
                raise  # Ctrl-C stops the batch; --resume makes this video later
            self.record(job, "failed", settings=settings.as_dict(), seconds=time.monotonic() - started, error=error.message)
            return
        except Exception as error:  # a pipeline's own failure: this video fails, the batch goes on
            if self.debug:
                ui.print_traceback()
            self.record(job, "failed", settings=settings.as_dict(), seconds=time.monotonic() - started, error=f"unexpected {type(error).__name__}: {error}")
            return
        self.record(job, "done", settings=recipe, sha256=file_sha256(target), seconds=time.monotonic() - started)


def run_batch(prompts_file: str, out_dir_text: str, *, preset: str | None, model: str | None, overrides: dict[str, Any], strict: bool = False, resume: bool = False, overwrite: bool = False, as_json: bool = False, debug: bool = False) -> ExitCode:
    """`vidgen batch`: returns SUCCESS only when every line's every video is done."""
    from vidgen.generate import merge_settings
    from vidgen.presets import choose_preset

    processes = current_processes()
    if not processes.is_main:
        ui.configure(quiet=True)  # one progress display and one summary: the main process's

    # 1-2. the plan, identical in every process
    text, name = read_prompts_text(prompts_file)
    lines = parse_prompts(text, detect_format(name, text))
    if not lines:
        raise UsageError(f"no prompts in {name}")
    flags = {key: value for key, value in overrides.items() if key != "seed"}
    base_seed = overrides.get("seed")
    base_seed = DEFAULT_BASE_SEED if base_seed is None else base_seed
    chosen = choose_preset(preset, model)
    # Bad flags fail the whole command now (exit 2), not every line one by one. The
    # prompt and image are placeholders: lines bring their own.
    probe = {"prompt": "batch", **flags, "seed": base_seed}
    if chosen.task == "image-to-video" and not probe.get("image"):
        probe["image"] = "from each line"
    _, flag_notes = merge_settings(chosen, [probe], model=model, strict=strict)
    if processes.is_main:
        for note in flag_notes:
            ui.warn(note)
    out_dir = prepare_out_dir(out_dir_text)
    jobs = plan_jobs(lines, chosen=chosen, model=model, flags=flags, base_seed=base_seed, out_dir=out_dir, strict=strict, shown_notes=set(flag_notes))

    # 3. the folder
    manifest = Manifest(out_dir)
    if resume:
        latest = {record["output"]: record for record in manifest.read() if record.get("output")}
        skipped = {job.key for job in jobs if job.output and is_finished(job, latest, out_dir)}
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
    run_start = manifest.size()  # this run's records follow (others wait below)
    processes.wait_for_everyone()

    # 4. this process's share
    pending = [job for job in jobs if job.key not in skipped]
    mine = pending[processes.index :: processes.count]
    runner = _Runner(out_dir, manifest, processes, as_json, debug)
    if skipped and processes.is_main:
        ui.info(f"resuming: {len(skipped)} of {len(jobs)} videos already done")
    with ui.BatchProgress(sum(1 for job in mine if job.error is None)) as progress:
        for job in mine:
            if job.error is not None:
                runner.record(job, "failed", error=job.error)
                continue
            runner.run(job, progress)
            progress.video_finished()

    # 5. everyone's outcome
    processes.wait_for_everyone()
    if not processes.is_main:
        return ExitCode.SUCCESS  # the main process reports for all, with the exit code
    outcomes = {(record.get("line"), record.get("video")): record for record in manifest.read(run_start)}
    return report(jobs, skipped, outcomes)


def report(jobs: list[Job], skipped: set[tuple[int, int]], outcomes: dict[tuple[int, int], dict[str, Any]]) -> ExitCode:
    """The summary on stderr: totals, and a table of what failed."""
    done = failed = 0
    rows: list[list[str]] = []
    for job in jobs:
        if job.key in skipped:
            continue
        record = outcomes.get(job.key)
        if record is not None and record.get("status") == "done":
            done += 1
            continue
        failed += 1
        error = record.get("error") if record else "no record: its process stopped before finishing it"
        prompt = job.prompt if len(job.prompt) <= 40 else job.prompt[:39] + "…"
        rows.append([str(job.line), str(job.video) if job.output else "-", prompt, str(error)])
    counts = f"batch: {done} videos done, {len(skipped)} already done (--resume), {failed} failed"
    if rows:
        ui.report_table("failed", ["line", "video", "prompt", "error"], rows)
        ui.warn(counts)
        return ExitCode.FAILURE
    ui.info(counts)
    return ExitCode.SUCCESS
