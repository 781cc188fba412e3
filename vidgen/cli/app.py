"""The `vidgen` command: parse options, call the library, map errors to exit codes.

Heavy imports (torch, diffusers) happen inside the commands, so `vidgen --help` is fast.
`vidgen "a prompt"` is `vidgen generate "a prompt"`: a first argument that is not a
subcommand is routed to `generate`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from vidgen import __version__, ui
from vidgen.cli import argv
from vidgen.threads import apply_threads
from vidgen.cli.decode import decode_latents
from vidgen.cli.presets import presets_app
from vidgen.cli.client import run_batch as run_on_server
from vidgen.cli.client import run_generate
from vidgen.context import RunContext
from vidgen.environment import switched_on
from vidgen.errors import ExitCode, UsageError
from vidgen.cli.guard import DebugOption
from vidgen.cli.guard import guarded as _guarded  # an error: one line and its exit code
from vidgen.cli.options import FastOption, ModelOption, NoServerOption, PresetOption, QuietOption, StrictOption, ThreadsOption
from vidgen.cli.options import overrides as _overrides  # the setting options given, as settings
from vidgen.cli.options import with_setting_options as _with_setting_options  # the table's options on a command
from vidgen.media.post.plan import describe_steps
from vidgen.settings.presets import Preset, load_preset
from vidgen.settings.request import BatchRequest, GenerateRequest

class _DefaultToGenerate(TyperGroup):
    """Routes `vidgen PROMPT ...` to `vidgen generate PROMPT ...`, and turns every error
    (Click's usage errors included) into one `Error: ...` line and an exit code."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        args = argv.rewrite(args, self.commands)  # PROMPT -> generate PROMPT; a bare --ray -> --ray=local
        ctx.meta["vidgen.args"] = list(args)  # `batch --processes` runs the same command line in each process
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except typer.Abort:  # end of input at a prompt
            ui.error("aborted")
            code = ExitCode.INTERRUPTED
        except typer.TyperException as error:  # Typer's (vendored Click's) usage errors
            ui.error(error.format_message())
            code = error.exit_code
        else:
            code = result if isinstance(result, int) else ExitCode.SUCCESS
        if not standalone_mode:
            return code
        sys.exit(int(code))


# Examples at the end of each --help. Typer's rich help keeps single line breaks in an
# epilog (it splits and rejoins on blank lines only).
_MAIN_EXAMPLES = """Examples:
  vidgen "a red circle moving right on a black background" -o clip.mp4
  vidgen presets show wan2.1-t2v-1.3b
  vidgen batch prompts.txt -O clips
  vidgen inspect clip.mp4 --json"""
_GENERATE_EXAMPLES = """Examples:
  vidgen "a red circle moving right on a black background" --seed 1 -o clip.mp4
  vidgen "a blue square growing on a white background" -n 3 --json -o squares.mp4
  echo "a yellow triangle moving up on a gray background" | vidgen - -o - | ffmpeg -i - clip.gif
  vidgen "a fox running through snow" --preset wan2.1-t2v-1.3b --offload model -o fox.mp4"""
_BATCH_EXAMPLES = """Examples:
  vidgen batch prompts.txt -O clips --seed 7
  vidgen batch prompts.jsonl -O clips --json | jq -r .path
  cat prompts.txt | vidgen batch - -O clips --resume
  vidgen batch prompts.txt -O clips --processes 4
  vidgen batch prompts.txt -O clips --no-gallery   # no clips/index.html
  vidgen batch prompts.txt -O /shared/clips --ray ray://head:10001"""

app = typer.Typer(
    cls=_DefaultToGenerate,
    name="vidgen",
    help="Text-to-video from the command line: vidgen \"a prompt\" -o clip.mp4",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=_MAIN_EXAMPLES,
)
app.add_typer(presets_app, name="presets")
app.command("decode")(decode_latents)  # vidgen decode LATENTS -o FILE (vidgen.cli.decode)


def _version_callback(value: bool) -> None:
    if value:
        ui.emit_result(f"vidgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Text-to-video with diffusers pipelines. `vidgen "a prompt" -o clip.mp4`."""
    ui.quiet_library_loggers()


@app.command(epilog=_GENERATE_EXAMPLES)
@_with_setting_options("generate")
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows; - reads it from standard input.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="FILE.mp4|.webm|.gif, a folder for PNG frames, or - for MP4 on stdout. Default: named after the prompt and seed.")] = None,
    preset: PresetOption = None,
    model: ModelOption = None,
    fast: FastOption = False,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per video on stdout.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    strict: StrictOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Resolve everything (settings, pipeline class, component sizes from their headers, quantized sizes, what --offload auto would choose) and print it; no weights read, nothing written.")] = False,
    threads: ThreadsOption = None,
    no_server: NoServerOption = False,
    debug: DebugOption = False,
    **settings: Any,
) -> None:
    """Generate a video from a prompt (the default command)."""
    def action() -> int:
        text = sys.stdin.read().strip() if prompt == "-" else prompt
        request = GenerateRequest(prompt=text, preset=preset, model=model, overrides=_overrides(settings, fast=fast), strict=strict,
                                  output=output, overwrite=overwrite, as_json=as_json, threads=threads, debug=debug)
        if dry_run:
            from vidgen.cli import dryrun  # here, not at the top: keeps `vidgen --help` light (dryrun.py loads torch and diffusers)

            report = dryrun.plan(request)
            if as_json:
                ui.emit_json(report)
            else:
                for line in dryrun.lines(report):
                    ui.emit_result(line)
            return ExitCode.SUCCESS
        if not no_server and not switched_on("VIDGEN_NO_SERVER"):
            code = run_generate(request)
            if code is not None:  # a server ran it; None: no server, so run it here
                return code
        from vidgen.engine.single import run  # here, not at the top: keeps `vidgen --help` and a served call light (torch)

        apply_threads(threads)
        run(request)
        return ExitCode.SUCCESS

    code = _guarded(debug, action, RunContext(quiet=quiet, threads=threads))
    if code:
        raise typer.Exit(int(code))


@app.command(epilog=_BATCH_EXAMPLES)
@_with_setting_options("batch")
def batch(
    ctx: typer.Context,
    prompts_file: Annotated[str, typer.Argument(metavar="PROMPTS_FILE", help=".txt (a prompt a line), .jsonl or .csv; - reads standard input.")],
    out_dir: Annotated[str, typer.Option("-O", "--out-dir", help="Folder for the videos and manifest.jsonl (created if missing).")],
    preset: PresetOption = None,
    model: ModelOption = None,
    fast: FastOption = False,
    resume: Annotated[bool, typer.Option("--resume", help="Skip videos the manifest says are done and whose files are intact.")] = False,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per finished video on stdout, as it finishes.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Make again videos whose files already exist.")] = False,
    strict: StrictOption = False,
    threads: ThreadsOption = None,
    processes: Annotated[Optional[int], typer.Option("--processes", help="Run the batch in N processes on this machine (one per GPU; without GPUs, CPU processes), started through accelerate; exits with the worst of their codes.", show_default=False)] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="[ADDRESS]", help="Run the batch on Ray (pip install 'vidgen\\[ray]'): a local Ray, or the cluster at ADDRESS (auto, HOST:PORT, ray://HOST:10001); one worker per GPU, --processes N workers; -O must be a folder every node shares.", show_default=False)] = None,
    no_server: NoServerOption = False,
    debug: DebugOption = False,
    **settings: Any,
) -> None:
    """Generate a video for every line of a prompts file into a folder (docs/batch.md)."""
    def action() -> int:
        request = BatchRequest(prompts_file=prompts_file, out_dir=out_dir, preset=preset, model=model, overrides=_overrides(settings, fast=fast),
                               strict=strict, resume=resume, overwrite=overwrite, as_json=as_json, threads=threads, debug=debug)
        if ray is not None:
            from vidgen.batch.cluster import run_on_ray  # here, not at the top: Ray is an extra, and the batch's modules load torch

            return run_on_ray(ray, request, workers=processes)
        if processes is not None and processes != 1:
            from vidgen.batch.launch import run_in_processes  # here, not at the top: keeps `vidgen --help` light (the batch's modules load torch)

            return run_in_processes(ctx.meta["vidgen.args"], processes, request)
        launched = any(key == "WORLD_SIZE" or key.startswith("ACCELERATE_") for key in os.environ)
        if not no_server and not switched_on("VIDGEN_NO_SERVER") and not launched:  # accelerate's processes share out the work themselves
            code = run_on_server(request)
            if code is not None:
                return code
        from vidgen.batch import run_batch  # here, not at the top: keeps `vidgen --help` and a served call light (torch)

        return run_batch(request)

    code = _guarded(debug, action, RunContext(quiet=quiet, threads=threads))
    if code:
        raise typer.Exit(int(code))


_EXTEND_EXAMPLES = """Examples:
  vidgen extend clip.mp4 "the fox runs on into the forest" -p wan2.1-vace-1.3b --size 832x480 --seconds 5 -o longer.mp4
  vidgen extend clip.mp4 "the camera pulls back" -p wan2.1-i2v-480p --frames 160 --seed 7 -o longer.mp4
  vidgen extend clip.mp4 "..." -p wan2.1-vace-1.3b --overlap 9 --color-match 0.5 --dry-run"""


@app.command(epilog=_EXTEND_EXAMPLES)
@_with_setting_options("extend")
def extend(
    input_video: Annotated[str, typer.Argument(metavar="IN", help="The video to continue (any file ffmpeg reads, a GIF or a PNG folder); its size must be the run's.")],
    prompt: Annotated[str, typer.Argument(help="What happens next.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="FILE.mp4|.webm|.gif, a folder for PNG frames, or - for MP4 on stdout. Default: named after the prompt and seed.")] = None,
    preset: PresetOption = None,
    model: ModelOption = None,
    fast: FastOption = False,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    strict: StrictOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say the windows and their frames; nothing loaded or written.")] = False,
    threads: ThreadsOption = None,
    debug: DebugOption = False,
    **settings: Any,
) -> None:
    """Continue a video: its frames, then --seconds (or --frames) more, made in windows by a preset that takes frames (Wan VACE, Wan image-to-video, LTX condition)."""
    def action() -> int:
        from vidgen.engine import windows  # here, not at the top: keeps `vidgen --help` light (torch, diffusers)

        overrides = _overrides(settings, fast=fast)
        if dry_run:
            run = windows.prepare(prompt, preset=preset, model=model, overrides=overrides, strict=strict, source=input_video)
            report = windows.dry_run_report(run)
            if as_json:
                ui.emit_json(report)
            else:
                for line in report["lines"]:
                    ui.emit_result(line)
            return ExitCode.SUCCESS
        apply_threads(threads)
        windows.run_windows(prompt, preset=preset, model=model, overrides=overrides, strict=strict, output=output,
                            overwrite=overwrite, as_json=as_json, source=input_video)  # fmt: skip
        return ExitCode.SUCCESS

    code = _guarded(debug, action, RunContext(quiet=quiet, threads=threads))
    if code:
        raise typer.Exit(int(code))


@app.command("inspect")
def inspect_file(
    file: Annotated[Path, typer.Argument(help="A video, GIF or PNG folder written by vidgen.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    sheet: Annotated[Optional[Path], typer.Option("--sheet", help="Write a contact sheet instead (PNG or JPEG): frames in a grid, each with its time, the prompt and seed under it. Example: vidgen inspect clip.mp4 --sheet sheet.png --frames 12", show_default=False)] = None,
    frames: Annotated[Optional[int], typer.Option("--frames", help="With --sheet: how many frames, evenly spread. Default: 8.", show_default=False)] = None,
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
            ui.emit_result(f"audio: {audio['codec']}, {audio['sample_rate']} Hz, {audio['channels']} channel(s), {audio['seconds']} s{beside}")
        else:
            ui.emit_result("audio: none")
        if not recipe:
            ui.warn(f"{file} carries no vidgen recipe")
        for key, value in recipe.items():
            ui.emit_result(f"recipe.{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}")
        for line in [*describe_steps(recipe), *window_lines(recipe)]:  # post's steps, a video's windows (vidgen extend): a line each
            ui.emit_result(line)

    _guarded(debug, action)


_POST_EXAMPLES = """Examples:
  vidgen post clip.mp4 --interpolate 2 -o clip-32fps.mp4
  vidgen post clip.mp4 --upscale 2                      # clip-post.mp4, twice as wide and high
  vidgen post clip.webm --interpolate 2 --interpolate-model flownet.pkl -o smooth.webm
  vidgen post frames/ --upscale 4 --upscale-model RealESRGAN_x4plus.pth -o big.mp4"""


@app.command(epilog=_POST_EXAMPLES)
@_with_setting_options("post", after_option="output")
def post(
    file: Annotated[str, typer.Argument(metavar="IN", help="A video vidgen can read: MP4, WebM, GIF or a folder of PNG frames (anyone's).")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="FILE.mp4|.webm|.gif or a folder for PNG frames. Default: IN's name with -post.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
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

    code = _guarded(debug, action, RunContext(quiet=quiet, threads=threads))
    if code:
        raise typer.Exit(int(code))


_GALLERY_EXAMPLES = """Example:
  vidgen gallery clips             # then open clips/index.html in a browser"""


@app.command(epilog=_GALLERY_EXAMPLES)
def gallery(
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="A folder `vidgen batch` wrote (it holds manifest.jsonl).")],
    debug: DebugOption = False,
) -> None:
    """(Re)write DIR/index.html: a page of a batch's videos with their prompts, seeds and settings (`vidgen batch` writes it when it ends)."""
    from vidgen.batch.gallery import write_gallery  # here, not at the top: keeps `vidgen --help` light (numpy, Pillow, the batch's modules)

    _guarded(debug, lambda: ui.emit_result(str(write_gallery(out_dir))))


_SERVE_EXAMPLES = """Examples:
  vidgen serve                       # in its own terminal; Ctrl-C stops it
  vidgen "a red circle moving right on a black background" -o clip.mp4   # now handed to the server
  vidgen serve --status --json
  vidgen serve --keep-alive 30m
  vidgen serve --stop"""


@app.command(epilog=_SERVE_EXAMPLES)
def serve(
    status: Annotated[bool, typer.Option("--status", help="Show the running server's models, memory, queue and uptime.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the running server (after the job in hand).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --status: one JSON object.")] = False,
    keep_alive: Annotated[str, typer.Option("--keep-alive", envvar="VIDGEN_KEEP_ALIVE", help="Unload a model idle this long: 5m, 30s, 1h, 0 (after each job), -1 (never).")] = "5m",
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Keep models loaded between calls: while it runs, `vidgen "prompt"`, `generate` and `batch` hand their jobs to it."""
    def action() -> int:
        # here, not at the top: keeps `vidgen --help` light (the server's modules load numpy; its worker, torch)
        from vidgen.server import serve as server
        from vidgen.engine.runner import parse_keep_alive

        if status and stop:
            raise UsageError("give --status or --stop, not both")
        if status:
            return server.print_status(as_json)
        if stop:
            return server.stop_server()
        return server.serve(parse_keep_alive(keep_alive))

    code = _guarded(debug, action, RunContext(quiet=quiet))
    if code:
        raise typer.Exit(int(code))


@app.command()
def pull(
    preset: Annotated[str, typer.Argument(help="Preset name (or a hub id) whose model to download, or REPO/FILENAME of one .gguf or .safetensors file.")],
    debug: DebugOption = False,
) -> None:
    """Download a preset's model (safetensors only), or one file (REPO/FILENAME.gguf or .safetensors), into the Hugging Face cache."""

    def action() -> None:
        if preset.lower().endswith((".gguf", ".safetensors")):
            from vidgen.engine.hub import resolve_checkpoint  # here, not at the top: keeps `vidgen --help` light (huggingface_hub)

            ui.info(f"downloading {preset}")
            ui.emit_result(str(resolve_checkpoint(preset)))
            return
        from vidgen.engine.hub import download_preset, preset_repositories  # here, not at the top: keeps `vidgen --help` light (huggingface_hub)

        try:
            chosen = load_preset(preset)
        except UsageError:
            if "/" not in preset:
                raise
            chosen = Preset.for_model(preset)  # a hub id
        for location, revision, _ in preset_repositories(chosen):  # its model and its [components]' repositories
            at = f" (revision {revision})" if revision and not location.is_local else ""
            ui.info(f"downloading {location.location}{at}" if not location.is_local else f"{location.location} is local")
        for folder in download_preset(chosen):
            ui.emit_result(folder)

    _guarded(debug, action)


def main() -> None:
    try:
        app(prog_name="vidgen")
    except SystemExit as done:
        if done.code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            # Stopping already: a late second Ctrl-C (a terminal signals the whole process
            # group) must not print a traceback from the interpreter's shutdown.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise
