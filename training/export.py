"""Stage `export`: the trained parts as the shipped WanPipeline (safetensors), written whole or not at all.

    python -m training.train export --dtype float16   # -> vidgen/embedded/weights/shapes

It takes the denoiser stage's EMA weights, the decoder stage's best autoencoder (the vae stage's when the
decoder stage never ran), and the latent statistics the denoiser trained with.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from training.model import assemble_pipeline
from training.stage import Stage, log


def export(work: Path, out: Path, dtype: str) -> None:
    """The EMA weights as a WanPipeline; the decoder from the sharpening stage when it ran."""
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
        shutil.rmtree(out)
    os.replace(staging, out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"exported step {state['step']} ({vae_folder.parent.name} decoder) to {out}: {size / 1e6:.1f} MB")
