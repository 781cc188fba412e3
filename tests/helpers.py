"""Tiny random diffusers pipelines for tests, built offline.

The component configs follow diffusers' own tests (tests/pipelines/wan/test_wan.py),
so the pipeline runs the same code paths as the real Wan models in a fraction of a
second on a CPU. The hub's test tokenizer cannot be downloaded here, so a small
word-level tokenizer is built with the `tokenizers` library instead.

Other test modules import from here:

    from tests.helpers import build_tiny_wan_pipeline, build_offline_tokenizer
"""

from __future__ import annotations

from pathlib import Path

# A vocabulary big enough for the prompts tests use; unknown words map to <unk>.
TEST_WORDS = (
    "a an the red green blue yellow white black circle square triangle ball cat dog "
    "moves spins bounces left right up down on in of with and at slowly quickly "
    "background sky sea forest city night day small big"
).split()


def build_offline_tokenizer(model_max_length: int = 64):
    """A word-level tokenizer wrapped as a transformers fast tokenizer (no download)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special_tokens = ["<pad>", "</s>", "<unk>"]
    vocab = {token: index for index, token in enumerate(special_tokens + TEST_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # T5 style: append </s> to every sequence.
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def build_tiny_wan_pipeline(seed: int = 0):
    """A randomly initialised WanPipeline with the tiny configs of diffusers' tests."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = build_offline_tokenizer()

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )


def save_tiny_wan_pipeline(folder: Path) -> Path:
    """Build the tiny WanPipeline and save it in diffusers layout (safetensors)."""
    pipeline = build_tiny_wan_pipeline()
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder
