"""The built-in Shapes model's parts and how they become the shipped WanPipeline.

    vae = new_vae(decoder_base_dim=DECODER_BASE_DIM)                 # AutoencoderKLWan
    transformer = WanTransformer3DModel(**transformer_config(8, DENOISER_PATCH, DENOISER_WIDTH, DENOISER_LAYERS))
    pipe = assemble_pipeline(vae, text_encoder, transformer, {"mean": ..., "std": ...})

Every part is a stock diffusers or transformers class: the layouts below are the whole model definition.
The measured reason for each choice is beside it; the whole story: docs/embedded-model.md.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from training import shapes

MAX_TEXT_TOKENS = 16  # captions are at most 13 words plus </s>; the pipeline pads to this
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]

# Autoencoder: the Wan 2.2-style residual layout learned about twice as fast per minute on this CPU as
# the plain one (shared TRAINING-NOTES). z_dim is a choice with a cost on each side: more channels
# reconstruct more finely, fewer leave the denoiser fewer numbers to get right (see DENOISER below).
VAE_CONFIG = dict(
    base_dim=16,
    z_dim=8,
    dim_mult=[1, 2, 2],
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[True, True],
    is_residual=True,
    scale_factor_spatial=4,
    scale_factor_temporal=4,
)
# The decoder stage starts a decoder twice as wide as the encoder from scratch, under the frozen encoder.
# Why: the autoencoder's own 16-wide decoder, sharpened for 1,800 steps, rounded moving squares' corners
# (probe ceiling 77-90%); the 32-wide one drew 21 of the 24 check clips' shapes right after 1,000 GPU steps,
# where the sharpened 16-wide one drew 15 (docs/embedded-model.md). It costs 0.7 s more a video on this CPU.
DECODER_BASE_DIM = 32

TEXT_CONFIG = dict(
    d_model=128,
    d_kv=32,
    d_ff=256,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
)
# The denoiser's layout: patch 2 on the 16x16 latent (320 tokens; a token covers 8x8 pixels, where the
# patch-4 layout's 16x16 tokens left a square's corner and a circle's edge inside one token's linear output
# and drew squares round: shape 73% against 97%), 6 blocks of width 256. 20 steps took 3.3 s on this CPU;
# the preset takes 10.
DENOISER_PATCH, DENOISER_WIDTH, DENOISER_LAYERS = 2, 256, 6
FLOW_SHIFT = 3.0  # the scheduler's shift; training times are drawn shifted the same way


def transformer_config(z_dim: int, patch: int, width: int, layers: int) -> dict:
    """The denoiser's layout. Each token carries patch*patch*z_dim numbers in and out; the residual width
    must be well above that, or the part of the noise the model cannot represent is never removed (the
    first 4x4-patch, 16-channel model had 256 numbers a token through a width of 192, and its samples
    kept coloured specks at every setting of the sampler)."""
    heads = width // 32
    return dict(
        patch_size=(1, patch, patch),
        num_attention_heads=heads,
        attention_head_dim=32,
        in_channels=z_dim,
        out_channels=z_dim,
        text_dim=TEXT_CONFIG["d_model"],
        freq_dim=64,
        ffn_dim=4 * width,
        num_layers=layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=64,
    )


def new_vae(**overrides) -> AutoencoderKLWan:
    config = dict(VAE_CONFIG)
    config.update(overrides)
    config.setdefault("latents_mean", [0.0] * config["z_dim"])
    config.setdefault("latents_std", [1.0] * config["z_dim"])
    return AutoencoderKLWan(**config)


def new_text_encoder(tokenizer: PreTrainedTokenizerFast) -> UMT5EncoderModel:
    return UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **TEXT_CONFIG))


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + shapes.vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=MAX_TEXT_TOKENS
    )


def encode_text(text_encoder, tokenizer, captions: list[str], device: str = "cpu") -> torch.Tensor:
    # As WanPipeline._get_t5_prompt_embeds: padded positions are zeroed after the encoder.
    tokens = tokenizer(
        captions, padding="max_length", max_length=MAX_TEXT_TOKENS, truncation=True, return_attention_mask=True, return_tensors="pt"
    ).to(device)
    hidden = text_encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
    return hidden * tokens.attention_mask[..., None]


def with_latent_stats(vae, mean: list[float], std: list[float]) -> AutoencoderKLWan:
    """A copy of an AutoencoderKLWan whose config carries these latent statistics (any decoder width)."""
    copied = AutoencoderKLWan.from_config({**vae.config, "latents_mean": list(mean), "latents_std": list(std)})
    copied.load_state_dict(vae.state_dict())
    return copied.eval()


def assemble_pipeline(vae, text_encoder, transformer, latent_stats: dict) -> WanPipeline:
    """The shipped object: a plain WanPipeline whose VAE config carries the latent pool's statistics,
    which the pipeline uses to un-normalise the denoiser's output before decoding."""
    shipped_vae = with_latent_stats(vae, latent_stats["mean"].tolist(), latent_stats["std"].tolist())
    pipe = WanPipeline(
        tokenizer=build_tokenizer(),
        text_encoder=text_encoder,
        transformer=transformer,
        vae=shipped_vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT),
    )
    pipe.set_progress_bar_config(disable=True)  # the training log keeps one line a check
    return pipe
