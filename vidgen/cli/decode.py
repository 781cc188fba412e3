"""`vidgen decode LATENTS -o FILE`: the command's options; cli.py adds it to the app. Out of
cli.py for its line limit; light, as cli.py's top (the work is vidgen.engine.decode's)."""

from __future__ import annotations

from typing import Annotated

import typer

from vidgen.cli.guard import DebugOption, guarded
from vidgen.cli.options import OverwriteOption, QuietOption, ThreadsOption
from vidgen.context import RunContext
from vidgen.threads import apply_threads


def decode_latents(
    latents_file: Annotated[
        str,
        typer.Argument(metavar="LATENTS", help="A NAME.latents.safetensors file a run kept (a failed decode or write, or --save-latents)."),
    ],
    output: Annotated[str, typer.Option("-o", "--output", help="FILE.mp4|.webm|.gif or a folder for PNG frames.")],
    vae_tiling: Annotated[bool, typer.Option("--vae-tiling", help="Decode in tiles to save memory.")] = False,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps or xpu (the run's device gives the run's frames).")
    ] = "auto",
    overwrite: OverwriteOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Write the video a run would have written from the latents it kept (loads only the VAE)."""

    def action() -> None:
        from vidgen.engine import decode  # here, not at the top: keeps `vidgen --help` light (torch, diffusers)

        apply_threads(threads)  # as generate does: a CPU's convolutions add up in the same order with the same threads
        decode.run(latents_file, output, vae_tiling=vae_tiling, device=device, overwrite=overwrite, as_json=as_json)

    code = guarded(debug, action, RunContext(quiet=quiet, threads=threads))
    if code:
        raise typer.Exit(int(code))
