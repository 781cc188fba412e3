"""A fake text-to-video pipeline for the tests where the pipeline is not the point.

`FakeVideoPipeline` is shaped like a diffusers video pipeline (a `DiffusionPipeline` with a real
scheduler, whose `__call__` takes prompt, num_frames, height, width, num_inference_steps,
guidance_scale, generator, output_type, callback_on_step_end ... and returns `.frames`) but
has no weights:
its frames are drawn in a few milliseconds and depend only on the prompt, the negative
prompt, the guidance, the size and the seed (the generator), so two runs with the same
settings give the same video and a changed prompt or seed a different one. Where a test
needs a video still in the making (a signal between two videos), FAKE_PIPELINE_STEP_SECONDS=S
in the environment makes each step sleep S seconds: a video that takes a while without a core's
work (the environment reaches every process a launcher starts).

How vidgen reaches it: `build_fake_model(folder)` writes a model folder in diffusers' own
custom-pipeline layout, a model_index.json whose `_class_name` is `[module, class]` and
that module's file beside it (this file, copied). diffusers loads a local folder's own
pipeline code only with `trust_remote_code=True`, so the tests pass `--trust-remote-code`
(FAKE_ARGS in conftest.py) and the model goes through vidgen's real path
(engine/pipeline_cache.obtain_pipeline -> engine/loading.load_pipeline -> DiffusionPipeline.from_pretrained), as
any repository with its own pipeline code would. Nothing in vidgen knows this class.

This module imports only numpy, torch and diffusers: diffusers copies it into its modules
cache and imports it there, outside the tests package.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

MODULE = "fake_video_pipeline"  # the file's name in the model folder (diffusers imports it by that name)
CLASS = "FakeVideoPipeline"
STEP_SECONDS = "FAKE_PIPELINE_STEP_SECONDS"


@dataclass
class FakeVideoOutput:
    frames: Any  # (1, T, H, W, 3) floats in [0, 1] for output_type "np", a list of PIL frames for "pil"


def _text_number(text: str | None) -> float:
    """A stable number in [0, 1) for a text (Python's hash() changes between processes)."""
    return zlib.crc32((text or "").encode("utf-8")) / 2**32


class FakeDenoiser(torch.nn.Module):
    """No weights: called once a step as a real denoiser is, so vidgen's hook on the
    pipeline's `transformer` sees the denoising begin (the progress bar's phases)."""

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


class FakeVideoPipeline(DiffusionPipeline):
    """No components on disk, no weights; deterministic frames. See the module's docstring."""

    def __init__(self, scheduler: FlowMatchEulerDiscreteScheduler) -> None:
        super().__init__()
        self.register_modules(scheduler=scheduler)  # a real scheduler: --scheduler, --flow-shift and a stop's saved state work
        self.transformer = FakeDenoiser()  # an attribute, not a registered component: nothing to save or load

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        num_frames: int = 9,
        height: int = 32,
        width: int = 32,
        num_inference_steps: int = 2,
        guidance_scale: float = 5.0,
        generator: torch.Generator | None = None,
        output_type: str = "np",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> FakeVideoOutput:
        if prompt is None or not str(prompt).strip():
            raise ValueError("`prompt` must be given")  # diffusers checks its inputs with ValueError before any step
        if height % 16 or width % 16:
            raise ValueError(f"`height` and `width` have to be divisible by 16 but are {height} and {width}.")
        # The seed's share: three numbers from the generator vidgen seeded, as a real pipeline draws its noise.
        drawn = torch.rand(3, generator=generator).numpy() if generator is not None else np.full(3, 0.5)
        phase = np.array([_text_number(prompt), _text_number(negative_prompt), (guidance_scale or 0) / 20.0]) + drawn
        latents = torch.zeros(1, 4, num_frames, height // 8, width // 8)
        self.scheduler.set_timesteps(num_inference_steps)
        step_seconds = float(os.environ.get(STEP_SECONDS, "0"))
        for step, timestep in enumerate(self.scheduler.timesteps):  # the step callback every step, for progress and Ctrl-C
            latents = self.transformer(latents)
            time.sleep(step_seconds)
            if callback_on_step_end is not None:
                names = ["latents"] if callback_on_step_end_tensor_inputs is None else callback_on_step_end_tensor_inputs
                given = {name: latents for name in names if name == "latents"}
                returned = callback_on_step_end(self, step, timestep, given)
                latents = (returned or {}).get("latents", latents)
        # Smooth colour bands that move a pixel a frame: they survive the video codecs, and each channel's
        # offset comes from the prompt, negative prompt, guidance and seed.
        t = np.arange(num_frames, dtype=np.float32)[:, None, None, None]
        y = np.arange(height, dtype=np.float32)[None, :, None, None]
        x = np.arange(width, dtype=np.float32)[None, None, :, None]
        wave = 0.5 + 0.4 * np.sin(2 * np.pi * ((x + y + t) / (2.0 * max(height, width)) + phase[None, None, None, :]))
        frames = wave.astype(np.float32)[None]
        if output_type == "pil":
            from PIL import Image

            return FakeVideoOutput(frames=[[Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in frames[0]]])
        return FakeVideoOutput(frames=frames)


def build_fake_model(folder: Path) -> Path:
    """A model folder holding FakeVideoPipeline as a custom pipeline (see the module's docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__), folder / f"{MODULE}.py")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(folder / "scheduler")
    index = {"_class_name": [MODULE, CLASS], "_diffusers_version": "0.42.1", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder
