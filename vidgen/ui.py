"""The only module that prints.

Results (paths, JSON objects, tables the user asked for) go to standard output;
everything else (notes, warnings, errors, progress) goes to standard error through
a rich Console, so `vidgen ... > list.txt` and `vidgen ... -o - | ffmpeg ...` stay clean.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from vidgen.errors import SECOND_SIGTERM, ExitCode, Interrupted

# Console(stderr=True) looks up sys.stderr on every write, so test runners that swap
# the streams capture it too.
_stderr = Console(stderr=True, highlight=False)
_quiet = False
_results = None  # stdout while others_output_to_stderr holds sys.stdout

# A job run for a `vidgen serve` client: everything the job would print goes to the
# client as events instead (vidgen.client replays them through this module), on the
# worker thread that runs the job only. None: print here.
_remote = threading.local()


def _sink():
    return getattr(_remote, "sink", None)


@contextmanager
def remote_session(sink) -> Iterator[None]:
    """Send this thread's output to `sink` (an object with `send(event: dict)`,
    `cancelled() -> bool`, `stop_requested() -> bool` and `cancel_code`) instead of
    printing it."""
    _remote.sink = sink
    try:
        yield
    finally:
        _remote.sink = None


def remote_cancelled() -> bool:
    """True when the client of the job running on this thread has gone (Ctrl-C, closed)."""
    sink = _sink()
    return sink is not None and sink.cancelled()


def remote_interruption(message: str):
    """The Interrupted to raise for this thread's cancelled server job, or None: exit 130
    with `message` (its client's Ctrl-C, or the client gone), or exit 143 when a
    batch's client was sent SIGTERM twice (the sink's `cancel_code`), as in-process."""
    sink = _sink()
    if sink is None or not sink.cancelled():
        return None
    if getattr(sink, "cancel_code", ExitCode.INTERRUPTED) == ExitCode.TERMINATED:
        return Interrupted(SECOND_SIGTERM, ExitCode.TERMINATED)
    return Interrupted(message)


def remote_stop_requested() -> bool:
    """True when the client of this thread's server job was sent SIGTERM: a batch stops
    after the current video, as it does in-process."""
    sink = _sink()
    return sink is not None and sink.stop_requested()


def writing(path) -> None:
    """A file is about to be written under a temporary name beside `path`: a client
    removes what is left of it if the server dies while writing."""
    sink = _sink()
    if sink is not None:
        sink.send({"event": "writing", "path": str(path)})


def preview(path, step: int, steps: int) -> None:
    """--preview rewrote `path` after `step` of `steps`: a server's client gets an event
    (a front end can reload it); in a terminal the file itself is the news."""
    sink = _sink()
    if sink is not None:
        sink.send({"event": "preview", "path": str(path), "step": step, "steps": steps})


# Loggers of libraries that speak on stderr on their own at import: peft imports torchao
# when it is installed (vidgen[quant]), and torchao logs each of its compiled kernels this
# machine cannot load, then torch's pytree warns about torchao's enums: six lines before
# anything vidgen says, none of them the user's business; and diffusers warns, when it
# imports its torchao quantizer, that torchao 0.16+ lacks the tensor classes of older
# checkpoints (vidgen quantizes while loading and saves none). Their errors still show.
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer")


def quiet_library_loggers() -> None:
    """Only errors from the loggers above (every command, before it imports them)."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def configure(*, quiet: bool = False) -> None:
    """Apply the --quiet flag: notes and progress are hidden, errors are not."""
    global _quiet
    _quiet = quiet
    quiet_library_loggers()


def _say(message: str, style: str | None = None, kind: str = "info") -> None:
    sink = _sink()
    if sink is not None:
        sink.send({"event": kind, "message": message})
        return
    # soft_wrap keeps each message on one line, whatever the terminal width.
    _stderr.print(message, style=style, markup=False, soft_wrap=True)


def info(message: str) -> None:
    # A server job's notes go to its client, which applies its own --quiet: the server's
    # --quiet is for the server's own lines, not for every client's.
    if _sink() is not None or not _quiet:
        _say(message)


def warn(message: str) -> None:
    """Something the user asked for was changed or ignored: shown even with --quiet."""
    _say(message, style="yellow", kind="warn")


def error(message: str) -> None:
    if _sink() is not None:
        _say(message, kind="error")
        return
    _say(f"Error: {message}", style="bold red")


def print_traceback(text: str | None = None) -> None:
    """The traceback of the exception being handled (or `text`, one a server sent)."""
    text = traceback.format_exc() if text is None else text
    if _sink() is not None:
        _sink().send({"event": "traceback", "text": text})
        return
    _stderr.print(text, markup=False, highlight=False, soft_wrap=True)


# ---- results on standard output ----


def emit_result(text: str) -> None:
    if _sink() is not None:
        _sink().send({"event": "result", "text": text})
        return
    stream = _results or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def emit_json(obj: Any) -> None:
    """One JSON object per line (JSON Lines), so scripts can stream results."""
    emit_result(json.dumps(obj, ensure_ascii=False))


@contextmanager
def others_output_to_stderr() -> Iterator[None]:
    """While a library that prints runs (Ray's driver prints its raylet's notes, "a worker
    died ...", on stdout, some at shutdown): what anything but emit_result writes to stdout
    goes to stderr, so stdout keeps vidgen's results only (--json). On a terminal, where rich
    shows results above the progress bar, nothing changes."""
    global _results
    if stdout_is_terminal():
        yield
        return
    real, _results = sys.stdout, sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout, _results = real, None


def emit_bytes(data: bytes) -> None:
    if _sink() is not None:
        _sink().send({"event": "bytes", "data": base64.b64encode(data).decode("ascii")})
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def detach_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so the interpreter's final flush
    does not raise a second BrokenPipeError on the way out."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], wrap: Sequence[str] = ()) -> None:
    """A rich table on a terminal, tab-separated lines (no header) in a pipe.

    Only the columns named in `wrap` may wrap on a narrow terminal.
    """
    if stdout_is_terminal():
        table = Table(title=title)
        for column in columns:
            table.add_column(column, no_wrap=column not in wrap, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(highlight=False).print(table)
    else:
        for row in rows:
            emit_result("\t".join(row))


def report_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table for the user on standard error (a batch's summary), not a result:
    standard output stays clean for paths and JSON. Shown even with --quiet."""
    if _sink() is not None:
        _sink().send({"event": "table", "title": title, "columns": list(columns), "rows": [list(row) for row in rows]})
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    _stderr.print(table)


# ---- progress ----


def _rich_bar(*extra_columns, **options):
    """A transient rich bar on stderr: description, bar, done/total, time elapsed, extras."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), *extra_columns)
    return RichProgress(*columns, console=_stderr, transient=True, **options)


class Progress:
    """Progress of one video through its phases: load, encode, denoise, decode, write.

    It draws a rich bar over the denoising steps only when standard error is a terminal
    and --quiet is off; otherwise every method is a no-op, so callers never check.
    """

    def __init__(self, label: str, total_steps: int, *, visible: bool, shared_bar=None):
        self.label = label
        self.total_steps = total_steps
        self._bar = shared_bar  # a batch's bar: this video is one more row under it
        self._owns_bar = shared_bar is None
        self._task = None
        if visible and shared_bar is None:
            self._bar = _rich_bar()

    def __enter__(self) -> "Progress":
        if self._bar is not None:
            if self._owns_bar:
                self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total_steps)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            if self._owns_bar:
                self._bar.stop()
            else:
                self._bar.remove_task(self._task)

    def phase(self, name: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self.label} {name}")

    def step(self, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)


class RemoteProgress:
    """A Progress whose bar is drawn by the client of a `vidgen serve` job."""

    _ids = iter(range(1, 1 << 62))

    def __init__(self, sink, label: str, total_steps: int, *, in_batch: bool = False):
        self._sink, self.label, self.total_steps, self._in_batch = sink, label, total_steps, in_batch
        self._id = next(self._ids)

    def __enter__(self) -> "RemoteProgress":
        self._sink.send({"event": "bar", "id": self._id, "label": self.label, "total": self.total_steps, "batch": self._in_batch})
        return self

    def __exit__(self, *exc_info) -> None:
        self._sink.send({"event": "bar_end", "id": self._id})

    def phase(self, name: str) -> None:
        self._sink.send({"event": "phase", "id": self._id, "name": name})

    def step(self, completed: int) -> None:
        self._sink.send({"event": "step", "id": self._id, "completed": completed})


def progress(label: str, total_steps: int) -> Progress:
    if _sink() is not None:
        return RemoteProgress(_sink(), label, total_steps)
    return Progress(label, total_steps, visible=(not _quiet) and _stderr.is_terminal)


class BatchProgress:
    """A batch's overall bar (videos done / total, ETA) with each video's step bar
    below it. rich allows one live display at a time, so both are rows of one bar.
    Off a terminal, or with --quiet, every method is a no-op."""

    def __init__(self, total_videos: int):
        self.total_videos = total_videos
        self._bar = None
        self._task = None
        self._sink = _sink()
        if self._sink is None and (not _quiet) and _stderr.is_terminal:
            # Results are written while the bar runs: into a pipe they must go to
            # stdout as they are; on a terminal rich prints them above the bar.
            self._bar = _rich_bar(TimeRemainingColumn(), redirect_stdout=stdout_is_terminal())

    def __enter__(self) -> "BatchProgress":
        if self._sink is not None:
            self._sink.send({"event": "batch_bar", "total": self.total_videos})
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("videos", total=self.total_videos)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._sink is not None:
            self._sink.send({"event": "batch_bar_end"})
        if self._bar is not None:
            self._bar.stop()

    def video(self, label: str, total_steps: int) -> Progress:
        """The step bar of one video, shown under the overall bar while it runs."""
        if self._sink is not None:
            return RemoteProgress(self._sink, label, total_steps, in_batch=True)
        return Progress(label, total_steps, visible=self._bar is not None, shared_bar=self._bar)

    def video_finished(self) -> None:
        if self._sink is not None:
            self._sink.send({"event": "batch_advance"})
        if self._bar is not None:
            self._bar.advance(self._task)

    def describe(self, text: str) -> None:
        """The overall row's label (a Ray batch: `videos: 5 done, 1 failed, 2 retried`)."""
        if self._bar is not None:
            self._bar.update(self._task, description=text)


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner for a phase without steps (loading a model), on a terminal only."""
    sink = _sink()
    if sink is not None:
        sink.send({"event": "status", "message": message})
        try:
            yield
        finally:
            sink.send({"event": "status_end"})
        return
    if _quiet or not _stderr.is_terminal:
        yield
        return
    with _stderr.status(message):
        yield
