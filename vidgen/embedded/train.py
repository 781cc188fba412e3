"""Train vidgen's built-in Shapes model from scratch and export it as a diffusers WanPipeline.

    make train-embedded                                   # every stage, in order, on this machine
    python -m vidgen.embedded.train vae --minutes 40      # one stage; run it again to go on

Stages, each resumable from its folder under the work folder (runs/shapes by default):
  vae       the video autoencoder (AutoencoderKLWan, Wan 2.2-style residual layout) on rendered clips
  latents   encode a fixed pool of clips once (posterior means) and measure per-channel statistics
  decoder   sharpen the decoder under the frozen encoder (the denoiser's latents do not change)
  denoiser  the text encoder (UMT5) and the denoiser (WanTransformer3DModel) together, flow matching
            on the normalised latent pool
  export    write the parts, the tokenizer and the scheduler as a WanPipeline (safetensors)

A stage checkpoints every few minutes (model, EMA, optimizer, step, time spent, random state) and
picks up where it stopped when run again; `--minutes` is the stage's whole budget, so a stage that
was stopped after 20 of 60 minutes trains 40 more. Every stage logs its loss and, now and then, the
probe's score (vidgen.embedded.probe): on reconstructions for the autoencoder, on generated videos
for the denoiser. Measured times and scores: docs/embedded-model.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidgen.embedded import probe, shapes

FRAMES = shapes.NUM_FRAMES        # 17 frames of 64x64 -> 5 latent frames of 16x16
SIZE = shapes.FRAME_SIZE
MAX_TEXT_TOKENS = 16              # captions are at most 13 words plus </s>; the pipeline pads to this
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]
CHECKPOINT_SECONDS = 180

# Autoencoder: the Wan 2.2-style residual layout learned about twice as fast per minute on this CPU as
# the plain one (shared TRAINING-NOTES). z_dim is a choice with a cost on each side: more channels
# reconstruct more finely, fewer leave the denoiser fewer numbers to get right (see DENOISER below).
VAE_CONFIG = dict(
    base_dim=16, z_dim=8, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[],
    temperal_downsample=[True, True], is_residual=True, scale_factor_spatial=4, scale_factor_temporal=4,
)
VAE_BATCH = 8
VAE_CROP = 32                     # convolutional: a 32x32 crop of all 17 frames teaches 64x64 at a third of the cost
VAE_LR = 1e-3
VAE_KL_WEIGHT = 1e-6
# Objects cover a few percent of the frame; without extra weight the autoencoder drops them.
OBJECT_WEIGHT = 10.0
# The decoder stage adds weight on a band around the outline: corners and tips decide the probe's shape.
EDGE_WEIGHT = 10.0
DECODER_CORNER_WEIGHT = 20.0      # extra weight within 3 pixels of the object's bounding-box corners
# The decoder stage starts a decoder twice as wide as the encoder from scratch, under the frozen encoder.
# Why: the autoencoder's own 16-wide decoder, sharpened for 1,800 steps, rounded moving squares' corners
# (probe ceiling 77-90%); the 32-wide one drew 21 of the 24 check clips' shapes right after 1,000 GPU steps,
# where the sharpened 16-wide one drew 15 (docs/embedded-model.md). It costs 0.7 s more a video on this CPU.
DECODER_BASE_DIM = 32
# The decoder stage can decode noisy latents into the clean clip: noise of up to this many of each
# channel's standard deviations, drawn per clip (0 for a quarter of them). Why: the denoiser's samples
# are near the encoder's latents but not on them, and a decoder trained only on exact latents turns
# the difference into rounded corners; one trained on nearby latents maps them back to crisp shapes.
DECODER_LATENT_NOISE = 0.1

TEXT_CONFIG = dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                   dropout_rate=0.0, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
LATENT_POOL = 4000
CANONICAL_LAYOUT = True           # the pool's clips in shapes.py's canonical layout (why: shapes.CANONICAL_NOTE)
# The denoiser's layout: patch 2 on the 16x16 latent (320 tokens; a token covers 8x8 pixels, where the
# patch-4 layout's 16x16 tokens left a square's corner and a circle's edge inside one token's linear output
# and drew squares round: shape 73% against 97%), 6 blocks of width 256. 20 steps took 3.3 s on this CPU;
# the preset takes 10.
DENOISER_PATCH, DENOISER_WIDTH, DENOISER_LAYERS = 2, 256, 6
DENOISER_BATCH = 32               # on this CPU; the shipped run took 256 a step on a GPU (--batch, --lr 1e-3)
DENOISER_LR = 8e-4
EMPTY_CAPTION_SHARE = 0.1         # trains the unconditional branch that classifier-free guidance needs
FLOW_SHIFT = 3.0                  # the scheduler's shift; training times are drawn shifted the same way
DENOISER_OBJECT_WEIGHT = 1.0      # loss weight on latent cells the object touches (1 on the background)
DENOISER_CORNER_WEIGHT = 16.0     # extra weight on the cells holding the object's bounding-box corners
# Shape swaps: the share of training clips whose noisy input is made from the same clip drawn with another
# shape, while caption and target stay the true ones (noise levels SWAP_SIGMAS only). Why: in training
# the noisy input always shows the right shape at middle noise levels, so the denoiser learns to keep the
# shape it sees; when sampling, an early round blob then stays round under a "square" caption.
DENOISER_SHAPE_SWAP = 0.0
SWAP_SIGMAS = (0.3, 0.95)


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def transformer_config(z_dim: int, patch: int, width: int, layers: int) -> dict:
    """The denoiser's layout. Each token carries patch*patch*z_dim numbers in and out; the residual width
    must be well above that, or the part of the noise the model cannot represent is never removed (the
    first 4x4-patch, 16-channel model had 256 numbers a token through a width of 192, and its samples
    kept coloured specks at every setting of the sampler)."""
    heads = width // 32
    return dict(
        patch_size=(1, patch, patch), num_attention_heads=heads, attention_head_dim=32, in_channels=z_dim,
        out_channels=z_dim, text_dim=TEXT_CONFIG["d_model"], freq_dim=64, ffn_dim=4 * width, num_layers=layers,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )


# --- data ----------------------------------------------------------------------------------
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
    side = np.sqrt((1 - a) * spec.start_size ** 2 + a * spec.end_size ** 2)
    cx = (1 - a) * spec.start_center[0] + a * spec.end_center[0]
    cy = (1 - a) * spec.start_center[1] + a * spec.end_center[1]
    grid = np.arange(SIZE) + 0.5
    near = np.zeros((FRAMES, SIZE, SIZE), dtype=bool)
    for dx in (-0.5, 0.5):
        for dy in (-0.5, 0.5):
            near |= ((np.abs(grid[None, None, :] - (cx + dx * side)) <= reach)
                     & (np.abs(grid[None, :, None] - (cy + dy * side)) <= reach))
    return near


def random_clips(rng: random.Random, count: int, crop: int = SIZE, edge_weight: float = 0.0,
                 corner_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips in [-1, 1] (one random crop each) and a per-pixel loss weight: OBJECT_WEIGHT on the object and
    one pixel around it, 1 on the background, plus edge_weight on a two-pixel band around the outline and
    corner_weight near the corners of its bounding box."""
    return clips_and_weights([shapes.sample_spec(rng) for _ in range(count)], rng, crop, edge_weight, corner_weight)


def clips_and_weights(specs: list[shapes.ClipSpec], rng: random.Random, crop: int = SIZE, edge_weight: float = 0.0,
                      corner_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """random_clips for given specs."""
    clips, masks, corners = [], [], []
    for spec in specs:
        clip = shapes.render_clip(spec)
        top, left = rng.randrange(SIZE - crop + 1), rng.randrange(SIZE - crop + 1)
        clip = clip[:, top:top + crop, left:left + crop]
        background = np.array(shapes.BACKGROUND_COLORS[spec.background], dtype=np.int16)
        masks.append(np.abs(clip.astype(np.int16) - background).sum(-1) > 0)
        clips.append(clip)
        if corner_weight:
            corners.append(box_corner_pixels(spec)[:, top:top + crop, left:left + crop])
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


# --- checkpoints ---------------------------------------------------------------------------
class Stage:
    """A stage's folder: a resumable state file (written atomically) and a log of its probe scores."""

    def __init__(self, work: Path, name: str) -> None:
        self.folder = work / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_path = self.folder / "state.pt"

    def load(self) -> dict | None:
        if not self.state_path.exists():
            return None
        # On the CPU whatever device wrote it: a stage trained on a GPU resumes or exports anywhere.
        return torch.load(self.state_path, weights_only=False, map_location="cpu")

    def save(self, state: dict) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.state_path)

    def record(self, entry: dict) -> None:
        with open(self.folder / "scores.jsonl", "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def random_state(rng: random.Random, generator: torch.Generator) -> dict:
    return {"python": rng.getstate(), "torch": generator.get_state()}


def restore_random_state(state: dict, rng: random.Random, generator: torch.Generator) -> None:
    rng.setstate(state["python"])
    generator.set_state(state["torch"])


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():  # one fused call: a loop over the parameters costs a GPU launch each
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def autocast(device: str, enabled: bool = True):
    """bfloat16 autocast: AMX on this CPU (convolutions 1.4-2x faster), tensor cores on a GPU."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


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


def learning_rate_factor(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up over steps, then cosine to 10% over the share of the stage's time budget spent
    (stages are budgeted in minutes, so the schedule cannot assume a step count)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- the autoencoder -----------------------------------------------------------------------
def new_vae(**overrides):
    from diffusers import AutoencoderKLWan
    config = dict(VAE_CONFIG)
    config.update(overrides)
    config.setdefault("latents_mean", [0.0] * config["z_dim"])
    config.setdefault("latents_std", [1.0] * config["z_dim"])
    return AutoencoderKLWan(**config)


def reconstruction_loss(reconstruction: torch.Tensor, clips: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # L1 alone picks the majority colour where unsure (the background); the squared term pulls towards the object.
    error = reconstruction.float() - clips
    return ((error.abs() + error.pow(2)) * weights).sum() / (weights.sum() * clips.shape[1])


@torch.no_grad()
def reconstruction_scores(vae, specs: list[shapes.ClipSpec], device: str = "cpu") -> dict:
    """The probe on autoencoder round trips of rendered clips: the ceiling for any denoiser on top."""
    results = []
    for start in range(0, len(specs), 8):
        batch = specs[start:start + 8]
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


@torch.no_grad()
def sample_pairs(work: Path, model: Path, count: int, *, lowest: float = 0.5, highest: float = 0.9, seed: int = 5) -> None:
    """Latents the denoiser makes, each paired with the clip it should decode to, for the decoder stage's
    --sampled: a rendered clip's latent is noised to a random level in [lowest, highest] (its layout
    survives, within about 2 pixels from 0.9; shape detail is redrawn) and denoised with its caption by the pipeline's own sampler
    and settings (20 steps, guidance 4). Why: the decoder otherwise sees only the encoder's exact latents,
    and the denoiser's samples lie near them, where it draws squares round (docs/embedded-model.md)."""
    from diffusers import WanPipeline

    target = work / "sampled.pt"
    from vidgen.pipeline import _dtype_keyword

    pipe = WanPipeline.from_pretrained(model, **{_dtype_keyword(): torch.float32})
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
        text, empty = pipe.encode_prompt([shapes.caption(s, rng) for s in batch], [""] * len(batch),
                                         max_sequence_length=MAX_TEXT_TOKENS)
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


def train_autoencoder(work: Path, minutes: float, *, decoder_only: bool, z_dim: int, decoder_base_dim: int | None,
                      corner_weight: float = DECODER_CORNER_WEIGHT, latent_noise: float = DECODER_LATENT_NOISE,
                      sampled: int = 0, device: str = "cpu", batch: int = VAE_BATCH, crop: int = VAE_CROP,
                      workers: int = 1) -> None:
    """The whole autoencoder, or (decoder_only) its decoder under the frozen encoder of stage `vae`,
    on the encoder's posterior means: the latents the denoiser learns stay exactly the same. A decoder
    stage with decoder_base_dim starts a wider decoder from scratch under that encoder.
    workers > 1 renders the clips in that many processes (for a GPU)."""
    from diffusers import AutoencoderKLWan

    stage = Stage(work, "decoder" if decoder_only else "vae")
    state = stage.load()
    if decoder_only:
        vae = AutoencoderKLWan.from_pretrained(work / "vae" / "best")
        if state is not None or decoder_base_dim:
            frozen = vae.state_dict()
            config = state["config"] if state is not None else {**vae.config, "decoder_base_dim": decoder_base_dim}
            vae = AutoencoderKLWan.from_config(config)
            vae.load_state_dict({k: v for k, v in frozen.items() if k.startswith(("encoder.", "quant_conv."))},
                                strict=False)
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
        data = RenderedBatches(rng.randrange(2**31), batch, crop, EDGE_WEIGHT if decoder_only else 0.0,
                               corner_weight if decoder_only else 0.0)
        batches = iter(torch.utils.data.DataLoader(data, batch_size=None, num_workers=workers, prefetch_factor=4,
                                                   pin_memory=device != "cpu"))
    specs = probe_specs(24)
    pairs = None
    if decoder_only and sampled:
        pairs = torch.load(work / "sampled.pt")
        pairs["specs"] = [spec_from_saved(s) for s in pairs["specs"]]

    def checkpoint() -> None:
        stage.save({"config": dict(vae.config), "model": vae.state_dict(), "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(), "random": random_state(rng, generator),
                    "step": step, "seconds": spent, "best": best})

    resumed_at, last_checkpoint, running = time.time() - spent, time.time(), None
    while spent < minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = base_lr * learning_rate_factor(step, spent / (minutes * 60), warmup=100)
        if batches is not None:
            clips, weights = (t.to(device, non_blocking=True) for t in next(batches))
        else:
            clips, weights = random_clips(rng, batch, crop, edge_weight=EDGE_WEIGHT if decoder_only else 0.0,
                                          corner_weight=corner_weight if decoder_only else 0.0)
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
            targets, target_weights = clips_and_weights([pairs["specs"][i] for i in index.tolist()], rng,
                                                        edge_weight=EDGE_WEIGHT, corner_weight=corner_weight)
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
                val = reconstruction_loss(ema.decode(ema.encode(validation).latent_dist.mode()).sample, validation,
                                          validation_weights).item()
            scores = reconstruction_scores(ema, specs, device)
            log(f"{stage.folder.name} step {step} loss {running:.4f} val {val:.4f} probe {_format(scores)}")
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


def _format(scores: dict) -> str:
    return " ".join(f"{k} {v:.0%}" for k, v in scores.items())


# --- the latent pool -----------------------------------------------------------------------
@torch.no_grad()
def encode_latents(work: Path, count: int = LATENT_POOL, canonical: bool = CANONICAL_LAYOUT, device: str = "cpu",
                   workers: int = 1) -> None:
    """Posterior means, not samples: with a KL weight this small a sample is mostly noise.
    workers > 1 renders the clips in that many processes (rendering, not encoding, is the slow part
    beside a GPU); the pool is the same clips either way."""
    from diffusers import AutoencoderKLWan

    target = work / "latents.pt"
    if target.exists():
        log(f"latent pool already in {target}")
        return
    vae = AutoencoderKLWan.from_pretrained(work / "vae" / "best").eval().to(device)
    rng = random.Random(2)
    specs = [shapes.sample_spec(rng, canonical=canonical) for _ in range(count)]
    pool = None
    if workers > 1:
        import multiprocessing

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
    from diffusers import AutoencoderKLWan

    target = work / "swapped.pt"
    if target.exists():
        log(f"swapped latents already in {target}")
        return
    vae = AutoencoderKLWan.from_pretrained(work / "vae" / "best").eval()
    specs = torch.load(work / "latents.pt")["specs"][:count]
    latents = []
    for start in range(0, len(specs), 16):
        batch = [spec_from_saved(spec) for spec in specs[start:start + 16]]
        others = [replace(spec, shape=shape) for spec in batch for shape in shapes.SHAPES if shape != spec.shape]
        with autocast("cpu"):
            encoded = vae.encode(to_pixels(np.stack([shapes.render_clip(o) for o in others]))).latent_dist.mode().float()
        latents.append(encoded.view(len(batch), 2, *encoded.shape[1:]))
        if start % 320 == 0:
            log(f"swapped {start + len(batch)}/{len(specs)}")
    temporary = target.with_suffix(".tmp")
    torch.save({"latents": torch.cat(latents).half()}, temporary)
    os.replace(temporary, target)


# --- text encoder + denoiser ---------------------------------------------------------------
def build_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + shapes.vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=MAX_TEXT_TOKENS)


def encode_text(text_encoder, tokenizer, captions: list[str], device: str = "cpu") -> torch.Tensor:
    # As WanPipeline._get_t5_prompt_embeds: padded positions are zeroed after the encoder.
    tokens = tokenizer(captions, padding="max_length", max_length=MAX_TEXT_TOKENS, truncation=True,
                       return_attention_mask=True, return_tensors="pt").to(device)
    hidden = text_encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
    return hidden * tokens.attention_mask[..., None]


def latent_object_masks(specs: list[shapes.ClipSpec], cell: int = 4, corners: bool = False) -> torch.Tensor:
    """The latent cells each clip's object touches, from its bounding box in every frame (as render_clip
    moves and scales it), with one cell of margin: bool (N, 1, latent frames, H/cell, W/cell). Latent frame
    0 holds pixel frame 0 and latent frame k frames 4k-3..4k (the VAE's causal 4x in time).
    corners: only the cells that hold the bounding box's corners, where square, circle and triangle differ."""
    a = torch.linspace(0, 1, FRAMES)[None, :]
    column = lambda name: torch.tensor([getattr(s, name) for s in specs], dtype=torch.float32)[:, None]
    side = ((1 - a) * column("start_size") ** 2 + a * column("end_size") ** 2).sqrt()
    centre = [(1 - a) * torch.tensor([s.start_center[i] for s in specs])[:, None]
              + a * torch.tensor([s.end_center[i] for s in specs])[:, None] for i in (0, 1)]
    edges = torch.arange(SIZE // cell, dtype=torch.float32) * cell  # each cell's first pixel
    if corners:
        holds = lambda v: (edges <= v[..., None]) & (v[..., None] < edges + cell)
        x, y = [(holds(c - side / 2) | holds(c + side / 2)).float() for c in centre]
    else:
        x, y = [((edges < (c + side / 2)[..., None]) & (edges + cell > (c - side / 2)[..., None])).float()
                for c in centre]  # (N, frames, cells)
    mask = (y[..., :, None] * x[..., None, :])[:, None]  # (N, 1, frames, rows, columns)
    mask = torch.cat([mask[:, :, :1], F.max_pool3d(mask[:, :, 1:], (4, 1, 1))], dim=2)
    return mask.bool() if corners else _dilate(mask, 1).bool()


def shifted_sigmas(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Noise levels drawn as the sampler visits them: uniform in the scheduler's unshifted time, then
    shifted by FLOW_SHIFT (8.5% of samples above sigma 0.97). The logit-normal draw used before gave
    0.9% of its samples to that range, where the sampler takes its first four steps and decides where
    the object goes; its models predicted an almost empty frame from pure noise, and their samples
    held several blobs at once."""
    u = torch.rand(batch, generator=generator)
    return FLOW_SHIFT * u / (1 + (FLOW_SHIFT - 1) * u)


def with_latent_stats(vae, mean: list[float], std: list[float]):
    """A copy of an AutoencoderKLWan whose config carries these latent statistics (any decoder width)."""
    from diffusers import AutoencoderKLWan

    copied = AutoencoderKLWan.from_config({**vae.config, "latents_mean": list(mean), "latents_std": list(std)})
    copied.load_state_dict(vae.state_dict())
    return copied.eval()


def assemble_pipeline(vae, text_encoder, transformer, latent_stats: dict):
    """The shipped object: a plain WanPipeline whose VAE config carries the latent pool's statistics,
    which the pipeline uses to un-normalise the denoiser's output before decoding."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    shipped_vae = with_latent_stats(vae, latent_stats["mean"].tolist(), latent_stats["std"].tolist())
    pipe = WanPipeline(tokenizer=build_tokenizer(), text_encoder=text_encoder, transformer=transformer,
                       vae=shipped_vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT))
    pipe.set_progress_bar_config(disable=True)  # the training log keeps one line a check
    return pipe


@torch.no_grad()
def sample_scores(pipe, count: int, seed: int = 0, held_out: bool = False) -> dict:
    """The probe on generated videos, with the preset's sampler settings (10 steps, guidance 4)."""
    rng = random.Random(seed)
    results = []
    for _ in range(count):
        spec = shapes.sample_spec(rng, held_out=held_out)
        output = pipe(prompt=shapes.caption(spec, rng), negative_prompt="", height=SIZE, width=SIZE,
                      num_frames=FRAMES, num_inference_steps=10, guidance_scale=4.0, max_sequence_length=MAX_TEXT_TOKENS,
                      generator=torch.Generator().manual_seed(rng.randrange(2**31)), output_type="np")
        frames = (np.clip(output.frames[0], 0, 1) * 255).round().astype(np.uint8)
        results.append((spec, probe.judge(frames)))
    return probe.score(results)


def train_denoiser(work: Path, minutes: float, *, patch: int, width: int, layers: int, probe_minutes: float,
                   object_weight: float = DENOISER_OBJECT_WEIGHT, corner_weight: float = DENOISER_CORNER_WEIGHT,
                   device: str = "cpu", batch: int = DENOISER_BATCH, shape_swap: float = DENOISER_SHAPE_SWAP,
                   lr: float = DENOISER_LR) -> None:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    stage = Stage(work, "denoiser")
    state = stage.load()
    data = torch.load(work / "latents.pt")
    stats = {"mean": data["mean"], "std": data["std"]}
    latents = (data["latents"] - data["mean"].view(1, -1, 1, 1, 1)) / data["std"].view(1, -1, 1, 1, 1)
    specs = [spec_from_saved(s) for s in data["specs"]]
    # Why weight the object: it covers about a seventh of the latent cells, so a plain mean lets the flat
    # background dominate the loss; shape (corners, tips) and place over time live in the object's cells.
    object_masks = latent_object_masks(specs).to(device) if object_weight != 1 else None
    corner_masks = latent_object_masks(specs, corners=True).to(device) if corner_weight else None
    latents = latents.to(device)
    swapped = None
    if shape_swap:
        swapped = torch.load(work / "swapped.pt")["latents"].float()
        swapped = ((swapped - data["mean"].view(1, 1, -1, 1, 1, 1)) / data["std"].view(1, 1, -1, 1, 1, 1)).to(device)
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    if state is None:
        transformer = WanTransformer3DModel(**transformer_config(latents.shape[1], patch, width, layers))
        text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1,
                                                   decoder_start_token_id=0, **TEXT_CONFIG))
    else:
        transformer = WanTransformer3DModel.from_config(state["transformer_config"])
        text_encoder = UMT5EncoderModel(UMT5Config.from_dict(state["text_config"]))
    ema_transformer, ema_text = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    parameters = list(transformer.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
    rng, generator = random.Random(3), torch.Generator().manual_seed(3)
    # On a GPU the noise is drawn there, so that the host does not draw millions of numbers a step and copy
    # them over; that generator's state is saved too, so a run still resumes exactly.
    on_cpu = torch.device(device).type == "cpu"
    noise_generator = generator if on_cpu else torch.Generator(device).manual_seed(3)
    step, spent = 0, 0.0
    if state is not None:
        transformer.load_state_dict(state["transformer"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_transformer.load_state_dict(state["ema_transformer"])
        ema_text.load_state_dict(state["ema_text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        restore_random_state(state["random"], rng, generator)
        if not on_cpu and "noise_random" in state:
            noise_generator.set_state(state["noise_random"])
        step, spent = state["step"], state["seconds"]
        log(f"denoiser: resuming at step {step}, {spent / 60:.1f} of {minutes} minutes spent")
    for model in (transformer, text_encoder, ema_transformer, ema_text):
        model.to(device)
    # After the models: AdamW's moments are created on the parameters' device at the first step,
    # and a resumed optimizer's state moves with load_state_dict's cast to the parameters.
    optimizer.load_state_dict(optimizer.state_dict())
    transformer.train()
    text_encoder.train()
    count = sum(p.numel() for p in transformer.parameters())
    log(f"denoiser: {count / 1e6:.2f} M parameters, latents {tuple(latents.shape)}")
    vae = AutoencoderKLWan.from_pretrained(work / "vae" / "best").eval()

    def checkpoint() -> None:
        stage.save({"transformer_config": dict(transformer.config), "text_config": text_encoder.config.to_dict(),
                    "transformer": transformer.state_dict(), "text_encoder": text_encoder.state_dict(),
                    "ema_transformer": ema_transformer.state_dict(), "ema_text_encoder": ema_text.state_dict(),
                    "optimizer": optimizer.state_dict(), "random": random_state(rng, generator),
                    "step": step, "seconds": spent, "latent_stats": stats, "batch": batch,
                    **({} if on_cpu else {"noise_random": noise_generator.get_state()})})

    resumed_at, last_checkpoint, last_probe, running = time.time() - spent, time.time(), time.time(), None
    while spent < minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = lr * learning_rate_factor(step, spent / (minutes * 60), warmup=150)
        index = torch.randint(len(specs), (batch,), generator=generator)
        x0 = latents[index.to(device)]
        captions = ["" if rng.random() < EMPTY_CAPTION_SHARE else shapes.caption(specs[i], rng) for i in index.tolist()]
        noise = torch.randn(x0.shape, generator=noise_generator, device=device)
        sigma = shifted_sigmas(len(index), generator).view(-1, 1, 1, 1, 1).to(device)
        source = x0
        if swapped is not None:  # the same clip with another shape under the noise; caption and target stay
            draw, which = torch.rand(len(index), generator=generator), torch.randint(2, (len(index),), generator=generator)
            flat = sigma.flatten().cpu()
            swap = ((draw < shape_swap) & (index < len(swapped)) & (flat >= SWAP_SIGMAS[0]) & (flat <= SWAP_SIGMAS[1])
                    & torch.tensor([bool(c) for c in captions]))
            if swap.any():
                source = x0.clone()
                rows = swap.nonzero().flatten()
                source[rows.to(device)] = swapped[index[rows].to(device), which[rows].to(device)]
        x_t = (1 - sigma) * source + sigma * noise
        # bfloat16 on a GPU (tensor cores; the shipped denoiser was trained so); the CPU path keeps the float32
        # it was measured with.
        with autocast(device, enabled=not on_cpu):
            prediction = transformer(hidden_states=x_t, timestep=sigma.flatten() * 1000,
                                     encoder_hidden_states=encode_text(text_encoder, tokenizer, captions, device),
                                     return_dict=False)[0].float()
        # Flow matching: the velocity from data towards noise, that is the one whose step lands on x0 from x_t
        # ((x_t - x0) / sigma, which is noise - x0 unless the input was a shape swap).
        velocity = noise - x0 if source is x0 else (x_t - x0) / sigma
        error = (prediction - velocity) ** 2
        if object_masks is None and corner_masks is None:
            loss = error.mean()
        else:
            weights = torch.ones_like(error[:, :1])
            if object_masks is not None:
                weights = weights + (object_weight - 1) * object_masks[index.to(device)].float()
            if corner_masks is not None:
                weights = weights + corner_weight * corner_masks[index.to(device)].float()
            loss = (error * weights).mean() / weights.mean()  # the same scale as the plain mean
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        decay = 0.9 if step < 200 else 0.99 if step < 1000 else 0.998
        ema_update(ema_transformer, transformer, decay)
        ema_update(ema_text, text_encoder, decay)
        step += 1
        spent = time.time() - resumed_at
        if on_cpu or step % 10 == 0:  # .item() waits for the GPU: not every step there
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0:
            log(f"denoiser step {step} loss {running:.4f} lr {optimizer.param_groups[0]['lr']:.2e}")
        if time.time() - last_checkpoint > CHECKPOINT_SECONDS:
            checkpoint()
            last_checkpoint = time.time()
        if probe_minutes and time.time() - last_probe > probe_minutes * 60:
            scores = sample_scores(assemble_pipeline(vae, ema_text, ema_transformer, stats).to(device), 16)
            log(f"denoiser step {step} probe (16 prompts) {_format(scores)}")
            stage.record({"step": step, "minutes": round(spent / 60, 2), "loss": running, "probe": scores})
            last_probe = time.time()
    checkpoint()
    log(f"denoiser done: {step} steps in {spent / 60:.1f} minutes")


# --- export --------------------------------------------------------------------------------
def export(work: Path, out: Path, dtype: str) -> None:
    """The EMA weights as a WanPipeline; the decoder from the sharpening stage when it ran."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    state = Stage(work, "denoiser").load()
    transformer = WanTransformer3DModel.from_config(state["transformer_config"])
    transformer.load_state_dict(state["ema_transformer"])
    text_encoder = UMT5EncoderModel(UMT5Config.from_dict(state["text_config"]))
    text_encoder.load_state_dict(state["ema_text_encoder"])
    vae_folder = work / "decoder" / "best" if (work / "decoder" / "best").exists() else work / "vae" / "best"
    vae = AutoencoderKLWan.from_pretrained(vae_folder)
    stats = state.get("latent_stats") or torch.load(work / "latents.pt")  # older states lack the statistics
    pipe = assemble_pipeline(vae, text_encoder, transformer, {"mean": stats["mean"], "std": stats["std"]})
    # The VAE stays float32: its statistics and small decoder are cheap, and it decides the pixels.
    if dtype == "float16":
        pipe.transformer.to(torch.float16)
        pipe.text_encoder.to(torch.float16)
    staging = out.with_name(out.name + ".partial")
    pipe.save_pretrained(staging, safe_serialization=True)
    if out.exists():
        import shutil
        shutil.rmtree(out)
    os.replace(staging, out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"exported step {state['step']} ({vae_folder.parent.name} decoder) to {out}: {size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["vae", "latents", "swapped", "samples", "decoder", "denoiser", "export"])
    parser.add_argument("--work", type=Path, default=Path("runs/shapes"), help="checkpoints and the latent pool")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "weights" / "shapes")
    parser.add_argument("--minutes", type=float, default=40, help="the stage's whole time budget, across resumes")
    parser.add_argument("--z-dim", type=int, default=VAE_CONFIG["z_dim"], help="latent channels (new vae only)")
    parser.add_argument("--decoder-base-dim", type=int,
                        help="a wider decoder than encoder: a new vae's, or the decoder stage's new decoder "
                             f"(default {DECODER_BASE_DIM}; 0 sharpens the vae's own decoder instead)")
    parser.add_argument("--patch", type=int, default=DENOISER_PATCH, help="denoiser patch size (new denoiser only)")
    parser.add_argument("--width", type=int, default=DENOISER_WIDTH, help="denoiser width, 32 per head (new denoiser only)")
    parser.add_argument("--layers", type=int, default=DENOISER_LAYERS, help="denoiser blocks (new denoiser only)")
    parser.add_argument("--object-weight", type=float, default=DENOISER_OBJECT_WEIGHT,
                        help="denoiser loss weight on the object's latent cells (1: a plain mean)")
    parser.add_argument("--corner-weight", type=float,
                        help="extra loss weight at the object's bounding-box corners: the denoiser's latent cells "
                             "holding them, or (decoder stage) the pixels within 3 of them")
    parser.add_argument("--latent-noise", type=float, default=DECODER_LATENT_NOISE,
                        help="decoder stage: decode latents with noise of up to this many channel standard deviations")
    parser.add_argument("--pool", type=int, default=LATENT_POOL,
                        help="clips in the latent pool (samples: pairs to make; swapped: pool clips to redraw)")
    parser.add_argument("--shape-swap", type=float, default=DENOISER_SHAPE_SWAP,
                        help="denoiser: share of clips noised from their other-shape version (needs the swapped stage)")
    parser.add_argument("--model", type=Path, default=Path(__file__).parent / "weights" / "shapes",
                        help="samples stage: the pipeline whose denoiser makes the latents")
    parser.add_argument("--sampled", type=int, default=0,
                        help="decoder stage: whole clips a step from the samples stage's pairs (0: none)")
    parser.add_argument("--probe-minutes", type=float, default=10, help="score 16 generated videos this often (0: never)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                        help="export storage for the transformer and text encoder (float16 halves their size)")
    parser.add_argument("--device", default="cpu", help="where the stage runs (cpu, cuda)")
    parser.add_argument("--batch", type=int, help=f"clips a step (denoiser {DENOISER_BATCH}, autoencoder {VAE_BATCH}; "
                                                  "a GPU takes far more)")
    parser.add_argument("--crop", type=int, default=VAE_CROP, help="autoencoder stages: the square crop trained on")
    parser.add_argument("--lr", type=float, default=DENOISER_LR, help="denoiser peak learning rate")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering clips (latents, vae, decoder)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; on a shared 2-core machine one was 3x faster than two")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("vae", "decoder"):
        train_autoencoder(args.work, args.minutes, decoder_only=args.stage == "decoder", z_dim=args.z_dim,
                          decoder_base_dim=(args.decoder_base_dim if args.stage == "vae" or args.decoder_base_dim is not None
                                            else DECODER_BASE_DIM),
                          corner_weight=DECODER_CORNER_WEIGHT if args.corner_weight is None else args.corner_weight,
                          latent_noise=args.latent_noise if args.stage == "decoder" else 0.0, sampled=args.sampled,
                          device=args.device, batch=args.batch or VAE_BATCH, crop=args.crop, workers=args.workers)
    elif args.stage == "swapped":
        encode_swapped(args.work, args.pool)
    elif args.stage == "samples":
        sample_pairs(args.work, args.model, args.pool)
    elif args.stage == "latents":
        encode_latents(args.work, args.pool, device=args.device, workers=args.workers)
    elif args.stage == "denoiser":
        train_denoiser(args.work, args.minutes, patch=args.patch, width=args.width, layers=args.layers,
                       probe_minutes=args.probe_minutes, object_weight=args.object_weight,
                       corner_weight=DENOISER_CORNER_WEIGHT if args.corner_weight is None else args.corner_weight,
                       device=args.device, batch=args.batch or DENOISER_BATCH, shape_swap=args.shape_swap, lr=args.lr)
    else:
        export(args.work, args.out, args.dtype)


if __name__ == "__main__":
    main()
