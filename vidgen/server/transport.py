"""HTTP over the Unix socket: the standard library's HTTP server, one thread per
connection. Each request is checked (API version, size, JSON, the peer's uid); a job's
is queued with the server and answered with the job's events as JSON lines, while a
watcher cancels the job if its client leaves. Protocol: vidgen/cli/client.py.
"""

from __future__ import annotations

import json
import os
import select
import socket
import socketserver
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from vidgen import ui
from vidgen.context import Accepted
from vidgen.errors import ExitCode, GenerationError, UsageError
from vidgen.server.address import API, MAX_SOCKET_PATH
from vidgen.server.jobs import Job

MAX_REQUEST_BYTES = 64 << 20  # a prompts file from standard input travels in the request


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    vidgen: Any  # the Server (vidgen.server.worker): submit, find, status, stopping

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
        job = Job.from_request(body, self.client_pid)
        if isinstance(job, str):
            self._reply(400, {"error": job})
            return
        job.send(Accepted(job.number))  # the first line: the number `jobs/N/stop` takes
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


def bind(path: Path) -> _UnixHTTPServer:
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
