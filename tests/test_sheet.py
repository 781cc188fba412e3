"""`vidgen inspect FILE --sheet sheet.png`: a contact sheet of every format vidgen writes,
read back and compared tile by tile with the video's own frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidgen.media import sheet as sheet_module
from vidgen.media.readback import read_frames
from vidgen.media.video import write_video

RECIPE = {"prompt": "a red circle moves left", "seed": 42, "preset": "shapes", "fps": 8}


def moving_frames(count: int = 9, height: int = 32, width: int = 48) -> np.ndarray:
    """Each frame unlike the others (a bar that moves, a colour that changes), so a tile
    from the wrong time cannot pass."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    for t in range(count):
        frames[t, :, :, 2] = 20 + t * 13
        frames[t, :, t * 2 : t * 2 + 6, 0] = 255
    return frames


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.gif", "frames"])
def test_sheet_tiles_are_the_frames_at_their_times(run_cli, name):
    video = write_video(moving_frames(), Path.cwd() / name, fps=8, crf=10, recipe=RECIPE)

    result = run_cli("inspect", video, "--sheet", "sheet.png", "--frames", "4")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "sheet.png"
    picture = Image.open("sheet.png")
    assert picture.format == "PNG"
    # 4 tiles of 48x32 in one row; the sheet is at least 480 wide (the footer's text),
    # 8 + (32 + 16 + 8) high for the row, then 3 lines of 16 and 8 below.
    assert picture.size == (480, 8 + 56 + 48 + 8)
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    frames = read_frames(video).astype(int)  # the whole video, decoded on its own
    grid = sheet_module.layout(4, 48, 32)
    for number, index in enumerate([0, 3, 5, 8]):  # 9 frames, 4 evenly spread, first and last included
        left, top, right, bottom = grid.box(number)
        tile = pixels[top:bottom, left:right]
        # Exact: the sheet is lossless and decodes the same file with the same decoder.
        assert np.abs(tile - frames[index]).max() == 0, f"tile {number} is not frame {index}"
    # the time under each tile and the prompt under the grid: text, lighter than the background
    assert pixels[grid.box(0)[3] + 2 : grid.box(0)[3] + 14, 8:40].max() > 100
    assert pixels[-8 - 48 : -8 - 32, 8:200].max() > 100


def test_sheet_defaults_to_eight_frames_in_two_rows(run_cli):
    video = write_video(moving_frames(count=17), Path.cwd() / "clip.mp4", fps=8, recipe=RECIPE)

    result = run_cli("inspect", video, "--sheet", "sheet.png")

    assert result.exit_code == 0, result.stderr
    picture = Image.open("sheet.png")
    assert picture.size == (480, 8 + 2 * 56 + 48 + 8)
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    frames = read_frames(video).astype(int)
    grid = sheet_module.layout(8, 48, 32)
    for number, index in enumerate([0, 2, 5, 7, 9, 11, 14, 16]):  # round(i * 16 / 7)
        left, top, right, bottom = grid.box(number)
        assert np.abs(pixels[top:bottom, left:right] - frames[index]).max() == 0, f"tile {number} is not frame {index}"


def test_sheet_refuses_what_it_cannot_write(run_cli):
    video = write_video(moving_frames(), Path.cwd() / "clip.mp4", fps=8, recipe=RECIPE)
    for args, message in [
        (["--sheet", "sheet.txt"], "--sheet must end in .png, .jpg, .jpeg"),
        (["--sheet", "no/such/folder/sheet.png"], "no folder no/such/folder"),
        (["--sheet", "sheet.png", "--frames", "0"], "--frames must be at least 1"),
        (["--frames", "4"], "--frames goes with --sheet"),  # not silently ignored
    ]:
        result = run_cli("inspect", video, *args)
        assert result.exit_code == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert sorted(path.name for path in Path.cwd().iterdir()) == ["clip.mp4"]
