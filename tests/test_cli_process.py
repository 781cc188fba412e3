"""The installed command in a real process: entry point, pipes, options on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import TINY_ARGS
from vidgen.media.readback import probe_video, read_recipe

# Processes, a server, launchers or Ray: `slow` (make check leaves it out).
pytestmark = pytest.mark.slow


def vidgen(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidgen", *map(str, args)], input=input, capture_output=True, env=os.environ.copy())


def test_help_and_version_are_fast_paths():
    result = vidgen("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("vidgen ")
    assert b"generate" in vidgen("--help").stdout
    # cli/app.py must not import torch at module top (keeps --help fast)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, vidgen.cli.app; print('torch' in sys.modules)"], capture_output=True, text=True
    )
    assert probe.stdout.strip() == "False"


def test_pipe_mp4_bytes_and_prompt_through_real_streams(tiny_wan_dir, tmp_path):
    result = vidgen("-", "--model", tiny_wan_dir, *TINY_ARGS, "--seed", "9", "-o", "-", input=b"a white circle\n")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout[4:8] == b"ftyp"
    assert b"seed 9" in result.stderr
    copy = tmp_path / "piped.mp4"
    copy.write_bytes(result.stdout)
    assert probe_video(copy).frames == 9
    assert read_recipe(copy)["prompt"] == "a white circle"


def test_reader_closing_the_pipe_early_stops_quietly():
    # `vidgen presets | head -0`: the reader is gone before vidgen writes its first line.
    process = subprocess.Popen(
        [sys.executable, "-m", "vidgen", "presets", "show", "wan2.1-t2v-1.3b"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait() == 1
    assert "Traceback" not in stderr and "Error" not in stderr and "Exception" not in stderr
