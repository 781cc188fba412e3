"""Stages `latents`, `swapped` and `samples`: the latent pools the denoiser and the decoder train on, made once.

    python -m training.train latents --pool 4000      # work/latents.pt: the denoiser's training set
    python -m training.train swapped --pool 4000      # work/swapped.pt: for the denoiser's --shape-swap
    python -m training.train samples --pool 512       # work/sampled.pt: for the decoder's --sampled

Each reads the `vae` stage's best autoencoder (samples: a whole exported pipeline) and writes its file
atomically; latents and swapped do nothing when their file is already there.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan, WanPipeline

from training import shapes
from training.data import spec_from_saved, to_pixels
from training.model import MAX_TEXT_TOKENS
from training.stage import autocast, log

LATENT_POOL = 4000
CANONICAL_LAYOUT = True  # the pool's clips in shapes.py's canonical layout (why: shapes.CANONICAL_NOTE)


@torch.no_grad()
def encode_latents(work: Path, count: int = LATENT_POOL, canonical: bool = CANONICAL_LAYOUT, device: str = "cpu", workers: int = 1) -> None:
    """Posterior means, not samples: with a KL weight this small a sample is mostly noise.
    workers > 1 renders the clips in that many processes (rendering, not encoding, is the slow part
    beside a GPU); the pool is the same clips either way."""
    target = work / "latents.pt"
    if target.exists():
        log(f"latent pool already in {target}")
        return
    vae = AutoencoderKLWan.from_pretrained(work / "vae" / "best").eval().to(device)
    rng = random.Random(2)
    specs = [shapes.sample_spec(rng, canonical=canonical) for _ in range(count)]
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context("fork").Pool(workers)
    render = pool.imap if pool is not None else map
    clips_in_order = render(shapes.render_clip, specs, *([64] if pool is not None else []))
    latents, batch_size = [], 32 if device == "cpu" else 256
    for start in range(0, count, batch_size):
        clips = to_pixels(np.stack([next(clips_in_order) for _ in range(min(batch_size, count - start))])).to(device)
        with autocast(device):
            latents.append(vae.encode(clips).latent_dist.mode().float().cpu())
        if start % (20 * batch_size) == 0:
            log(f"encoded {start + len(clips)}/{count}")
    if pool is not None:
        pool.close()
    latents = torch.cat(latents)
    mean, std = latents.mean(dim=(0, 2, 3, 4)), latents.std(dim=(0, 2, 3, 4))
    temporary = target.with_suffix(".tmp")
    torch.save({"latents": latents, "specs": [s.__dict__ for s in specs], "mean": mean, "std": std}, temporary)
    os.replace(temporary, target)
    log(f"latents {tuple(latents.shape)} mean {[round(v, 3) for v in mean.tolist()]} std {[round(v, 3) for v in std.tolist()]}")


@torch.no_grad()
def encode_swapped(work: Path, count: int) -> None:
    """For the first `count` clips of the latent pool, the latents of the same clip drawn with each other
    shape (same colours, motion and layout), for the denoiser's --shape-swap: swapped.pt holds
    (count, 2, channels, frames, height, width), the other shapes in SHAPES order."""
    target = work / "swapped.pt"
    if target.exists():
        log(f"swapped latents already in {target}")
        return
    vae = AutoencoderKLWan.from_pretrained(work / "vae" / "best").eval()
    specs = torch.load(work / "latents.pt")["specs"][:count]
    latents = []
    for start in range(0, len(specs), 16):
        batch = [spec_from_saved(spec) for spec in specs[start : start + 16]]
        others = [replace(spec, shape=shape) for spec in batch for shape in shapes.SHAPES if shape != spec.shape]
        with autocast("cpu"):
            encoded = vae.encode(to_pixels(np.stack([shapes.render_clip(o) for o in others]))).latent_dist.mode().float()
        latents.append(encoded.view(len(batch), 2, *encoded.shape[1:]))
        if start % 320 == 0:
            log(f"swapped {start + len(batch)}/{len(specs)}")
    temporary = target.with_suffix(".tmp")
    torch.save({"latents": torch.cat(latents).half()}, temporary)
    os.replace(temporary, target)


@torch.no_grad()
def sample_pairs(work: Path, model: Path, count: int, *, lowest: float = 0.5, highest: float = 0.9, seed: int = 5) -> None:
    """Latents the denoiser makes, each paired with the clip it should decode to, for the decoder stage's
    --sampled: a rendered clip's latent is noised to a random level in [lowest, highest] (its layout
    survives, within about 2 pixels from 0.9; shape detail is redrawn) and denoised with its caption by the pipeline's own sampler
    and settings (20 steps, guidance 4). Why: the decoder otherwise sees only the encoder's exact latents,
    and the denoiser's samples lie near them, where it draws squares round (docs/embedded-model.md)."""
    target = work / "sampled.pt"
    # float32 whatever the folder stores (the shipped denoiser and text encoder are float16): loaded as stored,
    # then cast, so that no dtype keyword (diffusers renamed torch_dtype to dtype after 0.35) is needed.
    pipe = WanPipeline.from_pretrained(model).to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    vae, transformer, scheduler = pipe.vae, pipe.transformer, pipe.scheduler
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    specs, latents = [], []
    for start in range(0, count, 16):
        batch = [shapes.sample_spec(rng, canonical=CANONICAL_LAYOUT) for _ in range(min(16, count - start))]
        clean = (vae.encode(to_pixels(np.stack([shapes.render_clip(s) for s in batch]))).latent_dist.mode() - mean) / std
        scheduler.set_timesteps(20)
        first = int((scheduler.sigmas[:-1] > rng.uniform(lowest, highest)).sum())
        sigma = scheduler.sigmas[first]
        x = (1 - sigma) * clean + sigma * torch.randn(clean.shape, generator=generator)
        text, empty = pipe.encode_prompt([shapes.caption(s, rng) for s in batch], [""] * len(batch), max_sequence_length=MAX_TEXT_TOKENS)
        for t in scheduler.timesteps[first:]:
            timestep = t.expand(len(batch))
            conditional = transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]
            unconditional = transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=empty, return_dict=False)[0]
            x = scheduler.step(unconditional + 4.0 * (conditional - unconditional), t, x, return_dict=False)[0]
        latents.append(x * std + mean)  # what the pipeline hands its VAE
        specs += batch
        log(f"sampled {len(specs)}/{count} (from sigma {float(sigma):.2f})")
    temporary = target.with_suffix(".tmp")
    torch.save({"latents": torch.cat(latents), "specs": [s.__dict__ for s in specs], "model": str(model)}, temporary)
    os.replace(temporary, target)
