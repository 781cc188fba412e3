"""`vidgen serve`: a local server that keeps pipelines loaded between shell calls.

One process, in the foreground:
- the listener (transport.py: the standard library's HTTP server on a Unix socket, one
  thread per connection) reads each request, checks it and queues its job;
- one worker thread (worker.py) runs the jobs in arrival order through the same
  functions as in-process (jobs.py: single.run, batch.run_batch), each in its own run
  context (vidgen.context: the server's PipelineCache, the job's cancel token, its output
  sent to its client as JSON lines). A job carries its client's folder, standard input and its own
  output stream: the worker changes neither the working folder nor sys.stdin;
- the main thread (serve, below) waits for Ctrl-C or SIGTERM (or `vidgen serve --stop`):
  the first stops taking jobs, refuses the queued ones (their clients run them
  in-process) and finishes the job in hand; a second cancels that job after its
  current step.

A client that disconnects (Ctrl-C, killed) has its job cancelled after the current step,
or dropped if it has not started. Idle pipelines are unloaded after the keep-alive.
`--status` and `--stop`: control.py. Protocol and socket location: vidgen/cli/client.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from vidgen import locking, ui
from vidgen.errors import ExitCode, GenerationError, UsageError
from vidgen.server.address import private_dir_problem, socket_dir
from vidgen.server.control import LOCK_NAME, describe_keep_alive, print_status, stop_server
from vidgen.server.transport import bind
from vidgen.server.worker import Server

__all__ = ["Server", "describe_keep_alive", "print_status", "serve", "stop_server"]


def _prepare_dir() -> Path:
    folder = socket_dir()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the socket folder {folder}: {error.strerror or error}") from error
    problem = private_dir_problem(folder)
    if problem is not None:
        raise UsageError(f"refusing to serve: {problem}")
    return folder


def _take_lock(folder: Path) -> int:
    try:
        return locking.take(folder / LOCK_NAME, mode=0o600)
    except locking.LockHeld as held:
        who = f" (pid {held.holder})" if held.holder else ""
        raise GenerationError(
            f"a vidgen server is already running on {folder / 'vidgen.sock'}{who}; `vidgen serve --stop` stops it"
        ) from None
    except locking.CannotLock as error:
        raise GenerationError(f"cannot lock {folder / LOCK_NAME}: {error.reason}") from None


def serve(keep_alive: float) -> int:
    """`vidgen serve`: run until Ctrl-C, SIGTERM or `vidgen serve --stop`."""
    folder = _prepare_dir()
    lock = _take_lock(folder)
    path = folder / "vidgen.sock"
    httpd = None
    try:
        httpd = bind(path)
        server = Server(path, keep_alive)
        httpd.vidgen = server
        signals = {"count": 0}

        def on_signal(signum, frame) -> None:
            signals["count"] += 1
            if signals["count"] == 1:
                server.stopping.set()
            elif server.current is not None:
                ui.info("stopping the job in hand after its current step")
                server.current.cancel()

        # Signal handlers can only be set on the main thread; a server run on another thread
        # (the tests') is stopped through its socket (`POST /v1/stop`, as `--stop` does).
        on_main = threading.current_thread() is threading.main_thread()
        previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
        listener = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="vidgen-listener", daemon=True)
        worker = threading.Thread(target=server.work, name="vidgen-worker", daemon=True)
        listener.start()
        worker.start()
        ui.info(f"vidgen serve: listening on {path} (pid {os.getpid()}, keep-alive {describe_keep_alive(keep_alive)}); Ctrl-C stops it")
        try:
            while not server.stopping.wait(0.5):
                pass
            # Stop taking jobs: new clients find no socket and run in-process.
            httpd.shutdown()
            httpd.server_close()
            path.unlink(missing_ok=True)
            if server.current is not None:
                ui.info(f"stopping: finishing job {server.current.number} (Ctrl-C again cancels it after its current step)")
            server.jobs.put(None)  # after the queued ones, which are refused
            while worker.is_alive():
                worker.join(0.2)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        server.cache.clear()
        time.sleep(0.3)  # the last handlers flush their clients' final lines
        ui.info("vidgen serve: stopped")
        return ExitCode.SUCCESS
    finally:
        if httpd is not None:
            httpd.server_close()
            if path.exists():
                path.unlink(missing_ok=True)
        locking.release(lock)
