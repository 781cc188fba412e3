"""A server job: what it carries, and running it through the commands' own functions.

A job carries everything its run needs, so the server changes nothing of its own
process to run it (no working folder changed, no sys.stdin swapped) and another worker
could run another job beside it: its request (vidgen.settings.request), with the paths of its
options made absolute by the client; the client's folder, for the relative paths only
the job reads (a prompts file's image and video values, the default output names); the
client's standard input as bytes (`batch -`); its cancel token; and its own output
stream, `events`: `execute()` runs it in its RunContext (vidgen.context), whose sink puts
each event's wire form there, and its connection's handler sends them to the client.
"""

from __future__ import annotations

import base64
import binascii
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidgen import ui
from vidgen.context import CancelToken, Event, PipelineSource, RunContext, running
from vidgen.environment import Environment
from vidgen.errors import ExitCode, UsageError, outcome
from vidgen.settings.request import BatchRequest, GenerateRequest, from_json


class Job:
    """One client's request, from the queue to its exit event."""

    _numbers = iter(range(1, 1 << 62))

    def __init__(self, request: GenerateRequest | BatchRequest, cwd: str | Path, client_pid: int | None, stdin: bytes | None = None):
        self.number = next(self._numbers)
        self.request, self.client_pid = request, client_pid
        self.command = request.command
        self.env = Environment(cwd=Path(cwd), stdin=stdin)  # the client's folder and standard input
        self.events: queue.Queue = queue.Queue()  # the events' wire forms, for its client
        self.sink = ui.RemoteSink(self.events.put)
        self.token = CancelToken()  # its client gone (Ctrl-C, killed) or sent SIGTERM
        self.queued_at = time.time()
        self.started_at: float | None = None

    @classmethod
    def from_request(cls, body: dict[str, Any], client_pid: int | None) -> Job | str:
        """The job a `POST /v1/jobs` body asks for, or why it cannot be one: the request's
        JSON (vidgen.settings.request, docs/api.md) with the client's folder, `cwd`, and for
        `batch -` its standard input, `stdin` (base64)."""
        if not isinstance(body, dict):
            return "a job must be a JSON object"
        body = dict(body)
        cwd, stdin = body.pop("cwd", None), body.pop("stdin", None)
        if not isinstance(cwd, str) or not os.path.isabs(cwd):
            return "a job needs cwd, the client's folder (an absolute path)"
        try:
            request = from_json(body)
        except UsageError as error:
            return str(error)
        if stdin is not None:
            try:
                stdin = base64.b64decode(stdin, validate=True) if isinstance(stdin, str) else None
            except (binascii.Error, ValueError):
                stdin = None
            if stdin is None:
                return "stdin must be base64 text"
        return cls(request, cwd, client_pid, stdin)

    def send(self, event: Event) -> None:
        """An event to its client that is not the run's own (accepted, exit, refused)."""
        self.sink.send(event)

    @property
    def cancel_code(self) -> ExitCode:
        return self.token.code

    def cancelled(self) -> bool:
        return self.token.cancelled()

    def cancel(self, code: ExitCode = ExitCode.INTERRUPTED) -> None:
        self.token.cancel(code)

    def stop_requested(self) -> bool:
        return self.token.stop_requested()

    def request_stop(self) -> None:
        self.token.request_stop()

    def context(self, cache: PipelineSource | None = None) -> RunContext:
        """What its run runs with: its client's folder and standard input, its stream, its
        cancel token, its client's --threads, the server's pipelines; never quiet (its client
        applies its own --quiet to what it is sent)."""
        return RunContext(env=self.env, events=self.sink, cancel=self.token, threads=self.request.threads, cache=cache)

    def summary(self) -> dict[str, Any]:
        what = self.request.prompt if isinstance(self.request, GenerateRequest) else self.request.prompts_file
        return {
            "job": self.number,
            "command": self.command,
            "what": what,
            "client_pid": self.client_pid,
            "waiting_seconds": round((self.started_at or time.time()) - self.queued_at, 1),
            "running_seconds": None if self.started_at is None else round(time.time() - self.started_at, 1),
            "cancelled": self.cancelled(),
            "stopping": self.stop_requested(),
        }


def execute(job: Job, prepare: Callable[[], None] | None = None, *, cache: PipelineSource | None = None) -> int:
    """`prepare()` then the command's body, on this thread, in the job's context (its output
    sent to its client; `cache`: the server's pipelines); errors become lines and codes as on
    the command line (errors.outcome)."""
    with running(job.context(cache)):
        try:
            if prepare is not None:
                prepare()
            return run_request(job)
        except (KeyboardInterrupt, Exception) as error:
            ending = outcome(error, debug=job.request.debug)
            if ending.traceback:
                ui.print_traceback()
            if ending.message is not None:
                ui.error(ending.message)
            return ending.code


def run_request(job: Job) -> int:
    """The same library function the command runs in-process, with the job's environment."""
    if isinstance(job.request, GenerateRequest):
        # Imported here, not at the top: `vidgen serve --status` and `--stop` import this
        # package and stay free of torch and diffusers (the worker imports them first thing).
        from vidgen.engine.single import run

        run(job.request, env=job.env)
        return ExitCode.SUCCESS
    from vidgen.batch import run_batch  # as above: only in the worker

    return run_batch(job.request, env=job.env)
