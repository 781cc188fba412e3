"""`vidgen serve`: jobs handed to a running server look exactly like in-process runs.

Most tests share one server per module, run on a thread of the test process
(tests/server_fixtures.py: vidgen.server.serve itself, its socket in a short folder under
/tmp), so no test pays for a server process importing torch; its clients are real: `vidgen`
processes (which import no torch), or `run_cli` in this process through vidgen.cli.client over
the socket. A few checks need a real `vidgen serve` process and start one: its signals
(SIGTERM), a kill -9 of the server, a status asked while its worker still imports torch.
Timeouts only guard against hangs.
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
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ARGS, gallery_file
from tests.server_fixtures import HANG, client_env, short_runtime_dir, vidgen_command
from vidgen.batch import file_sha256
from vidgen.media.readback import read_frames, read_recipe

# Processes, a server, launchers or Ray: `slow` (make check leaves it out).
pytestmark = pytest.mark.slow

_vidgen = vidgen_command


def _model_jobs(status: dict, model: Path) -> list[int]:
    """The jobs of each cached pipeline loaded from `model` (one entry per loading key)."""
    return [entry["jobs"] for entry in status["models"] if entry["model"] == str(model)]


def _tiny(model: Path, prompt: str, *args: str) -> list[str]:
    return [prompt, "--model", str(model), *TINY_ARGS, *args]


def _no_partial_files(folder: Path) -> None:
    leftovers = [path.name for path in folder.iterdir() if ".part" in path.name]
    assert leftovers == []


def test_generate_through_server_matches_in_process(served, tiny_wan_dir: Path, tmp_path: Path, run_cli):
    before = served.status()
    # clients in this process, through vidgen.cli.client and the socket (real client processes: the tests below)
    first = run_cli(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "served.mp4"))
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == str(Path.cwd() / "served.mp4")
    assert "seed 5" in first.stderr
    again = run_cli(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "again.mp4", "--json"))
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["seed"] == 5
    assert "kept loaded by vidgen serve" in again.stderr
    streamed = run_cli(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "-"))
    assert streamed.exit_code == 0, streamed.stderr
    (tmp_path / "streamed.mp4").write_bytes(streamed.stdout_bytes)
    status = served.status()
    # three jobs, one pipeline: the one its first job loaded (or an earlier test's), used three times more
    assert status["jobs_done"] == before["jobs_done"] + 3
    assert len(status["models"]) == max(1, len(before["models"])) and _model_jobs(status, tiny_wan_dir) == [
        (_model_jobs(before, tiny_wan_dir) or [0])[0] + 3
    ]

    # The reference runs in this process (its pipeline loaded afresh: the server's cache is its
    # worker thread's), in sight of the server's socket: --no-server must keep it away from the server.
    local = run_cli(*_tiny(tiny_wan_dir, "a red ball", "--seed", "5", "-o", "local.mp4", "--no-server"))
    assert local.exit_code == 0, local.stderr
    assert "kept loaded" not in local.stderr
    assert served.status()["jobs_done"] == before["jobs_done"] + 3  # --no-server ran in-process
    reference = read_frames(Path("local.mp4"))
    for name in ("served.mp4", "again.mp4", tmp_path / "streamed.mp4"):
        assert np.array_equal(read_frames(Path(name)), reference), name
    assert read_recipe(Path("served.mp4"))["seed"] == 5


def test_one_request_makes_the_same_video_through_every_front_door(served, tiny_wan_dir: Path, run_cli):
    """One code path makes a video (issue 31): the same request through the command line in
    this process, a server's job and a batch of one line (no Ray) gives the same record, less
    where and how long (and the batch's own fields), and the same frames."""
    args = ["--model", str(tiny_wan_dir), *TINY_ARGS]
    before = served.status()["jobs_done"]
    remote = served.run("a red ball", *args, "--seed", "5", "-o", "served.mp4", "--json")
    assert remote.returncode == 0, remote.stderr.decode()
    local = run_cli("a red ball", *args, "--seed", "5", "-o", "local.mp4", "--json", "--no-server")  # in this process
    assert local.exit_code == 0, local.stderr
    Path("line.jsonl").write_text('{"prompt": "a red ball", "seed": 5}\n')
    batch = run_cli("batch", "line.jsonl", "-O", "batch", *args, "--json", "--no-gallery", "--no-server")
    assert batch.exit_code == 0, batch.stderr
    assert served.status()["jobs_done"] == before + 1
    records = {"cli": json.loads(local.stdout), "server": json.loads(remote.stdout), "batch": json.loads(batch.stdout)}
    [manifest] = [json.loads(line) for line in (Path("batch") / "manifest.jsonl").read_text().splitlines()]
    assert manifest == {key: value for key, value in records["batch"].items() if key != "path"}  # stdout: the record and its path
    batch_own = {"line", "video", "output", "status", "error", "process", "finished_at"}
    assert set(records["batch"]) == set(records["cli"]) | batch_own
    made = {
        door: {key: value for key, value in record.items() if key not in {"path", "seconds", *batch_own}}
        for door, record in records.items()
    }
    assert made["cli"] == made["server"] == made["batch"], made
    assert (made["cli"]["seed"], made["cli"]["settings"]["seed"], made["cli"]["frames"]) == (5, 5, 9)
    frames = {door: read_frames(Path(record["path"])) for door, record in records.items()}
    assert Path(records["batch"]["path"]) == Path.cwd() / "batch" / records["batch"]["output"]
    for door, record in records.items():
        assert record["sha256"] == file_sha256(Path(record["path"])), door
        assert np.array_equal(frames[door], frames["cli"]), door


def test_client_imports_no_torch(served, tiny_wan_dir: Path):
    before = served.status()["jobs_done"]
    script = (
        "import atexit, sys\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'numpy')\n"
        "atexit.register(lambda: sys.stderr.write('HEAVY=' + ','.join(m for m in heavy if m in sys.modules) + '\\n'))\n"
        "from vidgen.cli.app import main\n"
        f"sys.argv = ['vidgen', *{_tiny(tiny_wan_dir, 'a ball', '--seed', '1', '-o', 'light.mp4')!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=served.env, capture_output=True, timeout=HANG)
    assert done.returncode == 0, done.stderr.decode()
    assert "HEAVY=\n" in done.stderr.decode()
    assert Path("light.mp4").is_file() and served.status()["jobs_done"] == before + 1
    # and without a server (a socket folder with none in it), the same script does import them (the check can fail)
    nowhere = short_runtime_dir()
    try:
        done = subprocess.run(
            [sys.executable, "-c", script.replace("light.mp4", "heavy.mp4")], env=client_env(nowhere), capture_output=True, timeout=HANG
        )
    finally:
        shutil.rmtree(nowhere, ignore_errors=True)
    assert done.returncode == 0 and "HEAVY=torch" in done.stderr.decode()
    assert served.status()["jobs_done"] == before + 1


def test_three_clients_at_once(served, tiny_wan_dir: Path):
    before = served.status()["jobs_done"]
    clients = [served.client(*_tiny(tiny_wan_dir, f"ball {i}", "--seed", str(i), "-o", f"c{i}.mp4")) for i in range(3)]
    for i, client in enumerate(clients):
        out, err = client.communicate(timeout=HANG)
        assert client.returncode == 0, err.decode()
        assert out.decode().strip() == str(Path.cwd() / f"c{i}.mp4")
        recipe = read_recipe(Path(f"c{i}.mp4"))
        assert (recipe["seed"], recipe["prompt"]) == (i, f"ball {i}")
    assert served.status()["jobs_done"] == before + 3


def test_cancel_one_leaves_the_others_and_status_during_a_job(served, tiny_wan_dir: Path, run_cli):
    # Long enough to be caught running while three more processes start on a busy machine; it is
    # cancelled long before its end.
    slow = served.client(*_tiny(tiny_wan_dir, "slow", "--seed", "1", "-o", "slow.mp4"), "--steps", "10000")
    status = served.wait_running()
    assert status["running"]["what"] == "slow" and status["running"]["client_pid"] == slow.pid
    number = status["running"]["job"]
    text = run_cli("serve", "--status")
    assert text.exit_code == 0 and f'running: job {number} generate "slow"' in text.stdout
    others = [served.client(*_tiny(tiny_wan_dir, f"fast {i}", "--seed", str(i), "-o", f"fast{i}.mp4")) for i in range(2)]
    deadline = time.monotonic() + HANG
    while len(served.status()["queued"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    slow.send_signal(signal.SIGINT)
    _, err = slow.communicate(timeout=HANG)
    assert slow.returncode == 130, err.decode()
    # The client waited for the server to cancel the job: the server's own line comes last.
    assert err.decode().strip().splitlines()[-1] == "Error: interrupted during denoising; nothing was written", (
        served.output() + err.decode()
    )
    for i, other in enumerate(others):
        _, err = other.communicate(timeout=HANG)
        assert other.returncode == 0, err.decode()
        assert read_recipe(Path(f"fast{i}.mp4"))["seed"] == i
    assert not Path("slow.mp4").exists()
    _no_partial_files(Path.cwd())
    assert f"job {number} (generate): cancelled" in served.output()


def test_server_killed_mid_job(serve_process, serve_thread, runtime_dir: Path, tiny_wan_dir: Path, run_cli, monkeypatch):
    """A real `vidgen serve` process, killed (SIGKILL) while a client's job runs."""
    served = serve_process()
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
    # The socket it left is stale: the next call runs in-process (here, this one) ...
    assert served.socket.exists()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(served.runtime))
    done = run_cli(*_tiny(tiny_wan_dir, "after", "--seed", "2", "-o", "after.mp4"))
    assert done.exit_code == 0, done.stderr
    assert "kept loaded" not in done.stderr and Path("after.mp4").is_file()
    # ... and a new server replaces it.
    again = serve_thread(runtime=runtime_dir)
    assert "replaced a stale socket" in again.output()
    new = run_cli(*_tiny(tiny_wan_dir, "new", "--seed", "3", "-o", "new.mp4"))
    assert new.exit_code == 0, new.stderr
    assert again.status()["jobs_done"] == 1


def test_permissions_and_one_server_per_socket(serve_thread, run_cli):
    """`vidgen serve`, `--stop` run in this process (the server on its thread)."""
    served = serve_thread()
    folder = served.runtime / "vidgen"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(served.socket.stat().st_mode) == 0o600
    second = run_cli("serve")
    assert second.exit_code == 1
    assert "a vidgen server is already running" in second.stderr
    stopped = run_cli("serve", "--stop")
    assert stopped.exit_code == 0 and "stopped the vidgen server" in stopped.stderr
    assert not served.thread.is_alive() and served.stop() == 0  # serve() returned 0 before --stop saw its lock free
    assert not served.socket.exists()  # a clean stop removes it

    os.chmod(folder, 0o755)
    refused = run_cli("serve")
    assert refused.exit_code == 2
    assert "refusing to serve" in refused.stderr and "0755" in refused.stderr
    os.chmod(folder, 0o700)


def test_a_hand_written_job_runs_and_bad_requests_get_error_replies(served, tiny_wan_dir: Path):
    before = served.status()["jobs_done"]

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
    assert served.status()["jobs_done"] == before

    # A job written by hand, as `curl --unix-socket` sends it (docs/api.md): run like a client's.
    body = {
        "version": 1,
        "command": "generate",
        "cwd": str(Path.cwd()),
        "prompt": "a red ball",
        "model": str(tiny_wan_dir),
        "output": str(Path.cwd() / "by-hand.mp4"),
        "overrides": {"seed": 5, "steps": 2, "size": "32x32", "frames": 9},
    }
    events = [json.loads(line) for line in post("/v1/jobs", json.dumps(body).encode()).split(b"\r\n\r\n", 1)[1].splitlines()]
    assert events[0]["event"] == "accepted" and events[-1] == {"event": "exit", "code": 0}, events
    assert read_recipe(Path("by-hand.mp4"))["seed"] == 5 and read_frames(Path("by-hand.mp4")).shape == (9, 32, 32, 3)
    assert served.thread.is_alive() and served.status()["jobs_done"] == before + 1


def test_keep_alive_zero_unloads_after_each_job(serve_thread, tiny_wan_dir: Path, run_cli):
    served = serve_thread(keep_alive=0)
    done = run_cli(*_tiny(tiny_wan_dir, "a ball", "--seed", "1", "-o", "k.mp4"))
    assert done.exit_code == 0, done.stderr
    assert "loaded WanPipeline" in done.stderr  # through the server: its worker loaded it (in-process says the same)
    status = served.status()
    assert status["jobs_done"] == 1 and status["models"] == [] and status["keep_alive_seconds"] == 0


def test_status_and_stop_without_a_server(runtime_dir: Path, run_cli, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    status = run_cli("serve", "--status", "--json")
    assert status.exit_code == 1 and json.loads(status.stdout)["running"] is False
    stop = run_cli("serve", "--stop")
    assert stop.exit_code == 1 and "no vidgen server is running" in stop.stderr


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("30s", 30), ("1h", 3600), ("90", 90), ("0", 0), ("-1", -1)])
def test_keep_alive_durations(text: str, seconds: float):
    from vidgen.engine.pipeline_cache import parse_keep_alive

    assert parse_keep_alive(text) == seconds


def test_bad_keep_alive_is_a_usage_error(run_cli):
    result = run_cli("serve", "--keep-alive", "soon")
    assert result.exit_code == 2 and "--keep-alive 'soon'" in result.stderr


def test_batch_through_server_matches_in_process(served, tiny_wan_dir: Path, run_cli):
    before = served.status()["jobs_done"]
    Path("prompts.txt").write_text("a red ball\na blue square\n")
    args = ["--model", str(tiny_wan_dir), *TINY_ARGS, "--seed", "4"]
    done = run_cli("batch", "prompts.txt", "-O", "served", *args)
    assert done.exit_code == 0, done.stderr
    paths = done.stdout.split()
    assert len(paths) == 2 and all(Path(path).parent == Path.cwd() / "served" for path in paths)
    piped = run_cli("batch", "-", "-O", "piped", *args, "--no-gallery", input=b"a red ball\na blue square\n")
    assert piped.exit_code == 0, piped.stderr
    # the gallery page, written by the server's job; --no-gallery reaches the server with the other flags
    assert (Path("served") / "index.html").read_text(encoding="utf-8").count('<figure class="card"') == 2
    assert not (Path("piped") / "index.html").exists()
    assert served.status()["jobs_done"] == before + 2
    local = run_cli("batch", "prompts.txt", "-O", "local", *args, "--no-server")  # in this process, in sight of the server
    assert local.exit_code == 0, local.stderr
    assert served.status()["jobs_done"] == before + 2
    for path in map(Path, paths):
        reference = read_frames(Path("local") / path.name)
        assert np.array_equal(read_frames(path), reference)
        assert np.array_equal(read_frames(Path("piped") / path.name), reference)
    # A failing line fails the same way: exit 1, the error in the summary.
    Path("bad.jsonl").write_text('{"prompt": "ok"}\n{"prompt": "x", "steps": -3}\n')
    bad = run_cli("batch", "bad.jsonl", "-O", "bad", *args)
    assert bad.exit_code == 1 and "1 failed" in bad.stderr
    assert served.status()["jobs_done"] == before + 3


def test_sigterm_finishes_the_job_in_hand_and_queued_jobs_run_in_their_clients(serve_process, tiny_wan_dir: Path):
    """A real `vidgen serve` process from its start to its SIGTERM: status replies while its
    worker still imports torch, its socket's permissions, and SIGTERM finishing the job in
    hand while the queued one runs in its client."""
    from vidgen.server.address import get_json

    served = serve_process()
    # Right after the socket appears the worker is still importing torch and diffusers; a status
    # request then must still get a whole reply (it used to fail on a half-imported torch).
    replies = [get_json("GET", "status", path=served.socket) for _ in range(200)]
    assert all(reply is not None and "jobs_done" in reply for reply in replies), [r for r in replies if not r][:1]
    assert stat.S_IMODE(served.socket.parent.stat().st_mode) == 0o700 and stat.S_IMODE(served.socket.stat().st_mode) == 0o600

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
    return sorted(
        path.name
        for path in out.iterdir()
        if path.is_file() and path.name not in ("manifest.jsonl", ".vidgen-batch.lock") and not gallery_file(path.relative_to(out))
    )


def _start_slow_batch(served, model: Path, count: int) -> subprocess.Popen:
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


def test_sigterm_to_a_batch_client_stops_after_the_current_video_then_resume_finishes(served, tiny_wan_dir: Path, run_cli):
    before = served.status()["jobs_done"]
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
    assert served.thread.is_alive()  # the server goes on
    resumed = run_cli("batch", "p.txt", "-O", "out", "--model", str(tiny_wan_dir), *TINY_ARGS, "--steps", "300", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert len(_consistent(Path("out"))) == 3
    assert served.status()["jobs_done"] == before + 2


def test_second_sigterm_to_a_batch_client_stops_at_once_without_a_partial_file(served, tiny_wan_dir: Path):
    mark = served.mark()
    client = _start_slow_batch(served, tiny_wan_dir, 6)
    number = served.wait_running()["running"]["job"]

    client.send_signal(signal.SIGTERM)
    for line in client.stderr:  # the first has been handled (two signals at once may arrive as one)
        if b"SIGTERM: stopping after the current video" in line:
            break
    client.send_signal(signal.SIGTERM)
    _, err = client.communicate()

    assert client.returncode == 143, err.decode()
    assert "Error: terminated (second SIGTERM); the video in progress was not written" in err.decode()
    _consistent(Path("out"))
    served.wait_idle()
    assert f"job {number} (batch): cancelled" in served.output(since=mark)


def test_ctrl_c_while_the_server_writes_the_file_leaves_nothing_and_exits_130(served, tiny_wan_dir: Path, tmp_path: Path, monkeypatch):
    """The server is held inside ffmpeg's encode until the client's Ctrl-C has reached it:
    the finished file is then not given its name (as in-process), and the client exits
    only once the server has finished with the job."""
    import imageio_ffmpeg

    marker, go = tmp_path / "encoding", tmp_path / "go"
    gate = tmp_path / "ffmpeg"
    gate.write_text(
        f'#!/bin/sh\ncase "$*" in *rawvideo*) touch {marker}; while [ ! -e {go} ]; do sleep 0.05; done;; esac\n'
        f'exec {imageio_ffmpeg.get_ffmpeg_exe()} "$@"\n'
    )
    gate.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(gate))  # the server on this process's thread encodes with it
    client = served.client(*_tiny(tiny_wan_dir, "a red ball", "--seed", "1", "-o", "x.mp4"))
    while not marker.exists():
        assert client.poll() is None, client.communicate()[1].decode()
        time.sleep(0.05)
    number = served.status()["running"]["job"]

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
    assert f"job {number} (generate): cancelled" in served.output()
    assert served.thread.is_alive()


def test_a_client_killed_mid_job_cancels_it_and_the_server_goes_on(served, tiny_wan_dir: Path, run_cli):
    """A client that disconnects without a word (SIGKILL): its job is cancelled after the
    current step, nothing is written, and the next job runs."""
    client = served.client(*_tiny(tiny_wan_dir, "killed", "--seed", "1", "-o", "killed.mp4"), "--steps", "2000")
    number = served.wait_running()["running"]["job"]
    client.kill()
    client.wait()
    served.wait_idle()
    assert f"job {number} (generate): cancelled" in served.output()
    assert not Path("killed.mp4").exists()
    _no_partial_files(Path.cwd())
    after = run_cli(*_tiny(tiny_wan_dir, "after", "--seed", "2", "-o", "after.mp4"))
    assert after.exit_code == 0, after.stderr
    assert "kept loaded by vidgen serve" in after.stderr  # made by the server
    assert read_frames(Path("after.mp4")).shape[0] == 9


def test_least_recently_used_pipelines_make_room_on_a_full_gpu(tiny_wan_dir: Path, tmp_path: Path):
    """The eviction rule of the server's pipeline cache, on real tiny pipelines loaded on the CPU
    and a simulated card that holds two of them: a third unloads only the least recently used.
    (No GPU here: free memory is what the loaded folders leave of the card, not a CUDA reading.)"""
    from vidgen.engine import loading as pipeline_loader
    from vidgen.engine.pipeline_cache import CachedPipeline, LoadingKey, PipelineCache, _model_bytes
    from vidgen.engine.prepare import prepare_settings

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
def test_relative_paths_mean_the_clients_folder_and_the_server_never_changes_its_own(
    served, tiny_pipeline_dir, tiny_wan_dir: Path, tmp_path: Path, monkeypatch
):
    """A server whose process works in another folder: a prompts file on standard input whose
    lines name their input videos relative to the client's folder, and a video named after its
    prompt (no -o), land where they would in-process, while the server's own working folder,
    sampled all through both jobs, never moves (it used to chdir into the client's)."""
    before = served.status()["jobs_done"]
    work = Path.cwd()
    elsewhere = tmp_path / "server-home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the server runs on a thread of this process: its folder is this one
    _write_clip(work / "clips/in.mp4")
    seen: set[str] = set()

    def sample_while(client: subprocess.Popen, data: bytes | None = None) -> tuple[bytes, bytes]:
        if data is not None:
            client.stdin.write(data)
            client.stdin.close()
        while client.poll() is None:
            seen.add(os.readlink(f"/proc/{os.getpid()}/cwd"))
            time.sleep(0.002)
        return client.stdout.read(), client.stderr.read()

    line = {"prompt": "a fox", "video": "clips/in.mp4", "seed": 5, "output": "fox.mp4"}
    batch = subprocess.Popen(
        _vidgen(
            "batch",
            "-",
            "-O",
            "out",
            "--preset",
            "wan2.1-v2v-1.3b",
            "--model",
            tiny_pipeline_dir("WanPipeline"),
            "--steps",
            "2",
            "--size",
            "32x32",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--json",
        ),
        env=served.env,
        cwd=work,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = sample_while(batch, json.dumps(line).encode() + b"\n")
    assert batch.returncode == 0, err.decode() + served.output()
    [record] = [json.loads(text) for text in out.decode().splitlines()]
    assert record["status"] == "done" and record["path"] == str(work / "out" / "fox.mp4")
    assert record["settings"]["video"] == "clips/in.mp4"  # as the line says, as in-process
    generate = served.client(*_tiny(tiny_wan_dir, "a red ball", "--seed", "3"), cwd=work)
    out, err = sample_while(generate)
    assert generate.returncode == 0, err.decode()
    assert out.decode().strip() == str(work / "a-red-ball-3.mp4") and (work / "a-red-ball-3.mp4").is_file()
    assert served.status()["jobs_done"] == before + 2
    assert seen == {str(elsewhere)}, seen
    assert list(elsewhere.iterdir()) == []


def test_a_job_runs_with_its_own_folder_and_standard_input_in_the_worker(tiny_wan_dir: Path, tmp_path: Path, monkeypatch):
    """The worker's function, in this process: a batch from standard input (bytes the job
    carries) into a folder relative to the client's. While the prompts are read, this
    process's working folder and sys.stdin are still its own, and so after the job."""
    from vidgen.batch import check as batch_check
    from vidgen.server.jobs import Job, execute
    from vidgen.settings.request import BatchRequest

    client = tmp_path / "client"
    client.mkdir()
    home, stdin = os.getcwd(), sys.stdin
    during = []
    original = batch_check.open_prompts

    def watched(*args, **kwargs):
        during.append((os.getcwd(), sys.stdin))
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_check, "open_prompts", watched)
    overrides = {"steps": 2, "size": "32x32", "frames": 9, "seed": 4}
    job = Job(
        BatchRequest(prompts_file="-", out_dir="out", model=str(tiny_wan_dir), overrides=overrides),
        str(client),
        None,
        stdin=b"a red ball\n",
    )
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
    from vidgen.batch import check as batch_check
    from vidgen.cli import client

    stdin_at_submit, stdin_when_read = [], []
    monkeypatch.setattr(client, "find_server", lambda: Path("/nonexistent/vidgen.sock"))
    monkeypatch.setattr(client, "submit", lambda job, stdin=None: stdin_at_submit.append(sys.stdin))  # None: not taken
    original = batch_check.open_prompts

    def watched(*args, **kwargs):
        stdin_when_read.append(sys.stdin)
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_check, "open_prompts", watched)
    done = run_cli("batch", "-", "-O", "out", "--model", tiny_wan_dir, *TINY_ARGS, "--seed", "4", input=b"a red ball\n")
    assert done.exit_code == 0, done.stderr
    assert len(stdin_at_submit) == 1 and stdin_when_read == stdin_at_submit
    [path] = done.stdout.split()
    assert Path(path).parent == Path.cwd() / "out" and Path(path).is_file()
