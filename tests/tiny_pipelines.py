"""Tiny, randomly initialised diffusers video pipelines, built offline.

``build_tiny_pipeline(class_name, path)`` creates a pipeline of exactly the
named diffusers class, with the same component classes as the real hub model
(text encoder, tokenizer, transformer/unet, VAE, scheduler, image encoder),
but with a few channels and one or two layers, and saves it in diffusers
layout with safetensors.  The weights are random, so the videos are noise:
the point is that the real loading path (model_index.json ->
``DiffusionPipeline.from_pretrained``) and the real ``__call__`` run end to
end on a CPU in a second or two.

Nothing is downloaded: every tokenizer is built here from a small fixed
vocabulary (transformers 5 tokenizers accept a vocabulary directly).

Some presets share a pipeline class but differ in structure (Wan 2.2 TI2V-5B
has a 48-channel VAE and ``expand_timesteps``; Wan 2.2 A14B has two expert
transformers and ``boundary_ratio``; CogVideoX-2b has no RoPE and uses DDIM;
CogVideoX 1.5 patches time).  Those are selected with ``variant=``; see
``VARIANTS`` and ``variant_for_preset``.
"""

from __future__ import annotations

import string
import tempfile
from functools import partial
from pathlib import Path

import torch

__all__ = [
    "build_tiny_pipeline",
    "make_tiny_pipeline",
    "PIPELINE_CLASSES",
    "REPOSITORY_LAYOUT",
    "VARIANTS",
    "repository_layout",
    "variant_for_preset",
]


# --------------------------------------------------------------------------------------
# tokenizers (offline)
# --------------------------------------------------------------------------------------

_WORDS = (
    "a an the of in on at and with to from is are cat dog fox bird fish man woman child car boat "
    "city street forest river sea sky sun moon rain snow red blue green yellow white black small "
    "big walking running flying swimming dancing slowly fast camera video shot light night day"
).split()
_CHARS = string.ascii_letters + string.digits + string.punctuation


def _t5_tokenizer():
    """SentencePiece-style unigram tokenizer (T5Tokenizer == T5TokenizerFast in transformers 5)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -1.0) for w in _WORDS]
    pieces += [("\u2581", -2.0)] + [(c, -5.0) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _llama_tokenizer():
    """Character-level Llama tokenizer with byte fallback (LlamaTokenizerFast in transformers 5)."""
    from transformers import LlamaTokenizer

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for ch in "\u2581" + _CHARS:
        vocab.setdefault(ch, len(vocab))
    for i in range(256):
        vocab[f"<0x{i:02X}>"] = len(vocab)
    return LlamaTokenizer(vocab=vocab, merges=[], pad_token="<pad>")


def _byte_level_alphabet():
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _clip_tokenizer():
    """Byte-level BPE CLIP tokenizer with no merges (every character is a token)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = _byte_level_alphabet()
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen2_tokenizer():
    """Byte-level Qwen2 tokenizer with a ChatML template (HunyuanVideo 1.5 calls apply_chat_template)."""
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(_byte_level_alphabet())}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[])
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = _QWEN_CHAT_TEMPLATE
    return tok


def _gemma_tokenizer():
    """Character-level Gemma tokenizer with byte fallback (LTX-2 pads on the left with it)."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for ch in "\u2581" + _CHARS:
        vocab.setdefault(ch, len(vocab))
    for i in range(256):
        vocab[f"<0x{i:02X}>"] = len(vocab)
    return GemmaTokenizer(vocab=vocab, merges=[])


# --------------------------------------------------------------------------------------
# text and image encoders
# --------------------------------------------------------------------------------------

_TEXT_DIM = 32  # d_model of every tiny T5/UMT5 text encoder


def _t5_config(vocab_size: int):
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size,
        d_model=_TEXT_DIM,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )


def _t5_encoder(tokenizer):
    from transformers import T5EncoderModel

    torch.manual_seed(0)
    return T5EncoderModel(_t5_config(len(tokenizer))).eval()


def _umt5_encoder(tokenizer):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = _t5_config(len(tokenizer)).to_dict()
    cfg.pop("model_type", None)
    cfg.pop("architectures", None)
    torch.manual_seed(0)
    return UMT5EncoderModel(UMT5Config(**cfg)).eval()


def _clip_vision(with_projection: bool, hidden: int = 16, image_size: int = 32, patch_size: int = 8):
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=hidden,
        projection_dim=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=image_size,
        patch_size=patch_size,
    )
    torch.manual_seed(0)
    cls = CLIPVisionModelWithProjection if with_projection else CLIPVisionModel
    return cls(cfg).eval()


def _clip_image_processor(size: int = 32):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


# --------------------------------------------------------------------------------------
# Wan family (Wan 2.1, Wan 2.2, SkyReels-V2)
# --------------------------------------------------------------------------------------


def _wan_vae(wan22_5b: bool = False):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    if wan22_5b:  # Wan 2.2 VAE: 48 latent channels, 16x spatial (patchified), residual blocks
        return AutoencoderKLWan(
            base_dim=3,
            z_dim=48,
            in_channels=12,
            out_channels=12,
            is_residual=True,
            patch_size=2,
            latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            temperal_downsample=[False, True, True],
        ).eval()
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]).eval()


def _wan_transformer(in_channels: int, out_channels: int, cls_name: str = "WanTransformer3DModel", **extra):
    import diffusers

    torch.manual_seed(0)
    cls = getattr(diffusers, cls_name)
    return cls(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=_TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,  # the first-block step cache (--fast) needs a block after the first
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        **extra,
    ).eval()


def _unipc_flow(shift: float):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)


def _wan(variant: str | None):
    from diffusers import WanPipeline

    tok = _t5_tokenizer()
    te = _umt5_encoder(tok)
    if variant == "wan2.2-ti2v-5b":
        return WanPipeline(
            tokenizer=tok,
            text_encoder=te,
            vae=_wan_vae(wan22_5b=True),
            scheduler=_unipc_flow(5.0),
            transformer=_wan_transformer(48, 48),
            transformer_2=None,
            boundary_ratio=None,
            expand_timesteps=True,
        )
    if variant == "wan2.2-t2v-a14b":
        high = _wan_transformer(16, 16)
        torch.manual_seed(1)
        low = _wan_transformer(16, 16)
        return WanPipeline(
            tokenizer=tok,
            text_encoder=te,
            vae=_wan_vae(),
            scheduler=_unipc_flow(12.0),
            transformer=high,
            transformer_2=low,
            boundary_ratio=0.875,
        )
    return WanPipeline(tokenizer=tok, text_encoder=te, vae=_wan_vae(), scheduler=_unipc_flow(3.0), transformer=_wan_transformer(16, 16))


def _wan_i2v(variant: str | None):
    from diffusers import WanImageToVideoPipeline

    if variant == "wan2.2-i2v-a14b":
        return _wan22_i2v_a14b()

    tok = _t5_tokenizer()
    image_encoder = _clip_vision(with_projection=False, hidden=16)
    # 36 = 16 noise latents + 4 mask channels + 16 image-condition latents; image_dim = CLIP hidden size.
    # Wan 2.1 FLF2V: the same, with a positional table over both images' CLIP tokens (the real one's
    # pos_embed_seq_len is 2 x 257; the tiny CLIP gives 16 patches + 1 class token per image).
    flf2v = {"pos_embed_seq_len": 2 * 17} if variant == "wan2.1-flf2v-14b-720p" else {}
    transformer = _wan_transformer(36, 16, image_dim=16, **flf2v)
    return WanImageToVideoPipeline(
        tokenizer=tok,
        text_encoder=_umt5_encoder(tok),
        vae=_wan_vae(),
        scheduler=_unipc_flow(3.0),
        image_processor=_clip_image_processor(32),
        image_encoder=image_encoder,
        transformer=transformer,
    )


def _wan_v2v(variant: str | None):
    """Wan video-to-video runs the text-to-video components (the real repository is a WanPipeline)."""
    from diffusers import WanVideoToVideoPipeline

    tok = _t5_tokenizer()
    return WanVideoToVideoPipeline(
        tokenizer=tok, text_encoder=_umt5_encoder(tok), vae=_wan_vae(), scheduler=_unipc_flow(3.0), transformer=_wan_transformer(16, 16)
    )


def _skyreels_v2_components() -> dict:
    """What every SkyReels-V2 class takes: Wan 2.1's components with its own transformer and shift 8."""
    tok = _t5_tokenizer()
    return dict(
        tokenizer=tok,
        text_encoder=_umt5_encoder(tok),
        vae=_wan_vae(),
        scheduler=_unipc_flow(8.0),
        transformer=_wan_transformer(16, 16, cls_name="SkyReelsV2Transformer3DModel"),
    )


def _skyreels_v2(variant: str | None):
    from diffusers import SkyReelsV2Pipeline

    return SkyReelsV2Pipeline(**_skyreels_v2_components())


def _wan_vace(variant: str | None):
    """Wan VACE: the Wan 2.1 components with a VACE transformer, whose control input is the
    VAE latents of the masked and unmasked video (2 x 16 channels) and the mask folded into
    8 x 8 = 64 channels (96, as the real one's)."""
    from diffusers import WanVACEPipeline

    tok = _t5_tokenizer()
    return WanVACEPipeline(
        tokenizer=tok,
        text_encoder=_umt5_encoder(tok),
        vae=_wan_vae(),
        scheduler=_unipc_flow(3.0),
        transformer=_wan_transformer(16, 16, cls_name="WanVACETransformer3DModel", vace_layers=[0, 1], vace_in_channels=96),
    )


def _skyreels_v2_df(variant: str | None, video: bool = False):
    """SkyReels-V2 diffusion forcing (text-to-video, or video extension with ``video``):
    the same components as SkyReelsV2Pipeline; one window of the real model is 97 frames,
    the tiny tests give base_num_frames themselves."""
    from diffusers import SkyReelsV2DiffusionForcingPipeline, SkyReelsV2DiffusionForcingVideoToVideoPipeline

    cls = SkyReelsV2DiffusionForcingVideoToVideoPipeline if video else SkyReelsV2DiffusionForcingPipeline
    return cls(**_skyreels_v2_components())


# --------------------------------------------------------------------------------------
# LTX-Video
# --------------------------------------------------------------------------------------


def _ltx_components():
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=_TEXT_DIM,
    ).eval()
    torch.manual_seed(0)
    # 0.9.1+ VAEs are timestep-conditioned (decode_timestep / decode_noise_scale are used)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
        timestep_conditioning=True,
    ).eval()
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    tok = _t5_tokenizer()
    return dict(scheduler=scheduler, vae=vae, text_encoder=_t5_encoder(tok), tokenizer=tok, transformer=transformer)


def _ltx(variant: str | None):
    from diffusers import LTXPipeline

    return LTXPipeline(**_ltx_components())


def _ltx_i2v(variant: str | None):
    from diffusers import LTXImageToVideoPipeline

    return LTXImageToVideoPipeline(**_ltx_components())


def _ltx_condition(variant: str | None):
    """LTXConditionPipeline (LTX-Video 0.9.5 and later): it computes its own schedule
    (linear-quadratic) and passes timesteps, so its scheduler shifts nothing dynamically.
    Variant `ltx-video-story`: the storyboard model's repository (LTX-Video 0.9.8, whose
    model_index.json names this class), with the VAE that compresses time 8x (_ltx_vae_8x)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline

    vae = {"vae": _ltx_vae_8x()} if variant == "ltx-video-story" else {}
    return LTXConditionPipeline(**dict(_ltx_components(), **vae, scheduler=FlowMatchEulerDiscreteScheduler(shift_terminal=0.1)))


def _ltx_long_multi_prompt(variant: str | None):
    """LTXI2VLongMultiPromptPipeline (ltx-video-story), with the VAE that compresses time 8x."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXI2VLongMultiPromptPipeline

    return LTXI2VLongMultiPromptPipeline(
        **dict(_ltx_components(), vae=_ltx_vae_8x(), scheduler=FlowMatchEulerDiscreteScheduler(shift_terminal=0.1))
    )


def _ltx_vae_8x():
    """An LTX VAE that compresses time 8x as the real one does: the multi-prompt pipeline counts its
    windows in latent frames (temporal_tile_size // 8), and with the 4x tiny VAE of the other LTX
    builders its fused windows come out longer than asked."""
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False,) * 5,
        layers_per_block=(1,) * 5,
        decoder_layers_per_block=(1,) * 5,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
        timestep_conditioning=True,
    ).eval()
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    return vae


def build_ltx_upsampler_repository(folder: Path) -> Path:
    """Lightricks/ltxv-spatial-upscaler-0.9.7 as diffusers loads it (LTXLatentUpsamplePipeline's
    folder, the upsampler in latent_upsampler/), tiny and for the tiny LTX VAE's 8 latent channels.
    Only the upsampler is saved: the VAE is the base model's (diffusers' docs pass vae=pipe.vae)."""
    import json

    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    torch.manual_seed(0)
    LTXLatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=1).eval().save_pretrained(
        folder / "latent_upsampler", safe_serialization=True
    )
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "LTXLatentUpsamplePipeline",
                "_diffusers_version": "0.34.0",
                "latent_upsampler": ["diffusers", "LTXLatentUpsamplerModel"],
                "vae": [None, None],
            }
        )
    )
    return folder


# --------------------------------------------------------------------------------------
# LTX-2 (video with its soundtrack)
# --------------------------------------------------------------------------------------

_GEMMA_DIM = 32  # LTX2TextConnectors' attention width (heads x head_dim) must equal it


def _gemma3_encoder(tokenizer):
    """A tiny Gemma 3 (text and vision towers), the class LTX-2 ships; only its text
    tower's hidden states are used."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    config = Gemma3Config(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=_GEMMA_DIM,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=256,
            sliding_window=64,
        ),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        mm_tokens_per_image=4,
    )
    torch.manual_seed(0)
    return Gemma3ForConditionalGeneration(config).eval()


def _ltx2_components(encoder_compresses_time: bool = False):
    """After diffusers' own LTX-2 tests (tests/pipelines/ltx2/testing_utils.py), except the
    vocoder: its upsampling (8 x 5 x 4 = 160) equals the audio VAE's mel hop, as the real
    one's does (x 1.5 for 16 -> 24 kHz), so the waveform lasts as long as the video.

    That VAE's encoder downsamples only space while the pipeline counts latent frames with
    its temporal ratio (2): harmless where only an image is encoded, but a video condition
    (LTX2ConditionPipeline) then has twice the latent frames the pipeline expects. With
    ``encoder_compresses_time`` its encoder downsamples time too, as the real one's does."""
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    tokenizer = _gemma_tokenizer()
    text_encoder = _gemma3_encoder(tokenizer)
    layers = text_encoder.config.text_config.num_hidden_layers
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=_GEMMA_DIM,
        rope_double_precision=False,
        rope_type="split",
    ).eval()
    torch.manual_seed(0)
    connectors = LTX2TextConnectors(
        caption_channels=_GEMMA_DIM,
        text_proj_in_factor=layers + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatiotemporal" if encoder_compresses_time else "spatial",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    torch.manual_seed(0)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    ).eval()
    torch.manual_seed(0)
    vocoder = LTX2Vocoder(
        in_channels=2 * 8,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[16, 10, 8],
        upsample_factors=[8, 5, 4],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    ).eval()
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        transformer=transformer,
        vocoder=vocoder,
        processor=None,
        prompt_enhancer=None,
        duration_head=None,
    )


def _ltx2(variant: str | None):
    from diffusers import LTX2Pipeline

    return LTX2Pipeline(**_ltx2_components(encoder_compresses_time=variant == "ltx2-condition"))


def build_ltx2_stage_files(folder: Path) -> Path:
    """What ltx2-two-stage takes from Lightricks/LTX-2 besides the pipeline, tiny: the latent
    upsampler in latent_upsampler/ (the tiny LTX-2 VAE's 4 latent channels) and the stage-2
    distilled LoRA file at the root (ltx-2-19b-distilled-lora-384.safetensors), made with peft
    for the tiny transformer in diffusers' own LoRA format."""
    from diffusers import LTX2Pipeline
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    LTX2LatentUpsamplerModel(in_channels=4, mid_channels=32, num_blocks_per_stage=1).eval().save_pretrained(
        folder / "latent_upsampler", safe_serialization=True
    )
    transformer = _ltx2_components()["transformer"]
    torch.manual_seed(1)
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k"], init_lora_weights=False))
    LTX2Pipeline.save_lora_weights(
        folder, transformer_lora_layers=get_peft_model_state_dict(transformer), weight_name="ltx-2-19b-distilled-lora-384.safetensors"
    )
    return folder


def _ltx2_i2v(variant: str | None):
    from diffusers import LTX2ImageToVideoPipeline

    return LTX2ImageToVideoPipeline(**_ltx2_components())


def _ltx2_condition(variant: str | None):
    from diffusers import LTX2ConditionPipeline

    return LTX2ConditionPipeline(**_ltx2_components(encoder_compresses_time=True))


# --------------------------------------------------------------------------------------
# CogVideoX
# --------------------------------------------------------------------------------------


def _cogvideox_vae():
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    ).eval()


def _cogvideox_transformer(i2v: bool, variant: str | None):
    from diffusers import CogVideoXTransformer3DModel

    kwargs = dict(
        num_attention_heads=2,
        attention_head_dim=16,  # RoPE needs a head dim divisible by 16
        in_channels=8 if i2v else 4,  # I2V concatenates the image latents
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=_TEXT_DIM,
        num_layers=1,
        sample_width=2,  # latent 2x2 -> 16x16 pixels (I2V learned positions are fixed to this size)
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,  # the pipelines' default max_sequence_length
    )
    if variant == "cogvideox-2b":  # 2b: sin-cos positions, no RoPE
        kwargs.update(use_rotary_positional_embeddings=False)
    elif variant == "cogvideox1.5-5b":  # 1.5: RoPE and temporal patches of 2 latent frames
        kwargs.update(use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False)
    else:  # 5b and 5b-I2V
        kwargs.update(use_rotary_positional_embeddings=True, use_learned_positional_embeddings=i2v)
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(**kwargs).eval()


def _cogvideox_scheduler(variant: str | None):
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    common = dict(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
    )
    if variant == "cogvideox-2b":
        return CogVideoXDDIMScheduler(snr_shift_scale=3.0, **common)
    return CogVideoXDPMScheduler(snr_shift_scale=1.0, **common)


def _cogvideox(variant: str | None, i2v: bool = False):
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

    tok = _t5_tokenizer()
    cls = CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline
    return cls(
        tokenizer=tok,
        text_encoder=_t5_encoder(tok),
        vae=_cogvideox_vae(),
        transformer=_cogvideox_transformer(i2v, variant),
        scheduler=_cogvideox_scheduler(variant),
    )


# --------------------------------------------------------------------------------------
# HunyuanVideo and HunyuanVideo 1.5
# --------------------------------------------------------------------------------------


def _hunyuanvideo(variant: str | None):
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,  # HunyuanVideo uses embedded (distilled) guidance
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    ).eval()
    tok = _llama_tokenizer()
    tok2 = _clip_tokenizer()
    torch.manual_seed(0)
    text_encoder = LlamaModel(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_key_value_heads=2,
            num_hidden_layers=2,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=3,
        )
    ).eval()
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok2),
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            projection_dim=8,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()
    return HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tok,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tok2,
    )


def _framepack_transformer():
    """FramePack's transformer, sized like the tiny HunyuanVideo it runs with (its text and pooled
    widths), with the history embedder and image projection of lllyasviel/FramePackI2V_HY's config."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    torch.manual_seed(0)
    return HunyuanVideoFramepackTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
        has_image_proj=True,
        image_proj_dim=8,
        has_clean_x_embedder=True,
    ).eval()


def _siglip():
    """A tiny SigLIP image encoder and its processor (lllyasviel/flux_redux_bfl's image_encoder, feature_extractor)."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    config = SiglipVisionConfig(
        hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1, image_size=32, patch_size=8
    )
    return SiglipVisionModel(config).eval(), SiglipImageProcessor(size={"height": 32, "width": 32})


def _hunyuanvideo_framepack(variant: str | None):
    from diffusers import HunyuanVideoFramepackPipeline

    image_encoder, feature_extractor = _siglip()
    components = dict(_hunyuanvideo(None).components, transformer=_framepack_transformer())
    return HunyuanVideoFramepackPipeline(**components, image_encoder=image_encoder, feature_extractor=feature_extractor)


def _hunyuanvideo_i2v(variant: str | None):
    """HunyuanVideo-I2V as hunyuanvideo-community/HunyuanVideo-I2V is: a LLaVA text encoder that also
    sees the image (576 image tokens: a CLIP vision tower of 336 px in 14 px patches), a 16-channel
    transformer that replaces the first latent frame's tokens with the image's (token_replace) and
    takes embedded guidance, and HunyuanVideo's CLIP text encoder, VAE and scheduler."""
    from diffusers import HunyuanVideoImageToVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    tok = _llama_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>"]})
    vision = CLIPVisionConfig(
        hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2, image_size=336, patch_size=14, projection_dim=8
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_hidden_layers=3,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    text_encoder = LlavaForConditionalGeneration(
        LlavaConfig(
            vision_config=vision,
            text_config=text,
            image_token_index=tok.convert_tokens_to_ids("<image>"),
            pad_token_id=3,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
        )
    ).eval()
    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
        image_condition_type="token_replace",
    ).eval()
    components = dict(_hunyuanvideo(None).components, transformer=transformer, text_encoder=text_encoder, tokenizer=tok)
    return HunyuanVideoImageToVideoPipeline(
        **components, image_processor=CLIPImageProcessor(crop_size={"height": 336, "width": 336}, size={"shortest_edge": 336})
    )


def build_framepack_repositories(root: Path) -> dict[str, Path]:
    """FramePack's three repositories, tiny, each laid out as the real one: hub id -> folder.
    hunyuanvideo-community/HunyuanVideo is a full diffusers folder; lllyasviel/FramePackI2V_HY
    holds the transformer's config.json and weights at its root; lllyasviel/flux_redux_bfl the
    SigLIP encoder and processor in subfolders image_encoder/ and feature_extractor/."""
    base = build_tiny_pipeline("HunyuanVideoPipeline", root / "HunyuanVideo")
    _framepack_transformer().save_pretrained(root / "FramePackI2V_HY", safe_serialization=True)
    image_encoder, feature_extractor = _siglip()
    image_encoder.save_pretrained(root / "flux_redux_bfl" / "image_encoder", safe_serialization=True)
    feature_extractor.save_pretrained(root / "flux_redux_bfl" / "feature_extractor")
    return {
        "hunyuanvideo-community/HunyuanVideo": base,
        "lllyasviel/FramePackI2V_HY": root / "FramePackI2V_HY",
        "lllyasviel/flux_redux_bfl": root / "flux_redux_bfl",
    }


def _hunyuanvideo15(variant: str | None):
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    torch.manual_seed(0)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=9,  # latents + image-condition latents + mask (zeros for text-to-video)
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        text_embed_2_dim=_TEXT_DIM,
        image_embed_dim=12,
        rope_axes_dim=(2, 2, 4),
        target_size=16,
        task_type="t2v",
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo15(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16),
        layers_per_block=1,
        spatial_compression_ratio=4,
        temporal_compression_ratio=2,
        downsample_match_channel=False,
        upsample_match_channel=False,
    ).eval()
    tok = _qwen2_tokenizer()
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLTextModel(
        Qwen2_5_VLTextConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            rope_theta=1000000.0,
        )
    ).eval()
    tok2 = ByT5Tokenizer()
    torch.manual_seed(0)
    from transformers import T5EncoderModel

    text_encoder_2 = T5EncoderModel(_t5_config(len(tok2))).eval()
    return HunyuanVideo15Pipeline(
        text_encoder=text_encoder,
        tokenizer=tok,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tok2,
        guider=ClassifierFreeGuidance(guidance_scale=6.0),
    )


# --------------------------------------------------------------------------------------
# Mochi
# --------------------------------------------------------------------------------------


def _mochi(variant: str | None):
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel

    torch.manual_seed(0)
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=_TEXT_DIM,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=256,  # the pipeline's default max_sequence_length
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),  # GroupNorm uses 32 groups
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    ).eval()
    tok = _t5_tokenizer()
    return MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_t5_encoder(tok),
        tokenizer=tok,
        transformer=transformer,
    )


# --------------------------------------------------------------------------------------
# Stable Video Diffusion
# --------------------------------------------------------------------------------------


def _svd(variant: str | None):
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),  # GroupNorm uses 32 groups
        layers_per_block=1,
        sample_size=16,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=16,
        num_attention_heads=2,
        projection_class_embeddings_input_dim=3 * 8,
        addition_time_embed_dim=8,
    ).eval()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        latent_channels=4,
    ).eval()
    # SVD resizes the conditioning image to 224x224 itself; projection_dim == unet cross_attention_dim
    image_encoder = _clip_vision(with_projection=True, hidden=16, image_size=224, patch_size=32)
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=_clip_image_processor(224),
    )


# --------------------------------------------------------------------------------------
# Newer families: Kandinsky 5, SANA-Video, HunyuanVideo 1.5 image-to-video, Wan 2.2 I2V A14B
# --------------------------------------------------------------------------------------


def _qwen2_5_vl_processor(processor_class: str = "Qwen2VLProcessor"):
    """Kandinsky 5's `tokenizer`: the real repositories hold a Qwen2VLProcessor (Kandinsky 6's
    class names a Qwen2_5_VLProcessor), a tokenizer with an image processor. transformers 5
    cannot build either without torchvision (its video processor needs it, and the processor
    class check fails on the missing one), so where torchvision is absent the tokenizer it
    wraps stands in: the pipelines call it with text only (`images=None, videos=None`), which
    both take."""
    tok = _qwen2_tokenizer()
    tok.add_special_tokens(
        {
            "additional_special_tokens": [
                "<|im_start|>",
                "<|im_end|>",
                "<|vision_start|>",
                "<|vision_end|>",
                "<|image_pad|>",
                "<|video_pad|>",
            ]
        }
    )
    try:
        import transformers

        return getattr(transformers, processor_class)(image_processor=transformers.Qwen2VLImageProcessor(), tokenizer=tok)
    except Exception:  # no torchvision: see above
        return tok


def _qwen2_5_vl_encoder(tokenizer, hidden: int = 16):
    """A tiny Qwen2.5-VL (text and vision towers), the class Kandinsky 5 ships; only the text
    tower's hidden states are used."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = getattr(tokenizer, "tokenizer", tokenizer)
    ids = {
        name: tok.convert_tokens_to_ids(token)
        for name, token in (
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
        )
    }
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            rope_theta=1000000.0,
            rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        ),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=hidden),
        **ids,
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _clip_text_encoder(tokenizer, hidden: int = 8):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            projection_dim=hidden,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()


def _hunyuan_video_vae_small():
    """HunyuanVideo's VAE class (Kandinsky 5 uses it) at 8x space, 4x time, 4 latent channels."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=False,
    ).eval()


def _kandinsky5(variant: str | None, i2v: bool = False):
    """After diffusers' tests/pipelines/kandinsky5, smaller. visual_cond: the transformer takes
    the noise, the (zero or image) condition latents and a mask, in both classes."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky5I2VPipeline, Kandinsky5T2VPipeline, Kandinsky5Transformer3DModel

    tokenizer = _qwen2_5_vl_processor()
    tokenizer_2 = _clip_tokenizer()
    torch.manual_seed(0)
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=4,
        out_visual_dim=4,
        in_text_dim=16,
        in_text_dim2=8,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=16,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(2, 2, 4),
        visual_cond=True,
        attention_type="regular",
    ).eval()
    cls = Kandinsky5I2VPipeline if i2v else Kandinsky5T2VPipeline
    return cls(
        transformer=transformer,
        vae=_hunyuan_video_vae_small(),
        text_encoder=_qwen2_5_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_clip_text_encoder(tokenizer_2),
        tokenizer_2=tokenizer_2,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )


def _gemma2_encoder(tokenizer, hidden: int = 8):
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(0)
    return Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=2048,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    ).eval()


def _sana_video(variant: str | None, i2v: bool = False):
    """After diffusers' tests/pipelines/sana_video. sample_size 30 is the real 480p model's: the
    pipelines pick their resolution bins by it (the size asked for is generated at the nearest
    trained bin and resized back), and refuse any other value."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaImageToVideoPipeline, SanaVideoPipeline, SanaVideoTransformer3DModel

    tokenizer = _gemma_tokenizer()
    torch.manual_seed(0)
    transformer = SanaVideoTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=8,
        mlp_ratio=2.0,
        sample_size=30,
        patch_size=(1, 2, 2),
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=64,
    ).eval()
    cls = SanaImageToVideoPipeline if i2v else SanaVideoPipeline
    return cls(
        tokenizer=tokenizer,
        text_encoder=_gemma2_encoder(tokenizer),
        vae=_wan_vae(),
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=8.0),
    )


def _hunyuanvideo15_i2v(variant: str | None):
    """The text-to-video components plus a SigLIP image encoder, as the 480p_i2v repository has."""
    from diffusers import HunyuanVideo15ImageToVideoPipeline
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    components = _hunyuanvideo15(None).components
    image_dim = components["transformer"].config.image_embed_dim
    torch.manual_seed(0)
    image_encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=image_dim, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
        )
    ).eval()
    feature_extractor = SiglipImageProcessor(size={"height": 32, "width": 32})
    return HunyuanVideo15ImageToVideoPipeline(**components, image_encoder=image_encoder, feature_extractor=feature_extractor)


def _wan22_i2v_a14b():
    """Wan 2.2 I2V A14B: two experts that take noise + mask + image latents (36 channels) and
    no CLIP image encoder (the repository has none; the first frame enters as latents only)."""
    from diffusers import WanImageToVideoPipeline

    tok = _t5_tokenizer()
    high = _wan_transformer(36, 16)
    torch.manual_seed(1)
    low = _wan_transformer(36, 16)
    return WanImageToVideoPipeline(
        tokenizer=tok,
        text_encoder=_umt5_encoder(tok),
        vae=_wan_vae(),
        scheduler=_unipc_flow(5.0),
        image_processor=None,
        image_encoder=None,
        transformer=high,
        transformer_2=low,
        boundary_ratio=0.9,
    )


def _helios(variant: str | None):
    """After diffusers' tests/pipelines/helios, smaller: a Wan-style transformer that denoises
    chunks of 9 latent frames (33 video frames) with a memory of the earlier ones."""
    from diffusers import HeliosPipeline, HeliosScheduler, HeliosTransformer3DModel

    tok = _t5_tokenizer()
    torch.manual_seed(0)
    transformer = HeliosTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=_TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_dim=(4, 4, 4),
        has_multi_term_memory_patch=True,
        guidance_cross_attn=True,
        zero_history_timestep=True,
        is_amplify_history=False,
    ).eval()
    return HeliosPipeline(
        tokenizer=tok,
        text_encoder=_umt5_encoder(tok),
        vae=_wan_vae(),
        transformer=transformer,
        scheduler=HeliosScheduler(stage_range=[0, 1], stages=1, use_dynamic_shifting=True),
    )


def _helios_pyramid(variant: str | None):
    """Helios-Mid and Helios-Distilled: the Helios components (one architecture for all three
    checkpoints) in HeliosPyramidPipeline, which denoises each chunk over 3 resolution stages.
    Mid guides with CFG-Zero* (is_cfg_zero_star) and HeliosScheduler; Distilled is an
    x0-predicting few-step model (is_distilled) with HeliosDMDScheduler. The flags are the
    pipeline's config, so they are saved in model_index.json as the real repositories' must be
    (their examples pass neither to from_pretrained)."""
    from diffusers import HeliosDMDScheduler, HeliosPyramidPipeline, HeliosScheduler

    components = _helios(None).components
    distilled = variant == "helios-distilled"
    # The schedulers' shipped gamma (1/3, diffusers' default and the real repositories'): its 2x2-block
    # noise covariance is singular but for a 1e-8 jitter, which float32 cannot hold; vidgen.helios mends
    # that where vidgen loads the pipeline, and these tests keep the shipped value to show it.
    scheduler = (HeliosDMDScheduler if distilled else HeliosScheduler)(use_dynamic_shifting=True)
    components["scheduler"] = scheduler
    return HeliosPyramidPipeline(**components, is_cfg_zero_star=not distilled, is_distilled=distilled)


def _motif_video(variant: str | None, i2v: bool = False):
    """After diffusers' tests/pipelines/motif_video, smaller. One repository serves both tasks
    (both docstrings load Motif-Technologies/Motif-Video-2B), so both classes get the same
    components: a T5Gemma 2 encoder with its vision tower (image-to-video encodes the image
    with it), a SigLIP image processor, and a transformer taking noise + image latents + mask
    (33 channels) and image features."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        MotifVideoImage2VideoPipeline,
        MotifVideoPipeline,
        MotifVideoTransformer3DModel,
    )
    from diffusers.guiders import AdaptiveProjectedGuidance
    from transformers import SiglipImageProcessor, T5Gemma2Encoder, T5Gemma2EncoderConfig

    tokenizer = _gemma_tokenizer()
    config = T5Gemma2EncoderConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=1024,
            head_dim=8,
            num_key_value_heads=2,
            dropout_rate=0.0,
        ),
        vision_config=dict(
            hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=16, patch_size=4, num_channels=3
        ),
    )
    torch.manual_seed(0)
    text_encoder = T5Gemma2Encoder(config).eval()
    torch.manual_seed(0)
    transformer = MotifVideoTransformer3DModel(
        in_channels=33,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=1,
        num_single_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        qk_norm="rms_norm",
        text_embed_dim=16,
        image_embed_dim=4,
        rope_axes_dim=(4, 4, 4),
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]).eval()
    cls = MotifVideoImage2VideoPipeline if i2v else MotifVideoPipeline
    return cls(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        guider=AdaptiveProjectedGuidance(),
        feature_extractor=SiglipImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": 16, "width": 16}),
    )


def _kandinsky6(variant: str | None):
    """After diffusers' tests/pipelines/kandinsky6, with Kandinsky 5's tiny text stack and VAE, and
    an MMAudio VAE and vocoder at 16 kHz (not the tests' 64 Hz, which no AAC encoder takes):
    the vocoder's upsampling (8 x 8 x 4) equals the audio VAE's hop, as the real pair's does."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky6TI2VAPipeline, Kandinsky6Transformer3DModel, MMAudioVAE, MMAudioVocoder

    tokenizer = _qwen2_5_vl_processor("Qwen2_5_VLProcessor")
    tokenizer_2 = _clip_tokenizer()
    torch.manual_seed(0)
    transformer = Kandinsky6Transformer3DModel(
        in_visual_dim=4,
        out_visual_dim=4,
        in_text_dim=16,
        in_text_dim2=8,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=12,
        ff_dim=24,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(2, 1, 1),
        visual_cond=True,
        in_audio_dim=4,
        out_audio_dim=4,
        visual_token_type_num_embeddings=2,
    ).eval()
    torch.manual_seed(0)
    audio_vae = MMAudioVAE(
        mel_bins=8,
        latent_channels=4,
        hidden_channels=8,
        channel_multipliers=(1, 2),
        layers_per_block=1,
        sample_rate=16000,
        n_fft=512,
        hop_length=256,
    ).eval()
    torch.manual_seed(0)
    vocoder = MMAudioVocoder(
        num_mels=8,
        upsample_initial_channel=8,
        upsample_rates=(8, 8, 4),
        upsample_kernel_sizes=(16, 16, 8),
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 3),),
    ).eval()
    return Kandinsky6TI2VAPipeline(
        transformer=transformer,
        vae=_hunyuan_video_vae_small(),
        text_encoder=_qwen2_5_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_clip_text_encoder(tokenizer_2),
        tokenizer_2=tokenizer_2,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        audio_vae=audio_vae,
        vocoder=vocoder,
    )


class GuardrailStandIn(torch.nn.Module):
    """Stands in for cosmos_guardrail's CosmosSafetyChecker, as diffusers' own Cosmos tests
    substitute theirs: the real one downloads NVIDIA's guardrail models (gated, several GB),
    out of reach offline and too large for a test. It refuses prompts naming a word in
    `refused` and records what it was shown, so a test sees the pipeline call it on the
    prompt and on the finished frames. Tests install it where diffusers looks the class up."""

    refused = ("forbidden",)
    texts: list = []
    videos: list = []

    def __init__(self):
        super().__init__()
        # diffusers reads each component's device and dtype, as of any model
        self.register_buffer("_placement", torch.zeros(1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._placement.device

    @property
    def dtype(self) -> torch.dtype:
        return self._placement.dtype

    def check_text_safety(self, prompt: str) -> bool:
        GuardrailStandIn.texts.append(prompt)
        return not any(word in prompt for word in self.refused)

    def check_video_safety(self, frames):
        GuardrailStandIn.videos.append(frames.shape)
        return frames


def use_guardrail_stand_in(monkeypatch) -> type[GuardrailStandIn]:
    """Make Cosmos pipelines build GuardrailStandIn where they build CosmosSafetyChecker."""
    import diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict as cosmos

    GuardrailStandIn.texts, GuardrailStandIn.videos = [], []
    monkeypatch.setattr(cosmos, "CosmosSafetyChecker", GuardrailStandIn)
    return GuardrailStandIn


def _cosmos2_5(variant: str | None):
    """After diffusers' tests/pipelines/cosmos/test_cosmos2_5_predict.py, smaller, with the
    Qwen2.5-VL text encoder the real model ships (not the tests' Qwen2-VL): a Cosmos
    transformer over Wan VAE latents (one channel more, the condition mask), a flow UniPC
    scheduler. Saved without a safety checker (the repository's own model_index.json could
    not be read offline; diffusers builds cosmos_guardrail's CosmosSafetyChecker when the
    pipeline is made, and refuses to run without one: the NVIDIA Open Model License). Unlike diffusers' tests, the tiny transformer
    takes no padding-mask channel (concat_padding_mask): resizing that mask needs torchvision,
    which comes with cosmos_guardrail for real users but is not a test dependency."""
    from diffusers import AutoencoderKLWan, Cosmos2_5_PredictBasePipeline, CosmosTransformer3DModel, UniPCMultistepScheduler

    tokenizer = _qwen2_5_vl_processor("Qwen2_5_VLProcessor")
    torch.manual_seed(0)
    transformer = CosmosTransformer3DModel(
        in_channels=16 + 1,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        mlp_ratio=2,
        text_embed_dim=16,
        adaln_lora_dim=4,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=False,
        extra_pos_embed_type="learnable",
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]).eval()
    pipe = Cosmos2_5_PredictBasePipeline(
        text_encoder=_qwen2_5_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=1.0),
        safety_checker=GuardrailStandIn(),
    )
    pipe.safety_checker = None  # saved as (null, null): loading builds the checker
    return pipe


# --------------------------------------------------------------------------------------

PIPELINE_CLASSES = {
    "WanPipeline": _wan,
    "WanImageToVideoPipeline": _wan_i2v,
    "WanVideoToVideoPipeline": _wan_v2v,
    "SkyReelsV2Pipeline": _skyreels_v2,
    "WanVACEPipeline": _wan_vace,
    "SkyReelsV2DiffusionForcingPipeline": _skyreels_v2_df,
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": partial(_skyreels_v2_df, video=True),
    "LTXPipeline": _ltx,
    "LTXImageToVideoPipeline": _ltx_i2v,
    "LTXConditionPipeline": _ltx_condition,
    "LTXI2VLongMultiPromptPipeline": _ltx_long_multi_prompt,
    "LTX2Pipeline": _ltx2,
    "LTX2ImageToVideoPipeline": _ltx2_i2v,
    "LTX2ConditionPipeline": _ltx2_condition,
    "CogVideoXPipeline": _cogvideox,
    "CogVideoXImageToVideoPipeline": partial(_cogvideox, i2v=True),
    "HunyuanVideoPipeline": _hunyuanvideo,
    "HunyuanVideo15Pipeline": _hunyuanvideo15,
    "HunyuanVideoFramepackPipeline": _hunyuanvideo_framepack,
    "HunyuanVideoImageToVideoPipeline": _hunyuanvideo_i2v,
    "MochiPipeline": _mochi,
    "StableVideoDiffusionPipeline": _svd,
    "Kandinsky5T2VPipeline": _kandinsky5,
    "Kandinsky5I2VPipeline": partial(_kandinsky5, i2v=True),
    "SanaVideoPipeline": _sana_video,
    "SanaImageToVideoPipeline": partial(_sana_video, i2v=True),
    "HunyuanVideo15ImageToVideoPipeline": _hunyuanvideo15_i2v,
    "HeliosPipeline": _helios,
    "HeliosPyramidPipeline": _helios_pyramid,
    "MotifVideoPipeline": _motif_video,
    "MotifVideoImage2VideoPipeline": partial(_motif_video, i2v=True),
    "Kandinsky6TI2VAPipeline": _kandinsky6,
    "Cosmos2_5_PredictBasePipeline": _cosmos2_5,
}

# structural variants of a class, keyed by preset name
VARIANTS = {
    "wan2.2-ti2v-5b": "WanPipeline",
    "wan2.2-t2v-a14b": "WanPipeline",
    "cogvideox-2b": "CogVideoXPipeline",
    "cogvideox1.5-5b": "CogVideoXPipeline",
    "wan2.2-i2v-a14b": "WanImageToVideoPipeline",
    "wan2.1-flf2v-14b-720p": "WanImageToVideoPipeline",  # a positional table for two images' CLIP tokens
    "ltx2-condition": "LTX2Pipeline",  # the VAE's encoder compresses time, as a video condition needs
    "helios-mid": "HeliosPyramidPipeline",  # CFG-Zero*, HeliosScheduler
    "helios-distilled": "HeliosPyramidPipeline",  # is_distilled, HeliosDMDScheduler
    "ltx-video-story": "LTXConditionPipeline",  # the VAE compresses time 8x, as the multi-prompt pipeline counts
}


def variant_for_preset(preset_name: str) -> str | None:
    return preset_name if preset_name in VARIANTS else None


# Presets whose real repository names another class in its model_index.json than the one
# the preset runs (one repository serves text- and image-to-video): preset -> the (class,
# variant) that repository is. Their tiny folders are saved that way, so the tests meet
# what users meet: vidgen loading the preset's class from the other class's folder.
REPOSITORY_LAYOUT = {
    "ltx-video-i2v": ("LTXPipeline", None),  # Lightricks/LTX-Video
    "wan2.2-ti2v-5b-i2v": ("WanPipeline", "wan2.2-ti2v-5b"),  # Wan-AI/Wan2.2-TI2V-5B-Diffusers
    "wan2.1-v2v-1.3b": ("WanPipeline", None),  # Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    # Lightricks/LTX-2 serves both tasks (diffusers' docstrings load each class from it); its
    # model_index.json could not be read offline: saved as the text-to-video class, the case
    # where loading the preset's class from another's folder matters.
    "ltx2-i2v": ("LTX2Pipeline", None),
    # Efficient-Large-Model/SANA-Video_2B_480p_diffusers: diffusers' SanaImageToVideoPipeline docstring loads
    # it too; saved as the text-to-video class (SANA-Video's first class; the repository's model_index.json
    # could not be read offline), the case where loading the preset's class from another's folder matters.
    "sana-video-480p-i2v": ("SanaVideoPipeline", None),
    # Motif-Technologies/Motif-Video-2B: both diffusers docstrings load it; saved as the text-to-video class.
    "motif-video-2b-i2v": ("MotifVideoPipeline", None),
    "ltx2-condition": ("LTX2Pipeline", "ltx2-condition"),  # the same Lightricks/LTX-2
    # Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers: diffusers' docstrings load the diffusion forcing
    # class from it; video extension loads its video-to-video class from the same folder.
    "skyreels-v2-df-1.3b-extend": ("SkyReelsV2DiffusionForcingPipeline", None),
    # BestWishYsh/Helios-Distilled: one class for text and image input; the repository is the distilled one.
    "helios-distilled-i2v": ("HeliosPyramidPipeline", "helios-distilled"),
    "helios-mid-i2v": ("HeliosPyramidPipeline", "helios-mid"),  # BestWishYsh/Helios-Mid
    # The few-step presets run the base repositories (Wan-AI/Wan2.2-*-A14B-Diffusers: two experts).
    "wan2.2-t2v-a14b-lightx2v": ("WanPipeline", "wan2.2-t2v-a14b"),
    "wan2.2-i2v-a14b-lightx2v": ("WanImageToVideoPipeline", "wan2.2-i2v-a14b"),
    # FramePack's model is hunyuanvideo-community/HunyuanVideo; its [components] come from two
    # other repositories (build_framepack_repositories lays out all three).
    "framepack-i2v": ("HunyuanVideoPipeline", None),
    # The storyboard model, LTX-Video 0.9.8 (Lightricks/LTX-Video-0.9.8-13B-distilled): its model_index.json
    # names LTXConditionPipeline (0.9.5 and later; not readable offline here); diffusers' multi-prompt class
    # takes the same five components (pipeline_ltx_i2v_long_multi_prompt.py's __init__ and docstring).
    "ltx-video-story": ("LTXConditionPipeline", "ltx-video-story"),
}


def repository_layout(preset_name: str, pipeline_class_name: str) -> tuple[str, str | None]:
    """(class, variant) to save a tiny folder for ``preset_name`` as, like its real repository."""
    return REPOSITORY_LAYOUT.get(preset_name, (pipeline_class_name, variant_for_preset(preset_name)))


def put_in_hub_cache(monkeypatch, root: Path, repositories: dict[str, Path]) -> Path:
    """Each folder as its hub id's snapshot in a Hub cache under `root` (files linked, not
    copied), as `vidgen pull` leaves a repository; huggingface_hub is pointed at that cache."""
    import os
    import shutil

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    for repo, folder in repositories.items():
        cached = root / f"models--{repo.replace('/', '--')}"
        (cached / "refs").mkdir(parents=True, exist_ok=True)
        (cached / "refs" / "main").write_text("c" * 40)
        shutil.copytree(folder, cached / "snapshots" / ("c" * 40), copy_function=os.symlink, dirs_exist_ok=True)
    return root


def make_tiny_pipeline(pipeline_class_name: str, variant: str | None = None):
    """A tiny random pipeline of ``pipeline_class_name``, in memory."""
    if pipeline_class_name not in PIPELINE_CLASSES:
        raise KeyError(f"no tiny builder for {pipeline_class_name}; known: {sorted(PIPELINE_CLASSES)}")
    if variant is not None and VARIANTS.get(variant) != pipeline_class_name:
        raise KeyError(f"variant {variant!r} does not belong to {pipeline_class_name}")
    pipe = PIPELINE_CLASSES[pipeline_class_name](variant)
    if type(pipe).__name__ != pipeline_class_name:
        raise AssertionError(f"built {type(pipe).__name__}, wanted {pipeline_class_name}")
    return pipe


def build_tiny_pipeline(pipeline_class_name: str, path: Path, variant: str | None = None) -> Path:
    """Build a tiny random pipeline of ``pipeline_class_name`` and save it to ``path`` (diffusers layout)."""
    pipe = make_tiny_pipeline(pipeline_class_name, variant)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


if __name__ == "__main__":  # quick manual check: python tests/tiny_pipelines.py [ClassName ...]
    import sys

    for name in sys.argv[1:] or PIPELINE_CLASSES:
        out = build_tiny_pipeline(name, Path(tempfile.mkdtemp()) / name)
        print(name, out, sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) // 1024, "KiB")
