"""--preview: the file rewritten while the video forms (vidgen.engine.preview)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from vidgen.server.jobs import Job, execute
from vidgen.settings.request import BatchRequest

# previews of the built-in model's runs, one through a served batch: `model` (make check leaves it out).
pytestmark = pytest.mark.model

# The built-in model at its smallest size: 20 steps take seconds.
SMALL = ["--size", "32x32", "--frames", "5", "--seed", "1"]


def _watch(path: Path, done: threading.Event, seen: list[tuple[tuple[int, int], tuple[int, int], str]]) -> None:
    """Every new file at `path` (an atomic rename: another inode, or the same number again with
    another mtime), read as an image."""
    last = None
    while not done.wait(0.001):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if (stat.st_ino, stat.st_mtime_ns) != last:
            last = (stat.st_ino, stat.st_mtime_ns)
            with Image.open(path) as image:
                image.load()  # a half-written file would raise here
                seen.append((last, image.size, image.format))


def test_a_20_step_run_rewrites_the_preview_while_it_runs(run_cli):
    done, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch, args=(Path("p.png"), done, seen))
    watcher.start()
    try:
        result = run_cli(
            "a red circle moving right on a black background",
            *SMALL,
            "--steps",
            "20",
            "--preview",
            "p.png",
            "--preview-every",
            "5",
            "-o",
            "v.mp4",
        )
    finally:
        done.set()
        watcher.join()
    assert result.exit_code == 0, result.stderr
    # A new (inode, mtime) is a new file (the file system may give a freed inode number again):
    # after steps 5, 10, 15 and 20, four files; the watcher may miss one.
    assert len(seen) >= 3, seen
    assert {(size, kind) for _, size, kind in seen} == {((2 * 32, 32), "PNG")}  # a strip of 5 frames' 2 latent frames, 32x32 each
    assert not [name for name in os.listdir() if name.startswith(".")]  # no temporary file left


def test_a_served_batch_sends_a_preview_event_per_rewrite(tmp_path):
    Path("p.txt").write_text("a red circle moving right on a black background\na blue square growing on a white background\n")
    overrides = {"preview": str(Path("p.gif").resolve()), "preview_every": 2, "steps": 4, "size": "32x32", "frames": 5}
    job = Job(BatchRequest(prompts_file="p.txt", out_dir="out", overrides=overrides), Path.cwd(), client_pid=None)
    assert execute(job) == 0
    events = []
    while not job.events.empty():
        events.append(job.events.get())
    previews = [(event["path"], event["step"], event["steps"]) for event in events if event["event"] == "preview"]
    assert previews == [(overrides["preview"], step, 4) for _ in range(2) for step in (2, 4)]  # two videos, steps 2 and 4 each
    with Image.open("p.gif") as animation:
        assert animation.n_frames == 2 and animation.size == (32, 32)  # 5 frames are 2 latent frames
