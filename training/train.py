"""Train vidgen's built-in Shapes model from scratch and export it as a diffusers WanPipeline.

    make train-embedded                                   # every stage, in order, on this machine
    python -m training.train vae --minutes 40      # one stage; run it again to go on

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
probe's score (training.probe): on reconstructions for the autoencoder, on generated videos
for the denoiser. Measured times and scores: docs/embedded-model.md.

Files, as nanoGPT and diffusers' training examples lay them out:
  train.py              this command: parse the stage and its options, run the stage
  model.py              the parts' layouts (stock diffusers and transformers classes) and the pipeline assembly
  data.py               rendered clips as tensors, with the loss weights that mark the object
  stage.py              what every stage shares: state file, resume, EMA, learning-rate schedule, log
  train_autoencoder.py  stages vae and decoder        latents.py  stages latents, swapped and samples
  train_denoiser.py     stage denoiser                export.py   stage export
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.export import export
from training.latents import LATENT_POOL, encode_latents, encode_swapped, sample_pairs
from training.model import DECODER_BASE_DIM, DENOISER_LAYERS, DENOISER_PATCH, DENOISER_WIDTH, VAE_CONFIG
from training.train_autoencoder import DECODER_CORNER_WEIGHT, DECODER_LATENT_NOISE, VAE_BATCH, VAE_CROP, train_autoencoder
from training.train_denoiser import (
    DENOISER_BATCH,
    DENOISER_CORNER_WEIGHT,
    DENOISER_LR,
    DENOISER_OBJECT_WEIGHT,
    DENOISER_SHAPE_SWAP,
    train_denoiser,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["vae", "latents", "swapped", "samples", "decoder", "denoiser", "export"])
    parser.add_argument("--work", type=Path, default=Path("runs/shapes"), help="checkpoints and the latent pool")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "vidgen" / "embedded" / "weights" / "shapes")
    parser.add_argument("--minutes", type=float, default=40, help="the stage's whole time budget, across resumes")
    parser.add_argument("--z-dim", type=int, default=VAE_CONFIG["z_dim"], help="latent channels (new vae only)")
    parser.add_argument(
        "--decoder-base-dim",
        type=int,
        help="a wider decoder than encoder: a new vae's, or the decoder stage's new decoder "
        f"(default {DECODER_BASE_DIM}; 0 sharpens the vae's own decoder instead)",
    )
    parser.add_argument("--patch", type=int, default=DENOISER_PATCH, help="denoiser patch size (new denoiser only)")
    parser.add_argument("--width", type=int, default=DENOISER_WIDTH, help="denoiser width, 32 per head (new denoiser only)")
    parser.add_argument("--layers", type=int, default=DENOISER_LAYERS, help="denoiser blocks (new denoiser only)")
    parser.add_argument(
        "--object-weight",
        type=float,
        default=DENOISER_OBJECT_WEIGHT,
        help="denoiser loss weight on the object's latent cells (1: a plain mean)",
    )
    parser.add_argument(
        "--corner-weight",
        type=float,
        help="extra loss weight at the object's bounding-box corners: the denoiser's latent cells "
        "holding them, or (decoder stage) the pixels within 3 of them",
    )
    parser.add_argument(
        "--latent-noise",
        type=float,
        default=DECODER_LATENT_NOISE,
        help="decoder stage: decode latents with noise of up to this many channel standard deviations",
    )
    parser.add_argument(
        "--pool", type=int, default=LATENT_POOL, help="clips in the latent pool (samples: pairs to make; swapped: pool clips to redraw)"
    )
    parser.add_argument(
        "--shape-swap",
        type=float,
        default=DENOISER_SHAPE_SWAP,
        help="denoiser: share of clips noised from their other-shape version (needs the swapped stage)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "vidgen" / "embedded" / "weights" / "shapes",
        help="samples stage: the pipeline whose denoiser makes the latents",
    )
    parser.add_argument("--sampled", type=int, default=0, help="decoder stage: whole clips a step from the samples stage's pairs (0: none)")
    parser.add_argument("--probe-minutes", type=float, default=10, help="score 16 generated videos this often (0: never)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default="float32",
        help="export storage for the transformer and text encoder (float16 halves their size)",
    )
    parser.add_argument("--device", default="cpu", help="where the stage runs (cpu, cuda)")
    parser.add_argument(
        "--batch", type=int, help=f"clips a step (denoiser {DENOISER_BATCH}, autoencoder {VAE_BATCH}; a GPU takes far more)"
    )
    parser.add_argument("--crop", type=int, default=VAE_CROP, help="autoencoder stages: the square crop trained on")
    parser.add_argument("--lr", type=float, default=DENOISER_LR, help="denoiser peak learning rate")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering clips (latents, vae, decoder)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; on a shared 2-core machine one was 3x faster than two")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("vae", "decoder"):
        train_autoencoder(
            args.work,
            args.minutes,
            decoder_only=args.stage == "decoder",
            z_dim=args.z_dim,
            decoder_base_dim=(args.decoder_base_dim if args.stage == "vae" or args.decoder_base_dim is not None else DECODER_BASE_DIM),
            corner_weight=DECODER_CORNER_WEIGHT if args.corner_weight is None else args.corner_weight,
            latent_noise=args.latent_noise if args.stage == "decoder" else 0.0,
            sampled=args.sampled,
            device=args.device,
            batch=args.batch or VAE_BATCH,
            crop=args.crop,
            workers=args.workers,
        )
    elif args.stage == "swapped":
        encode_swapped(args.work, args.pool)
    elif args.stage == "samples":
        sample_pairs(args.work, args.model, args.pool)
    elif args.stage == "latents":
        encode_latents(args.work, args.pool, device=args.device, workers=args.workers)
    elif args.stage == "denoiser":
        train_denoiser(
            args.work,
            args.minutes,
            patch=args.patch,
            width=args.width,
            layers=args.layers,
            probe_minutes=args.probe_minutes,
            object_weight=args.object_weight,
            corner_weight=DENOISER_CORNER_WEIGHT if args.corner_weight is None else args.corner_weight,
            device=args.device,
            batch=args.batch or DENOISER_BATCH,
            shape_swap=args.shape_swap,
            lr=args.lr,
        )
    else:
        export(args.work, args.out, args.dtype)


if __name__ == "__main__":
    main()
