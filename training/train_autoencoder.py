"""Stages `vae` and `decoder`: the video autoencoder on rendered clips, then a decoder under its frozen encoder.

    python -m training.train vae --minutes 40          # the whole AutoencoderKLWan
    python -m training.train decoder --minutes 90      # a new, wider decoder; the encoder stays

Both resume from work/<stage>/state.pt; each keeps the EMA with the best validation loss in work/<stage>/best
(the denoiser and the export read it) and the last EMA in work/<stage>/last.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from training import probe, shapes
from training.data import RenderedBatches, clips_and_weights, probe_specs, random_clips, spec_from_saved, to_pixels, to_uint8
from training.model import new_vae
from training.stage import (
    CHECKPOINT_SECONDS,
    Stage,
    autocast,
    ema_update,
    format_scores,
    learning_rate_factor,
    log,
    random_state,
    restore_random_state,
)

VAE_BATCH = 8
VAE_CROP = 32  # convolutional: a 32x32 crop of all 17 frames teaches 64x64 at a third of the cost
VAE_LR = 1e-3  # the decoder stage takes half
VAE_KL_WEIGHT = 1e-6
# The decoder stage adds weight on a band around the outline: corners and tips decide the probe's shape.
EDGE_WEIGHT = 10.0
DECODER_CORNER_WEIGHT = 20.0  # extra weight within 3 pixels of the object's bounding-box corners
# The decoder stage can decode noisy latents into the clean clip: noise of up to this many of each
# channel's standard deviations, drawn per clip (0 for a quarter of them). Why: the denoiser's samples
# are near the encoder's latents but not on them, and a decoder trained only on exact latents turns
# the difference into rounded corners; one trained on nearby latents maps them back to crisp shapes.
DECODER_LATENT_NOISE = 0.1


def reconstruction_loss(reconstruction: torch.Tensor, clips: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # L1 alone picks the majority colour where unsure (the background); the squared term pulls towards the object.
    error = reconstruction.float() - clips
    return ((error.abs() + error.pow(2)) * weights).sum() / (weights.sum() * clips.shape[1])


@torch.no_grad()
def reconstruction_scores(vae, specs: list[shapes.ClipSpec], device: str = "cpu") -> dict:
    """The probe on autoencoder round trips of rendered clips: the ceiling for any denoiser on top."""
    results = []
    for start in range(0, len(specs), 8):
        batch = specs[start : start + 8]
        clips = to_pixels(np.stack([shapes.render_clip(s) for s in batch])).to(device)
        with autocast(device):
            decoded = vae.decode(vae.encode(clips).latent_dist.mode()).sample
        results += [(spec, probe.judge(frames)) for spec, frames in zip(batch, to_uint8(decoded.cpu()))]
    return probe.score(results)


def noisy_latents(latents: torch.Tensor, most: float, generator: torch.Generator) -> torch.Tensor:
    """latents plus Gaussian noise of a random share (up to `most`) of each channel's standard deviation
    in the batch, one share per clip; a quarter of the clips stay exact."""
    if not most:
        return latents
    share = most * torch.rand(latents.shape[0], generator=generator)
    share = torch.where(torch.rand(latents.shape[0], generator=generator) < 0.25, torch.zeros_like(share), share)
    scale = latents.float().std(dim=(0, 2, 3, 4), keepdim=True)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    share = share.to(latents.device)
    return latents + (share.view(-1, 1, 1, 1, 1) * scale * noise).to(latents.dtype)


def train_autoencoder(
    work: Path,
    minutes: float,
    *,
    decoder_only: bool,
    z_dim: int,
    decoder_base_dim: int | None,
    corner_weight: float = DECODER_CORNER_WEIGHT,
    latent_noise: float = DECODER_LATENT_NOISE,
    sampled: int = 0,
    device: str = "cpu",
    batch: int = VAE_BATCH,
    crop: int = VAE_CROP,
    workers: int = 1,
) -> None:
    """The whole autoencoder, or (decoder_only) its decoder under the frozen encoder of stage `vae`,
    on the encoder's posterior means: the latents the denoiser learns stay exactly the same. A decoder
    stage with decoder_base_dim starts a wider decoder from scratch under that encoder.
    workers > 1 renders the clips in that many processes (for a GPU)."""
    stage = Stage(work, "decoder" if decoder_only else "vae")
    state = stage.load()
    if decoder_only:
        vae = AutoencoderKLWan.from_pretrained(work / "vae" / "best")
        if state is not None or decoder_base_dim:
            frozen = vae.state_dict()
            config = state["config"] if state is not None else {**vae.config, "decoder_base_dim": decoder_base_dim}
            vae = AutoencoderKLWan.from_config(config)
            vae.load_state_dict({k: v for k, v in frozen.items() if k.startswith(("encoder.", "quant_conv."))}, strict=False)
        encoder = copy.deepcopy(vae).eval().requires_grad_(False)
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    else:
        overrides = {"z_dim": z_dim}
        if decoder_base_dim:
            overrides["decoder_base_dim"] = decoder_base_dim
        vae = new_vae(**overrides) if state is None else AutoencoderKLWan.from_config(state["config"])
    ema = copy.deepcopy(vae).eval()
    base_lr = VAE_LR / 2 if decoder_only else VAE_LR
    trainable = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=base_lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng, generator = random.Random(4 if decoder_only else 1), torch.Generator().manual_seed(1)
    step, spent, best = 0, 0.0, float("inf")
    if state is not None:
        vae.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        restore_random_state(state["random"], rng, generator)
        step, spent, best = state["step"], state["seconds"], state["best"]
        log(f"{stage.folder.name}: resuming at step {step}, {spent / 60:.1f} of {minutes} minutes spent")
    for model in (vae, ema) + ((encoder,) if decoder_only else ()):
        model.to(device)
    optimizer.load_state_dict(optimizer.state_dict())  # moments onto the parameters' device
    validation, validation_weights = (t.to(device) for t in random_clips(random.Random(12345), 8))
    batches = None
    if workers > 1:
        data = RenderedBatches(
            rng.randrange(2**31), batch, crop, EDGE_WEIGHT if decoder_only else 0.0, corner_weight if decoder_only else 0.0
        )
        batches = iter(
            torch.utils.data.DataLoader(data, batch_size=None, num_workers=workers, prefetch_factor=4, pin_memory=device != "cpu")
        )
    specs = probe_specs(24)
    pairs = None
    if decoder_only and sampled:
        pairs = torch.load(work / "sampled.pt")
        pairs["specs"] = [spec_from_saved(s) for s in pairs["specs"]]

    def checkpoint() -> None:
        stage.save(
            {
                "config": dict(vae.config),
                "model": vae.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "random": random_state(rng, generator),
                "step": step,
                "seconds": spent,
                "best": best,
            }
        )

    resumed_at, last_checkpoint, running = time.time() - spent, time.time(), None
    while spent < minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = base_lr * learning_rate_factor(step, spent / (minutes * 60), warmup=100)
        if batches is not None:
            clips, weights = (t.to(device, non_blocking=True) for t in next(batches))
        else:
            clips, weights = random_clips(
                rng, batch, crop, edge_weight=EDGE_WEIGHT if decoder_only else 0.0, corner_weight=corner_weight if decoder_only else 0.0
            )
            clips, weights = clips.to(device), weights.to(device)
        with autocast(device):
            if decoder_only:
                with torch.no_grad():
                    latents = noisy_latents(encoder.encode(clips).latent_dist.mode(), latent_noise, generator)
                reconstruction, kl = vae.decode(latents).sample, torch.zeros(())
            else:
                posterior = vae.encode(clips).latent_dist
                reconstruction, kl = vae.decode(posterior.sample(generator)).sample, posterior.kl().float().mean()
        loss = reconstruction_loss(reconstruction, clips, weights) + VAE_KL_WEIGHT * kl
        if pairs is not None:  # whole clips from the denoiser's own latents (sample_pairs)
            index = torch.randint(len(pairs["specs"]), (sampled,), generator=generator)
            targets, target_weights = clips_and_weights(
                [pairs["specs"][i] for i in index.tolist()], rng, edge_weight=EDGE_WEIGHT, corner_weight=corner_weight
            )
            targets, target_weights = targets.to(device), target_weights.to(device)
            with autocast(device):
                decoded = vae.decode(pairs["latents"][index].to(device)).sample
            loss = (loss + reconstruction_loss(decoded, targets, target_weights)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        ema_update(ema, vae, 0.9 if step < 200 else 0.99)
        step += 1
        spent = time.time() - resumed_at
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % (100 if device == "cpu" else 500) == 0:
            with torch.no_grad(), autocast(device):
                val = reconstruction_loss(
                    ema.decode(ema.encode(validation).latent_dist.mode()).sample, validation, validation_weights
                ).item()
            scores = reconstruction_scores(ema, specs, device)
            log(f"{stage.folder.name} step {step} loss {running:.4f} val {val:.4f} probe {format_scores(scores)}")
            stage.record({"step": step, "minutes": round(spent / 60, 2), "loss": running, "val": val, "probe": scores})
            if val < best:  # keep the best EMA: a late spike must not be what ships
                best = val
                ema.save_pretrained(stage.folder / "best", safe_serialization=True)
        if time.time() - last_checkpoint > CHECKPOINT_SECONDS:
            checkpoint()
            last_checkpoint = time.time()
    checkpoint()
    ema.save_pretrained(stage.folder / "last", safe_serialization=True)  # best is judged on 8 clips only
    if not (stage.folder / "best").exists():
        ema.save_pretrained(stage.folder / "best", safe_serialization=True)
    log(f"{stage.folder.name} done: {step} steps in {spent / 60:.1f} minutes, best validation {best:.4f}")
