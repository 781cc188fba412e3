"""`--parallel`: one video made by a group of processes through diffusers' context
parallelism (issue 20, part 1), proven on the CPU with gloo: the group's video has the
frames one process makes, one file and one JSON line, and every refusal is one line
before loading.

Each launch costs two fresh processes (about 15 s here), so the launches are few and each
proves several things.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ARGS
from tests.conftest import standalone_env as _env
from vidgen.batch import MANIFEST_NAME
from vidgen.engine import parallel
from vidgen.errors import UsageError
from vidgen.media.readback import read_frames
from vidgen.settings import grammar

# Processes, a server, launchers or Ray: `slow` (make check leaves it out).
pytestmark = pytest.mark.slow

LAUNCH_CPU = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def _vidgen(*args, launcher: list[str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = _env()
    if launcher is not None:
        # accelerate 1.16 starts one process for `--cpu --num_processes 2`; several CPU
        # processes come from its multi-GPU launcher (torchrun) told to use the CPU.
        env["ACCELERATE_USE_CPU"] = "true"
        command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "-m", "vidgen", *map(str, args)]
    else:
        command = [sys.executable, "-m", "vidgen", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


# ---- the spec and the group: pure rules ----


def test_degrees_fill_the_group_and_refuse_what_does_not_fit():
    assert parallel.degrees("ulysses", 4) == (4, 1)
    assert parallel.degrees("ring", 2) == (1, 2)
    assert parallel.degrees("ulysses=2,ring=2", 4) == (2, 2)
    assert parallel.degrees("ring=2,ulysses", 8) == (4, 2)
    for spec, processes in (("ulysses=4", 2), ("ulysses=2,ring=2", 2), ("ulysses=3,ring", 4)):
        with pytest.raises(UsageError):
            parallel.degrees(spec, processes)
    for bad in ("ulyses", "ulysses=0", "ulysses,ring", "ring,ring=2", ""):
        assert grammar.parallel_problem(bad), bad


def test_parallel_without_a_launcher_is_one_line_before_loading(run_cli, tiny_wan_dir):
    result = run_cli("a fox", "--model", tiny_wan_dir, *TINY_ARGS, "--parallel", "ulysses", "-o", "x.mp4")

    assert result.exit_code == 2
    assert _errors(result.stderr) == [
        "Error: --parallel needs a group of processes, one per GPU: accelerate launch --num_processes N -m vidgen ... "
        "or torchrun --nproc-per-node N -m vidgen ..."
    ]
    assert "loaded" not in result.stderr and not Path("x.mp4").exists()

    bad = run_cli("a fox", "--model", tiny_wan_dir, *TINY_ARGS, "--parallel", "ulysses=two")
    assert bad.exit_code == 2 and "--parallel must be ulysses, ring" in bad.stderr


def test_denoisers_without_a_plan_and_heads_that_do_not_divide_are_refused_before_loading(tiny_pipeline_dir, tiny_wan_dir):
    from vidgen.engine.loading import check_parallel
    from vidgen.engine.prepare import prepare_settings

    def check(model: Path, spec: str, processes: int, **overrides) -> str:
        settings, _ = prepare_settings("a fox", preset=None, model=str(model), overrides={"parallel": spec, **overrides})
        with pytest.raises(UsageError) as refused:
            check_parallel(settings, processes)
        return refused.value.message

    vace = tiny_pipeline_dir("WanVACEPipeline")
    assert "the denoiser WanVACETransformer3DModel has no context-parallel plan" in check(vace, "ulysses", 2)
    assert "2 attention heads do not divide among 4 processes" in check(tiny_wan_dir, "ulysses", 4)
    assert "ring attention needs a GPU" in check(tiny_wan_dir, "ring", 2)
    assert "--cache first-block do not go together" in check(tiny_wan_dir, "ulysses", 2, cache="first-block")
    # and the check passes a model that fits: nothing raised
    settings, _ = prepare_settings("a fox", preset=None, model=str(tiny_wan_dir), overrides={"parallel": "ulysses"})
    check_parallel(settings, 2)


# ---- real groups of processes ----


def test_a_wan_video_made_by_two_processes_has_one_process_frames(tmp_path, tiny_wan_dir, run_cli):
    """accelerate launch, 2 CPU processes, Ulysses: one file, one JSON line, one process's
    frames. No --seed: the seed the first process draws is every process's (the video is
    then the one a single process makes with that seed: made in this process)."""
    args = ["a fox running through snow", "--model", tiny_wan_dir, *TINY_ARGS, "--threads", "1", "--json"]
    group = _vidgen(*args, "-o", tmp_path / "group.mp4", "--parallel", "ulysses", launcher=LAUNCH_CPU, cwd=tmp_path)

    assert group.returncode == 0, group.stderr
    lines = group.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["path"] == str(tmp_path / "group.mp4")
    # read back from the denoiser diffusers split, not the request
    assert (json.loads(lines[0])["parallel"], json.loads(lines[0])["processes"]) == ("ulysses=2,ring=1", 2)
    alone = run_cli(*args, "-o", tmp_path / "alone.mp4", "--seed", json.loads(lines[0])["seed"])
    assert alone.exit_code == 0, alone.stderr
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix == ".mp4") == ["alone.mp4", "group.mp4"]
    assert group.stderr.count("loaded WanPipeline") == 1  # the other process prints nothing
    first, second = read_frames(tmp_path / "alone.mp4"), read_frames(tmp_path / "group.mp4")
    assert first.shape == second.shape
    # Ulysses computes each head's attention whole, in one process: the same sums, the same frames.
    assert np.abs(first.astype(int) - second.astype(int)).max() == 0


def test_a_batch_of_ltx_videos_made_together_has_one_process_frames(tmp_path, tiny_pipeline_dir, run_cli):
    """`vidgen batch --processes 2 --parallel ulysses`: the group makes each video together
    (every video once, one manifest record each), frames as one process makes them (this one)."""
    model = tiny_pipeline_dir("LTXPipeline")
    (tmp_path / "p.txt").write_text("a fox\na boat on the sea\n")
    args = ["batch", tmp_path / "p.txt", "--model", model, "--steps", "2", "--size", "32x32", "--frames", "9", "--threads", "1"]
    alone = run_cli(*args, "-O", tmp_path / "alone")
    assert alone.exit_code == 0, alone.stderr

    group = _vidgen(*args, "-O", tmp_path / "group", "--processes", "2", "--parallel", "ulysses")

    assert group.returncode == 0, group.stderr
    records = [json.loads(line) for line in (tmp_path / "group" / MANIFEST_NAME).read_text().splitlines()]
    assert [(record["line"], record["status"], record["process"]) for record in records] == [(1, "done", 0), (2, "done", 0)]
    for record in records:
        made, reference = read_frames(tmp_path / "group" / record["output"]), read_frames(tmp_path / "alone" / record["output"])
        # LTX's text mask is repeated for every head: vidgen hands Ulysses one head's (vidgen.engine.parallel).
        assert np.abs(made.astype(int) - reference.astype(int)).max() == 0


def test_a_refusal_in_every_process_is_one_line_and_the_honest_code(tmp_path, tiny_wan_dir):
    """Ring on a CPU, found by each process after the launch: one line (the first process's), exit 2, nothing written."""
    (tmp_path / "p.txt").write_text("a fox\n")

    result = _vidgen(
        "batch", tmp_path / "p.txt", "-O", tmp_path / "out", "--model", tiny_wan_dir, *TINY_ARGS, "--processes", "2", "--parallel", "ring"
    )

    assert result.returncode == 2, result.stderr
    assert _errors(result.stderr) == [
        "Error: --parallel ring: ring attention needs a GPU (flash or cuDNN attention); on a CPU use --parallel ulysses"
    ]
    assert not (tmp_path / "out").exists()


def test_degrees_that_do_not_match_the_processes_are_refused_before_any_starts(tmp_path, tiny_wan_dir, run_cli):
    """Refused by the command itself (here, in this process), before it starts the launcher."""
    (tmp_path / "p.txt").write_text("a fox\n")

    result = run_cli(
        "batch",
        tmp_path / "p.txt",
        "-O",
        tmp_path / "out",
        "--model",
        tiny_wan_dir,
        *TINY_ARGS,
        "--processes",
        "2",
        "--parallel",
        "ulysses=4",
    )

    assert result.exit_code == 2
    assert _errors(result.stderr) == [
        "Error: --parallel ulysses=4 needs 4 processes; this group has 2 (the degrees multiply to the number of processes)"
    ]
    assert "starting 2 processes" not in result.stderr
