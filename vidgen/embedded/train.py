"""Train vidgen's built-in Shapes model from scratch and export it as a diffusers WanPipeline.

    python -m vidgen.embedded.train all --out vidgen/embedded/weights/shapes   # or: make train-embedded
    python -m vidgen.embedded.train vae --minutes 30                           # one phase at a time

Phases, each resumable from the work folder (runs/shapes by default):
  vae       train the video autoencoder (AutoencoderKLWan) on rendered clips
  latents   encode a fixed pool of clips once (posterior means) and measure per-channel statistics
  denoiser  train the text encoder (UMT5) and the denoiser (WanTransformer3DModel) jointly with
            flow matching on the cached latents
  export    write the three parts, the tokenizer and the scheduler as a WanPipeline (safetensors)

Runs on a CPU (hours) or a GPU (minutes); see README "The built-in model" for measured times.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidgen.embedded import shapes

# --- settings ------------------------------------------------------------------------------
FRAMES = shapes.NUM_FRAMES        # 17 frames of 64x64: 5 latent frames of 16x16
SIZE = shapes.FRAME_SIZE
MAX_TEXT_TOKENS = 16              # captions are at most 13 words; the pipeline pads to this
VAE_CONFIG = dict(
    base_dim=12, z_dim=8, dim_mult=[1, 2, 4], num_res_blocks=1, attn_scales=[],
    temperal_downsample=[True, True],  # 4x in time, as the large Wan models
    scale_factor_temporal=4, scale_factor_spatial=4,
)
VAE_BATCH = 8
# Whole 17-frame clips: the VAE encodes time in causal chunks (1, 4, 4, ...) with a cache, and one trained
# on 9 frames decoded chunks 3-5 of a 17-frame clip badly (L1 0.09 on frames 0-8, 0.22-0.47 after).
VAE_CLIP_FRAMES = FRAMES
VAE_CROP = 32                     # it is convolutional, so 32x32 crops teach it 64x64 at a quarter of the cost
VAE_LR = 6e-4                     # with warm-up, clipping, EMA and best-checkpoint keeping against spikes
VAE_KL_WEIGHT = 1e-6
# The object covers a few percent of the frame: an unweighted loss is satisfied by a clean background and
# the first run's VAE dropped the objects altogether. Object pixels (and their anti-aliased edge) weigh more.
OBJECT_WEIGHT = 10.0
TEXT_CONFIG = dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                   dropout_rate=0.0, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=8, out_channels=8,
    text_dim=128, freq_dim=64, ffn_dim=512, num_layers=6, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
)
LATENT_POOL = 4000                # clips encoded once for the denoiser
DENOISER_BATCH = 32
DENOISER_LR = 4e-4
EMPTY_CAPTION_SHARE = 0.1         # trains the unconditional branch that classifier-free guidance needs
FLOW_SHIFT = 3.0                  # the scheduler's shift; training times are shifted the same way
EMA_DECAY = 0.999
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def to_pixels(clips: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def random_clips(rng: random.Random, count: int, frames: int, crop: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips in [-1, 1] and a per-pixel loss weight that is OBJECT_WEIGHT on the object, 1 on the background."""
    clips, masks = [], []
    for _ in range(count):
        spec = shapes.sample_spec(rng)
        clip = shapes.render_clip(spec)
        start, top, left = rng.randrange(FRAMES - frames + 1), rng.randrange(SIZE - crop + 1), rng.randrange(SIZE - crop + 1)
        clip = clip[start:start + frames, top:top + crop, left:left + crop]
        background = np.array(shapes.BACKGROUND_COLORS[spec.background], dtype=np.int16)
        masks.append(np.abs(clip.astype(np.int16) - background).sum(-1) > 0)
        clips.append(clip)
    weights = 1 + (OBJECT_WEIGHT - 1) * torch.from_numpy(np.stack(masks)).float().unsqueeze(1)
    return to_pixels(np.stack(clips)), weights


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


def new_vae(**overrides):
    from diffusers import AutoencoderKLWan
    config = dict(VAE_CONFIG, latents_mean=[0.0] * VAE_CONFIG["z_dim"], latents_std=[1.0] * VAE_CONFIG["z_dim"])
    config.update(overrides)
    return AutoencoderKLWan(**config)


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def warmup_cosine(step: int, progress: float, warmup: int = 100) -> float:
    """Learning-rate factor: linear warm-up over steps, then cosine over the share of the time budget spent
    (runs are budgeted in minutes, so the schedule must not assume a step count)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- phase 1: the autoencoder --------------------------------------------------------------
def reconstruction_loss(reconstruction: torch.Tensor, clips: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # L1 alone picks the majority colour where unsure (the background); MSE pulls towards the object's colour.
    error = reconstruction - clips
    return ((error.abs() + error.pow(2)) * weights).sum() / (weights.sum() * clips.shape[1])


def train_vae(work: Path, minutes: float, device: str, resume: bool, decoder_only: bool = False) -> None:
    """Train the whole autoencoder, or (decoder_only) only its decoder under the frozen encoder whose
    latents the denoiser is learning, so both can train at the same time."""
    from diffusers import AutoencoderKLWan
    source = work / ("vae-decoder" if decoder_only and (work / "vae-decoder").exists() and resume else "vae")
    vae = (AutoencoderKLWan.from_pretrained(source) if (resume or decoder_only) and source.exists() else new_vae()).to(device)
    target = work / ("vae-decoder" if decoder_only else "vae")
    if decoder_only:
        encoder = copy.deepcopy(vae).eval().requires_grad_(False)
        frozen_encoder = lambda clips: encoder.encode(clips).latent_dist.mode()  # noqa: E731
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    ema = copy.deepcopy(vae)
    base_lr = VAE_LR / 2 if decoder_only else VAE_LR  # fine-tuning a decoder that already works
    optimizer = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=base_lr, weight_decay=0.0)
    rng = random.Random(4 if decoder_only else 1)
    validation, validation_weights = (t.to(device) for t in random_clips(random.Random(12345), 8, FRAMES))
    best = float("inf")
    started, step = time.time(), 0
    while time.time() - started < minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = base_lr * warmup_cosine(step, (time.time() - started) / (minutes * 60))
        clips, weights = random_clips(rng, VAE_BATCH, VAE_CLIP_FRAMES, VAE_CROP)
        clips, weights = clips.to(device), weights.to(device)
        if decoder_only:
            with torch.no_grad():
                latents = frozen_encoder(clips)
            reconstruction = vae.decode(latents).sample
            kl = torch.zeros((), device=device)
        else:
            posterior = vae.encode(clips).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample
            kl = posterior.kl().mean()
        loss = reconstruction_loss(reconstruction, clips, weights) + VAE_KL_WEIGHT * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, vae, 0.99)
        step += 1
        if step % 50 == 0:
            with torch.no_grad():
                val = reconstruction_loss(ema.decode(ema.encode(validation).latent_dist.mode()).sample, validation,
                                          validation_weights).item()
            log(f"vae step {step} loss {loss.item():.4f} val(ema, 17 frames) {val:.4f}")
            if val < best:  # keep the best checkpoint: a late spike must not be what ships
                best = val
                ema.save_pretrained(target, safe_serialization=True)
    log(f"vae done: {step} steps, best validation L1 {best:.4f}")


# --- phase 2: cached latents ---------------------------------------------------------------
@torch.no_grad()
def encode_latents(work: Path, device: str, count: int = LATENT_POOL) -> None:
    from diffusers import AutoencoderKLWan
    vae = AutoencoderKLWan.from_pretrained(work / "vae").to(device).eval()
    rng = random.Random(2)
    specs, latents = [], []
    for start in range(0, count, 32):
        batch_specs = [shapes.sample_spec(rng) for _ in range(min(32, count - start))]
        clips = to_pixels(np.stack([shapes.render_clip(s) for s in batch_specs])).to(device)
        latents.append(vae.encode(clips).latent_dist.mode().cpu())
        specs += batch_specs
        if start % 640 == 0:
            log(f"encoded {start + len(batch_specs)}/{count}")
    latents = torch.cat(latents)
    mean = latents.mean(dim=(0, 2, 3, 4))
    std = latents.std(dim=(0, 2, 3, 4))
    torch.save({"latents": latents, "specs": [s.__dict__ for s in specs], "mean": mean, "std": std},
               work / "latents.pt")
    log(f"latents {tuple(latents.shape)} mean {mean.tolist()} std {std.tolist()}")


# --- phase 3: text encoder + denoiser ------------------------------------------------------
def shifted_sigmas(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Logit-normal times, shifted like the inference schedule so training spends its effort where sampling does."""
    s = torch.sigmoid(torch.randn(batch, generator=generator))
    return FLOW_SHIFT * s / (1 + (FLOW_SHIFT - 1) * s)


def encode_text(text_encoder, tokenizer, captions: list[str], device: str) -> torch.Tensor:
    # Same as WanPipeline._get_t5_prompt_embeds: padded positions are zeroed after the encoder.
    tokens = tokenizer(captions, padding="max_length", max_length=MAX_TEXT_TOKENS, truncation=True,
                       return_attention_mask=True, return_tensors="pt")
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    hidden = text_encoder(ids, mask).last_hidden_state
    return hidden * mask[..., None]


def train_denoiser(work: Path, minutes: float, device: str, resume: bool) -> None:
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    data = torch.load(work / "latents.pt")
    latents = ((data["latents"] - data["mean"].view(1, -1, 1, 1, 1)) / data["std"].view(1, -1, 1, 1, 1)).to(device)
    specs = [shapes.ClipSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}) for s in data["specs"]]
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    if resume and (work / "denoiser" / "transformer").exists():
        transformer = WanTransformer3DModel.from_pretrained(work / "denoiser" / "transformer")
        text_encoder = UMT5EncoderModel.from_pretrained(work / "denoiser" / "text_encoder")
    else:
        transformer = WanTransformer3DModel(**TRANSFORMER_CONFIG)
        text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1,
                                                   decoder_start_token_id=0, **TEXT_CONFIG))
    transformer.to(device).train()
    text_encoder.to(device).train()
    ema_transformer, ema_text = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    parameters = list(transformer.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=DENOISER_LR, weight_decay=0.01)
    rng, generator = random.Random(3), torch.Generator().manual_seed(3)
    started, step, last_save, running = time.time(), 0, time.time(), None
    while time.time() - started < minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = DENOISER_LR * warmup_cosine(step, (time.time() - started) / (minutes * 60), warmup=200)
        index = torch.randint(len(specs), (DENOISER_BATCH,), generator=generator)
        x0 = latents[index]
        captions = ["" if rng.random() < EMPTY_CAPTION_SHARE else shapes.caption(specs[i], rng) for i in index.tolist()]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        sigma = shifted_sigmas(len(index), generator).to(device)
        x_t = (1 - sigma.view(-1, 1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1, 1) * noise
        prediction = transformer(hidden_states=x_t, timestep=sigma * 1000,
                                 encoder_hidden_states=encode_text(text_encoder, tokenizer, captions, device),
                                 return_dict=False)[0]
        loss = F.mse_loss(prediction, noise - x0)  # flow matching: the velocity from data to noise
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        ema_update(ema_transformer, transformer, EMA_DECAY if step > 500 else 0.99)
        ema_update(ema_text, text_encoder, EMA_DECAY if step > 500 else 0.99)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0:
            log(f"denoiser step {step} loss {running:.4f} lr {optimizer.param_groups[0]['lr']:.2e}")
        if time.time() - last_save > 300:
            save_denoiser(work, ema_transformer, ema_text)
            last_save = time.time()
    save_denoiser(work, ema_transformer, ema_text)
    log(f"denoiser done: {step} steps")


def save_denoiser(work: Path, transformer, text_encoder) -> None:
    transformer.save_pretrained(work / "denoiser" / "transformer", safe_serialization=True)
    text_encoder.save_pretrained(work / "denoiser" / "text_encoder", safe_serialization=True)
    log("saved denoiser checkpoint")


# --- phase 4: export -----------------------------------------------------------------------
def export(work: Path, out: Path) -> None:
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    stats = torch.load(work / "latents.pt")
    # The decoder may have trained on after the encoder froze (phase "decoder"); the encoder is the same.
    trained_vae = AutoencoderKLWan.from_pretrained(work / ("vae-decoder" if (work / "vae-decoder").exists() else "vae"))
    # The pipeline un-normalises latents with the VAE's own statistics, so they go into its config.
    vae = new_vae(latents_mean=stats["mean"].tolist(), latents_std=stats["std"].tolist())
    vae.load_state_dict(trained_vae.state_dict())
    pipe = WanPipeline(
        tokenizer=build_tokenizer(),
        text_encoder=UMT5EncoderModel.from_pretrained(work / "denoiser" / "text_encoder"),
        transformer=WanTransformer3DModel.from_pretrained(work / "denoiser" / "transformer"),
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT),
    )
    pipe.save_pretrained(out, safe_serialization=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"exported to {out} ({size / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["vae", "latents", "denoiser", "decoder", "export", "all"])
    parser.add_argument("--work", type=Path, default=Path("runs/shapes"), help="checkpoints and cached latents")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "weights" / "shapes")
    parser.add_argument("--vae-minutes", type=float, default=30)
    parser.add_argument("--denoiser-minutes", type=float, default=60)
    parser.add_argument("--resume", action="store_true", help="continue each phase from its last checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default). On a busy 2-core machine 1 was 3x faster than 2")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "settings.json").write_text(json.dumps(vars(args), default=str, indent=1))
    if args.phase in ("vae", "all"):
        train_vae(args.work, args.vae_minutes, args.device, args.resume)
    if args.phase in ("latents", "all"):
        encode_latents(args.work, args.device)
    if args.phase in ("denoiser", "all"):
        train_denoiser(args.work, args.denoiser_minutes, args.device, args.resume)
    if args.phase == "decoder":
        train_vae(args.work, args.vae_minutes, args.device, args.resume, decoder_only=True)
    if args.phase in ("export", "all"):
        export(args.work, args.out)


if __name__ == "__main__":
    main()
