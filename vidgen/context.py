"""What a run runs with, passed in: its `RunContext` (environment, event sink, cancel token,
threads, pipeline cache, quiet), and the typed events a run sends (what vidgen.ui renders).

The current context is a `contextvars.ContextVar`, set for the length of a run by the one
that starts it (`running()`): the command line's guard (vidgen.cli.guard) for a command, the
server's `execute()` (vidgen.server.jobs) for a job. Why a context variable, and not an
argument through every function: what reads it (ui's lines and bars, a write's cancel check,
the pipeline cache) sits under dozens of library functions that would each have to pass it
on, and a context variable is per thread (and per asyncio task) by construction: two jobs on
two threads each see their own, and nothing of a job is left in a module when it ends (a
`running()` undoes every change made inside it). Outside any run, `current()` is
`PROCESS_CONTEXT`: this process's folder and terminal, never cancelled, not quiet. A thread
started inside a run does not inherit it (it starts with PROCESS_CONTEXT), as before.

Events are small frozen dataclasses; `to_json()` is their wire form (`vidgen serve`'s job
stream, docs/api.md) and `decode()` reads it back: the wire form is made here only. Light:
no torch, no rich (the server's client imports it).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Protocol

from vidgen.environment import PROCESS, Environment
from vidgen.errors import SECOND_SIGTERM, ExitCode, Interrupted

# ---- events ----


@dataclass(frozen=True)
class Event:
    """One thing a run tells its user. `kind` names it on the wire; `hushed`: --quiet hides it."""

    kind: ClassVar[str] = ""
    hushed: ClassVar[bool] = False

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **{item.name: getattr(self, item.name) for item in fields(self)}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(**{item.name: data[item.name] for item in fields(cls)})


@dataclass(frozen=True)
class Info(Event):
    """A note (seed N, loaded ...): hidden by --quiet."""

    kind: ClassVar[str] = "info"
    hushed: ClassVar[bool] = True
    message: str


@dataclass(frozen=True)
class Warn(Event):
    """Something asked for was changed or ignored: shown even with --quiet."""

    kind: ClassVar[str] = "warn"
    message: str


@dataclass(frozen=True)
class Error(Event):
    kind: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True)
class Traceback(Event):
    kind: ClassVar[str] = "traceback"
    text: str


@dataclass(frozen=True)
class Result(Event):
    """A line of standard output (a path, a JSON object)."""

    kind: ClassVar[str] = "result"
    text: str


@dataclass(frozen=True)
class Bytes(Event):
    """Bytes on standard output (`-o -`); base64 on the wire."""

    kind: ClassVar[str] = "bytes"
    data: bytes

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "data": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bytes:
        return cls(base64.b64decode(data["data"]))


@dataclass(frozen=True)
class Table(Event):
    """A table for the user on standard error (a batch's failures): shown even with --quiet."""

    kind: ClassVar[str] = "table"
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "title": self.title, "columns": list(self.columns), "rows": [list(row) for row in self.rows]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        return cls(data["title"], tuple(data["columns"]), tuple(tuple(row) for row in data["rows"]))


@dataclass(frozen=True)
class ResultTable(Event):
    """A table of results: drawn on a terminal's standard output, else a tab-separated line a row;
    `wrap`: the columns that may wrap."""

    kind: ClassVar[str] = "result_table"
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    wrap: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        rows = [list(row) for row in self.rows]
        return {"event": self.kind, "title": self.title, "columns": list(self.columns), "rows": rows, "wrap": list(self.wrap)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResultTable:
        rows = tuple(tuple(row) for row in data["rows"])
        return cls(data["title"], tuple(data["columns"]), rows, tuple(data.get("wrap", ())))


@dataclass(frozen=True)
class ProgressStart(Event):
    """A video's step bar (`batch`: a row under the batch's bar)."""

    kind: ClassVar[str] = "bar"
    hushed: ClassVar[bool] = True
    id: int
    label: str
    total: int
    batch: bool = False


@dataclass(frozen=True)
class ProgressPhase(Event):
    kind: ClassVar[str] = "phase"
    hushed: ClassVar[bool] = True
    id: int
    name: str


@dataclass(frozen=True)
class ProgressStep(Event):
    kind: ClassVar[str] = "step"
    hushed: ClassVar[bool] = True
    id: int
    completed: int


@dataclass(frozen=True)
class ProgressEnd(Event):
    kind: ClassVar[str] = "bar_end"
    hushed: ClassVar[bool] = True
    id: int


@dataclass(frozen=True)
class BatchStart(Event):
    """A batch's overall bar: videos done of `total`."""

    kind: ClassVar[str] = "batch_bar"
    hushed: ClassVar[bool] = True
    total: int


@dataclass(frozen=True)
class BatchAdvance(Event):
    kind: ClassVar[str] = "batch_advance"
    hushed: ClassVar[bool] = True


@dataclass(frozen=True)
class BatchDescribe(Event):
    """The batch bar's label (a Ray batch: `videos: 5 done, 1 failed, 2 retried`)."""

    kind: ClassVar[str] = "batch_describe"
    hushed: ClassVar[bool] = True
    text: str


@dataclass(frozen=True)
class BatchEnd(Event):
    kind: ClassVar[str] = "batch_bar_end"
    hushed: ClassVar[bool] = True


@dataclass(frozen=True)
class Status(Event):
    """A spinner for a phase without steps (loading a model), until StatusEnd."""

    kind: ClassVar[str] = "status"
    hushed: ClassVar[bool] = True
    message: str


@dataclass(frozen=True)
class StatusEnd(Event):
    kind: ClassVar[str] = "status_end"
    hushed: ClassVar[bool] = True


@dataclass(frozen=True)
class Writing(Event):
    """A file is about to be written under a temporary name beside `path`: a client removes
    what is left of it if the server dies while writing. Nothing on a terminal."""

    kind: ClassVar[str] = "writing"
    path: str


@dataclass(frozen=True)
class Preview(Event):
    """--preview rewrote `path` after `step` of `steps`: a front end can reload it; on a
    terminal the file itself is the news."""

    kind: ClassVar[str] = "preview"
    path: str
    step: int
    steps: int


@dataclass(frozen=True)
class Accepted(Event):
    """A served job's first event: its number, for `POST /v1/jobs/N/stop`."""

    kind: ClassVar[str] = "accepted"
    job: int


@dataclass(frozen=True)
class Exit(Event):
    """A served job's last event: the exit code the command would have ended with."""

    kind: ClassVar[str] = "exit"
    code: int


@dataclass(frozen=True)
class Refused(Event):
    """The server did not run the job (it is stopping): the client runs it in-process."""

    kind: ClassVar[str] = "refused"
    message: str


EVENTS: dict[str, type[Event]] = {cls.kind: cls for cls in Event.__subclasses__()}


def decode(data: Any) -> Event | None:
    """The event a wire object describes, or None (not an event, an unknown kind, a missing field)."""
    if not isinstance(data, dict) or data.get("event") not in EVENTS:
        return None
    try:
        return EVENTS[data["event"]].from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


# ---- what a run runs with ----


class EventSink(Protocol):
    def send(self, event: Event) -> None: ...


class Cancel(Protocol):
    def cancelled(self) -> bool: ...

    def stop_requested(self) -> bool: ...

    def interruption(self, message: str) -> Interrupted | None: ...


class CancelToken:
    """A served job's cancellation, set from outside its thread: its client left (Ctrl-C,
    killed), or a batch's client was sent SIGTERM (once: stop after the current video;
    twice: at once, exit 143)."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._stop = threading.Event()
        self.code = ExitCode.INTERRUPTED  # TERMINATED when its client was sent SIGTERM twice

    def cancel(self, code: ExitCode = ExitCode.INTERRUPTED) -> None:
        if not self._cancel.is_set():
            self.code = code
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def interruption(self, message: str) -> Interrupted | None:
        """The Interrupted to raise once cancelled, else None: exit 130 with `message`, or
        exit 143 after a batch's client got SIGTERM twice, as in-process."""
        if not self.cancelled():
            return None
        if self.code == ExitCode.TERMINATED:
            return Interrupted(SECOND_SIGTERM, ExitCode.TERMINATED)
        return Interrupted(message)


class _NeverCancelled:
    """In-process: Ctrl-C and SIGTERM reach this process's own handlers (vidgen.signals)."""

    def cancelled(self) -> bool:
        return False

    def stop_requested(self) -> bool:
        return False

    def interruption(self, message: str) -> Interrupted | None:
        return None


NOT_CANCELLED = _NeverCancelled()


class PipelineSource(Protocol):
    """vidgen.engine.pipeline_cache.PipelineCache (the server's): (the loaded pipeline, whether it was kept)."""

    def get(self, settings: Any, pull_hint: str | None) -> tuple[Any, bool]: ...


@dataclass(frozen=True)
class RunContext:
    env: Environment = PROCESS  # the folder relative paths mean something in, standard input
    events: EventSink | None = None  # where the run's events go; None: this process's terminal (vidgen.ui)
    cancel: Cancel = field(default=NOT_CANCELLED)
    threads: int | None = None  # the --threads asked (a served job's: its client's), or None
    cache: PipelineSource | None = None  # pipelines kept between runs (`vidgen serve`), or None: load each time
    quiet: bool = False  # --quiet: notes, bars and spinners hidden (the hushed events)


PROCESS_CONTEXT = RunContext()
_CURRENT: ContextVar[RunContext] = ContextVar("vidgen_run_context", default=PROCESS_CONTEXT)


def current() -> RunContext:
    """The context of the run on this thread (PROCESS_CONTEXT outside any)."""
    return _CURRENT.get()


@contextmanager
def running(context: RunContext) -> Iterator[RunContext]:
    """`context` is this thread's for the block; after it, what it was before, whatever was
    changed inside (quieted())."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def quieted(quiet: bool = True) -> None:
    """From here to the end of the enclosing `running()` block, the run is `quiet` (a launched
    process other than the first: one voice)."""
    _CURRENT.set(replace(current(), quiet=quiet))
