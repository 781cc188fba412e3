"""`vidgen serve`: a local server that keeps pipelines loaded between shell calls.

One process, in the foreground:
- the listener (the standard library's HTTP server on a Unix socket, one thread per
  connection) reads each request, checks it and queues its job;
- one worker thread runs the jobs in arrival order through the same code as in-process
  (generate.run, batch.run_batch), with vidgen.runner's PipelineCache installed and the
  job's output sent to its client as JSON lines (ui.remote_session);
- the main thread waits for Ctrl-C or SIGTERM (or `vidgen serve --stop`): the first stops
  taking jobs, refuses the queued ones (their clients run them in-process) and finishes
  the job in hand; a second cancels that job after its current step.

A client that disconnects (Ctrl-C, killed) has its job cancelled after the current step,
or dropped if it has not started. Idle pipelines are unloaded after the keep-alive.
Protocol and socket location: vidgen/client.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from vidgen import locking, ui
from vidgen.client import API, MAX_SOCKET_PATH, private_dir_problem, socket_dir
from vidgen.errors import ExitCode, GenerationError, UsageError, VidgenError
from vidgen.runner import KEEP_FOREVER, PipelineCache, use_cache

MAX_REQUEST_BYTES = 64 << 20  # a prompts file from standard input travels in the request
LOCK_NAME = "server.lock"  # flock held while a server runs: one server per socket


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_keep_alive(seconds: float) -> str:
    if seconds == KEEP_FOREVER:
        return "-1 (never unload)"
    if seconds == 0:
        return "0 (unload after each job)"
    return _format_seconds(seconds)


# ---- jobs ----


class Job:
    """One client's request: the worker's output goes into `events` for its handler."""

    _numbers = iter(range(1, 1 << 62))

    def __init__(self, command: str, args: dict[str, Any], cwd: str, client_pid: int | None):
        self.number = next(self._numbers)
        self.command, self.args, self.cwd, self.client_pid = command, args, cwd, client_pid
        self.events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._stop = threading.Event()  # a batch: stop after the current video
        self.cancel_code = ExitCode.INTERRUPTED  # TERMINATED when its client was sent SIGTERM twice
        self.queued_at = time.time()
        self.started_at: float | None = None

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


def _memory(libraries_ready: bool) -> dict[str, Any]:
    """Resident memory, and with torch imported and CUDA in use, memory on each card. Not
    before the worker's first imports have finished: a torch module still being imported
    in another thread is in sys.modules half-made, and reading it there failed the reply."""
    memory: dict[str, Any] = {"rss_bytes": None}
    try:
        with open("/proc/self/statm") as file:
            memory["rss_bytes"] = int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        memory["rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch = sys.modules.get("torch") if libraries_ready else None
    if torch is not None and torch.cuda.is_initialized():
        memory["cuda_allocated_bytes"] = {f"cuda:{i}": torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())}
    return memory


class Server:
    """The queue, the worker and the cache; the HTTP side calls submit() and status()."""

    def __init__(self, socket_file: Path, keep_alive: float):
        self.socket_file = socket_file
        self.cache = PipelineCache(keep_alive)
        self.jobs: queue.Queue = queue.Queue()
        self.current: Job | None = None
        self.stopping = threading.Event()
        self.libraries_ready = threading.Event()  # set once the worker has imported torch and diffusers
        self.started = time.time()
        self.done = 0
        self._default_threads: int | None = None

    def submit(self, job: Job) -> bool:
        if self.stopping.is_set():
            return False
        self.jobs.put(job)
        return True

    def find(self, number: int) -> Job | None:
        """The running or queued job with this number."""
        current = self.current
        if current is not None and current.number == number:
            return current
        return next((job for job in self.queued() if job.number == number), None)

    def queued(self) -> list[Job]:
        with self.jobs.mutex:
            return [job for job in self.jobs.queue if job is not None and not job.cancelled()]

    def status(self) -> dict[str, Any]:
        return {
            "api": API,
            "pid": os.getpid(),
            "socket": str(self.socket_file),
            "uptime_seconds": round(time.time() - self.started, 1),
            "keep_alive_seconds": self.cache.keep_alive,
            "stopping": self.stopping.is_set(),
            "models": self.cache.describe(),
            "memory": _memory(self.libraries_ready.is_set()),
            "running": None if self.current is None else self.current.summary(),
            "queued": [job.summary() for job in self.queued()],
            "jobs_done": self.done,
        }

    # ---- the worker ----

    def work(self) -> None:
        """Run jobs one at a time, in arrival order, until stopped."""
        import torch

        from vidgen.pipeline import _quiet_library_logging

        _quiet_library_logging()  # imports diffusers and transformers once, before any job
        self.libraries_ready.set()
        self._default_threads = torch.get_num_threads()
        use_cache(self.cache)
        while True:
            try:
                job = self.jobs.get(timeout=1.0)
            except queue.Empty:
                self._expire()
                continue
            if job is None:
                return
            if job.cancelled():  # its client left (or was interrupted) while it waited
                job.send({"event": "error", "message": "interrupted before the job started; nothing was written"})
                job.send({"event": "exit", "code": int(job.cancel_code)})
                continue
            if self.stopping.is_set():
                job.send({"event": "refused", "message": "the vidgen server is stopping"})
                continue
            self._run(job)
            self._expire()

    def _expire(self) -> None:
        for model in self.cache.expire():
            ui.info(f"unloaded {model} (idle for the keep-alive, {describe_keep_alive(self.cache.keep_alive)})")

    def _threads(self, threads: Any) -> None:
        """The job's --threads (or its VIDGEN_THREADS), else the server's own count."""
        from vidgen import acceleration

        if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
            acceleration.apply_threads(threads)
        elif self._default_threads is not None:
            import torch

            torch.set_num_threads(self._default_threads)
            acceleration._configured_threads = None

    def _run(self, job: Job) -> None:
        self.current = job
        job.started_at = time.time()
        home = os.getcwd()
        code: int = ExitCode.FAILURE
        with ui.remote_session(job):
            try:
                os.chdir(job.cwd)  # relative names in a prompts file mean what they mean to the client
                code = self._execute(job)
            except OSError as error:
                ui.error(f"cannot work in {job.cwd}: {error.strerror or error}")
            finally:
                os.chdir(home)
        self.cache.touch_all()
        self.done += 1
        self.current = None
        outcome = "cancelled" if job.cancelled() else f"exit {int(code)}"
        ui.info(f"job {job.number} ({job.command}): {outcome} in {time.time() - job.started_at:.1f}s")
        job.send({"event": "exit", "code": int(code)})

    def _execute(self, job: Job) -> int:
        """The command's body, with errors turned into lines and codes as cli._guarded does."""
        args = job.args
        debug = bool(args.get("debug"))
        try:
            self._threads(args.get("threads"))
            if job.command == "generate":
                from vidgen.single import OutputOptions, run

                options = OutputOptions(output=args.get("output"), overwrite=bool(args.get("overwrite")), as_json=bool(args.get("as_json")))
                run(args["prompt"], preset=args.get("preset"), model=args.get("model"), overrides=dict(args.get("overrides") or {}),
                    strict=bool(args.get("strict")), options=options)  # fmt: skip
                return ExitCode.SUCCESS
            from vidgen.batch import run_batch

            previous_stdin = sys.stdin
            if args.get("stdin") is not None:
                sys.stdin = io.TextIOWrapper(io.BytesIO(base64.b64decode(args["stdin"])))
            try:
                return run_batch(args["prompts_file"], args["out_dir"], preset=args.get("preset"), model=args.get("model"),
                                 overrides=dict(args.get("overrides") or {}), strict=bool(args.get("strict")), resume=bool(args.get("resume")),
                                 overwrite=bool(args.get("overwrite")), as_json=bool(args.get("as_json")), debug=debug)  # fmt: skip
            finally:
                sys.stdin = previous_stdin
        except VidgenError as error:
            if debug:
                ui.print_traceback()
            ui.error(error.message)
            return error.exit_code
        except Exception as error:  # a bug: one line, the traceback with --debug
            if debug:
                ui.print_traceback()
            hint = "" if debug else " (run with --debug for the traceback)"
            ui.error(f"unexpected {type(error).__name__}: {error}{hint}")
            return ExitCode.FAILURE


# ---- HTTP over the Unix socket ----


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    vidgen: Server

    def handle_error(self, request, client_address) -> None:
        # A request that broke its handler: one line in the server's log, never a stop.
        error = sys.exc_info()[1]
        ui.warn(f"a request failed: {type(error).__name__}: {error}")


def _peer(connection: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process at the other end of the socket (Linux), else Nones."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None, None
    try:
        pid, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return None, None
    return pid, uid


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; a job's stream ends with it
    server_version = "vidgen-serve"
    server: _UnixHTTPServer
    # The standard library's own replies (a malformed request line...) as JSON too.
    error_message_format = '{"error": "%(code)d %(message)s"}'
    error_content_type = "application/json"

    def log_message(self, format: str, *args) -> None:
        pass  # jobs are logged by the worker

    def address_string(self) -> str:
        return "unix"

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> str | None:
        """The path after /v1/, or None after an error reply (unknown version or path)."""
        parts = self.path.split("?")[0].strip("/").split("/")
        if not parts or not parts[0].startswith("v") or parts[0] != API:
            self._reply(404, {"error": f"unknown API version in {self.path!r}; this server speaks /{API}/"})
            return None
        return "/".join(parts[1:])

    def _body(self) -> dict[str, Any] | None:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._reply(411, {"error": "a Content-Length is required"})
            return None
        length = int(length_text)
        if length > MAX_REQUEST_BYTES:
            self._reply(413, {"error": f"request of {length} bytes is over the limit of {MAX_REQUEST_BYTES}"})
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, RecursionError) as error:
            self._reply(400, {"error": f"malformed JSON: {error}"})
            return None
        if not isinstance(body, dict):
            self._reply(400, {"error": "the body must be a JSON object"})
            return None
        return body

    def _allowed(self) -> bool:
        pid, uid = _peer(self.connection)
        self.client_pid = pid
        if uid is not None and uid != os.getuid():
            self._reply(403, {"error": "only the user who started the server may use it"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._allowed() or (route := self._route()) is None:
            return
        if route == "status":
            self._reply(200, self.server.vidgen.status())
        else:
            self._reply(404, {"error": f"no such path: {self.path}"})

    def do_POST(self) -> None:
        if not self._allowed() or (route := self._route()) is None:
            return
        body = self._body()
        if body is None:
            return
        if route == "stop":
            self.server.vidgen.stopping.set()
            self._reply(200, {"stopping": True, "pid": os.getpid()})
        elif route == "jobs":
            self._job(body)
        elif route.startswith("jobs/") and route.endswith("/stop"):
            self._stop_job(route.split("/")[1], body)
        else:
            self._reply(404, {"error": f"no such path: {self.path}"})

    def _job(self, body: dict[str, Any]) -> None:
        command, args, cwd = body.get("command"), body.get("args"), body.get("cwd")
        if command not in ("generate", "batch") or not isinstance(args, dict) or not isinstance(cwd, str) or not os.path.isabs(cwd):
            self._reply(400, {"error": "a job needs command (generate or batch), args (an object) and cwd (an absolute path)"})
            return
        needed = ("prompt",) if command == "generate" else ("prompts_file", "out_dir")
        if any(not isinstance(args.get(name), str) for name in needed):
            self._reply(400, {"error": f"a {command} job needs {', '.join(needed)} (strings)"})
            return
        job = Job(command, args, cwd, self.client_pid)
        job.send({"event": "accepted", "job": job.number})  # the first line: the number `jobs/N/stop` takes
        if not self.server.vidgen.submit(job):
            self._reply(503, {"error": "the vidgen server is stopping", "refused": True})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        self.wfile.flush()
        self._stream(job)

    def _stop_job(self, number: str, body: dict[str, Any]) -> None:
        """`POST /v1/jobs/N/stop`: what SIGTERM to a batch's client asks for. {"now": false}:
        stop after the current video; {"now": true}: cancel after the current step, exit 143."""
        job = self.server.vidgen.find(int(number)) if number.isdigit() else None
        if job is None:
            self._reply(404, {"error": f"no running or queued job {number}"})
            return
        if body.get("now"):
            job.cancel(ExitCode.TERMINATED)
        else:
            job.request_stop()
        self._reply(200, {"job": job.number, "cancelled": job.cancelled(), "stopping": job.stop_requested()})

    def _watch_client(self, job: Job, wake: int) -> None:
        """The watcher thread: cancel `job` (after its current step, or before it starts)
        as soon as its client closes its end of the connection (Ctrl-C shuts down its
        sending side; a killed client closes both). The client sends nothing after its
        request, so anything readable is either the end (b"") or stray bytes to drop.
        This waits on the socket itself rather than being checked between events: a
        running job sends a `step` event every few milliseconds, so a check made only
        when the stream fell idle never came and a Ctrl-C'd job ran to its end; nor can
        the writer look while it is blocked on a client that reads slowly. `wake` (a
        pipe) becomes readable when the stream is over."""
        while True:
            try:
                readable, _, _ = select.select([self.connection, wake], [], [])
                if wake in readable:
                    return
                if self.connection.recv(4096) != b"":
                    continue
            except OSError:
                pass  # a broken connection: the client is gone as well
            job.cancel()
            return

    def _stream(self, job: Job) -> None:
        """The job's events to its client until its exit, while another thread watches
        for the client leaving (which cancels the job). The stream goes on after a
        client's Ctrl-C so that a client still reading learns how the job ended (and only
        then exits, with nothing of the job's still being written)."""
        wake_read, wake_write = os.pipe()
        watcher = threading.Thread(target=self._watch_client, args=(job, wake_read), name=f"vidgen-watch-{job.number}", daemon=True)
        watcher.start()
        try:
            while True:
                event = job.events.get()
                try:
                    self.wfile.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
                    self.wfile.flush()
                except OSError:
                    job.cancel()
                    return
                if event.get("event") in ("exit", "refused"):
                    return
        finally:
            # The watcher must be done with the socket before the server closes it (its
            # descriptor could then be reused by another connection).
            os.write(wake_write, b"x")
            watcher.join()
            os.close(wake_read)
            os.close(wake_write)


# ---- starting and stopping ----


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
        raise GenerationError(f"a vidgen server is already running on {folder / 'vidgen.sock'}{who}; `vidgen serve --stop` stops it") from None
    except locking.CannotLock as error:
        raise GenerationError(f"cannot lock {folder / LOCK_NAME}: {error.reason}") from None


def _bind(path: Path) -> _UnixHTTPServer:
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        raise UsageError(f"the socket path {path} is longer than {MAX_SOCKET_PATH} bytes; set XDG_RUNTIME_DIR to a shorter folder")
    if path.exists() or path.is_symlink():
        # We hold the lock, so no server owns it: a server killed without cleaning up.
        path.unlink()
        ui.info(f"replaced a stale socket left by a server that was killed: {path}")
    previous = os.umask(0o177)  # the socket is born 0600: no moment when others could connect
    try:
        httpd = _UnixHTTPServer(str(path), _Handler)
    except OSError as error:
        raise GenerationError(f"cannot listen on {path}: {error.strerror or error}") from error
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    return httpd


def serve(keep_alive: float) -> int:
    """`vidgen serve`: run until Ctrl-C, SIGTERM or `vidgen serve --stop`."""
    folder = _prepare_dir()
    lock = _take_lock(folder)
    path = folder / "vidgen.sock"
    httpd = None
    try:
        httpd = _bind(path)
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

        previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
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
        use_cache(None)
        time.sleep(0.3)  # the last handlers flush their clients' final lines
        ui.info("vidgen serve: stopped")
        return ExitCode.SUCCESS
    finally:
        if httpd is not None:
            httpd.server_close()
            if path.exists():
                path.unlink(missing_ok=True)
        locking.release(lock)


# ---- --status and --stop (client side: no torch) ----


def print_status(as_json: bool) -> int:
    from vidgen.client import get_json, socket_path

    status = get_json("GET", "status") if socket_path().exists() else None
    if status is None:
        if as_json:
            ui.emit_json({"running": False, "socket": str(socket_path())})
        ui.warn(f"no vidgen server is running (socket {socket_path()})")
        return ExitCode.FAILURE
    if as_json:
        ui.emit_json({"running": True, **status})
        return ExitCode.SUCCESS
    rss = status["memory"].get("rss_bytes")
    ui.emit_result(f"vidgen server: pid {status['pid']}, up {_format_seconds(status['uptime_seconds'])}, keep-alive "
                   f"{describe_keep_alive(status['keep_alive_seconds'])}{', stopping' if status.get('stopping') else ''}")  # fmt: skip
    ui.emit_result(f"socket: {status['socket']}")
    memory = f"memory: {rss / 2**20:.0f} MiB resident" if rss else "memory: unknown"
    for device, allocated in (status["memory"].get("cuda_allocated_bytes") or {}).items():
        memory += f", {allocated / 2**30:.1f} GiB on {device}"
    ui.emit_result(memory)
    running = status.get("running")
    if running:
        ui.emit_result(f"running: job {running['job']} {running['command']} {json.dumps(running['what'], ensure_ascii=False)} for "
                       f"{_format_seconds(running['running_seconds'] or 0)} (client pid {running['client_pid']})")  # fmt: skip
    else:
        ui.emit_result("running: nothing")
    ui.emit_result(f"queued: {len(status['queued'])} job{'s' if len(status['queued']) != 1 else ''}, {status['jobs_done']} done")
    if not status["models"]:
        ui.emit_result("models: none loaded")
    for model in status["models"]:
        unloads = "never unloads" if model["unloads_in_seconds"] is None else f"unloads in {_format_seconds(model['unloads_in_seconds'])}"
        extras = "".join(f", {name} {model[name]}" for name in ("offload", "cache") if model[name] != "none")
        extras += ", compiled" if model["compiled"] else ""
        extras += "".join(f", lora {lora}" for lora in model["loras"])
        ui.emit_result(f"model: {model['model']} ({model['pipeline']} on {model['device']}, {model['dtype']}{extras}); "
                       f"{model['jobs']} jobs, idle {_format_seconds(model['idle_seconds'])}, {unloads}")  # fmt: skip
    return ExitCode.SUCCESS


def stop_server() -> int:
    from vidgen.client import get_json, socket_path

    path = socket_path()
    reply = get_json("POST", "stop") if path.exists() else None
    if reply is None:
        ui.warn(f"no vidgen server is running (socket {path})")
        return ExitCode.FAILURE
    pid = reply.get("pid")
    # It finishes the job in hand first. It is gone when its lock is free (the kernel
    # drops a dead process's locks, zombie or not).
    locking.wait_until_free(path.parent / LOCK_NAME)
    ui.info(f"stopped the vidgen server (pid {pid})")
    return ExitCode.SUCCESS
