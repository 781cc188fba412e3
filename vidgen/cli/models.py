"""The commands about the models themselves: `vidgen serve` (keep them loaded between calls) and
`vidgen pull` (download a preset's weights). Registered on the app by cli/app.py; heavy imports
inside each command, as there."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen import ui
from vidgen.cli.guard import DebugOption, guarded
from vidgen.cli.options import QuietOption
from vidgen.context import RunContext
from vidgen.errors import UsageError
from vidgen.settings.presets import Preset, load_preset

SERVE_EXAMPLES = """Examples:
  vidgen serve                       # in its own terminal; Ctrl-C stops it
  vidgen "a red circle moving right on a black background" -o clip.mp4   # now handed to the server
  vidgen serve --status --json
  vidgen serve --keep-alive 30m
  vidgen serve --stop"""


def serve(
    status: Annotated[bool, typer.Option("--status", help="Show the running server's models, memory, queue and uptime.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the running server (after the job in hand).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --status: one JSON object.")] = False,
    keep_alive: Annotated[
        str,
        typer.Option(
            "--keep-alive", envvar="VIDGEN_KEEP_ALIVE", help="Unload a model idle this long: 5m, 30s, 1h, 0 (after each job), -1 (never)."
        ),
    ] = "5m",
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Keep models loaded between calls: while it runs, `vidgen "prompt"`, `generate` and `batch` hand their jobs to it."""

    def action() -> int:
        # here, not at the top: keeps `vidgen --help` light (the server's modules load numpy; its worker, torch)
        from vidgen.engine.pipeline_cache import parse_keep_alive
        from vidgen.server import serve as server

        if status and stop:
            raise UsageError("give --status or --stop, not both")
        if status:
            return server.print_status(as_json)
        if stop:
            return server.stop_server()
        return server.serve(parse_keep_alive(keep_alive))

    code = guarded(debug, action, RunContext(quiet=quiet))
    if code:
        raise typer.Exit(int(code))


def pull(
    preset: Annotated[
        str, typer.Argument(help="Preset name (or a hub id) whose model to download, or REPO/FILENAME of one .gguf or .safetensors file.")
    ],
    debug: DebugOption = False,
) -> None:
    """Download a preset's model (safetensors only), or one file (REPO/FILENAME.gguf or .safetensors), into the Hugging Face cache."""

    def action() -> None:
        if preset.lower().endswith((".gguf", ".safetensors")):
            from vidgen.engine.hub import resolve_checkpoint  # here, not at the top: keeps `vidgen --help` light (huggingface_hub)

            ui.info(f"downloading {preset}")
            ui.emit_result(str(resolve_checkpoint(preset)))
            return
        from vidgen.engine.hub import (
            download_preset,
            preset_repositories,
        )  # here, not at the top: keeps `vidgen --help` light (huggingface_hub)

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

    guarded(debug, action)
