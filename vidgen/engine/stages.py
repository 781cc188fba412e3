"""A staged preset's pipeline calls ([[stages]]): generate small, upsample the latents, refine.

LTX-Video (0.9.7 and later) and LTX-2 recommend it for quality: the first call denoises at a
fraction of the size and returns latents; the latent upsampler (another pipeline class, built
from the loaded VAE and the preset's `latent_upsampler` component) doubles their size; the
last call denoises those latents a few steps at full size and decodes the video. Each call
takes the one before's latents (and LTX-2's audio latents), every call but the last returns
latents, and each has its own size, steps, guidance and arguments (`plan`), which the recipe
records. `--size`, `--frames`, snapping and the seed are the video's: an earlier stage's size is
the preset's share of it, which must come out whole and within the model's size rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from vidgen.errors import UsageError
from vidgen.settings.preset_tables import unfrozen


def adapter_name(stage, index: int) -> str:
    """The LoRA adapter name of a stage's index-th [[stages.lora]] (vidgen.engine.lora loads them all)."""
    return f"stage-{stage.name}-{index}"


def _use_adapters(pipe: Any, settings, stage) -> None:
    """The run's LoRAs (lora0, lora1, ...: the preset's and --lora), and `stage`'s own where it has any."""
    if not hasattr(pipe, "set_adapters") or not any(spec.loras for spec in settings.stages):
        return
    names = [f"lora{index}" for index in range(len(settings.loras))]
    weights = [lora.scale for lora in settings.loras]
    if stage is not None:
        names += [adapter_name(stage, index) for index in range(len(stage.loras))]
        weights += [weight for _, weight in stage.loras]
    if names:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
    else:
        pipe.disable_lora()


def plan(settings) -> list[dict[str, Any]]:
    """Each stage's own settings, from the run's: [{name, pipeline, width, height, steps, guidance, call}]."""
    stages = []
    for stage in settings.stages:
        width, height = settings.width, settings.height
        if width is not None and height is not None and stage.scale != 1.0:
            width, height = width * stage.scale, height * stage.scale
            if not (width.is_integer() and height.is_integer()):
                raise UsageError(
                    f"stage {stage.name} runs at {stage.scale:g} of --size {settings.width}x{settings.height}, "
                    f"which is not a whole size ({width:g}x{height:g})"
                )
            width, height = int(width), int(height)
        stages.append(
            {
                "name": stage.name,
                "pipeline": stage.pipeline or settings.pipeline_class,
                "width": width,
                "height": height,
                "steps": None if stage.pipeline else stage.steps or settings.steps,  # another class (the upsampler) does not denoise
                "guidance": None if stage.pipeline else stage.guidance if stage.guidance is not None else settings.guidance,
                "call": unfrozen(stage.call),
                **({"lora": [f"{source}:{weight:g}" for source, weight in stage.loras]} if stage.loras else {}),
                **({"scheduler": unfrozen(stage.scheduler)} if stage.scheduler else {}),
            }
        )
    return stages


def denoising_steps(settings) -> int:
    """The denoiser calls of all stages together, for the progress bar (a refinement that starts
    part-way, LTX's denoise_strength, runs only that share of its steps)."""
    return sum(int((stage["steps"] or 0) * stage["call"].get("denoise_strength", 1.0)) for stage in plan(settings))


def stage_pipeline(loaded, class_name: str) -> Any:
    """Another pipeline class built from the loaded one's components and the preset's extra ones
    (LTXLatentUpsamplePipeline from the VAE and `latent_upsampler`), kept for the next video."""
    if class_name not in loaded.stage_pipelines:
        import diffusers  # here, not at the top: runner imports this module for the recipe, and `vidgen serve` listens before torch loads

        cls = getattr(diffusers, class_name, None)
        if cls is None:
            raise UsageError(f"a stage names pipeline {class_name}, which diffusers does not have")
        wanted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        found = {name: loaded.extra_components.get(name, loaded.pipe.components.get(name)) for name in wanted}
        missing = [name for name, component in found.items() if component is None]
        if missing:
            raise UsageError(f"stage pipeline {class_name} needs {', '.join(missing)}: add it to the preset's [components]")
        pipe = cls(**found)
        pipe.set_progress_bar_config(disable=True)
        loaded.stage_pipelines[class_name] = pipe
    return loaded.stage_pipelines[class_name]


class StageProgress:
    """The bar's phases named after the stage running: `base denoise`, `upsample`, `refine decode`."""

    def __init__(self, progress, name: str) -> None:
        self.progress, self.name = progress, name

    def phase(self, name: str) -> None:
        self.progress.phase(f"{self.name} {name}")

    def step(self, completed: int) -> None:
        self.progress.step(completed)


def run(loaded, arguments: dict[str, Any], settings, progress, call: Callable[[Any, dict[str, Any]], Any]) -> Any:
    """Every stage in order; returns the last call's output. `arguments` are the run's own call
    arguments (prompt, generator, step callback, ...); `call(pipe, kwargs)` makes one call."""
    carried: dict[str, Any] = {}  # the previous stage's latents (and LTX-2's audio latents)
    stages = plan(settings)
    output = None
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        progress.name = stage["name"]
        progress.phase("encode" if stage["steps"] else "")
        spec = settings.stages[index]
        if stage["pipeline"] == settings.pipeline_class:
            pipe = loaded.pipe
            kwargs = dict(arguments, width=stage["width"], height=stage["height"], num_inference_steps=stage["steps"])
            if stage["guidance"] is not None and "guidance_scale" in kwargs:
                kwargs["guidance_scale"] = stage["guidance"]
            _use_adapters(pipe, settings, spec)
        else:
            pipe = stage_pipeline(loaded, stage["pipeline"])
            kwargs = {"generator": arguments.get("generator")}
        parameters = inspect.signature(type(pipe).__call__).parameters
        kwargs.update({name: value for name, value in carried.items() if name in parameters})
        kwargs.update(stage["call"])
        if not last:
            kwargs["output_type"] = "latent"
            for name in ("decode_timestep", "decode_noise_scale"):  # what decodes belongs to the last stage
                kwargs.pop(name, None)
        scheduler = getattr(pipe, "scheduler", None)
        if spec.scheduler:  # this stage's own scheduler config (LTX-2's refinement: no dynamic shifting)
            pipe.scheduler = type(scheduler).from_config(scheduler.config, **dict(spec.scheduler))
        try:
            output = call(pipe, {name: value for name, value in kwargs.items() if name in parameters and value is not None})
        finally:
            if spec.scheduler:
                pipe.scheduler = scheduler
            if spec.loras:
                _use_adapters(pipe, settings, None)
        carried["latents"] = output.frames
        if getattr(output, "audio", None) is not None:  # kept through a stage that makes none (the upsampler)
            carried["audio_latents"] = output.audio
    return output
