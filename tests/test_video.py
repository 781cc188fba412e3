"""Writing and reading files without a model: formats, recipe round trip, atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidgen.errors import UsageError
from vidgen.media.readback import probe_video, read_frames, read_recipe
from vidgen.media.video import check_output_path, encode_mp4_bytes, output_format, write_video

AWKWARD_RECIPE = {
    "prompt": 'a "quoted" = ; # \\ back\\slash\nnew line, ünïcødé 猫',
    "seed": 12,
    "nested": {"list": [1, 2.5, None]},
}


def gradient_frames(count: int = 5, height: int = 32, width: int = 48) -> np.ndarray:
    t, y, x = np.meshgrid(np.arange(count), np.arange(height), np.arange(width), indexing="ij")
    return np.stack([x * 5 % 256, y * 7 % 256, t * 40 % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.gif", "frames"])
def test_round_trip_keeps_frames_size_and_recipe(name):
    frames = gradient_frames()
    recipe = {**AWKWARD_RECIPE, "fps": 8}  # a PNG folder knows its fps from the recipe only
    path = write_video(frames, Path.cwd() / name, fps=8, crf=10, recipe=recipe)
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (5, 48, 32)
    assert round(info.fps) == 8
    assert read_recipe(path) == recipe
    decoded = read_frames(path).astype(int)
    assert decoded.shape == frames.shape
    assert np.abs(decoded - frames).mean() < 12  # lossy codecs, but the same picture
    assert sorted(p.name for p in Path.cwd().iterdir()) == [name]


def test_odd_sizes_are_padded_for_yuv420p(tmp_path):
    path = write_video(gradient_frames(height=31, width=33), tmp_path / "odd.mp4", fps=8, recipe={})
    info = probe_video(path)
    assert (info.width, info.height) == (34, 32)


def test_mp4_bytes(tmp_path):
    data = encode_mp4_bytes(gradient_frames(), fps=8, recipe={"seed": 1})
    assert data[4:8] == b"ftyp"


def test_existing_output_needs_overwrite(tmp_path):
    target = tmp_path / "x.mp4"
    target.write_bytes(b"old")
    with pytest.raises(UsageError, match="already exists"):
        check_output_path(target, overwrite=False)
    check_output_path(target, overwrite=True)
    write_video(gradient_frames(), target, fps=8, recipe={}, overwrite=True)
    assert probe_video(target).frames == 5


def test_png_folder_overwrite_only_replaces_a_vidgen_folder(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpg")
    with pytest.raises(UsageError, match="did not write"):
        check_output_path(foreign, overwrite=True)
    ours = write_video(gradient_frames(), tmp_path / "frames", fps=8, recipe={"a": 1})
    check_output_path(ours, overwrite=True)
    write_video(gradient_frames(count=3), ours, fps=8, recipe={"a": 2}, overwrite=True)
    assert read_recipe(ours) == {"a": 2} and probe_video(ours).frames == 3


def test_output_formats():
    assert [output_format(p) for p in ("a.mp4", "a.MP4", "a.webm", "a.gif", "out/", "out")] == ["mp4", "mp4", "webm", "gif", "png", "png"]
    with pytest.raises(UsageError, match=r"cannot write \.mov files"):
        output_format("a.mov")


def test_inspect_a_file_without_recipe_and_a_missing_file(run_cli, tmp_path):
    import subprocess

    import imageio_ffmpeg

    plain = tmp_path / "plain.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x16:rate=4", "-t", "1", str(plain)],
        check=True,
    )
    result = run_cli("inspect", plain, "--json")
    assert result.exit_code == 0, result.stderr
    import json

    described = json.loads(result.stdout)
    assert (described["frames"], described["width"], described["height"], described["recipe"]) == (4, 32, 16, None)

    missing = run_cli("inspect", tmp_path / "none.mp4")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: no such file")
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    bad = run_cli("inspect", not_video)
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: cannot read")
