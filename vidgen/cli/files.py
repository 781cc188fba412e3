"""The commands on files already made: `vidgen inspect` (a video's recipe, frames and sound, or a
contact sheet), `vidgen post` (interpolate and upscale) and `vidgen gallery` (a batch's page).
Registered on the app by cli/app.py; heavy imports inside each command, as there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vidgen import ui
from vidgen.cli.guard import DebugOption, guarded
from vidgen.cli.options import OverwriteOption, QuietOption, ThreadsOption, with_setting_options
from vidgen.context import RunContext
from vidgen.errors import UsageError
from vidgen.media.post.plan import describe_steps
from vidgen.threads import apply_threads


def inspect_file(
    file: Annotated[Path, typer.Argument(help="A video, GIF or PNG folder written by vidgen.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sheet: Annotated[
        Optional[Path],
        typer.Option(
            "--sheet",
            help="Write a contact sheet instead (PNG or JPEG): frames in a grid, each with its time, the prompt and seed under it. Example: vidgen inspect clip.mp4 --sheet sheet.png --frames 12",
            show_default=False,
        ),
    ] = None,
    frames: Annotated[
        Optional[int], typer.Option("--frames", help="With --sheet: how many frames, evenly spread. Default: 8.", show_default=False)
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Show a video's recipe (prompt, seed, model, settings), its frames, size and fps, and its audio stream."""

    def action() -> None:
        from vidgen.engine.extend import window_lines  # as below
        from vidgen.media.readback import describe  # here, not at the top: keeps `vidgen --help` light (numpy, Pillow)
        from vidgen.media.sheet import DEFAULT_FRAMES, write_sheet  # as above

        if sheet is not None:
            return ui.emit_result(str(write_sheet(file, sheet, DEFAULT_FRAMES if frames is None else frames)))
        if frames is not None:  # silently ignoring it would hide a typo'd command line
            raise UsageError("--frames goes with --sheet (how many frames the contact sheet shows)")
        description = describe(file)
        if as_json:
            ui.emit_json(description)
            return
        recipe = description.pop("recipe") or {}
        audio = description.pop("audio")
        for key, value in description.items():
            ui.emit_result(f"{key}: {value}")
        if audio:
            beside = f" (in {audio['file']})" if "file" in audio else ""
            ui.emit_result(
                f"audio: {audio['codec']}, {audio['sample_rate']} Hz, {audio['channels']} channel(s), {audio['seconds']} s{beside}"
            )
        else:
            ui.emit_result("audio: none")
        if not recipe:
            ui.warn(f"{file} carries no vidgen recipe")
        for key, value in recipe.items():
            ui.emit_result(f"recipe.{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}")
        for line in [*describe_steps(recipe), *window_lines(recipe)]:  # post's steps, a video's windows (vidgen extend): a line each
            ui.emit_result(line)

    guarded(debug, action)


POST_EXAMPLES = """Examples:
  vidgen post clip.mp4 --interpolate 2 -o clip-32fps.mp4
  vidgen post clip.mp4 --upscale 2                      # clip-post.mp4, twice as wide and high
  vidgen post clip.webm --interpolate 2 --interpolate-model flownet.pkl -o smooth.webm
  vidgen post frames/ --upscale 4 --upscale-model RealESRGAN_x4plus.pth -o big.mp4"""


@with_setting_options("post", after_option="output")
def post(
    file: Annotated[
        str, typer.Argument(metavar="IN", help="A video vidgen can read: MP4, WebM, GIF or a folder of PNG frames (anyone's).")
    ],
    output: Annotated[
        Optional[str], typer.Option("-o", "--output", help="FILE.mp4|.webm|.gif or a folder for PNG frames. Default: IN's name with -post.")
    ] = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    threads: ThreadsOption = None,
    debug: DebugOption = False,
    **settings: Any,
) -> None:
    """Interpolate (more frames a second, same duration and sound) and upscale a video; the recipe records each step."""

    def action() -> None:
        from vidgen.cli.post import run_post  # here, not at the top: keeps `vidgen --help` light (numpy; torch for a model)

        apply_threads(threads)
        run_post(file, output, settings, overwrite=overwrite, as_json=as_json)

    code = guarded(debug, action, RunContext(quiet=quiet, threads=threads))
    if code:
        raise typer.Exit(int(code))


GALLERY_EXAMPLES = """Example:
  vidgen gallery clips             # then open clips/index.html in a browser"""


def gallery(
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="A folder `vidgen batch` wrote (it holds manifest.jsonl).")],
    debug: DebugOption = False,
) -> None:
    """(Re)write DIR/index.html: a page of a batch's videos with their prompts, seeds and settings (`vidgen batch` writes it when it ends)."""
    from vidgen.batch.gallery import write_gallery  # here, not at the top: keeps `vidgen --help` light (numpy, Pillow, the batch's modules)

    guarded(debug, lambda: ui.emit_result(str(write_gallery(out_dir))))
