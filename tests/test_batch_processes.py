"""`vidgen batch --processes N`: real processes started through accelerate's launcher on the
CPU, and the exit code that reaches the shell (issue 11: `accelerate launch` turns every
failure into 1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAKE_ARGS, gallery_file
from tests.conftest import free_port as _free_port
from tests.conftest import standalone_env as _env
from tests.fake_pipeline import STEP_SECONDS
from vidgen.batch import LOCK_NAME, MANIFEST_NAME, file_sha256
from vidgen.batch.launch import without_processes_option, worst_exit_code
from vidgen.media.readback import read_frames

# Processes, a server, launchers or Ray: `slow` (make check leaves it out).
pytestmark = pytest.mark.slow


def _batch(fake_model_dir, *args: str) -> list[str]:
    """`vidgen batch ARGS` on the fake pipeline (tests/fake_pipeline.py): launching, sharding and
    exit codes are the point here, not the model (tests/test_parallel.py launches real ones)."""
    return [sys.executable, "-m", "vidgen", "batch", *map(str, args), "--model", str(fake_model_dir), *FAKE_ARGS]


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines() if line.strip()]


def _files(out: Path) -> list[str]:
    """Every file in DIR, hidden (temporary) ones included, but the manifest, the lock and the gallery."""
    return sorted(
        path.name
        for path in out.rglob("*")
        if path.is_file() and path.name not in (MANIFEST_NAME, LOCK_NAME) and not gallery_file(path.relative_to(out))
    )


def test_worst_exit_code_orders_signal_over_usage_over_failure():
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([0, 1]) == 1
    assert worst_exit_code([1, 2]) == 2
    assert worst_exit_code([2, 143]) == 2  # torchrun's SIGTERM to the others after one failed
    assert worst_exit_code([2, -15]) == 2
    assert worst_exit_code([143, 0]) == 143
    assert worst_exit_code([-2, 0]) == 130  # killed by SIGINT
    assert worst_exit_code([-9]) == 137


def test_without_processes_option_keeps_everything_else():
    assert without_processes_option(["batch", "p.txt", "--processes", "2", "-O", "out"]) == ["batch", "p.txt", "-O", "out"]
    assert without_processes_option(["batch", "p.txt", "--processes=4", "--seed", "3"]) == ["batch", "p.txt", "--seed", "3"]


def test_a_bad_prompts_file_exits_2_before_any_process_starts(fake_model_dir, run_cli):
    """Refused by the command itself (here, in this process), before it starts the launcher."""
    Path("p.csv").write_text("title,seed\nx,1\n")

    result = run_cli(*_batch(fake_model_dir, "p.csv", "-O", "out", "--processes", "2")[3:])

    assert result.exit_code == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: p.csv is not a CSV prompts file: its header (title, seed) has no prompt column"]
    assert "starting" not in result.stderr and "Traceback" not in result.stderr
    assert not Path("out").exists()


def test_a_usage_error_found_by_the_processes_reaches_the_shell_as_2(fake_model_dir):
    """A folder another batch holds is found only by the launched processes (only the main one
    takes the lock): their exit 2 comes out as 2, where `accelerate launch` says 1."""
    import fcntl

    Path("p.txt").write_text("a red ball\na blue cat\n")
    out = Path("out")
    out.mkdir()
    holder = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a running batch would
    try:
        result = subprocess.run(
            _batch(fake_model_dir, "p.txt", "-O", "out", "--processes", "2"), env=_env(), capture_output=True, text=True
        )
    finally:
        os.close(holder)

    assert result.returncode == 2, result.stderr[-3000:]
    # once: the main process meets it and says it; the other learns of it instead of waiting at
    # the barrier, and ends with its code in silence (Processes.agree's one voice)
    assert result.stderr.count("Error: another vidgen batch is writing to out") == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert _files(out) == []


def test_two_machines_make_every_video_once_into_one_manifest(fake_model_dir):
    """`accelerate launch --num_machines 2` (issue 20): two launchers as two machines (ranks 0
    and 1, the first's address 127.0.0.1) writing one shared folder: every video once, both
    machines did a share, one manifest whose every line is whole. (This replaces the test of
    two processes on one machine, which it covers; `--processes 2` is the launch of the
    tests below.)"""
    Path("p.txt").write_text("a red ball\na blue cat\na green dog\n")
    port = str(_free_port())
    machines = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--multi_gpu",
                "--num_machines",
                "2",
                "--machine_rank",
                str(rank),
                "--num_processes",
                "2",
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                port,
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                *_batch(fake_model_dir, "p.txt", "-O", "out", "--json")[1:],
            ],
            env={**_env(), "ACCELERATE_USE_CPU": "true"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [machine.communicate() for machine in machines]

    assert [machine.returncode for machine in machines] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    out = Path("out")
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole: each one parses
    assert sorted(record["line"] for record in records) == [1, 2, 3]
    assert {record["process"] for record in records} == {0, 1}  # both machines did a share
    assert _files(out) == sorted(record["output"] for record in records)
    for record in records:
        assert record["status"] == "done"
        assert record["sha256"] == file_sha256(out / record["output"])
        assert read_frames(out / record["output"]).shape[0] == 9  # a whole video, read back
    # each machine reports its own videos on its own standard output
    assert sorted(json.loads(line)["line"] for stdout, _ in outputs for line in stdout.splitlines()) == [1, 2, 3]


def test_two_processes_share_the_lines_a_failed_line_exits_1_and_no_lock_is_left(fake_model_dir):
    """`--processes 2` on the fake pipeline: each line made once, by one of the two processes,
    both doing a share; a line with an impossible value fails alone and the batch exits 1;
    the main process writes the gallery once both are done and removes the lock after the
    other has finished its share."""
    lines = ['{"prompt": "a red ball"}', '{"prompt": "a blue cat"}', '{"prompt": "a green dog"}', '{"prompt": "a cat", "steps": 0}']
    Path("p.jsonl").write_text("\n".join(lines) + "\n")

    result = subprocess.run(
        _batch(fake_model_dir, "p.jsonl", "-O", "out", "--processes", "2", "--json"), env=_env(), capture_output=True, text=True
    )

    assert result.returncode == 1, result.stderr[-3000:]
    out = Path("out")
    records = _manifest(out)
    assert sorted((record["line"], record["status"]) for record in records) == [(1, "done"), (2, "done"), (3, "done"), (4, "failed")]
    done = [record for record in records if record["status"] == "done"]
    assert {record["process"] for record in done} == {0, 1}  # lines i % 2: both processes made videos
    assert _files(out) == sorted(record["output"] for record in done)  # no temporary file, no lock (below)
    for record in done:
        assert record["sha256"] == file_sha256(out / record["output"])
    assert sorted(json.loads(line)["line"] for line in result.stdout.splitlines()) == [1, 2, 3, 4]  # both processes' records
    assert "batch: 3 videos done" in result.stderr and "1 failed" in result.stderr
    assert not (out / LOCK_NAME).exists()
    assert (out / "index.html").read_text(encoding="utf-8").count('<figure class="card"') >= 3  # the gallery: every video


def test_sigterm_to_the_launcher_stops_after_the_current_videos_exits_143_and_resume_finishes(fake_model_dir):
    prompts = [f"a red ball number {index}" for index in range(6)]
    Path("p.txt").write_text("\n".join(prompts) + "\n")
    out = Path("out")
    command = _batch(fake_model_dir, "p.txt", "-O", "out", "--processes", "2")
    env = {**_env(), STEP_SECONDS: "0.4"}  # each of the fake's 2 steps a sleep: a video is in the making when the signal comes
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not ((out / MANIFEST_NAME).exists() and _manifest(out)):  # a first video is done
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        time.sleep(0.2)
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate()

    assert launcher.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    records = _manifest(out)
    done = [record for record in records if record["status"] == "done"]
    assert 1 <= len(done) < len(prompts)
    assert _files(out) == sorted(record["output"] for record in done)  # no partial or temporary file
    for record in done:
        assert record["sha256"] == file_sha256(out / record["output"])

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    finished = {record["line"] for record in _manifest(out) if record["status"] == "done"}
    assert finished == set(range(1, len(prompts) + 1))
    assert len(_files(out)) == len(prompts)  # every video once
