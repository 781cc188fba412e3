"""`vidgen batch`'s lock, DIR/.vidgen-batch.lock: held for the whole run, refused to a
second batch, not stuck after a kill -9, and removed when the batch ends, so a finished
folder holds the videos and the manifest only.

Removing it is safe only if the holder unlinks it while still holding it and whoever
takes it checks, once it has it, that the path still names the file it locked
(vidgen.locking): the tests below force the interleavings that need each half."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import FAKE_ARGS, gallery_file
from tests.conftest import standalone_env as _env
from vidgen import locking, ui
from vidgen.batch import LOCK_NAME, MANIFEST_NAME
from vidgen.batch.folder import FolderLock
from vidgen.errors import UsageError


def _command(fake_model_dir, *args: str) -> list[str]:
    return [sys.executable, "-m", "vidgen", "batch", *args, "--model", str(fake_model_dir), *FAKE_ARGS]


def files_in(folder: Path) -> list[str]:
    """Every file below `folder` but the gallery, hidden ones (the lock, temporary files) included."""
    return sorted(
        str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() and not gallery_file(path.relative_to(folder))
    )


def outputs(out: Path) -> list[str]:
    return [json.loads(line)["output"] for line in (out / MANIFEST_NAME).read_text().splitlines() if line.strip()]


def on_each_video(monkeypatch, check) -> None:
    """Run `check()` in the batch after each finished video: while it holds the lock."""
    finished = ui.BatchProgress.video_finished

    def video_finished(progress):
        check()
        finished(progress)

    monkeypatch.setattr(ui.BatchProgress, "video_finished", video_finished)


def test_a_finished_batch_leaves_the_videos_and_the_manifest_only_and_so_does_resume(batch):
    Path("p.txt").write_text("a red ball\na blue cat\n")

    result = batch("p.txt")

    assert result.exit_code == 0, result.stderr
    out = Path("out")
    assert len(outputs(out)) == 2
    assert files_in(out) == sorted([MANIFEST_NAME, *outputs(out)])

    resumed = batch("p.txt", "--resume")

    assert resumed.exit_code == 0, resumed.stderr
    assert "2 already done" in resumed.stderr
    assert files_in(out) == sorted([MANIFEST_NAME, *outputs(out)])


def test_a_batch_that_fails_or_is_refused_after_taking_the_lock_removes_it_too(batch):
    Path("p.jsonl").write_text('{"prompt": "a red ball"}\n{"prompt": "a blue cat", "steps": 0}\n')
    out = Path("out")

    failed = batch("p.jsonl")

    assert failed.exit_code == 1, failed.stderr
    assert LOCK_NAME not in files_in(out)

    refused = batch("p.jsonl")  # its first video is there: refused after the lock was taken

    assert refused.exit_code == 2, refused.stderr
    assert "already holds 1 of this batch's videos" in refused.stderr
    assert LOCK_NAME not in files_in(out)


@pytest.mark.slow
def test_a_second_batch_is_refused_while_the_first_holds_the_folder(batch, fake_model_dir, monkeypatch):
    """The second is a real `vidgen batch` process, started by the first (this process)
    between two of its videos; its refusal leaves the first's lock in place."""
    Path("p.txt").write_text("a red ball\na blue cat\n")
    lock = Path("out") / LOCK_NAME
    seen = []

    def second_batch():
        if seen:
            return
        before = os.stat(lock).st_ino
        second = subprocess.run(_command(fake_model_dir, "p.txt", "-O", "out"), env=_env(), capture_output=True, text=True)
        seen.append((second, before, os.stat(lock).st_ino, locking.is_held(lock)))

    on_each_video(monkeypatch, second_batch)

    first = batch("p.txt")

    assert first.exit_code == 0, first.stderr
    ((second, inode_before, inode_after, still_held),) = seen
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"Error: another vidgen batch is writing to out (process {os.getpid()}); wait for it" in second.stderr
    assert inode_after == inode_before and still_held  # the refused one removed nothing
    assert files_in(Path("out")) == sorted([MANIFEST_NAME, *outputs(Path("out"))])


@pytest.mark.slow
def test_the_lock_file_of_a_killed_batch_blocks_nothing_and_the_next_batch_removes_it(batch):
    Path("p.txt").write_text("a red ball\n")
    out = Path("out")
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from vidgen.batch.folder import FolderLock;"
            "FolderLock(Path('out')).acquire(); print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        refused = batch("p.txt")
    finally:
        holder.kill()  # SIGKILL: no clean-up runs
        holder.wait()
        holder.stdout.close()

    assert refused.exit_code == 2
    assert f"another vidgen batch is writing to out (process {holder.pid})" in refused.stderr
    assert (out / LOCK_NAME).read_text() == f"{holder.pid}\n"  # left behind, naming a dead process
    assert not locking.is_held(out / LOCK_NAME)

    after = batch("p.txt")

    assert after.exit_code == 0, after.stderr
    assert files_in(out) == sorted([MANIFEST_NAME, *outputs(out)])


def test_a_lock_file_removed_between_open_and_flock_is_left_for_the_one_there_now(batch, monkeypatch):
    """Forced interleaving: the batch opens DIR/.vidgen-batch.lock while a finishing batch
    holds it; before the batch's flock, the finishing one removes the file and closes.
    The batch's flock then succeeds on a file no one else can open: it must see that the
    path no longer names it and lock the file there now, or a third batch would run at
    the same time."""
    Path("p.txt").write_text("a red ball\na blue cat\n")
    out = Path("out")
    out.mkdir()
    lock = out / LOCK_NAME
    finishing = FolderLock(out)
    finishing.acquire()
    flocked = []  # (inode, links) of each file the batch got an exclusive flock on

    def flock(fd, operation):
        if operation & fcntl.LOCK_EX and finishing._fd is not None:
            finishing.release()  # between the batch's open and its flock
        fcntl.flock(fd, operation)
        if operation & fcntl.LOCK_EX:
            status = os.fstat(fd)
            flocked.append((status.st_ino, status.st_nlink))

    constants = {name: getattr(fcntl, name) for name in dir(fcntl) if name.isupper()}
    monkeypatch.setattr(locking, "fcntl", types.SimpleNamespace(**constants, flock=flock))
    during = []

    def third_batch():
        try:
            FolderLock(out).acquire()
            refused = False
        except UsageError as error:
            refused = "another vidgen batch is writing to out" in str(error)
        during.append((locking.is_held(lock), refused))

    on_each_video(monkeypatch, third_batch)

    result = batch("p.txt")

    assert result.exit_code == 0, result.stderr
    # The removed file (no name left), then the one made again (its inode number may be
    # the freed one's: only an open descriptor keeps an inode's number from reuse).
    assert [links for _, links in flocked] == [0, 1], flocked
    assert during == [(True, True), (True, True)]  # the lock at the path was the batch's all along
    assert files_in(out) == sorted([MANIFEST_NAME, *outputs(out)])


def test_the_lock_file_is_removed_while_still_held(batch, monkeypatch):
    """Removed after closing, it could be the file the next batch has just locked."""
    Path("p.txt").write_text("a red ball\n")
    held_when_removed = []

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)

        def unlink(self, path, *args, **kwargs):
            if Path(path).name == LOCK_NAME:
                held_when_removed.append(locking.is_held(Path(path)))
            return os.unlink(path, *args, **kwargs)

    monkeypatch.setattr(locking, "os", Os())

    result = batch("p.txt")

    assert result.exit_code == 0, result.stderr
    assert held_when_removed == [True]
    assert LOCK_NAME not in files_in(Path("out"))
