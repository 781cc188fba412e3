"""Stage `denoiser`: the text encoder (UMT5) and the denoiser (WanTransformer3DModel) trained together by flow
matching on the normalised latent pool of stage `latents`.

    python -m training.train denoiser --minutes 150                        # this CPU, batch 32
    python -m training.train denoiser --device cuda --batch 256 --lr 1e-3  # how the shipped one was trained

Resumes from work/denoiser/state.pt (both models, their EMAs, optimizer, random state, latent statistics);
every --probe-minutes it scores 16 videos generated from the EMA weights into work/denoiser/scores.jsonl.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from training import probe, shapes
from training.data import FRAMES, SIZE, latent_object_masks, spec_from_saved
from training.model import (
    FLOW_SHIFT,
    MAX_TEXT_TOKENS,
    assemble_pipeline,
    build_tokenizer,
    encode_text,
    new_text_encoder,
    transformer_config,
)
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

DENOISER_BATCH = 32  # on this CPU; the shipped run took 256 a step on a GPU (--batch, --lr 1e-3)
DENOISER_LR = 8e-4
EMPTY_CAPTION_SHARE = 0.1  # trains the unconditional branch that classifier-free guidance needs
DENOISER_OBJECT_WEIGHT = 1.0  # loss weight on latent cells the object touches (1 on the background)
DENOISER_CORNER_WEIGHT = 16.0  # extra weight on the cells holding the object's bounding-box corners
# Shape swaps: the share of training clips whose noisy input is made from the same clip drawn with another
# shape, while caption and target stay the true ones (noise levels SWAP_SIGMAS only). Why: in training
# the noisy input always shows the right shape at middle noise levels, so the denoiser learns to keep the
# shape it sees; when sampling, an early round blob then stays round under a "square" caption.
DENOISER_SHAPE_SWAP = 0.0
SWAP_SIGMAS = (0.3, 0.95)


def shifted_sigmas(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Noise levels drawn as the sampler visits them: uniform in the scheduler's unshifted time, then
    shifted by FLOW_SHIFT (8.5% of samples above sigma 0.97). The logit-normal draw used before gave
    0.9% of its samples to that range, where the sampler takes its first four steps and decides where
    the object goes; its models predicted an almost empty frame from pure noise, and their samples
    held several blobs at once."""
    u = torch.rand(batch, generator=generator)
    return FLOW_SHIFT * u / (1 + (FLOW_SHIFT - 1) * u)


@torch.no_grad()
def sample_scores(pipe, count: int, seed: int = 0, held_out: bool = False) -> dict:
    """The probe on generated videos, with the preset's sampler settings (10 steps, guidance 4)."""
    rng = random.Random(seed)
    results = []
    for _ in range(count):
        spec = shapes.sample_spec(rng, held_out=held_out)
        output = pipe(
            prompt=shapes.caption(spec, rng),
            negative_prompt="",
            height=SIZE,
            width=SIZE,
            num_frames=FRAMES,
            num_inference_steps=10,
            guidance_scale=4.0,
            max_sequence_length=MAX_TEXT_TOKENS,
            generator=torch.Generator().manual_seed(rng.randrange(2**31)),
            output_type="np",
        )
        frames = (np.clip(output.frames[0], 0, 1) * 255).round().astype(np.uint8)
        results.append((spec, probe.judge(frames)))
    return probe.score(results)


def train_denoiser(
    work: Path,
    minutes: float,
    *,
    patch: int,
    width: int,
    layers: int,
    probe_minutes: float,
    object_weight: float = DENOISER_OBJECT_WEIGHT,
    corner_weight: float = DENOISER_CORNER_WEIGHT,
    device: str = "cpu",
    batch: int = DENOISER_BATCH,
    shape_swap: float = DENOISER_SHAPE_SWAP,
    lr: float = DENOISER_LR,
) -> None:
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
        text_encoder = new_text_encoder(tokenizer)
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
        stage.save(
            {
                "transformer_config": dict(transformer.config),
                "text_config": text_encoder.config.to_dict(),
                "transformer": transformer.state_dict(),
                "text_encoder": text_encoder.state_dict(),
                "ema_transformer": ema_transformer.state_dict(),
                "ema_text_encoder": ema_text.state_dict(),
                "optimizer": optimizer.state_dict(),
                "random": random_state(rng, generator),
                "step": step,
                "seconds": spent,
                "latent_stats": stats,
                "batch": batch,
                **({} if on_cpu else {"noise_random": noise_generator.get_state()}),
            }
        )

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
            swap = (
                (draw < shape_swap)
                & (index < len(swapped))
                & (flat >= SWAP_SIGMAS[0])
                & (flat <= SWAP_SIGMAS[1])
                & torch.tensor([bool(c) for c in captions])
            )
            if swap.any():
                source = x0.clone()
                rows = swap.nonzero().flatten()
                source[rows.to(device)] = swapped[index[rows].to(device), which[rows].to(device)]
        x_t = (1 - sigma) * source + sigma * noise
        # bfloat16 on a GPU (tensor cores; the shipped denoiser was trained so); the CPU path keeps the float32
        # it was measured with.
        with autocast(device, enabled=not on_cpu):
            prediction = transformer(
                hidden_states=x_t,
                timestep=sigma.flatten() * 1000,
                encoder_hidden_states=encode_text(text_encoder, tokenizer, captions, device),
                return_dict=False,
            )[0].float()
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
            log(f"denoiser step {step} probe (16 prompts) {format_scores(scores)}")
            stage.record({"step": step, "minutes": round(spent / 60, 2), "loss": running, "probe": scores})
            last_probe = time.time()
    checkpoint()
    log(f"denoiser done: {step} steps in {spent / 60:.1f} minutes")
