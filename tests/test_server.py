"""`vidgen serve`: jobs handed to a running server look exactly like in-process runs.

Every server runs as a real subprocess with its own XDG_RUNTIME_DIR (short, under /tmp,
since a Unix socket's path is limited to 107 bytes) and VIDGEN_HOME, and is stopped in
the fixture's teardown (SIGKILL if SIGTERM does not end it). Clients are real `vidgen`
processes. Timeouts only guard against hangs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ARGS, gallery_file
from vidgen.batch import file_sha256
from vidgen.readback import read_frames, read_recipe

# Processes, a server, launchers or Ray: `slow` (make check leaves it out).
pytestmark = pytest.mark.slow

HANG = 300  # seconds: only to stop a hung test, never a measure


def _env(runtime: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), **extra}
    env.pop("VIDGEN_NO_SERVER", None)
    return env


def _ctrl_c_default() -> None:
    """A shell starts background jobs with Ctrl-C ignored, and children inherit that: in a suite run
    with `&` the clients would ignore the SIGINT these tests send, as a CLI should."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _vidgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "vidgen", *map(str, args)]


class Served:
    """A `vidgen serve` subprocess and helpers to talk to it."""

    def __init__(self, runtime: Path, *args: str, cwd: Path | None = None):
        self.runtime = runtime
        self.env = _env(runtime)
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(_vidgen("serve", *args), env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=_ctrl_c_default, cwd=cwd)
        self.socket = runtime / "vidgen" / "vidgen.sock"
        deadline = time.monotonic() + HANG
        while not self.socket.exists():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def run(self, *args: str, **options) -> subprocess.CompletedProcess:
        return subprocess.run(_vidgen(*args), env=self.env, capture_output=True, timeout=HANG, **options)

    def client(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(_vidgen(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_ctrl_c_default)

    def status(self) -> dict:
        done = self.run("serve", "--status", "--json")
        return json.loads(done.stdout)

    def wait_running(self) -> dict:
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("running"):
                return status
            time.sleep(0.2)
        raise AssertionError("no job started")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def runtime_dir():
    folder = Path(tempfile.mkdtemp(prefix="vg-", dir="/tmp"))
    os.chmod(folder, 0o700)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def serve(runtime_dir):
    """`serve(*args, cwd=None)` starts a server (at most one per test is expected); all are stopped."""
    started: list[Served] = []

    def start(*args: str, cwd: Path | None = None) -> Served:
        served = Served(runtime_dir, *args, cwd=cwd)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def _tiny(model: Path, prompt: str, *args: str) -> list[str]:
    return [prompt, "--model", str(model), *TINY_ARGS, *args]


def _no_partial_files(folder: Path) -> None:
    leftovers = [path.name for path in folder.iterdir() if ".part" in path.name]
    assert leftovers == []


def test_generate_through_server_matches_in_process(serve, tiny_wan_dir: Path, tmp_path: Path, run_cli, monkeypatch):
    served = serve()
    first = served.run(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "served.mp4"))
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout.decode().strip() == str(Path.cwd() / "served.mp4")
    assert "seed 5" in first.stderr.decode()
    again = served.run(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "again.mp4", "--json"))
    assert again.returncode == 0, again.stderr.decode()
    assert json.loads(again.stdout)["seed"] == 5
    assert "kept loaded by vidgen serve" in again.stderr.decode()
    streamed = served.run(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "-"))
    assert streamed.returncode == 0, streamed.stderr.decode()
    (tmp_path / "streamed.mp4").write_bytes(streamed.stdout)
    status = served.status()
    assert status["jobs_done"] == 3 and len(status["models"]) == 1 and status["models"][0]["jobs"] == 3

    # The reference runs in this process (a fresh one only imported torch again), in sight of the
    # server's socket: --no-server must keep it away from the server.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(served.runtime))
    local = run_cli(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "local.mp4", "--no-server"))
    assert local.exit_code == 0, local.stderr
    assert served.status()["jobs_done"] == 3  # --no-server ran in-process
    reference = read_frames(Path("local.mp4"))
    for name in ("served.mp4", "again.mp4", tmp_path / "streamed.mp4"):
        assert np.array_equal(read_frames(Path(name)), reference), name
    assert read_recipe(Path("served.mp4"))["seed"] == 5


def test_one_request_makes_the_same_video_through_every_front_door(serve, tiny_wan_dir: Path, run_cli):
    """One code path makes a video (issue 31): the same request through the command line in
    this process, a server's job and a batch of one line (no Ray) gives the same record, less
    where and how long (and the batch's own fields), and the same frames."""
    args = ["--model", str(tiny_wan_dir), *TINY_ARGS]
    served = serve()
    remote = served.run("a red ball", *args, "--seed", "5", "-o", "served.mp4", "--json")
    assert remote.returncode == 0, remote.stderr.decode()
    local = run_cli("a red ball", *args, "--seed", "5", "-o", "local.mp4", "--json")  # no server in sight: in-process
    assert local.exit_code == 0, local.stderr
    Path("line.jsonl").write_text('{"prompt": "a red ball", "seed": 5}\n')
    batch = run_cli("batch", "line.jsonl", "-O", "batch", *args, "--json", "--no-gallery")
    assert batch.exit_code == 0, batch.stderr
    assert served.status()["jobs_done"] == 1
    records = {"cli": json.loads(local.stdout), "server": json.loads(remote.stdout), "batch": json.loads(batch.stdout)}
    [manifest] = [json.loads(line) for line in (Path("batch") / "manifest.jsonl").read_text().splitlines()]
    assert manifest == {key: value for key, value in records["batch"].items() if key != "path"}  # stdout: the record and its path
    batch_own = {"line", "video", "output", "status", "error", "process", "finished_at"}
    assert set(records["batch"]) == set(records["cli"]) | batch_own
    made = {door: {key: value for key, value in record.items() if key not in {"path", "seconds", *batch_own}} for door, record in records.items()}
    assert made["cli"] == made["server"] == made["batch"], made
    assert (made["cli"]["seed"], made["cli"]["settings"]["seed"], made["cli"]["frames"]) == (5, 5, 9)
    frames = {door: read_frames(Path(record["path"])) for door, record in records.items()}
    assert Path(records["batch"]["path"]) == Path.cwd() / "batch" / records["batch"]["output"]
    for door, record in records.items():
        assert record["sha256"] == file_sha256(Path(record["path"])), door
        assert np.array_equal(frames[door], frames["cli"]), door


def test_client_imports_no_torch(serve, tiny_wan_dir: Path):
    served = serve()
    script = (
        "import atexit, sys\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'numpy')\n"
        "atexit.register(lambda: sys.stderr.write('HEAVY=' + ','.join(m for m in heavy if m in sys.modules) + '\\n'))\n"
        "from vidgen.cli import main\n"
        f"sys.argv = ['vidgen', *{_tiny(tiny_wan_dir, 'a ball', '--seed', '1', '-o', 'light.mp4')!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=served.env, capture_output=True, timeout=HANG)
    assert done.returncode == 0, done.stderr.decode()
    assert "HEAVY=\n" in done.stderr.decode()
    assert Path("light.mp4").is_file() and served.status()["jobs_done"] == 1
    # and without a server, the same script does import them (the check can fail)
    served.stop()
    done = subprocess.run([sys.executable, "-c", script.replace("light.mp4", "heavy.mp4")], env=served.env, capture_output=True, timeout=HANG)
    assert done.returncode == 0 and "HEAVY=torch" in done.stderr.decode()


def test_three_clients_at_once(serve, tiny_wan_dir: Path):
    served = serve()
    clients = [served.client(*_tiny(tiny_wan_dir, f"ball {i}", "--seed", str(i), "-o", f"c{i}.mp4")) for i in range(3)]
    for i, client in enumerate(clients):
        out, err = client.communicate(timeout=HANG)
        assert client.returncode == 0, err.decode()
        assert out.decode().strip() == str(Path.cwd() / f"c{i}.mp4")
        recipe = read_recipe(Path(f"c{i}.mp4"))
        assert (recipe["seed"], recipe["prompt"]) == (i, f"ball {i}")
    assert served.status()["jobs_done"] == 3


def test_cancel_one_leaves_the_others_and_status_during_a_job(serve, tiny_wan_dir: Path):
    served = serve()
    # Long enough to be caught running while three more processes start on a busy machine; it is
    # cancelled long before its end.
    slow = served.client(*_tiny(tiny_wan_dir, "slow", "--seed", "1", "-o", "slow.mp4"), "--steps", "10000")
    status = served.wait_running()
    assert status["running"]["what"] == "slow" and status["running"]["client_pid"] == slow.pid
    text = served.run("serve", "--status")
    assert text.returncode == 0 and 'running: job 1 generate "slow"' in text.stdout.decode()
    others = [served.client(*_tiny(tiny_wan_dir, f"fast {i}", "--seed", str(i), "-o", f"fast{i}.mp4")) for i in range(2)]
    deadline = time.monotonic() + HANG
    while len(served.status()["queued"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    slow.send_signal(signal.SIGINT)
    _, err = slow.communicate(timeout=HANG)
    assert slow.returncode == 130, err.decode()
    # The client waited for the server to cancel the job: the server's own line comes last.
    assert err.decode().strip().splitlines()[-1] == "Error: interrupted during denoising; nothing was written", served.output() + err.decode()
    for i, other in enumerate(others):
        _, err = other.communicate(timeout=HANG)
        assert other.returncode == 0, err.decode()
        assert read_recipe(Path(f"fast{i}.mp4"))["seed"] == i
    assert not Path("slow.mp4").exists()
    _no_partial_files(Path.cwd())
    assert "job 1 (generate): cancelled" in served.output()


def test_server_killed_mid_job(serve, tiny_wan_dir: Path, run_cli, monkeypatch):
    served = serve()
    client = served.client(*_tiny(tiny_wan_dir, "doomed", "--seed", "1", "-o", "doomed.mp4"), "--steps", "2000")
    served.wait_running()
    served.process.kill()
    served.process.wait()
    _, err = client.communicate(timeout=HANG)
    assert client.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith("Error: the vidgen server stopped before finishing this job; nothing was written")
    assert not Path("doomed.mp4").exists()
    _no_partial_files(Path.cwd())
    # The socket it left is stale: the next call runs in-process (here, this one: a fresh process
    # only imported torch again) ...
    assert served.socket.exists()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(served.runtime))
    done = run_cli(*_tiny(tiny_wan_dir, "after", "--seed", "2", "-o", "after.mp4"))
    assert done.exit_code == 0, done.stderr
    assert "kept loaded" not in done.stderr and Path("after.mp4").is_file()
    # ... and a new server replaces it.
    again = serve()
    assert "replaced a stale socket" in _wait_for(again, "listening on")
    assert served.run(*_tiny(tiny_wan_dir, "new", "--seed", "3", "-o", "new.mp4")).returncode == 0
    assert again.status()["jobs_done"] == 1


def _wait_for(served: Served, text: str) -> str:
    deadline = time.monotonic() + HANG
    while text not in served.output():
        assert time.monotonic() < deadline and served.process.poll() is None, served.output()
        time.sleep(0.1)
    return served.output()


def test_permissions_and_one_server_per_socket(serve, runtime_dir: Path):
    served = serve()
    folder = runtime_dir / "vidgen"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(served.socket.stat().st_mode) == 0o600
    second = served.run("serve")
    assert second.returncode == 1
    assert "a vidgen server is already running" in second.stderr.decode()
    stopped = served.run("serve", "--stop")
    assert stopped.returncode == 0 and "stopped the vidgen server" in stopped.stderr.decode()
    assert served.process.wait(HANG) == 0
    assert not served.socket.exists()  # a clean stop removes it

    os.chmod(folder, 0o755)
    refused = subprocess.run(_vidgen("serve"), env=served.env, capture_output=True, timeout=HANG)
    assert refused.returncode == 2
    assert "refusing to serve" in refused.stderr.decode() and "0755" in refused.stderr.decode()
    os.chmod(folder, 0o700)


def test_a_hand_written_job_runs_and_bad_requests_get_error_replies(serve, tiny_wan_dir: Path):
    served = serve()

    def exchange(raw: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(60)
            sock.connect(str(served.socket))
            sock.sendall(raw)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def post(path: str, body: bytes, length: int | None = None) -> bytes:
        length = len(body) if length is None else length
        return exchange(f"POST {path} HTTP/1.0\r\nContent-Length: {length}\r\n\r\n".encode() + body)

    assert b" 404 " in post("/v2/jobs", b"{}").split(b"\r\n")[0] and b"unknown API version" in post("/v2/jobs", b"{}")
    assert b" 400 " in post("/v1/jobs", b"{not json").split(b"\r\n")[0]
    assert b" 400 " in post("/v1/jobs", b'{"command": "rm"}').split(b"\r\n")[0]
    assert b" 413 " in post("/v1/jobs", b"{}", length=1 << 40).split(b"\r\n")[0]
    assert b'{"error": "400 ' in exchange(b"\x00\xffgarbage\r\n\r\n")
    assert b" 431 " in exchange(b"GET /v1/status HTTP/1.0\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n").split(b"\r\n")[0]
    # A field the request does not have, or of the wrong type: 400 and the one line naming it.
    reply = post("/v1/jobs", b'{"command": "generate", "cwd": "/", "prompt": "x", "overrides": {"steps": "2"}}')
    assert b" 400 " in reply.split(b"\r\n")[0] and reply.endswith(b'{"error": "overrides.steps must be a whole number, got \'2\'"}'), reply
    assert served.status()["jobs_done"] == 0

    # A job written by hand, as `curl --unix-socket` sends it (docs/api.md): run like a client's.
    body = {"version": 1, "command": "generate", "cwd": str(Path.cwd()), "prompt": "a red ball", "model": str(tiny_wan_dir),
            "output": str(Path.cwd() / "by-hand.mp4"), "overrides": {"seed": 5, "steps": 2, "size": "32x32", "frames": 9}}
    events = [json.loads(line) for line in post("/v1/jobs", json.dumps(body).encode()).split(b"\r\n\r\n", 1)[1].splitlines()]
    assert events[0]["event"] == "accepted" and events[-1] == {"event": "exit", "code": 0}, events
    assert read_recipe(Path("by-hand.mp4"))["seed"] == 5 and read_frames(Path("by-hand.mp4")).shape == (9, 32, 32, 3)
    assert served.process.poll() is None


def test_keep_alive_zero_unloads_after_each_job(serve, tiny_wan_dir: Path):
    served = serve("--keep-alive", "0")
    done = served.run(*_tiny(tiny_wan_dir, "a ball", "--seed", "1", "-o", "k.mp4"))
    assert done.returncode == 0, done.stderr.decode()
    status = served.status()
    assert status["jobs_done"] == 1 and status["models"] == [] and status["keep_alive_seconds"] == 0


def test_status_and_stop_without_a_server(runtime_dir: Path):
    env = _env(runtime_dir)
    status = subprocess.run(_vidgen("serve", "--status", "--json"), env=env, capture_output=True, timeout=HANG)
    assert status.returncode == 1 and json.loads(status.stdout)["running"] is False
    stop = subprocess.run(_vidgen("serve", "--stop"), env=env, capture_output=True, timeout=HANG)
    assert stop.returncode == 1 and "no vidgen server is running" in stop.stderr.decode()


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("30s", 30), ("1h", 3600), ("90", 90), ("0", 0), ("-1", -1)])
def test_keep_alive_durations(text: str, seconds: float):
    from vidgen.runner import parse_keep_alive

    assert parse_keep_alive(text) == seconds


def test_bad_keep_alive_is_a_usage_error(run_cli):
    result = run_cli("serve", "--keep-alive", "soon")
    assert result.exit_code == 2 and "--keep-alive 'soon'" in result.stderr


def test_batch_through_server_matches_in_process(serve, tiny_wan_dir: Path, run_cli, monkeypatch):
    served = serve()
    Path("prompts.txt").write_text("a red ball\na blue square\n")
    args = ["--model", str(tiny_wan_dir), *TINY_ARGS, "--seed", "4"]
    done = served.run("batch", "prompts.txt", "-O", "served", *args)
    assert done.returncode == 0, done.stderr.decode()
    paths = done.stdout.decode().split()
    assert len(paths) == 2 and all(Path(path).parent == Path.cwd() / "served" for path in paths)
    piped = served.run("batch", "-", "-O", "piped", *args, "--no-gallery", input=b"a red ball\na blue square\n")
    assert piped.returncode == 0, piped.stderr.decode()
    # the gallery page, written by the server's job; --no-gallery reaches the server with the other flags
    assert (Path("served") / "index.html").read_text(encoding="utf-8").count('<figure class="card"') == 2
    assert not (Path("piped") / "index.html").exists()
    assert served.status()["jobs_done"] == 2
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(served.runtime))  # in this process, in sight of the server
    local = run_cli("batch", "prompts.txt", "-O", "local", *args, "--no-server")
    assert local.exit_code == 0, local.stderr
    assert served.status()["jobs_done"] == 2
    for path in map(Path, paths):
        reference = read_frames(Path("local") / path.name)
        assert np.array_equal(read_frames(path), reference)
        assert np.array_equal(read_frames(Path("piped") / path.name), reference)
    # A failing line fails the same way: exit 1, the error in the summary.
    Path("bad.jsonl").write_text('{"prompt": "ok"}\n{"prompt": "x", "steps": -3}\n')
    bad = served.run("batch", "bad.jsonl", "-O", "bad", *args)
    assert bad.returncode == 1 and "1 failed" in bad.stderr.decode()


def test_sigterm_finishes_the_job_in_hand_and_queued_jobs_run_in_their_clients(serve, tiny_wan_dir: Path):
    from vidgen.client import get_json

    served = serve()

    def wait_for(condition) -> dict:
        """The server's status once `condition` holds, asked from this process: a `vidgen serve
        --status` process takes a second or more, and the SIGTERM must come while the first
        job is still in hand and the second still waits."""
        deadline = time.monotonic() + HANG
        while not condition(status := get_json("GET", "status", path=served.socket) or {}):
            assert time.monotonic() < deadline and running.poll() is None
            time.sleep(0.02)
        return status

    running = served.client(*_tiny(tiny_wan_dir, "in hand", "--seed", "1", "-o", "hand.mp4"), "--steps", "150")
    wait_for(lambda status: status.get("running"))
    queued = served.client(*_tiny(tiny_wan_dir, "queued", "--seed", "2", "-o", "queued.mp4"))
    status = wait_for(lambda status: status.get("queued"))
    [waiting] = status["queued"]
    assert status["running"], status
    in_hand = status["running"]["job"]
    served.process.send_signal(signal.SIGTERM)
    for client, name, prompt in ((running, "hand.mp4", "in hand"), (queued, "queued.mp4", "queued")):
        _, err = client.communicate(timeout=HANG)
        assert client.returncode == 0, err.decode()
        assert read_recipe(Path(name))["prompt"] == prompt
    assert served.process.wait(HANG) == 0
    output = served.output()
    assert f"stopping: finishing job {in_hand}" in output, f"the first job ended before the SIGTERM, so nothing was tested:\n{output}"
    assert f"job {in_hand} (generate): exit 0" in output and "vidgen serve: stopped" in output
    # The queued job was refused by the stopping server and ran in its client instead.
    assert f"job {waiting['job']} (generate)" not in output, output
    assert not served.socket.exists()


# ---- signals to a client reach its job in the server as they would in-process (issue 10) ----


def _manifest(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _videos(out: Path) -> list[str]:
    """Every file in DIR but the manifest, the lock and the gallery, hidden (temporary) ones included."""
    return sorted(path.name for path in out.iterdir()
                  if path.is_file() and path.name not in ("manifest.jsonl", ".vidgen-batch.lock") and not gallery_file(path.relative_to(out)))  # fmt: skip


def _start_slow_batch(served: Served, model: Path, count: int) -> subprocess.Popen:
    Path("p.txt").write_text("".join(f"a red ball number {index}\n" for index in range(count)))
    client = served.client("batch", "p.txt", "-O", "out", "--model", str(model), *TINY_ARGS, "--steps", "300")
    while not _manifest(Path("out")):  # a first video is done: the batch is under way
        assert client.poll() is None, client.communicate()[1].decode()
        time.sleep(0.1)
    return client


def _consistent(out: Path) -> list[dict]:
    """Every file in DIR has a done record with its checksum, and nothing else is there."""
    done = [record for record in _manifest(out) if record["status"] == "done"]
    assert _videos(out) == sorted(record["output"] for record in done)  # no partial or temporary file
    for record in done:
        assert record["sha256"] == file_sha256(out / record["output"])
        assert read_frames(out / record["output"]).shape[0] == 9
    return done


def test_sigterm_to_a_batch_client_stops_after_the_current_video_then_resume_finishes(serve, tiny_wan_dir: Path):
    served = serve()
    # Three lines of 300 steps: the first done, SIGTERM during the second, the third not started;
    # more lines only made the resume longer.
    client = _start_slow_batch(served, tiny_wan_dir, 3)

    client.send_signal(signal.SIGTERM)
    _, err = client.communicate()

    assert client.returncode == 143, err.decode()
    stderr = err.decode()
    assert "SIGTERM: stopping after the current video" in stderr and "not started (stopped by SIGTERM" in stderr
    assert "Traceback" not in stderr and "Error:" not in stderr
    done = _consistent(Path("out"))
    assert 1 <= len(done) < 3
    assert served.process.poll() is None  # the server goes on
    resumed = served.run("batch", "p.txt", "-O", "out", "--model", str(tiny_wan_dir), *TINY_ARGS, "--steps", "300", "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert len(_consistent(Path("out"))) == 3
    assert served.status()["jobs_done"] == 2


def test_second_sigterm_to_a_batch_client_stops_at_once_without_a_partial_file(serve, tiny_wan_dir: Path):
    served = serve()
    client = _start_slow_batch(served, tiny_wan_dir, 6)

    client.send_signal(signal.SIGTERM)
    for line in client.stderr:  # the first has been handled (two signals at once may arrive as one)
        if b"SIGTERM: stopping after the current video" in line:
            break
    client.send_signal(signal.SIGTERM)
    _, err = client.communicate()

    assert client.returncode == 143, err.decode()
    assert "Error: terminated (second SIGTERM); the video in progress was not written" in err.decode()
    _consistent(Path("out"))
    assert "cancelled" in served.output()


def test_ctrl_c_while_the_server_writes_the_file_leaves_nothing_and_exits_130(serve, tiny_wan_dir: Path, tmp_path: Path, monkeypatch):
    """The server is held inside ffmpeg's encode until the client's Ctrl-C has reached it:
    the finished file is then not given its name (as in-process), and the client exits
    only once the server has finished with the job."""
    import imageio_ffmpeg

    marker, go = tmp_path / "encoding", tmp_path / "go"
    gate = tmp_path / "ffmpeg"
    gate.write_text(f'#!/bin/sh\ncase "$*" in *rawvideo*) touch {marker}; while [ ! -e {go} ]; do sleep 0.05; done;; esac\n'
                    f'exec {imageio_ffmpeg.get_ffmpeg_exe()} "$@"\n')  # fmt: skip
    gate.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(gate))
    served = serve()
    client = served.client(*_tiny(tiny_wan_dir, "a red ball", "--seed", "1", "-o", "x.mp4"))
    while not marker.exists():
        assert client.poll() is None, client.communicate()[1].decode()
        time.sleep(0.05)

    client.send_signal(signal.SIGINT)
    while not (served.status().get("running") or {}).get("cancelled"):
        assert client.poll() is None, client.communicate()[1].decode()
        time.sleep(0.05)
    go.touch()  # the encode finishes now, after the cancellation
    _, err = client.communicate()

    assert client.returncode == 130, err.decode()
    errors = [line for line in err.decode().splitlines() if line.startswith("Error:")]
    assert errors == ["Error: interrupted while writing the video; nothing was written"]
    assert not Path("x.mp4").exists()
    _no_partial_files(Path.cwd())
    assert "job 1 (generate): cancelled" in served.output()
    assert served.process.poll() is None


def test_a_client_killed_mid_job_cancels_it_and_the_server_goes_on(serve, tiny_wan_dir: Path):
    """A client that disconnects without a word (SIGKILL): its job is cancelled after the
    current step, nothing is written, and the next job runs."""
    served = serve()
    client = served.client(*_tiny(tiny_wan_dir, "killed", "--seed", "1", "-o", "killed.mp4"), "--steps", "2000")
    served.wait_running()
    client.kill()
    client.wait()
    while served.status().get("running"):
        time.sleep(0.1)
    assert "job 1 (generate): cancelled" in served.output()
    assert not Path("killed.mp4").exists()
    _no_partial_files(Path.cwd())
    after = served.run(*_tiny(tiny_wan_dir, "after", "--seed", "2", "-o", "after.mp4"))
    assert after.returncode == 0, after.stderr.decode()
    assert read_frames(Path("after.mp4")).shape[0] == 9


def test_least_recently_used_pipelines_make_room_on_a_full_gpu(tiny_wan_dir: Path, tmp_path: Path):
    """The eviction rule of the server's pipeline cache, on real tiny pipelines loaded on the CPU
    and a simulated card that holds two of them: a third unloads only the least recently used.
    (No GPU here: free memory is what the loaded folders leave of the card, not a CUDA reading.)"""
    from vidgen import pipeline as pipeline_loader
    from vidgen.generate import prepare_settings
    from vidgen.runner import CachedPipeline, LoadingKey, PipelineCache, _model_bytes

    folders = []
    for name in ("a", "b", "c"):
        shutil.copytree(tiny_wan_dir, tmp_path / name)
        folders.append(str(tmp_path / name))
    size = _model_bytes(folders[0])
    assert size > 0
    cache = PipelineCache(keep_alive=-1)
    for folder in folders[:2]:
        settings, _ = prepare_settings("x", preset=None, model=folder, overrides={"device": "cpu"})
        key = LoadingKey(folder, device="cuda")
        cache._entries[key] = CachedPipeline(key, pipeline_loader.load_pipeline(settings), folder)
    cache._entries[LoadingKey(folders[1], device="cuda")].last_used += 1  # b used after a
    card = 2.5 * size  # room for two models with the 1.2x margin of the first, not three

    def free_bytes(device: str) -> int:
        assert device == "cuda"
        return int(card - size * len(cache._entries))

    cache._make_room(LoadingKey(folders[2], device="cuda"), free_bytes=free_bytes)
    assert [key.model for key in cache._entries] == [folders[1]]  # a went, b stays
    cache._make_room(LoadingKey(folders[2], device="cuda"), free_bytes=free_bytes)
    assert [key.model for key in cache._entries] == [folders[1]]  # enough room now: nothing more goes


def test_status_replies_whole_while_the_server_is_still_importing(serve, monkeypatch):
    """Right after the socket appears the worker is still importing torch and diffusers; a status
    request then must still get a whole reply (it used to fail on a half-imported torch)."""
    from vidgen.client import get_json

    served = serve()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(served.runtime))
    replies = [get_json("GET", "status", path=served.socket) for _ in range(200)]
    assert all(reply is not None and "jobs_done" in reply for reply in replies), [r for r in replies if not r][:1]


# ---- a job carries its client's folder and standard input; the server's process state stays its own (issue 22) ----


def _write_clip(path: Path, frames: int = 9, size: int = 32) -> Path:
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=8, macro_block_size=1)
    writer.send(None)
    for index in range(frames):
        writer.send(np.full((size, size, 3), 20 + 20 * index, dtype=np.uint8).tobytes())
    writer.close()
    return path


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads the server's working folder from /proc")
def test_relative_paths_mean_the_clients_folder_and_the_server_never_changes_its_own(serve, tiny_pipeline_dir, tiny_wan_dir: Path, tmp_path: Path):
    """A server started in another folder: a prompts file on standard input whose lines name
    their input videos relative to the client's folder, and a video named after its prompt
    (no -o), land where they would in-process, while the server's own working folder,
    sampled all through both jobs, never moves (it used to chdir into the client's)."""
    elsewhere = tmp_path / "server-home"
    elsewhere.mkdir()
    served = serve(cwd=elsewhere)
    _write_clip(Path("clips/in.mp4"))
    seen: set[str] = set()

    def sample_while(client: subprocess.Popen, data: bytes | None = None) -> tuple[bytes, bytes]:
        if data is not None:
            client.stdin.write(data)
            client.stdin.close()
        while client.poll() is None:
            seen.add(os.readlink(f"/proc/{served.process.pid}/cwd"))
            time.sleep(0.002)
        return client.stdout.read(), client.stderr.read()

    line = {"prompt": "a fox", "video": "clips/in.mp4", "seed": 5, "output": "fox.mp4"}
    batch = subprocess.Popen(_vidgen("batch", "-", "-O", "out", "--preset", "wan2.1-v2v-1.3b", "--model", tiny_pipeline_dir("WanPipeline"),
                                     "--steps", "2", "--size", "32x32", "--device", "cpu", "--dtype", "float32", "--json"),
                             env=served.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    out, err = sample_while(batch, json.dumps(line).encode() + b"\n")
    assert batch.returncode == 0, err.decode() + served.output()
    [record] = [json.loads(text) for text in out.decode().splitlines()]
    assert record["status"] == "done" and record["path"] == str(Path.cwd() / "out" / "fox.mp4")
    assert record["settings"]["video"] == "clips/in.mp4"  # as the line says, as in-process
    generate = served.client(*_tiny(tiny_wan_dir, "a red ball", "--seed", "3"))
    out, err = sample_while(generate)
    assert generate.returncode == 0, err.decode()
    assert out.decode().strip() == str(Path.cwd() / "a-red-ball-3.mp4") and Path("a-red-ball-3.mp4").is_file()
    assert served.status()["jobs_done"] == 2
    assert seen == {str(elsewhere)}, seen
    assert list(elsewhere.iterdir()) == []


def test_a_job_runs_with_its_own_folder_and_standard_input_in_the_worker(tiny_wan_dir: Path, tmp_path: Path, monkeypatch):
    """The worker's function, in this process: a batch from standard input (bytes the job
    carries) into a folder relative to the client's. While the prompts are read, this
    process's working folder and sys.stdin are still its own, and so after the job."""
    from vidgen.batch import run as batch_run
    from vidgen.request import BatchRequest
    from vidgen.server.jobs import Job, execute

    client = tmp_path / "client"
    client.mkdir()
    home, stdin = os.getcwd(), sys.stdin
    during = []
    original = batch_run.open_prompts

    def watched(*args, **kwargs):
        during.append((os.getcwd(), sys.stdin))
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_run, "open_prompts", watched)
    overrides = {"steps": 2, "size": "32x32", "frames": 9, "seed": 4}
    job = Job(BatchRequest(prompts_file="-", out_dir="out", model=str(tiny_wan_dir), overrides=overrides), str(client), None,
              stdin=b"a red ball\n")  # fmt: skip
    code = execute(job)
    events = []
    while not job.events.empty():
        events.append(job.events.get())
    assert code == 0, events
    assert during == [(home, stdin)]
    assert (os.getcwd(), sys.stdin) == (home, stdin)
    [result] = [event["text"] for event in events if event["event"] == "result"]
    assert Path(result).parent == client / "out" and Path(result).is_file()
    assert not Path("out").exists()


def test_a_batch_refused_after_its_standard_input_was_read_runs_here_on_those_bytes(run_cli, tiny_wan_dir: Path, monkeypatch):
    """A server that refuses a `batch -` (it is stopping) once the client has read standard
    input: the batch runs in the client's process on the bytes it read, which are passed in;
    sys.stdin is not replaced with them."""
    from vidgen import client
    from vidgen.batch import run as batch_run

    stdin_at_submit, stdin_when_read = [], []
    monkeypatch.setattr(client, "find_server", lambda: Path("/nonexistent/vidgen.sock"))
    monkeypatch.setattr(client, "submit", lambda job, stdin=None: stdin_at_submit.append(sys.stdin))  # None: not taken
    original = batch_run.open_prompts

    def watched(*args, **kwargs):
        stdin_when_read.append(sys.stdin)
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_run, "open_prompts", watched)
    done = run_cli("batch", "-", "-O", "out", "--model", tiny_wan_dir, *TINY_ARGS, "--seed", "4", input=b"a red ball\n")
    assert done.exit_code == 0, done.stderr
    assert len(stdin_at_submit) == 1 and stdin_when_read == stdin_at_submit
    [path] = done.stdout.split()
    assert Path(path).parent == Path.cwd() / "out" and Path(path).is_file()
