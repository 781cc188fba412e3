"""A run's latents in a file, and the decode that turns them into frames.

Denoising is what a run pays for; the decode and the write after it can still fail (the
VAE out of memory, non-finite frames, a full disk, a killed encoder). For the pipelines
whose decode vidgen does itself (`COVERED`: the Wan family), the pipeline is called with
`output_type="latent"` and its last latents are written to a file (`Keeper`) before the
decode starts; the file is removed once the video is written, kept with `--save-latents`,
and named in the error line otherwise, with the command that finishes the video:
`vidgen decode FILE -o clip.mp4` (vidgen/engine/decode.py).

- `decode(vae, latents)`: WanPipeline.__call__'s own decode (diffusers 0.42.1,
  pipelines/wan/pipeline_wan.py: the latents_mean/latents_std denormalisation, vae.decode,
  video_processor.postprocess_video), retried once with VAE tiling after a CUDA
  out-of-memory;
- `write_file` / `read_file`: safetensors, the latents and the recipe (and, for a run
  stopped during denoising, the step and the scheduler's state: vidgen/engine/resume.py).
"""

from __future__ import annotations

import gc
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from vidgen import ui
from vidgen.errors import (
    ExitCode,
    GenerationError,
    Interrupted,
    UsageError,
    VidgenError,
    first_line,
)
from vidgen.settings.presets import vidgen_home
from vidgen.settings.table import GenerationSettings

# The pipelines whose tail after the denoising loop is WanPipeline's (diffusers 0.42.1, read in
# each file): with output_type="latent" they return the latents that their decode would
# denormalise and decode, so `decode()` writes the frames they would have written
# (tests/test_latents.py checks each against its own call, Wan 2.2's too). Left out: Wan VACE
# (drops its reference frames first), Animate, SkyReels-V2 diffusion forcing (windows; its image
# and video variants change the latents before decoding), SkyReels-V2 image-to-video (the same
# tail, but no tiny pipeline here to check it), and every other family.
COVERED = ("WanPipeline", "WanImageToVideoPipeline", "WanVideoToVideoPipeline", "SkyReelsV2Pipeline")
FORMAT = "vidgen-latents/1"
SUFFIX = ".latents.safetensors"


def _device_of(module: Any) -> torch.device:
    # diffusers here, not at the top: a batch's checks (check_covered) run before any model is
    # needed, in `--processes`' launcher too, which then never imports diffusers.
    from diffusers.utils.torch_utils import get_module_execution_device

    return get_module_execution_device(module)


def covered(class_name: str | None) -> bool:
    return class_name in COVERED


def check_covered(class_name: str | None, settings: GenerationSettings) -> None:
    """--preview, --save-latents and --resume-latents need a covered pipeline, one call (no
    [[stages]]) and one prompt: refused in one line otherwise. `class_name` None: not known
    yet (an ad-hoc --model before loading)."""
    asked = [
        flag
        for flag, value in (
            ("--preview", settings.preview),
            ("--save-latents", settings.save_latents),
            ("--resume-latents", settings.resume_latents),
        )
        if value
    ]
    if not asked:
        return
    if settings.stages or settings.shots:
        raise UsageError(f"{asked[0]} covers presets of one pipeline call and one prompt; {settings.preset} has [[stages]] or a storyboard")
    if class_name is not None and not covered(class_name):
        raise UsageError(f"{asked[0]} covers the Wan family ({', '.join(COVERED)}); {class_name} is not covered")


def check_one_call(overrides: dict[str, Any]) -> None:
    """A video made in windows (vidgen.engine.windows: several pipeline calls) has no one set of
    latents to preview, keep or resume: refused in one line."""
    for name in ("preview", "save_latents", "resume_latents"):
        if overrides.get(name):
            raise UsageError(
                f"--{name.replace('_', '-')} covers videos made in one pipeline call; this one is made in windows (vidgen extend)"
            )


# ---- the decode ----


def _decode_once(vae: Any, latents: torch.Tensor, processor: Any) -> np.ndarray:
    latents = latents.to(_device_of(vae), dtype=vae.dtype)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    latents_mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    latents_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
    latents = latents / latents_std + latents_mean
    video = vae.decode(latents, return_dict=False)[0]
    return processor.postprocess_video(video, output_type="np")


def _free_device_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def decode(vae: Any, latents: torch.Tensor, processor: Any = None) -> np.ndarray:
    """Frames (batch, T, H, W, 3) as floats in [0, 1], as the pipeline's own decode gives
    them. A CUDA out-of-memory retries once with VAE tiling (said on stderr); the second
    one propagates (torch.OutOfMemoryError)."""
    if processor is None:
        from diffusers.video_processor import VideoProcessor  # as in _device_of

        processor = VideoProcessor(vae_scale_factor=vae.config.scale_factor_spatial)
    with torch.inference_mode():
        try:
            return _decode_once(vae, latents, processor)
        except torch.OutOfMemoryError:
            if not hasattr(vae, "enable_tiling") or getattr(vae, "use_tiling", False):
                raise
        # Outside the handler: the exception's frames hold the failed decode's tensors.
        _free_device_memory(_device_of(vae))
        ui.warn("out of memory in the VAE decode; trying once more with VAE tiling")
        vae.enable_tiling()
        try:
            return _decode_once(vae, latents, processor)
        finally:
            vae.disable_tiling()  # a pipeline kept loaded (vidgen serve) goes on as it was loaded


def decode_denoised(pipe: Any, final: torch.Tensor, keeper: Keeper | None) -> np.ndarray:
    """A covered pipeline's latents after its last step -> its frames, as its own decode
    makes them; `keeper` writes the latents first."""
    if keeper is not None:
        keeper.denoised(pipe, final)
    device = _device_of(pipe.vae)
    try:
        return decode(pipe.vae, final, getattr(pipe, "video_processor", None))
    except torch.OutOfMemoryError as error:
        raise GenerationError(f"out of memory in the VAE decode on {device}, with VAE tiling too; nothing was written") from error
    except (RuntimeError, ValueError, TypeError) as error:
        raise GenerationError(f"generation failed after denoising began: {first_line(error)}; nothing was written") from error
    finally:
        pipe.maybe_free_model_hooks()  # with model offloading, the VAE off the card again, as after the pipeline's own decode


# ---- the file ----


@dataclass
class Kept:
    """What a latents file holds."""

    latents: torch.Tensor
    recipe: dict[str, Any]
    step: int  # denoising steps done
    steps: int  # of the run's
    info: dict[str, Any]  # pipeline, model, crf, scheduler, ...
    scheduler_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.step >= self.steps


def _temporary_sibling(path: Path) -> Path:
    # The pattern of video.py's temporary names, which a batch folder's clean-up knows.
    return path.with_name(f".{path.name.removesuffix('.safetensors')}.{uuid.uuid4().hex[:8]}.part.safetensors")


def write_file(path: Path, kept: Kept) -> Path:
    """Atomically: a temporary file in the same folder, synced, then renamed."""
    tensors = {"latents": kept.latents.detach().to("cpu").contiguous()}
    tensors.update({f"scheduler.{name}": value.detach().to("cpu").contiguous() for name, value in kept.scheduler_tensors.items()})
    metadata = {
        "format": FORMAT,
        "recipe": json.dumps(kept.recipe, sort_keys=True),
        "step": str(kept.step),
        "steps": str(kept.steps),
        "info": json.dumps(kept.info, sort_keys=True),
    }
    temporary = _temporary_sibling(path)
    try:
        with open(temporary, "xb") as file:  # Python's open: the user's umask (safetensors' own writer makes 0600 files)
            file.write(save(tensors, metadata=metadata))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_file(path: Path) -> Kept:
    """A latents file vidgen wrote; anything else is bad input."""
    if not path.is_file():
        raise UsageError(f"{path}: no such latents file")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as opened:
            metadata = opened.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(f"{path} is not a latents file vidgen wrote ({error})") from error
    if metadata.get("format") != FORMAT or "latents" not in tensors:
        raise UsageError(f"{path} is not a latents file vidgen wrote (no {FORMAT} header)")
    schedulers = {name.removeprefix("scheduler."): value for name, value in tensors.items() if name.startswith("scheduler.")}
    return Kept(
        tensors["latents"],
        json.loads(metadata["recipe"]),
        int(metadata["step"]),
        int(metadata["steps"]),
        json.loads(metadata["info"]),
        schedulers,
    )


def _stem(target: Path | None) -> str:
    if target is None:
        return "stdout"
    return target.stem if target.suffix else target.name  # a PNG folder has no suffix


def file_beside(target: Path | None, seed: int) -> Path:
    """Beside the video (`clip.mp4` -> `clip.latents.safetensors`); for standard output, at home."""
    return file_at_home(target, seed) if target is None else target.with_name(_stem(target) + SUFFIX)


def file_at_home(target: Path | None, seed: int) -> Path:
    """Where the latents go when the target's folder cannot take them: $VIDGEN_HOME/latents."""
    return vidgen_home() / "latents" / f"{_stem(target)}-{seed}{SUFFIX}"


# ---- keeping them during a run ----


class Keeper:
    """The latents of one video: written before the decode, removed once the video is
    written (kept with --save-latents), named in the error line when anything after the
    denoising fails (a Ctrl-C or SIGTERM then keeps them only with --save-latents). `recipe_for(frames, height, width)` builds the video's recipe."""

    def __init__(self, settings: GenerationSettings, seed: int, target: Path | None, recipe_for: Callable[[int, int, int], dict[str, Any]]):
        self.settings, self.seed, self.target, self.recipe_for = settings, seed, target, recipe_for
        self.path: Path | None = None  # the final latents, once written

    def _info(self, pipe: Any) -> dict[str, Any]:
        return {
            "pipeline": type(pipe).__name__,
            "model": self.settings.model,
            "crf": self.settings.crf,
            "scheduler": type(pipe.scheduler).__name__,
            "target": None if self.target is None else str(self.target),
        }

    def _write(self, kept: Kept) -> Path | None:
        """Beside the target, else under $VIDGEN_HOME; None (and a warning) when neither takes it."""
        problems = []
        home = file_at_home(self.target, self.seed)
        for place in dict.fromkeys((file_beside(self.target, self.seed), home)):
            try:
                if place == home:  # the target's folder is never made: its trouble is why the latents go home
                    place.parent.mkdir(parents=True, exist_ok=True)
                return write_file(place, kept)
            except OSError as error:
                problems.append(f"{place}: {error.strerror or error}")
        ui.warn(f"could not keep the latents ({'; '.join(problems)})")
        return None

    def denoised(self, pipe: Any, latents: torch.Tensor) -> None:
        """The last step is done: write the latents and the recipe first."""
        if not torch.isfinite(latents).all():
            return  # nothing to finish from: the decode's own error says what happened
        steps = self.settings.steps or 0
        frames, height, width = _video_shape(pipe, latents)
        kept = Kept(latents, self.recipe_for(frames, height, width), steps, steps, self._info(pipe))
        self.path = self._write(kept)

    def interrupted(self, pipe: Any, latents: torch.Tensor, step: int, scheduler_state: tuple[dict, dict] | None) -> str:
        """--save-latents and a stop during denoising: the latents of the last finished step.
        Returns what to add to the interruption's line."""
        if not self.settings.save_latents:
            return ""
        tensors, values = scheduler_state or ({}, {})
        frames, height, width = _video_shape(pipe, latents)
        kept = Kept(
            latents,
            self.recipe_for(frames, height, width),
            step,
            self.settings.steps or 0,
            {**self._info(pipe), "scheduler_state": values, "resumable": scheduler_state is not None},
            tensors,
        )
        path = self._write(kept)
        if path is None:
            return ""
        if scheduler_state is None:
            return f"; the latents of step {step}/{kept.steps} are in {path} ({kept.info['scheduler']} cannot be resumed by vidgen)"
        return f"; the latents of step {step}/{kept.steps} are in {path}: go on with the same command and --resume-latents {path}"

    def finished(self) -> None:
        if self.path is None:
            return
        if self.settings.save_latents:
            ui.info(f"latents kept in {self.path}")
        else:
            self.path.unlink(missing_ok=True)

    def failure(self, error: BaseException) -> BaseException:
        """The error to raise for `error` after the latents were written: its line, and how to finish."""
        if self.path is None:
            return error
        stopped = isinstance(error, KeyboardInterrupt) or (
            isinstance(error, VidgenError) and error.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED)
        )
        if stopped and not self.settings.save_latents:  # the user stopped it: nothing left behind, as before the decode
            self.path.unlink(missing_ok=True)
            return error
        output = "clip.mp4" if self.target is None else str(self.target)
        finish = f"; the latents are kept in {self.path}: finish with `vidgen decode {self.path} -o {output}`"
        if isinstance(error, VidgenError):
            message, code = error.message, error.exit_code
        elif isinstance(error, KeyboardInterrupt):
            message, code = "interrupted", ExitCode.INTERRUPTED
        else:
            message, code = f"unexpected {type(error).__name__}: {error}", ExitCode.FAILURE
        if "out of memory" in message:
            finish += " --vae-tiling (or --device cpu)"
        if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            return Interrupted(message + finish, code)
        return GenerationError(message + finish, code)


def _video_shape(pipe: Any, latents: torch.Tensor) -> tuple[int, int, int]:
    """(frames, height, width) the latents decode to, for the recipe written with them."""
    temporal = getattr(pipe, "vae_scale_factor_temporal", 4)
    spatial = getattr(pipe, "vae_scale_factor_spatial", 8)
    return (latents.shape[2] - 1) * temporal + 1, latents.shape[3] * spatial, latents.shape[4] * spatial
