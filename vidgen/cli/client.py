"""The client side of `vidgen serve`: hand a command's job to a running server and replay
what it sends back, so the command looks exactly as it does in-process.

This module must stay light: a call that goes to a server imports neither torch nor
diffusers nor transformers, nor numpy (tests/test_server.py checks sys.modules). It uses only the
standard library's http.client over a Unix socket, and vidgen's light modules.

The socket is `$XDG_RUNTIME_DIR/vidgen/vidgen.sock`, else `$VIDGEN_HOME/run/vidgen.sock`,
in a directory only this user can enter (0700); a directory that is not is never used.
The protocol is HTTP/1.0 with JSON bodies, on versioned paths (API below):
- `POST /v1/jobs` {"command": "generate"|"batch", "cwd": ..., "args": {...}}: the reply
  is a stream of JSON lines (events: info, warn, error, bar, step, result, bytes, ...,
  and last `exit` with the exit code), ending when the job ends. The job carries what
  it needs from the client: the paths of its options made absolute here, `cwd` (the
  client's folder, for what names a path relative to it that only the job reads: a
  prompts file's image and video values, the default output names) and, for
  `batch -`, the client's standard input (`args.stdin`, base64);
- `GET /v1/status`: what the server holds; `POST /v1/stop`: stop it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from vidgen import signals, ui
from vidgen.context import (
    Accepted,
    BatchEnd,
    BatchStart,
    Event,
    Exit,
    ProgressEnd,
    ProgressStart,
    Refused,
    Status,
    StatusEnd,
    Writing,
    decode,
)
from vidgen.environment import Environment, variable
from vidgen.errors import ExitCode, UsageError
from vidgen.media.video import check_output_path, output_format
from vidgen.server.address import find_server, request
from vidgen.settings.grammar import LoraSpec
from vidgen.settings.request import BatchRequest, GenerateRequest, Request
from vidgen.settings.table import SETTINGS
from vidgen.threads import cpu_thread_count


def _local(text: str | None) -> str | None:
    """An existing local path as an absolute one; anything else (hub id, URL) as is."""
    if not text or "://" in text or text.startswith("builtin:"):
        return text
    path = Path(text).expanduser()
    return str(path.absolute()) if path.exists() else text


def _absolute_output(text: str) -> str:
    folder_like = text.endswith(("/", os.sep))
    absolute = str(Path(text).expanduser().absolute())
    return absolute + ("/" if folder_like and not absolute.endswith("/") else "")


def resolve_paths(job: Request) -> Request:
    """The request with the preset file, model folder, the settings that name files (the
    table's `path`) and LoRA files as absolute paths; a missing --image, --video or --mask
    fails here (exit 2), before anything is sent. A --transformer that is no file here may
    be REPO/FILENAME. No preset: the client's VIDGEN_PRESET decides."""
    overrides = job.settings_given()
    for name in (setting.name for setting in SETTINGS if setting.path):
        value = overrides.get(name)
        if value and "://" not in value:
            if Path(value).expanduser().exists():
                overrides[name] = str(Path(value).expanduser().absolute())
            elif name in ("image", "video", "mask"):
                raise UsageError(f"{name} not found: {value}")
    if overrides.get("loras"):
        resolved = []
        for text in overrides["loras"]:
            spec = LoraSpec.parse(text)
            source = _local(spec.source)
            resolved.append(text if source == spec.source else replace(spec, source=source).text())
        overrides["loras"] = resolved
    preset = job.preset or variable("VIDGEN_PRESET") or None
    return job.but(preset=_local(preset), model=_local(job.model), overrides=overrides)


# ---- a job ----


def _remove_partial(path_text: str) -> None:
    """What write_video leaves when its process is killed: `.STEM.8HEX.part.SUFFIX`."""
    path = Path(path_text)
    pattern = re.compile(rf"^\.{re.escape(path.stem)}\.[0-9a-f]{{8}}\.part{re.escape(path.suffix)}$")
    try:
        for sibling in path.parent.iterdir():
            if pattern.match(sibling.name):
                shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)
    except OSError:
        pass


class _Replay:
    """Renders what the server's events describe through ui, as the job's own run would
    (so --quiet, terminals and pipes behave as in-process), and keeps what the client
    itself needs: the job's number, the files being written, the exit code."""

    def __init__(self) -> None:
        self.open: list[Event] = []  # what close() ends if the stream stops: bars, the batch's bar, spinners
        self.writing: list[str] = []
        self.code: int | None = None
        self.job: int | None = None  # the server's number for this job

    def handle(self, data: dict[str, Any]) -> None:
        event = decode(data)
        if isinstance(event, Accepted):
            self.job = event.job
        elif isinstance(event, Exit):
            self.code = event.code
        elif isinstance(event, Writing):
            self.writing.append(event.path)
        elif event is not None and not isinstance(event, Refused):
            self._track(event)
            ui.show(event)

    def _track(self, event: Event) -> None:
        ending = {ProgressStart: lambda: ProgressEnd(event.id), BatchStart: BatchEnd, Status: StatusEnd}.get(type(event))
        if ending is not None:
            self.open.append(ending())
        elif event in self.open:  # an end the server sent: the last one of its kind
            del self.open[len(self.open) - 1 - self.open[::-1].index(event)]

    def close(self) -> None:
        """End what the server left open (it went away mid-job)."""
        while self.open:
            ui.show(self.open.pop())


class _Signals:
    """While a job runs in the server, this client's signals reach it as they would reach
    the job in-process: Ctrl-C cancels it after the current step (the client shuts down
    its sending side, which the server takes as "gone"), and for a batch a first SIGTERM
    stops it after the current video, a second at once (`POST /v1/jobs/N/stop`). The
    client keeps reading until the server says how the job ended, so when it exits
    nothing of the job is still being written. A second Ctrl-C leaves at once."""

    def __init__(self, path: Path, sock: socket.socket, replay: _Replay, *, batch: bool):
        self.path, self.sock, self.replay = path, sock, replay
        self.pending: bool | None = None  # a stop asked for before the job's number came
        self.ctrl_c = signals.after_current_step(first=self._shut_down_sending, second=self._leave)
        self.sigterm = (
            signals.after_current_video(first=lambda: self.stop(now=False), second=lambda: self.stop(now=True)) if batch else None
        )

    def __enter__(self) -> _Signals:
        self.ctrl_c.__enter__()
        if self.sigterm is not None:
            self.sigterm.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.sigterm is not None:
            self.sigterm.__exit__(*exc_info)
        self.ctrl_c.__exit__(*exc_info)

    def _shut_down_sending(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed: the server has seen it go

    @staticmethod
    def _leave() -> None:
        raise KeyboardInterrupt

    def stop(self, *, now: bool) -> None:
        if self.replay.job is None:
            self.pending = now or bool(self.pending)
            return
        try:
            connection, response = request("POST", f"jobs/{self.replay.job}/stop", {"now": now}, path=self.path)
        except ConnectionError:
            return  # the server is gone: the stream says so
        try:
            response.read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()

    def job_known(self) -> None:
        if self.pending is not None:
            now, self.pending = self.pending, None
            self.stop(now=now)


def submit(job: Request, stdin: bytes | None = None) -> int | None:
    """Run the request on the server; its exit code, or None when no server took the job
    (none running, or one stopping): then the caller runs it in-process."""
    path = find_server()
    if path is None:
        return None
    body = {**job.to_json(), "cwd": os.getcwd()}
    if stdin is not None:
        body["stdin"] = base64.b64encode(stdin).decode("ascii")
    try:
        connection, response = request("POST", "jobs", body, path=path, timeout=30.0)
    except ConnectionError:
        return None  # a stale socket, or a server going away: nothing was sent to run
    replay = _Replay()
    signals = _Signals(path, connection.raw_socket, replay, batch=job.command == "batch")
    try:
        if response.status != 200:
            reply = _json_or_empty(response.read())
            if reply.get("refused"):  # stopping: the job never ran
                return None
            ui.error(f"the vidgen server refused the job: {reply.get('error') or response.reason}")
            return int(ExitCode.FAILURE)
        connection.raw_socket.settimeout(None)  # a job may wait in the queue for a long time
        with signals:
            for line in response:
                event = _json_or_empty(line)
                if event.get("event") == "refused":
                    return None
                replay.handle(event)
                if event.get("event") == "accepted":
                    signals.job_known()
    except (OSError, http.client.HTTPException):
        pass  # the server went away: below
    finally:
        replay.close()
        connection.close()
        connection.raw_socket.close()
    if signals.ctrl_c.requested and replay.code is not None:
        if replay.code == ExitCode.SUCCESS:  # it ended before the cancellation reached it
            ui.error("interrupted after the job had finished; its output is complete")
        return int(ExitCode.INTERRUPTED)
    if replay.code is None:
        for written in replay.writing:
            _remove_partial(written)
        ui.error(
            "the vidgen server stopped before finishing this job; nothing was written (run it again: without a server it runs in-process)"
        )
        return int(ExitCode.FAILURE)
    return replay.code


def _json_or_empty(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ---- the commands ----


def run_generate(job: GenerateRequest) -> int | None:
    """`vidgen generate` through a server, or None (no server: run it in-process)."""
    if find_server() is None:
        return None
    job = resolve_paths(job.but(threads=cpu_thread_count(job.threads)))  # --threads or the client's VIDGEN_THREADS
    output = job.output
    if output not in (None, "-"):
        output_format(output)  # an unsupported suffix fails here
        output = _absolute_output(output)
        if (job.overrides.get("num_videos") or 1) == 1:
            check_output_path(Path(output), overwrite=job.overwrite)
    return submit(job.but(output=output))


def run_batch(job: BatchRequest) -> int | None:
    """`vidgen batch` through a server, or None (no server: run it in-process)."""
    if find_server() is None:
        return None
    given = job
    job = resolve_paths(job.but(threads=cpu_thread_count(job.threads), out_dir=str(Path(job.out_dir).expanduser().absolute())))
    stdin = None
    if job.prompts_file == "-":
        stdin = sys.stdin.buffer.read()
    else:
        job = job.but(prompts_file=str(Path(job.prompts_file).expanduser().absolute()))
    code = submit(job, stdin)
    if code is None and stdin is not None:
        # The server did not take it (stopping) after standard input was read here: run it
        # in-process now, on those bytes, passed in (sys.stdin is left as it is). Imported
        # here: torch and diffusers, only when the batch runs in this process.
        from vidgen.batch import run_batch as run_here

        return run_here(given, env=Environment(stdin=stdin))
    return code
