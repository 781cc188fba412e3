"""CPU threads: --threads, VIDGEN_THREADS, and each launched process's share of the cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_ARGS
from vidgen import threads as acceleration
from vidgen.errors import UsageError
from vidgen.media.readback import probe_video
from vidgen.media.video import encoder_thread_options


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(acceleration, "_configured_threads", None)
    monkeypatch.delenv("VIDGEN_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_flag_then_environment_then_share_under_a_launcher(monkeypatch):
    monkeypatch.setattr(acceleration, "available_cores", lambda: 16)
    assert acceleration.cpu_thread_count(None) is None  # plain run: torch's default
    assert acceleration.cpu_thread_count(None, local_processes=4) == 4  # 16 cores, 4 processes
    assert acceleration.cpu_thread_count(None, local_processes=32) == 1
    monkeypatch.setenv("VIDGEN_THREADS", "3")
    assert acceleration.cpu_thread_count(None, local_processes=4) == 3
    assert acceleration.cpu_thread_count(2, local_processes=4) == 2
    monkeypatch.setenv("VIDGEN_THREADS", "many")
    with pytest.raises(UsageError, match="VIDGEN_THREADS must be a whole number"):
        acceleration.cpu_thread_count(None)
    with pytest.raises(UsageError, match="--threads must be at least 1, got 0"):
        acceleration.cpu_thread_count(0)


def test_threads_reach_torch_and_ffmpeg(generate_tiny, monkeypatch):
    import subprocess

    import torch

    # A count the environment does not already give (conftest.py sets OMP_NUM_THREADS=1).
    wanted = torch.get_num_threads() + 1
    commands = []
    popen = subprocess.Popen

    def recording_popen(command, *args, **kwargs):
        commands.append([str(part) for part in command])
        return popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    result = generate_tiny("a red ball", "--threads", str(wanted), "-o", "x.mp4")
    assert result.exit_code == 0, result.stderr
    assert torch.get_num_threads() == wanted
    assert encoder_thread_options() == ["-threads", str(wanted)]
    # The ffmpeg that encoded the frames (read from its standard input) was given the count.
    [encoder] = [command for command in commands if "rawvideo" in command]
    assert ["-threads", str(wanted)] in [encoder[i : i + 2] for i in range(len(encoder) - 1)]
    assert probe_video(Path("x.mp4")).frames == 9


def test_bad_thread_counts_are_usage_errors(run_cli, tiny_wan_dir, monkeypatch):
    result = run_cli("a red ball", "--model", tiny_wan_dir, *TINY_ARGS, "--threads", "0", "-o", "x.mp4")
    assert result.exit_code == 2 and result.stderr.strip() == "Error: --threads must be at least 1, got 0"
    monkeypatch.setenv("VIDGEN_THREADS", "-2")
    Path("p.txt").write_text("a red ball\n")
    result = run_cli("batch", "p.txt", "-O", "out", "--model", tiny_wan_dir, *TINY_ARGS)
    assert result.exit_code == 2 and "VIDGEN_THREADS must be a whole number of at least 1, got '-2'" in result.stderr
    assert sorted(path.name for path in Path.cwd().iterdir()) == ["p.txt"]
