"""`--preview FILE`: the video as it forms, rewritten every `--preview-every` steps.

At a step's end the pipeline holds x_t, the noisy latents; a preview shows where they are
going, the clean video the model now predicts. For flow matching x_t = (1 - sigma) x0 +
sigma noise and the model predicts the velocity v = noise - x0, so x0 = x_t - sigma v. The
step callback sees the latents after each step only: v is the step taken, (x_next - x) /
(sigma_next - sigma), from the latents before and after the step (exact for Euler, the
multistep update's effective velocity for UniPC), and x0 = x_next - sigma_next v.

Cheap by design: no VAE during denoising (with offloading it would have to come onto the
card). A linear map from a latent pixel's channels to its colour, fitted once per VAE from
the VAE itself (`fit_projection`: synthetic colour fields encoded, each latent pixel paired
with the mean colour of what the decoder makes of it, least squares) and kept under
$VIDGEN_HOME/previews, turns x0 into small pictures. A PNG shows a strip of up to four
frames spread over the video; a GIF or WebP every latent frame as an animation. Written
under a temporary name and renamed, so a viewer never reads half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import get_module_execution_device
from PIL import Image

from vidgen import ui
from vidgen.settings.grammar import PREVIEW_FORMATS
from vidgen.settings.presets import vidgen_home

STRIP_FRAMES = 4  # a PNG's frames, spread over the video
MAX_FRAMES = 32  # an animation's
MAX_SIDE = 256  # a preview frame's longer side, at most (never larger than the video)
FIT_CLIPS = 12  # synthetic clips the projection is fitted on (12 at 8x8 latents: 21.7 dB on Shapes, 24: 21.1, 8: 21.3)
FIT_LATENT_SIDE = 8  # their latent size


# ---- the projection ----


def _vae_key(vae: Any) -> str:
    """The VAE's config and a fingerprint of its weights (first and last tensors), so a
    fine-tuned VAE of the same shape gets its own projection."""
    parameters = list(vae.parameters())
    fingerprint = [float(parameters[0].detach().float().sum()), float(parameters[-1].detach().float().sum())] if parameters else []
    text = json.dumps({"class": type(vae).__name__, "config": dict(vae.config), "weights": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _colour_fields(count: int, side: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """Static clips (count, 3, frames, side, side) in [-1, 1]: flat colours in grids of 1 to 8
    cells a side, with edges at every scale, like the flat regions and outlines of a video."""
    clips = []
    for index in range(count):
        cells = 2 ** (index % 4)
        grid = torch.rand(3, cells, cells, generator=generator) * 2 - 1
        image = torch.nn.functional.interpolate(grid[None], size=(side, side), mode="nearest")[0]
        clips.append(image[:, None].expand(3, frames, side, side))
    return torch.stack(clips)


def fit_projection(vae: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (channels, 3), bias (3,)): latent pixel -> RGB in [-1, 1], least squares over
    synthetic colour fields encoded by the VAE, each latent pixel paired with the mean colour
    of the pixels the VAE's decoder makes of it (the decoder's colours, not the input's: a
    preview shows what the decode will show). Latents in the pipeline's normalised space
    ((z - latents_mean) / latents_std, as WanPipeline holds them)."""
    spatial, temporal = vae.config.scale_factor_spatial, vae.config.scale_factor_temporal
    clips = _colour_fields(FIT_CLIPS, FIT_LATENT_SIDE * spatial, 1 + temporal, torch.Generator().manual_seed(0))
    device = get_module_execution_device(vae)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    latents, colours = [], []
    with torch.inference_mode():
        for batch in clips.split(4):
            encoded = vae.encode(batch.to(device, vae.dtype)).latent_dist.mode()
            decoded = vae.decode(encoded, return_dict=False)[0].float().cpu().clamp(-1, 1)
            shown = decoded[
                :, :, [min(j * temporal, decoded.shape[2] - 1) for j in range(encoded.shape[2])]
            ]  # latent frame j: frame j x temporal
            colours.append(torch.nn.functional.avg_pool3d(shown, (1, spatial, spatial)))
            latents.append((encoded.float().cpu() - mean) / std)
    latents, colours = torch.cat(latents), torch.cat(colours)  # (count, channels or 3, latent frames, side, side)
    x = latents.permute(0, 2, 3, 4, 1).reshape(-1, latents.shape[1]).double()
    y = colours.permute(0, 2, 3, 4, 1).reshape(-1, 3).double()
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1), y).solution
    return solution[:-1].float(), solution[-1].float()


_fitted: weakref.WeakKeyDictionary[Any, tuple[torch.Tensor, torch.Tensor]] = weakref.WeakKeyDictionary()


def projection(vae: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE's projection: in memory, else from $VIDGEN_HOME/previews, else fitted now and kept."""
    if vae in _fitted:
        return _fitted[vae]
    path = vidgen_home() / "previews" / f"{_vae_key(vae)}.json"
    try:
        data = json.loads(path.read_text())
        found = torch.tensor(data["weight"]), torch.tensor(data["bias"])
    except (OSError, ValueError, KeyError):
        ui.info("fitting the preview's colours to this VAE (once; kept in VIDGEN_HOME/previews)")
        found = fit_projection(vae)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
            temporary.write_text(json.dumps({"weight": found[0].tolist(), "bias": found[1].tolist()}))
            os.replace(temporary, path)
        except OSError:
            pass  # fitted again next time
    _fitted[vae] = found
    return found


def to_rgb(latents: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
    """(1, channels, T, h, w) latents -> (T, h, w, 3) uint8."""
    rgb = torch.einsum("cthw,cr->thwr", latents[0].float().cpu(), weight) + bias
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


# ---- writing ----


def _frame_size(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def render(frames: np.ndarray, path: Path, *, video_size: tuple[int, int], fps: float, temporal: int) -> None:
    """Latent-resolution frames -> FILE (atomically): a PNG strip, or a GIF/WebP animation."""
    size = _frame_size(*video_size)
    kind = PREVIEW_FORMATS[path.suffix.lower()]
    if kind == "PNG":
        chosen = np.unique(np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round().astype(int))
        images = [Image.fromarray(frames[index]).resize(size, Image.BILINEAR) for index in chosen]
        picture = Image.new("RGB", (size[0] * len(images), size[1]))
        for index, image in enumerate(images):
            picture.paste(image, (index * size[0], 0))
        options: dict[str, Any] = {}
    else:
        chosen = np.unique(np.linspace(0, len(frames) - 1, min(MAX_FRAMES, len(frames))).round().astype(int))
        images = [Image.fromarray(frames[index]).resize(size, Image.BILINEAR) for index in chosen]
        picture = images[0]
        duration = max(20, round(1000 * temporal * len(frames) / max(len(chosen), 1) / max(fps, 1e-3)))
        options = {"save_all": True, "append_images": images[1:], "duration": duration, "loop": 0}
        if kind == "WEBP":
            options["lossless"] = True  # small frames: lossless costs little and shows the colours as fitted
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part{path.suffix}")
    try:
        picture.save(temporary, format=kind, **options)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class Previewer:
    """Called at every step's end with the latents after it; writes FILE every `every` steps
    (and after the last). A preview that cannot be written is said once and previews stop:
    the video matters more."""

    def __init__(self, pipe: Any, path: str | Path, *, every: int, steps: int, fps: float):
        self.pipe, self.path, self.every, self.steps, self.fps = pipe, Path(path), every, steps, fps
        self.before: torch.Tensor | None = None  # the latents before the step that ends on a preview
        self.written = 0
        self.broken = False

    def prepare(self) -> None:
        """Before denoising: the projection fitted (once per VAE) while the VAE may be used,
        then, with model offloading, every component back off the card as the call expects."""
        projection(self.pipe.vae)
        self.pipe.maybe_free_model_hooks()

    def _due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.steps

    def after_step(self, latents: torch.Tensor, step: int) -> None:
        """`step`: steps done, counted over the whole run (a resumed run's too)."""
        if self.broken:
            return
        if self._due(step) and self.before is not None:
            self._write(self.before, latents, step)
        self.before = latents.detach().clone() if self._due(step + 1) else None

    def _write(self, before: torch.Tensor, after: torch.Tensor, step: int) -> None:
        scheduler = self.pipe.scheduler
        sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
        x0 = after
        if sigmas is not None and index is not None and 0 < index < len(sigmas):
            sigma, sigma_next = float(sigmas[index - 1]), float(sigmas[index])
            if sigma != sigma_next:
                velocity = (after.float() - before.float()) / (sigma_next - sigma)
                x0 = after.float() - sigma_next * velocity
        try:
            weight, bias = projection(self.pipe.vae)
            frames = to_rgb(x0, weight, bias)
            spatial = getattr(self.pipe, "vae_scale_factor_spatial", 8)
            video_size = (after.shape[-2] * spatial, after.shape[-1] * spatial)
            render(frames, self.path, video_size=video_size, fps=self.fps, temporal=getattr(self.pipe, "vae_scale_factor_temporal", 4))
        except OSError as error:
            self.broken = True
            ui.warn(f"cannot write the preview {self.path}: {error.strerror or error}; no more previews")
            return
        self.written += 1
        ui.preview(self.path, step, self.steps)
