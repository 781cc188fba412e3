"""One video from a loaded pipeline to a written file, shared by `vidgen generate`, `vidgen batch`
and `vidgen serve`: `render(generator, settings, seed, path=...)` makes one video and writes it
atomically (or returns the MP4 bytes for `-o -`), with its recipe (`build_recipe`: what went into
it) inside. The pipeline comes from vidgen.engine.pipeline_cache.obtain_pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vidgen import __version__, ui
from vidgen.context import current
from vidgen.engine import stages
from vidgen.media.audio import CODECS, Audio
from vidgen.media.post.apply import after_decode
from vidgen.media.video import encode_mp4_bytes, output_format, write_video
from vidgen.settings import story
from vidgen.settings.runfacts import RunFacts
from vidgen.settings.table import SETTINGS, GenerationSettings

# ---- one video ----


def build_recipe(
    settings: GenerationSettings, seed: int, frames: np.ndarray | tuple[int, int, int], facts: RunFacts | None = None
) -> dict[str, Any]:
    """What went into a video, stored inside it: every setting the table marks `recipe`,
    with the seed this video used and the sizes read from the real frames (or, for latents
    kept before the decode, the (frames, height, width) they decode to). With `facts`
    (after loading), what ran: the dtype, the pipeline class and the defaults it filled in."""
    count, height, width = frames[:3] if isinstance(frames, tuple) else frames.shape[:3]
    ran = facts.recorded(settings) if facts is not None else {}
    recipe = {
        "vidgen_version": __version__,
        "model": settings.location.location,
        "revision": settings.revision,
        "preset": settings.preset,
        "pipeline": ran.get("pipeline_class", settings.pipeline_class),
    }
    for setting in SETTINGS:
        if setting.recipe:
            value = ran.get(setting.name, getattr(settings, setting.name))
            recipe[setting.name] = list(value) if isinstance(value, tuple) else value  # JSON's list, as read back
    recipe.update(seed=seed, width=width, height=height, frames=count, call=settings.call_kwargs)
    recipe["loras"] = [
        {
            "source": lora.source,
            "scale": lora.scale,
            **({"into": lora.into} if lora.into else {}),
            **({"name": lora.name} if lora.name else {}),
        }
        for lora in settings.loras
    ]
    if settings.components:  # a composite preset: where each component came from
        recipe["components"] = {spec.name: spec.as_dict() for spec in settings.components}
    if settings.shots:  # a storyboard: each shot's length, prompt and frames
        recipe["story"] = story.record(settings)
    if settings.stages:  # a staged preset: each call's own size, steps, guidance and arguments
        recipe["stages"] = stages.plan(settings)
    return recipe


def audio_record(audio: Audio | None, fmt: str) -> dict[str, Any] | bool:
    """The recipe's `audio`: the soundtrack written (codec, rate, channels), or false."""
    if audio is None:
        return False
    codec = {"aac": "aac", "libopus": "opus"}.get(CODECS.get(fmt, ""), "pcm_s16le, WAV beside")
    return {"codec": codec, "sample_rate": audio.rate, "channels": audio.channels}


def render(
    generator,
    settings: GenerationSettings,
    seed: int,
    *,
    facts: RunFacts,
    path: Path | None,
    image: Any = None,
    video: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    progress: ui.Progress | None = None,
    overwrite: bool = False,
    last_image: Any = None,
    write: bool = True,
) -> tuple[dict[str, Any], bytes | None]:
    """Generate one video and write it to `path` atomically (None: return the MP4 bytes).
    Returns (recipe, bytes or None). `write=False`: generate only (a process of a
    `--parallel` group other than the first, which writes). `facts`: what ran, for the recipe
    (generator.run_facts); the settings run with the pipeline's defaults it holds filled in."""
    from vidgen.engine import latents, resume  # here, not at the top: `vidgen serve` imports this module and listens before torch loads

    settings = facts.filled_in(settings)
    progress = progress or ui.Progress("", 0, visible=False)
    fmt = "mp4" if path is None else output_format(path)

    def recipe_for(*shape: int) -> dict[str, Any]:
        return {**build_recipe(settings, seed, shape, facts), "audio": audio_record(None, fmt)}

    # The latents of the last step are written before the decode (the Wan family's): kept with
    # --save-latents, named in the error line when anything after the denoising fails (vidgen.engine.latents).
    keeper = latents.Keeper(settings, seed, path, recipe_for) if write else None
    resumed = None
    if settings.resume_latents:
        resumed = latents.read_file(Path(settings.resume_latents))
        resume.check_matches(resumed.recipe, recipe_for(settings.frames, settings.height, settings.width))
    try:
        frames, audio = generator.generate_with_audio(
            settings, seed, image=image, video=video, mask=mask, progress=progress, last_image=last_image, keeper=keeper, resumed=resumed
        )
        audio = audio if settings.audio else None  # --no-audio
        if interruption := current().cancel.interruption("interrupted; nothing was written"):
            raise interruption  # a served job's client went away during the last step
        recipe = build_recipe(settings, seed, frames, facts)
        recipe["audio"] = audio_record(audio, fmt)
        if not write:
            return recipe, None
        frames, fps = after_decode(frames, settings, recipe, progress)  # --interpolate, --upscale (vidgen/post); the same duration
        progress.phase("write")
        data = None
        if path is None:
            data = encode_mp4_bytes(frames, fps=fps, crf=settings.crf, recipe=recipe, audio=audio)
        else:
            ui.writing(path)
            write_video(frames, path, fps=fps, crf=settings.crf, recipe=recipe, overwrite=overwrite, audio=audio)
    except BaseException as error:
        replaced = error if keeper is None else keeper.failure(error)  # after the last step: how to finish from the latents
        if replaced is error:
            raise
        raise replaced from error
    keeper.finished()
    return recipe, data
