"""`vidgen decode LATENTS -o clip.mp4`: the video a run would have written, from the latents
it kept (vidgen.engine.latents: after a failed decode or write, or with --save-latents).

Only the VAE is loaded (from the model the recipe names, in the run's dtype); its decode is
the pipeline's own (latents.decode), then the run's --interpolate and --upscale (its recipe
names them), so on the same device the frames are the run's, and the recipe written into the
video is the one the run would have written.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from vidgen import ui
from vidgen.engine import latents
from vidgen.engine.generate import frames_to_uint8
from vidgen.engine.loading import load_vae
from vidgen.engine.runner import audio_record
from vidgen.environment import PROCESS, Environment
from vidgen.errors import GenerationError, UsageError, first_line
from vidgen.media.post.apply import after_decode
from vidgen.media.post.plan import file_fields
from vidgen.media.video import check_output_path, output_format, write_video


def run(
    latents_file: str,
    output: str,
    *,
    vae_tiling: bool = False,
    device: str = "auto",
    overwrite: bool = False,
    as_json: bool = False,
    env: Environment = PROCESS,
) -> dict[str, Any]:
    source = env.path(latents_file)
    kept = latents.read_file(source)
    if not kept.finished:
        raise UsageError(
            f"{source} holds the latents of step {kept.step} of {kept.steps}, not a finished run: go on with the run's "
            f"command and --resume-latents {source}"
        )
    if kept.info.get("pipeline") not in latents.COVERED:
        raise UsageError(
            f"{source} comes from {kept.info.get('pipeline')}, whose decode vidgen does not cover ({', '.join(latents.COVERED)})"
        )
    target = env.path(output)
    fmt = output_format(target)  # an unsupported suffix fails now
    check_output_path(target, overwrite=overwrite)
    recipe = dict(kept.recipe)
    with ui.status(f"loading the VAE of {recipe['model']}"):
        vae = load_vae(
            kept.info.get("model") or recipe["model"],
            revision=recipe.get("revision"),
            dtype_name=recipe.get("dtype") or "auto",
            device_name=device,
            tiling=vae_tiling,
        )
    with ui.status("decoding"):
        try:
            video = latents.decode(vae, kept.latents)
        except torch.OutOfMemoryError as error:
            advice = "--device cpu" if vae_tiling else "--vae-tiling, or --device cpu"
            raise GenerationError(f"out of memory in the VAE decode, with VAE tiling too: try {advice}") from error
        except (RuntimeError, ValueError) as error:
            raise GenerationError(f"the VAE decode failed: {first_line(error)}") from error
    frames = frames_to_uint8(video[0])
    recipe.update(frames=len(frames), height=frames.shape[1], width=frames.shape[2], audio=audio_record(None, fmt))
    # The run's --interpolate and --upscale, from its recipe, as runner.render applies them (steps added to the recipe).
    frames, fps = after_decode(frames, SimpleNamespace(**recipe), recipe, ui.Progress("", 0, visible=False))
    ui.writing(target)
    write_video(
        frames, target, fps=fps, crf=int(18 if kept.info.get("crf") is None else kept.info["crf"]), recipe=recipe, overwrite=overwrite
    )
    result = {"path": str(target.resolve()), "latents": str(source), **file_fields(recipe, fps), "seed": recipe.get("seed")}
    if as_json:
        ui.emit_json(result)
    else:
        ui.emit_result(result["path"])
    return result
