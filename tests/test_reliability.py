"""Faults, run for real: a file-size limit, a full disk, read-only and vanishing folders,
damaged model folders, a missing or failing ffmpeg, Ctrl-C while writing, SIGTERM during
a batch, two batches on one folder. Each checks what the user sees, the exit code and
what is left on disk (docs/reliability.md lists them)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import FAKE_ARGS, TINY_ARGS, gallery_file
from vidgen.batch import MANIFEST_NAME, file_sha256
from vidgen.media.readback import probe_video

# 256x256 videos of the tiny model are about 13 kB; a failed manifest record about 1.5 kB (it
# grows with every setting the table gains: at 64x64 and 3 kB two records no longer fit).
# Under this limit a video cannot be written but the manifest can take a few records.
FILE_SIZE_LIMIT = 10_000
BIG_ARGS = ["--steps", "2", "--size", "256x256", "--frames", "9"]


@contextlib.contextmanager
def file_size_limit(limit: int):
    """`ulimit -f` on this process while the block runs (the tests' own command runs in it):
    every writer (this process, the ffmpeg it starts) is refused past `limit` bytes, as by a
    full quota. Python ignores SIGXFSZ, so a write over it fails with EFBIG (ffmpeg dies of it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def vidgen_process(*args, limit_file_size: int | None = None, env: dict | None = None, **popen) -> subprocess.Popen:
    def limit() -> None:
        # A shell starts background jobs with Ctrl-C ignored, and children inherit that: a suite
        # run with `&` would see vidgen ignore the SIGINT these tests send, as it should.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if limit_file_size is not None:
            # What a full quota or `ulimit -f` does to every writer in the process tree.
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.Popen(
        [sys.executable, "-m", "vidgen", *map(str, args)],
        env={**os.environ, **(env or {})},
        preexec_fn=limit,
        start_new_session=True,
        **popen,
    )


def run_vidgen(*args, **options) -> tuple[int, str, str]:
    process = vidgen_process(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
    stdout, stderr = process.communicate()
    return process.returncode, stdout.decode(), stderr.decode()


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def files_in(folder: Path) -> list[str]:
    """Every file below `folder` but a batch's gallery, hidden ones (temporary files) included."""
    return sorted(
        str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() and not gallery_file(path.relative_to(folder))
    )


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines() if line.strip()]


def slow_ffmpeg(folder: Path) -> tuple[Path, Path]:
    """A stand-in ffmpeg that writes its pid to a marker and waits, exiting 255 on SIGINT
    as ffmpeg does: the one way to catch a write in progress on a tiny model."""
    script = folder / "slow-ffmpeg"
    marker = folder / "ffmpeg-started"
    script.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import os, signal, sys, time
        signal.signal(signal.SIGINT, lambda *_: sys.exit(255))
        with open({str(marker)!r}, "w") as marker:
            marker.write(str(os.getpid()))
        time.sleep(600)
        """)
    )
    script.chmod(0o755)
    return script, marker


@pytest.fixture
def stand_in_ffmpeg(tmp_path):
    """slow_ffmpeg's script and marker; a stand-in still running when the test ends (a
    failed test) is stopped rather than left sleeping."""
    script, marker = slow_ffmpeg(tmp_path)
    yield script, marker
    if marker.exists() and marker.read_text().strip():
        try:
            os.kill(int(marker.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(path: Path) -> int:
    """The pid in `path`, once written. No timeout: a hung run shows as a hung test."""
    while not (path.exists() and path.read_text().strip()):
        time.sleep(0.05)
    return int(path.read_text())


# ---- writing: file-size limit, full disk, ffmpeg ----


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_file_size_limit_is_an_error_and_leaves_no_file(tiny_wan_dir, run_cli, suffix):
    with file_size_limit(FILE_SIZE_LIMIT):
        result = run_cli("a red ball", "--model", tiny_wan_dir, *BIG_ARGS, "--seed", "1", "-o", f"x{suffix}")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"Error: cannot write x{suffix}: ") and ("file size limit" in line or "File too large" in line), line
    assert "nothing was written" in line
    assert result.stdout == ""
    assert files_in(Path.cwd()) == []


def test_batch_under_a_file_size_limit_records_failures_and_resume_completes(tiny_wan_dir, run_cli):
    Path("p.txt").write_text("a red ball\na blue cat\n")
    args = ["batch", "p.txt", "-O", "out", "--model", tiny_wan_dir, *BIG_ARGS]
    with file_size_limit(FILE_SIZE_LIMIT):
        result = run_cli(*args)
    stdout, stderr = result.stdout, result.stderr

    assert result.exit_code == 1, stderr
    out = Path("out")
    records = manifest(out)
    assert [(r["line"], r["status"]) for r in records] == [(1, "failed"), (2, "failed")]
    assert all("file size limit" in r["error"] for r in records)
    assert files_in(out) == [MANIFEST_NAME]  # no video, no temporary file, no lock file
    assert stdout == "" and "2 failed" in stderr and "Traceback" not in stderr

    # The limit is gone for the resume.
    resumed = run_cli(*args, "--resume")

    assert resumed.exit_code == 0, resumed.stderr
    done = [r for r in manifest(out) if r["status"] == "done"]
    assert sorted(r["line"] for r in done) == [1, 2]
    for record in done:
        assert file_sha256(out / record["output"]) == record["sha256"]
        assert probe_video(out / record["output"]).frames == 9


def test_disk_full_on_the_manifest_stops_the_batch_and_resume_completes(batch, monkeypatch):
    """/dev/full answers every write with ENOSPC: the manifest is pointed at it after the
    first video, as a disk that fills up would."""
    from vidgen import ui

    Path("p.txt").write_text("a red ball\na blue cat\na green dog\n")
    out = Path("out")
    original = ui.BatchProgress.video_finished

    def fill_the_disk(self) -> None:
        original(self)
        if not (out / MANIFEST_NAME).is_symlink():
            (out / MANIFEST_NAME).rename(out / "manifest.saved")
            (out / MANIFEST_NAME).symlink_to("/dev/full")

    monkeypatch.setattr(ui.BatchProgress, "video_finished", fill_the_disk)
    result = batch("p.txt")

    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "cannot append to" in line and "No space left on device" in line
    (out / MANIFEST_NAME).unlink()
    (out / "manifest.saved").rename(out / MANIFEST_NAME)
    assert not [name for name in files_in(out) if ".part" in name]
    monkeypatch.setattr(ui.BatchProgress, "video_finished", original)

    resumed = batch("p.txt", "--resume")

    assert resumed.exit_code == 0, resumed.stderr
    latest = {r["line"]: r for r in manifest(out)}
    assert sorted(latest) == [1, 2, 3] and all(r["status"] == "done" for r in latest.values())
    videos = [name for name in files_in(out) if name.endswith(".mp4")]
    assert sorted(videos) == sorted(r["output"] for r in latest.values())  # each once


def test_missing_ffmpeg_is_one_line_before_any_work(fake_model_dir, run_cli, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", "/no/such/ffmpeg")
    result = run_cli("a red ball", "--model", fake_model_dir, *FAKE_ARGS, "-o", "x.mp4")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "ffmpeg not found" in line and "/no/such/ffmpeg" in line and "IMAGEIO_FFMPEG_EXE" in line
    assert "loaded" not in result.stderr  # refused before the model was loaded
    assert files_in(Path.cwd()) == []


def test_failing_ffmpeg_is_one_line_with_its_reason(tiny_wan_dir, run_cli, monkeypatch, tmp_path):
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\necho \"Unknown encoder 'libx264'\" >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(broken))
    result = run_cli("a red ball", "--model", tiny_wan_dir, *TINY_ARGS, "-o", "x.mp4")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "ffmpeg" in line and "failed with exit 1: Unknown encoder 'libx264'" in line and "unset it" in line
    # No video; the denoised latents are kept for `vidgen decode` (vidgen.engine.latents).
    assert "finish with `vidgen decode x.latents.safetensors -o x.mp4`" in line
    assert files_in(Path.cwd()) == ["x.latents.safetensors"]


def test_a_file_cut_short_behind_ffmpegs_back_is_caught_before_the_rename(tiny_wan_dir, run_cli, monkeypatch, tmp_path):
    """ffmpeg exits 0 but the file is not whole (a file system that lost the end): the
    decoding check before the rename refuses it."""
    import imageio_ffmpeg

    real = imageio_ffmpeg.get_ffmpeg_exe()
    cutting = tmp_path / "ffmpeg"
    cutting.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        case "$*" in *-progress*) exec {real} "$@";; esac
        {real} "$@" || exit $?
        for last; do :; done
        truncate -s 1500 "$last"
        """)
    )
    cutting.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(cutting))
    result = run_cli("a red ball", "--model", tiny_wan_dir, *BIG_ARGS, "-o", "x.mp4")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert line.startswith("Error: cannot write x.mp4: the encoded file does not decode") and "nothing was written" in line
    assert files_in(Path.cwd()) == ["x.latents.safetensors"]  # no video; the latents for `vidgen decode`


@pytest.mark.slow
@pytest.mark.parametrize("ffmpeg_first", [False, True], ids=["vidgen-only", "ffmpeg-too"])
def test_ctrl_c_while_ffmpeg_writes_exits_130_and_leaves_nothing(tiny_wan_dir, stand_in_ffmpeg, ffmpeg_first):
    """A terminal's Ctrl-C signals vidgen's process group; ffmpeg may get one too."""
    script, marker = stand_in_ffmpeg
    process = vidgen_process(
        "a red ball", "--model", tiny_wan_dir, *TINY_ARGS, "-o", "x.mp4", env={"IMAGEIO_FFMPEG_EXE": str(script)}, stderr=subprocess.PIPE
    )
    ffmpeg_pid = wait_for(marker)
    if ffmpeg_first:
        os.kill(ffmpeg_pid, signal.SIGINT)
    os.killpg(process.pid, signal.SIGINT)
    stderr = process.communicate()[1].decode()

    assert process.returncode == 130, stderr
    assert "interrupted" in one_error_line(stderr)
    assert files_in(Path.cwd()) == []
    with pytest.raises(ProcessLookupError):
        os.kill(ffmpeg_pid, 0)  # the encoder was stopped too


# ---- folders ----


def test_read_only_output_folder_is_refused_before_any_work(batch, tmp_path):
    Path("p.txt").write_text("a red ball\n")
    if os.geteuid() == 0:
        folder = Path("/sys")  # permission bits do not stop root; sysfs does
        if not folder.is_dir():
            pytest.skip("no /sys to stand for a read-only folder")
    else:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    result = batch("p.txt", out=folder)
    assert result.exit_code == 2
    assert f"cannot write to output folder {folder}" in one_error_line(result.stderr)
    assert not (folder / MANIFEST_NAME).exists()


def test_output_folder_removed_during_a_batch_stops_it(batch, monkeypatch):
    from vidgen import ui

    Path("p.txt").write_text("a red ball\na blue cat\na green dog\n")
    out = Path("out")
    original = ui.BatchProgress.video_finished

    def remove_folder(self) -> None:
        original(self)
        shutil.rmtree(out, ignore_errors=True)

    monkeypatch.setattr(ui.BatchProgress, "video_finished", remove_folder)
    result = batch("p.txt")

    assert result.exit_code == 1
    assert "was removed or replaced during the batch" in one_error_line(result.stderr)
    assert not out.exists()  # not made again with a partial manifest
    assert len(result.stdout.splitlines()) == 1  # the one video made before


# ---- damaged model folders ----


def _damage(folder: Path, fault: str) -> str:
    """Damage a copy of the tiny model; returns what the error must name."""
    if fault == "truncated-weights":
        weights = next((folder / "transformer").glob("*.safetensors"))
        os.truncate(weights, weights.stat().st_size // 2)
        return "transformer/diffusion_pytorch_model.safetensors is damaged"
    if fault == "garbage-header":
        weights = next((folder / "vae").glob("*.safetensors"))
        with open(weights, "r+b") as file:
            file.write(b"not a safetensors header")
        return "vae/diffusion_pytorch_model.safetensors is damaged"
    if fault == "unknown-class":
        index = json.loads((folder / "model_index.json").read_text())
        index["vae"] = ["diffusers", "NoSuchAutoencoder"]
        (folder / "model_index.json").write_text(json.dumps(index))
        return "component 'vae' names class NoSuchAutoencoder, which diffusers does not have"
    if fault == "missing-component":
        shutil.rmtree(folder / "text_encoder")
        return "component 'text_encoder' (UMT5EncoderModel) is listed in model_index.json but"
    if fault == "bad-config":
        (folder / "transformer" / "config.json").write_text("{not json")
        return "transformer/config.json is not valid JSON"
    raise AssertionError(fault)


@pytest.mark.parametrize("fault", ["truncated-weights", "garbage-header", "unknown-class", "missing-component", "bad-config"])
def test_damaged_model_folder_is_one_line_naming_the_file(tiny_wan_dir, run_cli, tmp_path, fault):
    model = tmp_path / "model"
    shutil.copytree(tiny_wan_dir, model)
    fragment = _damage(model, fault)
    result = run_cli("a red ball", "--model", model, *TINY_ARGS, "-o", "x.mp4")
    assert result.exit_code == 2
    assert fragment in one_error_line(result.stderr)
    assert result.stdout == "" and files_in(Path.cwd()) == []


# ---- SIGTERM and concurrent batches ----


@pytest.mark.slow
def test_sigterm_stops_the_batch_after_the_current_video_then_resume_finishes(tiny_wan_dir, run_cli):
    prompts = ["a red ball", "a blue cat", "a green dog", "a white sea", "a black car", "a yellow sun"]
    Path("p.txt").write_text("\n".join(prompts) + "\n")
    args = ["batch", "p.txt", "-O", "out", "--model", tiny_wan_dir, *TINY_ARGS]
    process = vidgen_process(*args, "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(process.stdout.readline())["status"] == "done"  # the batch is under way
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate()
    stderr = stderr.decode()

    assert process.returncode == 143, stderr
    assert "stopping after the current video" in stderr and "not started" in stderr and "Traceback" not in stderr
    out = Path("out")
    records = manifest(out)
    assert 1 <= len(records) < len(prompts) and all(r["status"] == "done" for r in records)
    assert sorted(name for name in files_in(out) if name.endswith(".mp4")) == sorted(r["output"] for r in records)
    assert all(file_sha256(out / r["output"]) == r["sha256"] for r in records)

    resumed = run_cli(*args, "--resume")  # in this process: a fresh one only imported torch again

    assert resumed.exit_code == 0, resumed.stderr
    done = [r for r in manifest(out) if r["status"] == "done"]
    assert sorted(r["line"] for r in done) == list(range(1, len(prompts) + 1))  # each once
    assert len([name for name in files_in(out) if name.endswith(".mp4")]) == len(prompts)


@pytest.mark.slow
def test_second_sigterm_stops_at_once_and_leaves_no_partial_file(tiny_wan_dir, stand_in_ffmpeg):
    script, marker = stand_in_ffmpeg
    Path("p.txt").write_text("a red ball\na blue cat\n")
    process = vidgen_process(
        "batch", "p.txt", "-O", "out", "--model", tiny_wan_dir, *TINY_ARGS, env={"IMAGEIO_FFMPEG_EXE": str(script)}, stderr=subprocess.PIPE
    )
    wait_for(marker)  # the first video is being written
    process.send_signal(signal.SIGTERM)
    # Signals sent back to back can merge into one: send the second once the first is seen.
    seen = []
    while not any("stopping after the current video" in line for line in seen):
        seen.append(process.stderr.readline().decode())
    process.send_signal(signal.SIGTERM)
    stderr = "".join(seen) + process.communicate()[1].decode()

    assert process.returncode == 143, stderr
    assert "terminated" in one_error_line(stderr)
    out = Path("out")
    assert files_in(out) == [MANIFEST_NAME] and manifest(out) == []  # the lock file removed on the way out


@pytest.mark.slow
def test_second_batch_on_the_same_folder_is_refused_and_a_dead_ones_lock_is_not(batch_cli, tiny_wan_dir, stand_in_ffmpeg):
    script, marker = stand_in_ffmpeg
    Path("p.txt").write_text("a red ball\n")
    first = vidgen_process(
        "batch",
        "p.txt",
        "-O",
        "out",
        "--model",
        tiny_wan_dir,
        *TINY_ARGS,
        env={"IMAGEIO_FFMPEG_EXE": str(script)},
        stderr=subprocess.DEVNULL,
    )
    ffmpeg_pid = wait_for(marker)  # the first batch holds the folder
    try:
        refused = batch_cli("p.txt")
    finally:
        first.kill()  # as kill -9 would: no clean-up runs
        first.wait()
        os.kill(ffmpeg_pid, signal.SIGKILL)  # its stand-in ffmpeg, orphaned

    assert refused.exit_code == 2
    assert f"another vidgen batch is writing to out (process {first.pid}); wait for it" in one_error_line(refused.stderr)

    after = batch_cli("p.txt", "--resume")

    assert after.exit_code == 0, after.stderr
    assert [r["status"] for r in manifest(Path("out"))] == ["done"]


@pytest.fixture
def batch_cli(run_cli, tiny_wan_dir):
    def invoke(prompts_file, *args, out="out"):
        return run_cli("batch", prompts_file, "-O", out, "--model", tiny_wan_dir, *TINY_ARGS, *args)

    return invoke
