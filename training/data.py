"""The training data: clips rendered by shapes.py as tensors, with the per-pixel and per-latent-cell loss
weights that tell the stages where the object is.

    clips, weights = random_clips(random.Random(0), 8, crop=32)       # (8, 3, 17, 32, 32) in [-1, 1], weights
    frames = to_uint8(vae.decode(latents).sample)                      # back to (B, 17, 64, 64, 3) uint8

It needs numpy, torch and shapes.py only; the models are in model.py.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from training import shapes

FRAMES = shapes.NUM_FRAMES  # 17 frames of 64x64 -> 5 latent frames of 16x16
SIZE = shapes.FRAME_SIZE
# Objects cover a few percent of the frame; without extra weight the autoencoder drops them.
OBJECT_WEIGHT = 10.0


def to_pixels(clips: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float (B, 3, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, 3), as the pipeline's output becomes."""
    frames = ((pixels.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).numpy()
    return (frames * 255).round().astype(np.uint8)


def _dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    return F.max_pool3d(mask, (1, 2 * pixels + 1, 2 * pixels + 1), stride=1, padding=(0, pixels, pixels))


def box_corner_pixels(spec: shapes.ClipSpec, reach: float = 3.0) -> np.ndarray:
    """bool (frames, H, W): pixels within `reach` of a corner of the object's bounding box in each frame, as
    render_clip moves and scales it. Square, circle and triangle differ most there."""
    a = np.linspace(0, 1, FRAMES)[:, None, None]
    side = np.sqrt((1 - a) * spec.start_size**2 + a * spec.end_size**2)
    cx = (1 - a) * spec.start_center[0] + a * spec.end_center[0]
    cy = (1 - a) * spec.start_center[1] + a * spec.end_center[1]
    grid = np.arange(SIZE) + 0.5
    near = np.zeros((FRAMES, SIZE, SIZE), dtype=bool)
    for dx in (-0.5, 0.5):
        for dy in (-0.5, 0.5):
            near |= (np.abs(grid[None, None, :] - (cx + dx * side)) <= reach) & (np.abs(grid[None, :, None] - (cy + dy * side)) <= reach)
    return near


def random_clips(
    rng: random.Random, count: int, crop: int = SIZE, edge_weight: float = 0.0, corner_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips in [-1, 1] (one random crop each) and a per-pixel loss weight: OBJECT_WEIGHT on the object and
    one pixel around it, 1 on the background, plus edge_weight on a two-pixel band around the outline and
    corner_weight near the corners of its bounding box."""
    return clips_and_weights([shapes.sample_spec(rng) for _ in range(count)], rng, crop, edge_weight, corner_weight)


def clips_and_weights(
    specs: list[shapes.ClipSpec], rng: random.Random, crop: int = SIZE, edge_weight: float = 0.0, corner_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """random_clips for given specs."""
    clips, masks, corners = [], [], []
    for spec in specs:
        clip = shapes.render_clip(spec)
        top, left = rng.randrange(SIZE - crop + 1), rng.randrange(SIZE - crop + 1)
        clip = clip[:, top : top + crop, left : left + crop]
        background = np.array(shapes.BACKGROUND_COLORS[spec.background], dtype=np.int16)
        masks.append(np.abs(clip.astype(np.int16) - background).sum(-1) > 0)
        clips.append(clip)
        if corner_weight:
            corners.append(box_corner_pixels(spec)[:, top : top + crop, left : left + crop])
    mask = torch.from_numpy(np.stack(masks)).float().unsqueeze(1)
    weights = 1 + (OBJECT_WEIGHT - 1) * _dilate(mask, 1)
    if edge_weight:
        band = _dilate(mask, 2) - (1 - _dilate(1 - mask, 2))
        weights = weights + edge_weight * band
    if corner_weight:
        weights = weights + corner_weight * torch.from_numpy(np.stack(corners)).float().unsqueeze(1)
    return to_pixels(np.stack(clips)), weights


def spec_from_saved(saved: dict) -> shapes.ClipSpec:
    """A ClipSpec from its __dict__ as torch.save kept it (tuples may come back as lists)."""
    return shapes.ClipSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


def probe_specs(count: int, seed: int = 12345) -> list[shapes.ClipSpec]:
    rng = random.Random(seed)
    return [shapes.sample_spec(rng) for _ in range(count)]


class RenderedBatches(torch.utils.data.IterableDataset):
    """random_clips batches rendered in DataLoader worker processes: beside a GPU, rendering (30 ms a clip
    on one core) is the slow part. Each worker draws from its own seed, so a resumed run sees other clips
    than an uninterrupted one would (only the one-process path resumes exactly)."""

    def __init__(self, seed: int, batch: int, crop: int, edge_weight: float, corner_weight: float) -> None:
        self.seed, self.batch, self.crop, self.edge_weight, self.corner_weight = seed, batch, crop, edge_weight, corner_weight

    def __iter__(self):
        torch.set_num_threads(1)
        worker = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed * 1000 + (worker.id if worker else 0))
        while True:
            yield random_clips(rng, self.batch, self.crop, self.edge_weight, self.corner_weight)


def latent_object_masks(specs: list[shapes.ClipSpec], cell: int = 4, corners: bool = False) -> torch.Tensor:
    """The latent cells each clip's object touches, from its bounding box in every frame (as render_clip
    moves and scales it), with one cell of margin: bool (N, 1, latent frames, H/cell, W/cell). Latent frame
    0 holds pixel frame 0 and latent frame k frames 4k-3..4k (the VAE's causal 4x in time).
    corners: only the cells that hold the bounding box's corners, where square, circle and triangle differ."""
    a = torch.linspace(0, 1, FRAMES)[None, :]

    def column(name):
        return torch.tensor([getattr(s, name) for s in specs], dtype=torch.float32)[:, None]

    side = ((1 - a) * column("start_size") ** 2 + a * column("end_size") ** 2).sqrt()
    centre = [
        (1 - a) * torch.tensor([s.start_center[i] for s in specs])[:, None] + a * torch.tensor([s.end_center[i] for s in specs])[:, None]
        for i in (0, 1)
    ]
    edges = torch.arange(SIZE // cell, dtype=torch.float32) * cell  # each cell's first pixel
    if corners:

        def holds(v):
            return (edges <= v[..., None]) & (v[..., None] < edges + cell)

        x, y = [(holds(c - side / 2) | holds(c + side / 2)).float() for c in centre]
    else:
        x, y = [
            ((edges < (c + side / 2)[..., None]) & (edges + cell > (c - side / 2)[..., None])).float() for c in centre
        ]  # (N, frames, cells)
    mask = (y[..., :, None] * x[..., None, :])[:, None]  # (N, 1, frames, rows, columns)
    mask = torch.cat([mask[:, :, :1], F.max_pool3d(mask[:, :, 1:], (4, 1, 1))], dim=2)
    return mask.bool() if corners else _dilate(mask, 1).bool()
