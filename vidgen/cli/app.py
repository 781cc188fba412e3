"""The `vidgen` command: parse options, call the library, map errors to exit codes.

Heavy imports (torch, diffusers) happen inside the commands, so `vidgen --help` is fast.
`vidgen "a prompt"` is `vidgen generate "a prompt"`: a first argument that is not a
subcommand is routed to `generate`.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from vidgen import __version__, ui
from vidgen.cli import argv, files, models
from vidgen.cli.client import run_batch as run_on_server
from vidgen.cli.client import run_generate
from vidgen.cli.decode import decode_latents
from vidgen.cli.guard import DebugOption
from vidgen.cli.guard import guarded as _guarded  # an error: one line and its exit code
from vidgen.cli.options import (
    FastOption,
    ModelOption,
    NoServerOption,
    OverwriteOption,
    PresetOption,
    QuietOption,
    StrictOption,
    ThreadsOption,
    VideoOutputOption,
)
from vidgen.cli.options import overrides as _overrides  # the setting options given, as settings
from vidgen.cli.options import with_setting_options as _with_setting_options  # the table's options on a command
from vidgen.cli.presets import presets_app
from vidgen.context import RunContext
from vidgen.environment import switched_on
from vidgen.errors import ExitCode
from vidgen.settings.request import BatchRequest, GenerateRequest
from vidgen.threads import apply_threads


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
    help='Text-to-video from the command line: vidgen "a prompt" -o clip.mp4',
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=_MAIN_EXAMPLES,
)
app.add_typer(presets_app, name="presets")


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
    output: VideoOutputOption = None,
    preset: PresetOption = None,
    model: ModelOption = None,
    fast: FastOption = False,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per video on stdout.")] = False,
    overwrite: OverwriteOption = False,
    strict: StrictOption = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Resolve everything (settings, pipeline class, component sizes from their headers, quantized sizes, what --offload auto would choose) and print it; no weights read, nothing written.",
        ),
    ] = False,
    threads: ThreadsOption = None,
    no_server: NoServerOption = False,
    debug: DebugOption = False,
    **settings: Any,
) -> None:
    """Generate a video from a prompt (the default command)."""

    def action() -> int:
        text = sys.stdin.read().strip() if prompt == "-" else prompt
        request = GenerateRequest(
            prompt=text,
            preset=preset,
            model=model,
            overrides=_overrides(settings, fast=fast),
            strict=strict,
            output=output,
            overwrite=overwrite,
            as_json=as_json,
            threads=threads,
            debug=debug,
        )
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
    prompts_file: Annotated[
        str, typer.Argument(metavar="PROMPTS_FILE", help=".txt (a prompt a line), .jsonl or .csv; - reads standard input.")
    ],
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
    processes: Annotated[
        Optional[int],
        typer.Option(
            "--processes",
            help="Run the batch in N processes on this machine (one per GPU; without GPUs, CPU processes), started through accelerate; exits with the worst of their codes.",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Run the batch on Ray (pip install 'vidgen\\[ray]'): a local Ray, or the cluster at ADDRESS (auto, HOST:PORT, ray://HOST:10001); one worker per GPU, --processes N workers; -O must be a folder every node shares.",
            show_default=False,
        ),
    ] = None,
    no_server: NoServerOption = False,
    debug: DebugOption = False,
    **settings: Any,
) -> None:
    """Generate a video for every line of a prompts file into a folder (docs/batch.md)."""

    def action() -> int:
        request = BatchRequest(
            prompts_file=prompts_file,
            out_dir=out_dir,
            preset=preset,
            model=model,
            overrides=_overrides(settings, fast=fast),
            strict=strict,
            resume=resume,
            overwrite=overwrite,
            as_json=as_json,
            threads=threads,
            debug=debug,
        )
        if ray is not None:
            from vidgen.batch.cluster import run_on_ray  # here, not at the top: Ray is an extra, and the batch's modules load torch

            return run_on_ray(ray, request, workers=processes)
        if processes is not None and processes != 1:
            from vidgen.batch.launch import (
                run_in_processes,
            )  # here, not at the top: keeps `vidgen --help` light (the batch's modules load torch)

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
    input_video: Annotated[
        str,
        typer.Argument(
            metavar="IN", help="The video to continue (any file ffmpeg reads, a GIF or a PNG folder); its size must be the run's."
        ),
    ],
    prompt: Annotated[str, typer.Argument(help="What happens next.")],
    output: VideoOutputOption = None,
    preset: PresetOption = None,
    model: ModelOption = None,
    fast: FastOption = False,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    overwrite: OverwriteOption = False,
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
        windows.run_windows(
            prompt,
            preset=preset,
            model=model,
            overrides=overrides,
            strict=strict,
            output=output,
            overwrite=overwrite,
            as_json=as_json,
            source=input_video,
        )
        return ExitCode.SUCCESS

    code = _guarded(debug, action, RunContext(quiet=quiet, threads=threads))
    if code:
        raise typer.Exit(int(code))


app.command("decode")(decode_latents)  # vidgen decode LATENTS -o FILE (vidgen.cli.decode)
# The commands on files made (cli/files.py) and on models (cli/models.py), in --help's order.
app.command("inspect")(files.inspect_file)
app.command(epilog=files.POST_EXAMPLES)(files.post)
app.command(epilog=files.GALLERY_EXAMPLES)(files.gallery)
app.command(epilog=models.SERVE_EXAMPLES)(models.serve)
app.command()(models.pull)


def main() -> None:
    try:
        app(prog_name="vidgen")
    except SystemExit as done:
        if done.code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            # Stopping already: a late second Ctrl-C (a terminal signals the whole process
            # group) must not print a traceback from the interpreter's shutdown.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise
