"""`vidgen inspect FILE --sheet sheet.png`: a contact sheet, a picture of a video to paste
in a chat or a report.

N frames (default 8) evenly spread from the first to the last, in a grid, each labelled
with its time, and the recipe's prompt and seed under the grid. Frames are read back
with vidgen.media.readback, so every format vidgen writes works (MP4, WebM, GIF, PNG folder).

A tile is the frame itself, pixel for pixel, unless the frame is wider than TILE_WIDTH
(then it is scaled down, keeping its shape); labels sit under the tiles, never on them.
The sheet's size depends only on the frame size and N (`sheet_size`), not on the text.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidgen.errors import UsageError
from vidgen.media.readback import probe_video, read_frames_at, read_recipe

DEFAULT_FRAMES = 8
TILE_WIDTH = 320  # wider frames are scaled down to this
PAD = 8  # around and between tiles
LABEL = 16  # the time under each tile
LINE = 16  # one line of the footer
FOOTER_LINES = 3  # the prompt (up to two lines), then seed, model, size, frames and fps
MIN_WIDTH = 480  # so the footer's text stays readable under a grid of tiny frames
SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
BACKGROUND, INK, DIM = (24, 24, 24), (235, 235, 235), (160, 160, 160)


@dataclass
class Layout:
    columns: int
    rows: int
    tile: tuple[int, int]  # width, height

    def box(self, number: int) -> tuple[int, int, int, int]:
        """Where tile `number` (from 0, row by row) lies: left, top, right, bottom."""
        row, column = divmod(number, self.columns)
        left = PAD + column * (self.tile[0] + PAD)
        top = PAD + row * (self.tile[1] + LABEL + PAD)
        return left, top, left + self.tile[0], top + self.tile[1]


def frame_indices(count: int, wanted: int) -> list[int]:
    """`wanted` frames evenly spread over `count`, first and last included (all of them
    when the video has fewer)."""
    if wanted >= count:
        return list(range(count))
    if wanted == 1:
        return [count // 2]
    return [round(i * (count - 1) / (wanted - 1)) for i in range(wanted)]


def layout(count: int, width: int, height: int) -> Layout:
    """The grid for `count` tiles of frames `width` x `height`: at least 4 columns (fewer
    only for fewer tiles), about square beyond 16."""
    columns = min(count, max(4, math.ceil(math.sqrt(count))))
    if width > TILE_WIDTH:
        width, height = TILE_WIDTH, max(1, round(height * TILE_WIDTH / width))
    return Layout(columns, math.ceil(count / columns), (width, height))


def sheet_size(grid: Layout) -> tuple[int, int]:
    width = PAD + grid.columns * (grid.tile[0] + PAD)
    height = PAD + grid.rows * (grid.tile[1] + LABEL + PAD) + FOOTER_LINES * LINE + PAD
    return max(width, MIN_WIDTH), height


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's own scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int, lines: int) -> list[str]:
    """`text` wrapped at spaces into at most `lines` lines of `width` pixels; the last one
    ends in … if text was left out."""
    words, out = text.split(), []
    while words and len(out) < lines:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line = f"{line} {words.pop(0)}"
        out.append(line)
    if words or (out and draw.textlength(out[-1], font=font) > width):
        last = out[-1]
        while last and draw.textlength(last + "…", font=font) > width:
            last = last[:-1]
        out[-1] = last + "…"
    return out


def _time_label(index: int, fps: float) -> str:
    return f"{index / fps:.2f} s" if fps else f"frame {index}"


def make_sheet(path: Path, frames: int = DEFAULT_FRAMES) -> Image.Image:
    """The contact sheet of the video, GIF or PNG folder at `path`."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")
    info = probe_video(path)
    indices = frame_indices(info.frames, frames)
    pictures = read_frames_at(path, indices)
    grid = layout(len(indices), info.width, info.height)
    sheet = Image.new("RGB", sheet_size(grid), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    small, text = _font(11), _font(13)
    for number, (index, picture) in enumerate(zip(indices, pictures)):
        tile = Image.fromarray(np.ascontiguousarray(picture))
        if tile.size != grid.tile:
            tile = tile.resize(grid.tile, Image.Resampling.LANCZOS)
        left, top, _, bottom = grid.box(number)
        sheet.paste(tile, (left, top))
        draw.text((left, bottom + 2), _time_label(index, info.fps), fill=DIM, font=small)

    recipe = read_recipe(path) or {}
    width = sheet.width - 2 * PAD
    top = sheet.height - PAD - FOOTER_LINES * LINE
    prompt = recipe.get("prompt")
    lines = _fit(draw, str(prompt), text, width, FOOTER_LINES - 1) if prompt else [f"{path.name}: no vidgen recipe"]
    details = [f"seed {recipe['seed']}"] if recipe.get("seed") is not None else []
    details += [str(recipe[key]) for key in ("preset",) if recipe.get(key)]
    details += [f"{info.width}x{info.height}", f"{info.frames} frames" + (f" at {info.fps:g} fps" if info.fps else "")]
    for number, line in enumerate(lines):
        draw.text((PAD, top + number * LINE), line, fill=INK, font=text)
    draw.text((PAD, top + (FOOTER_LINES - 1) * LINE), _fit(draw, " · ".join(details), small, width, 1)[0], fill=DIM, font=small)
    return sheet


def write_sheet(path: Path, target: Path, frames: int = DEFAULT_FRAMES) -> Path:
    """The contact sheet of `path` written to `target` (.png, .jpg), replacing it;
    written to a temporary name first, so a failure leaves no half picture."""
    target = Path(target)
    kind = SUFFIXES.get(target.suffix.lower())
    if kind is None:
        raise UsageError(f"--sheet must end in {', '.join(SUFFIXES)}, got {target.name}")
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {target}: no folder {target.parent}")
    sheet = make_sheet(path, frames)
    temporary = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.part{target.suffix}")
    try:
        sheet.save(temporary, kind)
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {target}: {error.strerror or error}") from error
    return target
