"""Step 3 of a batch: the output folder DIR: its manifest, its lock, what a killed run left
in it, and which videos --resume may skip.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vidgen import locking
from vidgen.batch.plan import Job
from vidgen.errors import GenerationError, UsageError, describe_os_error
from vidgen.media.readback import file_sha256

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".vidgen-batch.lock"  # hidden, not a temp-file name; removed by its holder when the batch ends

# video.write_video's temporary names (`.STEM.8HEX.part.SUFFIX`) and
# check_output_path's probes: what a killed run can leave behind, and nothing else.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.part(\.[A-Za-z0-9]+)?$|^\.vidgen-probe-[0-9a-f]{8}$")


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


def finished_jobs(manifest: Manifest, jobs: list[Job], out_dir: Path) -> set[tuple[int, int]]:
    """--resume: the jobs whose output's latest record says done, for the same prompt and
    seed, and whose file is still there with the recorded checksum.

    The manifest is read once, record by record, against the plan: for each planned
    output only its latest record's checksum is kept (None when that record does not
    count), keyed by the plan's own string, so prompts and names are not held twice."""
    planned = {job.output: job for job in jobs if job.output}
    latest: dict[str, str | None] = {}
    for record in manifest.records():
        output = record.get("output")
        job = planned.get(output) if isinstance(output, str) else None
        if job is not None:
            counts = record.get("status") == "done" and record.get("prompt") == job.prompt and record.get("seed") == job.seed
            latest[job.output] = record.get("sha256") if counts else None
    del planned
    finished = set()
    for job in jobs:
        sha256 = latest.get(job.output) if job.output else None
        path = out_dir / job.output if sha256 else None
        if path is not None and path.is_file() and file_sha256(path) == sha256:
            finished.add(job.key)
    return finished


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
    the whole run by the main process, which removes the file when the batch ends (after
    the other processes are done), so a finished DIR holds the videos, the manifest and
    the gallery only. The kernel releases the lock when the process ends, however it ends (kill -9
    included), so a dead batch never leaves the folder locked: the file it leaves is
    locked again, and removed, by the next batch."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self._fd = locking.take(self.path)
        except locking.LockHeld as held:
            who = f" (process {held.holder})" if held.holder else ""
            raise UsageError(
                f"another vidgen batch is writing to {self.path.parent}{who}; wait for it to finish "
                "(then --resume), or choose another --out-dir"
            ) from None
        except locking.CannotLock as error:
            if error.opening:
                raise UsageError(f"cannot write to output folder {self.path.parent}: {error.reason}") from None
            raise UsageError(f"cannot lock {self.path}: {error.reason}") from None  # a file system without locks

    def release(self) -> None:
        if self._fd is not None:
            locking.release(self._fd, remove=self.path)  # removed while still held (see vidgen.locking)
            self._fd = None


def folder_identity(out_dir: Path) -> tuple[int, int]:
    status = out_dir.stat()
    return (status.st_dev, status.st_ino)
