"""A server job: what it carries, and running it through the commands' own functions.

A job carries everything its run needs, so the server changes nothing of its own
process to run it (no working folder changed, no sys.stdin swapped) and another worker
could run another job beside it: the command and its arguments, with the paths of its
options made absolute by the client; the client's folder, for the relative paths only
the job reads (a prompts file's image and video values, the default output names); the
client's standard input as bytes (`batch -`); and its own output stream, `events`, which
the job's ui calls fill on the worker's thread (ui.remote_session: a per-thread sink)
and its connection's handler sends to the client.
"""

from __future__ import annotations

import base64
import binascii
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

from vidgen import ui
from vidgen.environment import Environment
from vidgen.errors import ExitCode, outcome

COMMANDS = {"generate": ("prompt",), "batch": ("prompts_file", "out_dir")}  # a command -> the string arguments it needs


class Job:
    """One client's request, from the queue to its exit event."""

    _numbers = iter(range(1, 1 << 62))

    def __init__(self, command: str, args: dict[str, Any], cwd: str | Path, client_pid: int | None, stdin: bytes | None = None):
        self.number = next(self._numbers)
        self.command, self.args, self.client_pid = command, args, client_pid
        self.env = Environment(cwd=Path(cwd), stdin=stdin)  # the client's folder and standard input
        self.events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._stop = threading.Event()  # a batch: stop after the current video
        self.cancel_code = ExitCode.INTERRUPTED  # TERMINATED when its client was sent SIGTERM twice
        self.queued_at = time.time()
        self.started_at: float | None = None

    @classmethod
    def from_request(cls, body: dict[str, Any], client_pid: int | None) -> "Job | str":
        """The job a `POST /v1/jobs` body asks for, or why it cannot be one."""
        command, args, cwd = body.get("command"), body.get("args"), body.get("cwd")
        if command not in COMMANDS or not isinstance(args, dict) or not isinstance(cwd, str) or not os.path.isabs(cwd):
            return "a job needs command (generate or batch), args (an object) and cwd (an absolute path)"
        needed = COMMANDS[command]
        if any(not isinstance(args.get(name), str) for name in needed):
            return f"a {command} job needs {', '.join(needed)} (strings)"
        args = dict(args)
        stdin = args.pop("stdin", None)
        if stdin is not None:
            try:
                stdin = base64.b64decode(stdin, validate=True) if isinstance(stdin, str) else None
            except (binascii.Error, ValueError):
                stdin = None
            if stdin is None:
                return "args.stdin must be base64 text"
        return cls(command, args, cwd, client_pid, stdin)

    # the ui.remote_session sink
    def send(self, event: dict[str, Any]) -> None:
        self.events.put(event)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self, code: ExitCode = ExitCode.INTERRUPTED) -> None:
        if not self._cancel.is_set():
            self.cancel_code = code
        self._cancel.set()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def summary(self) -> dict[str, Any]:
        what = self.args.get("prompt") if self.command == "generate" else self.args.get("prompts_file")
        return {
            "job": self.number,
            "command": self.command,
            "what": what if isinstance(what, str) else None,
            "client_pid": self.client_pid,
            "waiting_seconds": round((self.started_at or time.time()) - self.queued_at, 1),
            "running_seconds": None if self.started_at is None else round(time.time() - self.started_at, 1),
            "cancelled": self.cancelled(),
            "stopping": self.stop_requested(),
        }


def execute(job: Job, prepare: Callable[[], None] | None = None) -> int:
    """`prepare()` then the command's body, on this thread, its output sent to the job's
    client; errors become lines and codes as on the command line (errors.outcome)."""
    debug = bool(job.args.get("debug"))
    with ui.remote_session(job):
        try:
            if prepare is not None:
                prepare()
            return _call(job)
        except (KeyboardInterrupt, Exception) as error:
            ending = outcome(error, debug=debug)
            if ending.traceback:
                ui.print_traceback()
            if ending.message is not None:
                ui.error(ending.message)
            return ending.code


def _call(job: Job) -> int:
    """The same library function the command runs in-process, with the job's environment."""
    args = job.args
    common = {"preset": args.get("preset"), "model": args.get("model"), "overrides": dict(args.get("overrides") or {}), "strict": bool(args.get("strict"))}
    if job.command == "generate":
        # Imported here, not at the top: `vidgen serve --status` and `--stop` import this
        # package and stay free of torch and diffusers (the worker imports them first thing).
        from vidgen.single import OutputOptions, run

        options = OutputOptions(output=args.get("output"), overwrite=bool(args.get("overwrite")), as_json=bool(args.get("as_json")))
        run(args["prompt"], **common, options=options, env=job.env)
        return ExitCode.SUCCESS
    from vidgen.batch import run_batch  # as above: only in the worker

    return run_batch(args["prompts_file"], args["out_dir"], **common, resume=bool(args.get("resume")), overwrite=bool(args.get("overwrite")),
                     as_json=bool(args.get("as_json")), debug=bool(args.get("debug")), env=job.env)  # fmt: skip
