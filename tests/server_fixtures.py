"""`vidgen serve` for the tests: on a thread of the test process (vidgen.server.serve itself,
its socket in a short folder under /tmp), or as a real `vidgen serve` subprocess for the few
checks that need one (its signals, a kill -9, a process that has not imported torch yet).

A server on a thread costs no process and no second torch import: a module shares one
(`thread_server`, scope="module"), and `served` points the test's in-process clients at it
(XDG_RUNTIME_DIR). Clients stay real: `run_cli(...)` goes through vidgen.cli.client over the
socket, and `served.run(...)` / `served.client(...)` start real `vidgen` processes, which
import no torch. The server's own lines (what `vidgen serve` prints on its standard error)
are collected in `served.output()`: vidgen.ui's console writes what a thread other than the
main one prints there (the server's listener, worker and connection threads), and what the
main thread prints where it always goes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HANG = 300  # seconds: only to stop a hung test, never a measure
KEEP_ALIVE = 300.0  # `vidgen serve`'s default, 5m


def client_env(runtime: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), **extra}
    env.pop("VIDGEN_NO_SERVER", None)
    return env


def ctrl_c_default() -> None:
    """A shell starts background jobs with Ctrl-C ignored, and children inherit that: in a suite run
    with `&` the clients would ignore the SIGINT these tests send, as a CLI should."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def vidgen_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vidgen", *map(str, args)]


def short_runtime_dir() -> Path:
    """A folder for the socket, short (a Unix socket's path is at most 107 bytes) and private."""
    folder = Path(tempfile.mkdtemp(prefix="vg-", dir="/tmp"))
    os.chmod(folder, 0o700)
    return folder


class _Clients:
    """What talks to a server through its socket: real `vidgen` client processes."""

    runtime: Path
    env: dict[str, str]
    socket: Path

    def run(self, *args: str, **options) -> subprocess.CompletedProcess:
        return subprocess.run(vidgen_command(*args), env=self.env, capture_output=True, timeout=HANG, **options)

    def client(self, *args: str, **options) -> subprocess.Popen:
        return subprocess.Popen(
            vidgen_command(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ctrl_c_default, **options
        )

    def status(self) -> dict:
        """GET /v1/status through vidgen.cli.client (what `vidgen serve --status --json` sends)."""
        from vidgen.server.address import get_json

        reply = get_json("GET", "status", path=self.socket)
        assert reply is not None, "the server did not answer"
        return reply

    def wait_running(self) -> dict:
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("running"):
                return status
            time.sleep(0.1)
        raise AssertionError("no job started")

    def wait_idle(self) -> dict:
        """The status once nothing runs or waits (a cancelled job has ended)."""
        deadline = time.monotonic() + HANG
        while (status := self.status()).get("running") or status.get("queued"):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        return status


class _ThreadLog(io.TextIOBase):
    """vidgen.ui's console file while servers run on threads: the main thread's text goes to
    sys.stderr as it is then (pytest's capture, CliRunner's), every other thread's to `lines`."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        if threading.current_thread() is threading.main_thread():
            return sys.stderr.write(text)
        with self.lock:
            self.text.append(text)
        return len(text)

    def flush(self) -> None:
        if threading.current_thread() is threading.main_thread():
            sys.stderr.flush()

    def isatty(self) -> bool:
        return False

    def read_all(self) -> str:
        with self.lock:
            return "".join(self.text)


class _LogRouting:
    """Counts the servers on threads, and routes vidgen.ui's console through _ThreadLog while any runs."""

    def __init__(self) -> None:
        self.users = 0
        self.log = _ThreadLog()
        self.previous = None

    def acquire(self) -> _ThreadLog:
        from rich.console import Console

        from vidgen import ui

        if self.users == 0:
            self.previous = ui._stderr
            ui._stderr = Console(file=self.log, highlight=False)
        self.users += 1
        return self.log

    def release(self) -> None:
        from vidgen import ui

        self.users -= 1
        if self.users == 0:
            ui._stderr = self.previous


_routing = _LogRouting()


class ThreadServer(_Clients):
    """vidgen.server.serve(keep_alive) on a thread of this process, its socket in `runtime`;
    stop() asks it to stop as `vidgen serve --stop` does (POST /v1/stop) and waits for its end."""

    def __init__(self, keep_alive: float = KEEP_ALIVE, runtime: Path | None = None):
        from vidgen.server.serve import serve

        self.runtime = runtime or short_runtime_dir()
        self.env = client_env(self.runtime)
        self.socket = self.runtime / "vidgen" / "vidgen.sock"
        self.own_runtime = runtime is None
        self.log = _routing.acquire()
        self.released = False
        self.start = self.mark()
        self.code: list[int] = []
        with pytest.MonkeyPatch.context() as patch:  # serve() reads where its socket goes as it starts
            patch.setenv("XDG_RUNTIME_DIR", str(self.runtime))
            self.thread = threading.Thread(target=lambda: self.code.append(serve(keep_alive)), name="vidgen-serve", daemon=True)
            self.thread.start()
            deadline = time.monotonic() + HANG
            while f"listening on {self.socket}" not in self.output():
                assert self.thread.is_alive(), self.output()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.02)

    def mark(self) -> int:
        """Where the log is now: output(since=mark()) is what was printed after."""
        return len(self.log.read_all())

    def output(self, since: int | None = None) -> str:
        """What this server (and any other on a thread meanwhile) has printed since it
        started, or since `since` (a mark())."""
        return self.log.read_all()[self.start if since is None else since :]

    def stop(self) -> int:
        """Stop it through its socket (if it still runs); its exit code."""
        if self.thread.is_alive():
            from vidgen.server.address import get_json

            get_json("POST", "stop", path=self.socket)
            self.thread.join(HANG)
            assert not self.thread.is_alive(), "the server did not stop"
        if not self.released:
            self.released = True
            _routing.release()
        return self.code[0] if self.code else -1


class ProcessServer(_Clients):
    """A real `vidgen serve` subprocess; stop() sends SIGTERM (SIGKILL if that does not end it)."""

    def __init__(self, runtime: Path, *args: str, cwd: Path | None = None):
        self.runtime = runtime
        self.env = client_env(runtime)
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            vidgen_command("serve", *args), env=self.env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=ctrl_c_default, cwd=cwd
        )
        self.socket = runtime / "vidgen" / "vidgen.sock"
        deadline = time.monotonic() + HANG
        while not self.socket.exists():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def thread_server():
    """One server on a thread for the module (default keep-alive); stopped, and its exit checked, at the end."""
    server = ThreadServer()
    yield server
    code = server.stop()
    shutil.rmtree(server.runtime, ignore_errors=True)
    assert code == 0, server.output()


@pytest.fixture
def served(thread_server, monkeypatch) -> ThreadServer:
    """The module's server, with this test's in-process clients (run_cli) pointed at it."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(thread_server.runtime))
    assert thread_server.thread.is_alive(), thread_server.output()
    return thread_server


@pytest.fixture
def runtime_dir():
    folder = short_runtime_dir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def serve_process(runtime_dir):
    """`serve_process(*args, cwd=None)` starts a real `vidgen serve`; all are stopped at the end."""
    started: list[ProcessServer] = []

    def start(*args: str, cwd: Path | None = None) -> ProcessServer:
        started.append(ProcessServer(runtime_dir, *args, cwd=cwd))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def serve_thread(monkeypatch):
    """`serve_thread(keep_alive=300, runtime=None)`: a server of this test's own on a thread
    (stopped at the end), with the test's in-process clients pointed at the last one started."""
    started: list[ThreadServer] = []

    def start(keep_alive: float = KEEP_ALIVE, runtime: Path | None = None) -> ThreadServer:
        started.append(ThreadServer(keep_alive, runtime))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(started[-1].runtime))
        return started[-1]

    yield start
    for server in started:
        server.stop()
        if server.own_runtime:
            shutil.rmtree(server.runtime, ignore_errors=True)


def status_json(env: dict[str, str]) -> dict:
    """`vidgen serve --status --json` as a process."""
    done = subprocess.run(vidgen_command("serve", "--status", "--json"), env=env, capture_output=True, timeout=HANG)
    return json.loads(done.stdout)
