"""The only module that prints: it renders the run's events.

The module's functions (`info`, `warn`, `progress`, `emit_json`, ...) are the API the rest
of vidgen calls: each sends a typed event (vidgen.context) to the current run's sink, unless
the run is --quiet and the event is one quiet hides. Two sinks:
- `TerminalSink`, this process's terminal: results (paths, JSON objects, tables the user
  asked for) on standard output; everything else (notes, warnings, errors, progress) on
  standard error through a rich Console, so `vidgen ... > list.txt` and
  `vidgen ... -o - | ffmpeg ...` stay clean. Bars and spinners only on a terminal;
- `RemoteSink`, a `vidgen serve` job's: each event's wire form onto the job's stream; its
  client (vidgen.cli.client) decodes them and renders them here, with its own --quiet. So a
  served call prints the same lines as an in-process one by construction.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table as RichTable

from vidgen.context import (
    BatchAdvance,
    BatchDescribe,
    BatchEnd,
    BatchStart,
    Bytes,
    Error,
    Event,
    Info,
    Preview,
    ProgressEnd,
    ProgressPhase,
    ProgressStart,
    ProgressStep,
    Result,
    ResultTable,
    Status,
    StatusEnd,
    Table,
    Traceback,
    Warn,
    Writing,
    current,
    quieted,
)

# Process state, not a run's: this process's standard error (Console(stderr=True) looks up
# sys.stderr on every write, so test runners that swap the streams capture it too), and its
# standard output while others_output_to_stderr holds sys.stdout.
_stderr = Console(stderr=True, highlight=False)
_results = None


def show(event: Event) -> None:
    """`event` to the current run's sink, unless the run is --quiet and quiet hides it."""
    run = current()
    if run.quiet and event.hushed:
        return
    (run.events or TERMINAL).send(event)


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
    """The current run is `quiet` from here to its end (a launched process other than the
    first: one voice). The command line sets --quiet in the run's context (vidgen.cli.guard)."""
    quieted(quiet)


def info(message: str) -> None:
    show(Info(message))


def warn(message: str) -> None:
    """Something the user asked for was changed or ignored: shown even with --quiet."""
    show(Warn(message))


def error(message: str) -> None:
    show(Error(message))


def print_traceback(text: str | None = None) -> None:
    """The traceback of the exception being handled (or `text`)."""
    show(Traceback(traceback.format_exc() if text is None else text))


def writing(path) -> None:
    """A file is about to be written under a temporary name beside `path` (a served job's
    client removes what is left of it if the server dies while writing)."""
    show(Writing(str(path)))


def preview(path, step: int, steps: int) -> None:
    """--preview rewrote `path` after `step` of `steps`."""
    show(Preview(str(path), step, steps))


# ---- results on standard output ----


def emit_result(text: str) -> None:
    show(Result(text))


def emit_json(obj: Any) -> None:
    """One JSON object per line (JSON Lines), so scripts can stream results."""
    emit_result(json.dumps(obj, ensure_ascii=False))


def emit_bytes(data: bytes) -> None:
    show(Bytes(data))


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], wrap: Sequence[str] = ()) -> None:
    """A rich table on a terminal, tab-separated lines (no header) in a pipe.

    Only the columns named in `wrap` may wrap on a narrow terminal.
    """
    show(ResultTable(title, tuple(columns), tuple(tuple(row) for row in rows), tuple(wrap)))


def report_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table for the user on standard error (a batch's summary), not a result:
    standard output stays clean for paths and JSON. Shown even with --quiet."""
    show(Table(title, tuple(columns), tuple(tuple(row) for row in rows)))


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


def detach_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so the interpreter's final flush
    does not raise a second BrokenPipeError on the way out."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


# ---- progress ----


class Progress:
    """Progress of one video through its phases: load, encode, denoise, decode, write.

    It sends events; the sink draws them (a rich bar over the denoising steps on a terminal,
    nothing in a pipe or with --quiet), so callers never check. `visible=False`: no events
    at all (a caller that wants no bar)."""

    _ids = itertools.count(1)  # process-wide, so no two bars of this process share an id

    def __init__(self, label: str, total_steps: int, *, visible: bool = True, in_batch: bool = False):
        self.label, self.total_steps = label, total_steps
        self._id = next(self._ids)
        self._show: Callable[[Event], None] = show if visible else (lambda event: None)
        self._in_batch = in_batch

    def __enter__(self) -> Progress:
        self._show(ProgressStart(self._id, self.label, self.total_steps, self._in_batch))
        return self

    def __exit__(self, *exc_info) -> None:
        self._show(ProgressEnd(self._id))

    def phase(self, name: str) -> None:
        self._show(ProgressPhase(self._id, name))

    def step(self, completed: int) -> None:
        self._show(ProgressStep(self._id, completed))


def progress(label: str, total_steps: int) -> Progress:
    return Progress(label, total_steps)


class BatchProgress:
    """A batch's overall bar (videos done / total, ETA) with each video's step bar below it."""

    def __init__(self, total_videos: int):
        self.total_videos = total_videos

    def __enter__(self) -> BatchProgress:
        show(BatchStart(self.total_videos))
        return self

    def __exit__(self, *exc_info) -> None:
        show(BatchEnd())

    def video(self, label: str, total_steps: int) -> Progress:
        """The step bar of one video, shown under the overall bar while it runs."""
        return Progress(label, total_steps, in_batch=True)

    def video_finished(self) -> None:
        show(BatchAdvance())

    def describe(self, text: str) -> None:
        """The overall row's label (a Ray batch: `videos: 5 done, 1 failed, 2 retried`)."""
        show(BatchDescribe(text))


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner for a phase without steps (loading a model), on a terminal only."""
    show(Status(message))
    try:
        yield
    finally:
        show(StatusEnd())


# ---- the sinks ----


def _rich_bar(*extra_columns, **options):
    """A transient rich bar on stderr: description, bar, done/total, time elapsed, extras."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), *extra_columns)
    return RichProgress(*columns, console=_stderr, transient=True, **options)


class TerminalSink:
    """Draws events on this process's terminal. It keeps what is on screen (open bars by
    id, the batch's bar, spinners): one terminal a process, rich allowing one live display."""

    def __init__(self) -> None:
        self._bars: dict[int, tuple[Any, Any, str, bool]] = {}  # id -> (rich bar, task, label, owns the bar)
        self._batch: tuple[Any, Any] | None = None  # (rich bar, task) while a batch's bar is drawn
        self._statuses: list[Any] = []  # spinners, innermost last (None: not drawn)

    def send(self, event: Event) -> None:
        getattr(self, f"_{event.kind}", self._nothing)(event)

    def _nothing(self, event: Event) -> None:
        pass  # writing, preview: the file itself is the news on a terminal

    def _say(self, message: str, style: str | None = None) -> None:
        _stderr.print(message, style=style, markup=False, soft_wrap=True)  # soft_wrap: one line, whatever the width

    def _info(self, event: Info) -> None:
        self._say(event.message)

    def _warn(self, event: Warn) -> None:
        self._say(event.message, style="yellow")

    def _error(self, event: Error) -> None:
        self._say(f"Error: {event.message}", style="bold red")

    def _traceback(self, event: Traceback) -> None:
        _stderr.print(event.text, markup=False, highlight=False, soft_wrap=True)

    def _result(self, event: Result) -> None:
        stream = _results or sys.stdout
        stream.write(event.text + "\n")
        stream.flush()

    def _bytes(self, event: Bytes) -> None:
        sys.stdout.flush()
        sys.stdout.buffer.write(event.data)
        sys.stdout.buffer.flush()

    def _result_table(self, event: ResultTable) -> None:
        if not stdout_is_terminal():
            for row in event.rows:
                self._result(Result("\t".join(row)))
            return
        table = RichTable(title=event.title)
        for column in event.columns:
            table.add_column(column, no_wrap=column not in event.wrap, overflow="fold")
        for row in event.rows:
            table.add_row(*row)
        Console(highlight=False).print(table)

    def _table(self, event: Table) -> None:
        table = RichTable(title=event.title, title_justify="left")
        for column in event.columns:
            table.add_column(column, overflow="fold")
        for row in event.rows:
            table.add_row(*row)
        _stderr.print(table)

    def _bar(self, event: ProgressStart) -> None:
        if event.batch:  # a row under the batch's bar; none without one
            if self._batch is not None:
                self._bars[event.id] = (self._batch[0], self._batch[0].add_task(event.label, total=event.total), event.label, False)
            return
        if _stderr.is_terminal:
            bar = _rich_bar()
            bar.start()
            self._bars[event.id] = (bar, bar.add_task(event.label, total=event.total), event.label, True)

    def _phase(self, event: ProgressPhase) -> None:
        if event.id in self._bars:
            bar, task, label, _ = self._bars[event.id]
            bar.update(task, description=f"{label} {event.name}")

    def _step(self, event: ProgressStep) -> None:
        if event.id in self._bars:
            bar, task, _, _ = self._bars[event.id]
            bar.update(task, completed=event.completed)

    def _bar_end(self, event: ProgressEnd) -> None:
        if event.id in self._bars:
            bar, task, _, owns = self._bars.pop(event.id)
            bar.stop() if owns else bar.remove_task(task)

    def _batch_bar(self, event: BatchStart) -> None:
        if _stderr.is_terminal and self._batch is None:
            # Results are written while the bar runs: into a pipe they must go to stdout as
            # they are; on a terminal rich prints them above the bar.
            bar = _rich_bar(TimeRemainingColumn(), redirect_stdout=stdout_is_terminal())
            bar.start()
            self._batch = (bar, bar.add_task("videos", total=event.total))

    def _batch_advance(self, event: BatchAdvance) -> None:
        if self._batch is not None:
            self._batch[0].advance(self._batch[1])

    def _batch_describe(self, event: BatchDescribe) -> None:
        if self._batch is not None:
            self._batch[0].update(self._batch[1], description=event.text)

    def _batch_bar_end(self, event: BatchEnd) -> None:
        if self._batch is not None:
            self._batch[0].stop()
            self._batch = None

    def _status(self, event: Status) -> None:
        spinner = _stderr.status(event.message) if _stderr.is_terminal else None
        if spinner is not None:
            spinner.__enter__()
        self._statuses.append(spinner)

    def _status_end(self, event: StatusEnd) -> None:
        spinner = self._statuses.pop() if self._statuses else None
        if spinner is not None:
            spinner.__exit__(None, None, None)


# This process's terminal: the sink of a run whose context names none (the command line's).
TERMINAL = TerminalSink()


class RemoteSink:
    """A `vidgen serve` job's: each event's wire form (Event.to_json) onto the job's stream,
    which vidgen.server.transport writes to its client."""

    def __init__(self, put: Callable[[dict[str, Any]], None]):
        self._put = put

    def send(self, event: Event) -> None:
        self._put(event.to_json())
