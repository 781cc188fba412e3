"""`vidgen batch --ray`: the batch as a Ray Data job on a real local Ray cluster (2 CPUs,
started once for the module), with the built-in Shapes model: the same names and frames as
a plain batch, a worker killed mid-batch, the driver killed then --resume (issue 20, part 2).

Run alone with `pytest -m ray`; skipped where Ray is not installed (`vidgen[ray]`).
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

from tests.conftest import free_port as _free_port
from tests.conftest import gallery_file
from vidgen.batch import LOCK_NAME, MANIFEST_NAME, file_sha256
from vidgen.media.readback import probe_video

# Processes, a server, launchers or Ray: `slow` (make check leaves it out).
pytestmark = pytest.mark.slow

# the built-in model (default preset), as small as it goes: each video takes about half a second
ARGS = ["--steps", "2", "--size", "32x32", "--frames", "5", "--seed", "11"]
PROMPTS = [
    "a red circle moves left on a black background",
    "a blue square moves right on a white background",
    "a green triangle moves up on a gray background",
    "a yellow circle moves down on a black background",
    "a red square grows on a white background",
    "a blue triangle shrinks on a gray background",
    "a green circle moves right on a white background",
    "a yellow square moves left on a black background",
]


def _env() -> dict[str, str]:
    # RAY_AUTH_MODE: a test cluster of its own, no token written to the user's ~/.ray
    return {**os.environ, "VIDGEN_NO_SERVER": "1", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray with 2 CPUs for this module (`ray start --head --block`), starting; stopped at the end."""
    pytest.importorskip("ray")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # Ray's socket paths must stay short
    command = [
        sys.executable,
        "-c",
        "from ray.scripts.scripts import main; main()",
        "start",
        "--head",
        "--block",
        "--num-cpus",
        "2",
        "--include-dashboard",
        "false",
        "--disable-usage-stats",
        "--port",
        str(port),
        "--temp-dir",
        temp,
    ]
    head = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    yield head, f"127.0.0.1:{port}"
    # Its own process group (GCS, raylet, agents): killed at once (its own SIGTERM handling
    # takes 20 s here); the workers end when their raylet does.
    os.killpg(head.pid, signal.SIGKILL)
    head.wait()
    head.stdout.close()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_address(ray_head):
    """The Ray's address, once it is up."""
    head, address = ray_head
    for line in head.stdout:  # it says so once its processes are up
        if "--block" in line:
            return address
    pytest.fail(f"ray start ended with {head.wait()}")


@pytest.fixture(scope="module")
def plain_batch(tmp_path_factory, ray_head):
    """The same prompts through a plain `vidgen batch` (in this process): name -> SHA-256.
    Made while the module's Ray starts (a test asks for it before the Ray's address)."""
    from typer.testing import CliRunner

    from vidgen.cli.app import app

    folder = tmp_path_factory.mktemp("plain")
    (folder / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDGEN_HOME", str(folder / "home"))
        patch.setenv("VIDGEN_NO_SERVER", "1")
        result = CliRunner().invoke(app, ["batch", str(folder / "p.txt"), "-O", str(folder / "out"), *ARGS])
    assert result.exit_code == 0, result.stderr
    return {path.name: file_sha256(path) for path in (folder / "out").glob("*.mp4")}


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines() if line.strip()]


def _files(out: Path) -> list[str]:
    """Every file in DIR, hidden (temporary) ones included, but the manifest and the gallery."""
    return sorted(
        path.name for path in out.rglob("*") if path.is_file() and path.name != MANIFEST_NAME and not gallery_file(path.relative_to(out))
    )


def _check_whole(out: Path, plain: dict[str, str]) -> list[dict]:
    """Every video once, whole, the plain batch's bytes, one done record each; no temp file, no lock."""
    assert _files(out) == sorted(plain)
    done = [record for record in _manifest(out) if record["status"] == "done"]
    assert sorted(record["output"] for record in done) == sorted(plain)  # each once: none lost, none twice
    for record in done:
        assert record["sha256"] == file_sha256(out / record["output"]) == plain[record["output"]]
    assert probe_video(out / done[0]["output"]).frames == 5
    return done


@pytest.fixture
def ray_batch(run_cli, ray_address, monkeypatch):
    """`vidgen batch p.txt -O out --ray ADDRESS --processes 2 --json ARGS...` in this process."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("VIDGEN_NO_SERVER", "1")
    Path("p.txt").write_text("\n".join(PROMPTS) + "\n")
    return lambda *args: run_cli("batch", "p.txt", "-O", "out", "--ray", ray_address, "--processes", "2", "--json", *ARGS, *args)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _kill_a_worker_mid_video(out: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL a worker that made a video (its pid is in its record) while it burns CPU: it is
    making another (between videos it waits, idle, for the next)."""
    while not stop.is_set():
        if (out / MANIFEST_NAME).exists() and (records := _manifest(out)):
            pid = int(records[0]["worker"].rsplit("/", 1)[1])
            before = _cpu_ticks(pid)
            time.sleep(0.1)
            if _cpu_ticks(pid) - before >= 3:  # 30 ms of CPU in 100 ms
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.02)


@pytest.mark.ray
def test_a_worker_killed_mid_batch_the_batch_still_makes_every_video_as_a_plain_batch_does(plain_batch, ray_batch, monkeypatch):
    from rich.console import Console

    from vidgen import ui

    screen = io.StringIO()  # stderr as a terminal: the driver's one bar
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, force_terminal=True, width=120, highlight=False))
    out, killed, stop = Path("out").resolve(), [], threading.Event()
    killer = threading.Thread(target=_kill_a_worker_mid_video, args=(out, killed, stop))
    killer.start()
    try:
        result = ray_batch()
    finally:
        stop.set()
        killer.join()

    assert result.exit_code == 0, screen.getvalue()[-3000:]
    assert killed, "no worker was seen making a video"
    done = _check_whole(out, plain_batch)
    assert len({record["worker"] for record in done}) >= 2  # two workers shared the videos
    retried = [record for record in done if record["try"] == 2]
    assert retried and all(
        record["worker"] != f"{retried[0]['worker'].split('/')[0]}/{killed[0]}" for record in retried
    )  # made again, by a new process
    assert "8 videos done" in screen.getvalue() and f"ray: {len(retried)} video" in screen.getvalue()
    assert f"8 done, 0 failed, {len(retried)} retried" in screen.getvalue()  # the bar's last state
    assert not (out / LOCK_NAME).exists()
    assert sorted(json.loads(line)["output"] for line in result.stdout.splitlines()) == sorted(plain_batch)  # stdout: the records only
    assert all(
        name in (out / "index.html").read_text() for name in plain_batch
    )  # the driver writes the gallery, as a plain batch's main process


@pytest.mark.ray
def test_the_driver_killed_then_resume_completes_the_batch_nothing_twice(plain_batch, ray_batch, ray_address):
    # one worker: the first video comes sooner on two cores; the resume has two
    command = [sys.executable, "-m", "vidgen", "batch", "p.txt", "-O", "out", "--ray", ray_address, "--processes", "1", "--json", *ARGS]
    driver = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert json.loads(driver.stdout.readline())["status"] == "done"  # streamed while the batch runs
    driver.kill()
    driver.wait()
    driver.stdout.close()
    out = Path("out")
    before = [record["output"] for record in _manifest(out)]
    assert 1 <= len(before) < len(PROMPTS)

    resumed = ray_batch("--resume")

    assert resumed.exit_code == 0, resumed.stderr[-3000:]
    assert f"{len(before)} already done (--resume)" in resumed.stderr
    assert sorted(json.loads(line)["output"] for line in resumed.stdout.splitlines()) == sorted(
        set(plain_batch) - set(before)
    )  # only the rest
    _check_whole(out, plain_batch)


def test_ray_without_ray_installed_is_one_line_naming_the_extra(run_cli, monkeypatch):
    Path("p.txt").write_text("a red circle\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    monkeypatch.delitem(sys.modules, "vidgen.batch.cluster", raising=False)  # imported afresh (another test may hold it, with Ray)
    monkeypatch.setenv("VIDGEN_NO_SERVER", "1")

    result = run_cli("batch", "p.txt", "--ray", "-O", "out")

    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["Error: --ray needs Ray: pip install 'vidgen[ray]'"]
    assert not Path("out").exists()
