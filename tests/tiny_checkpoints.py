"""Single-file checkpoints of a tiny Wan transformer, written as users' files are.

``build_checkpoint_pipeline(path)`` saves a tiny WanPipeline (diffusers layout) whose
transformer is a little wider than tests/tiny_pipelines.py's, and
``write_checkpoints(transformer, folder)`` writes that transformer as the single files
people download: GGUF Q8_0, Q4_0 and Q5_1 (as city96's convert.py leaves them), a
ComfyUI-prefixed bf16 safetensors file, an fp8_e4m3fn one, a "scaled fp8" one, and a
file of another width (which must not fit). Every file uses Wan's original key names,
the inverse of diffusers' ``convert_wan_transformer_to_diffusers``, so the files go
through diffusers' own converter exactly as a real download does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tests.tiny_pipelines import _TEXT_DIM, _t5_tokenizer, _umt5_encoder, _unipc_flow, _wan_vae

__all__ = ["WIDE_WAN", "TinyCheckpoints", "build_checkpoint_pipeline", "original_state_dict", "wide_wan_transformer", "write_checkpoints"]

# tests/tiny_pipelines.py's Wan transformer is 24 wide (2 heads x 12) with a 32-wide
# feed-forward. GGUF quantizes each row in blocks of 32 values, and city96's convert.py
# keeps tensors of 1,024 values or fewer in F32, so at that width no attention projection
# would be quantized at all. 64 wide (2 heads x 32) and a 128-wide feed-forward make every
# Linear weight of the blocks and embedders a quantized one (4,096 values and more), still
# 147,200 parameters: a forward pass takes milliseconds on a CPU.
WIDE_WAN = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=32,
    in_channels=16,
    out_channels=16,
    text_dim=_TEXT_DIM,  # the tiny UMT5's width, so the pipeline runs end to end
    freq_dim=32,
    ffn_dim=128,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)

# diffusers' names -> Wan's original ones, applied in order (the inverse of the rename
# table in diffusers' convert_wan_transformer_to_diffusers; norm2 and norm3 trade places).
_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"),
    ("attn2", "cross_attn"),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("norm2", "norm__swap"),
    ("norm3", "norm2"),
    ("norm__swap", "norm3"),
    ("proj_out", "head.head"),
]

COMFY_PREFIX = "model.diffusion_model."


def wide_wan_transformer(seed: int = 0, **overrides):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(**{**WIDE_WAN, **overrides}).eval()


def build_checkpoint_pipeline(path: Path) -> Path:
    """A tiny WanPipeline with the wide transformer, saved in diffusers layout: the
    preset folder whose transformer the single files replace."""
    from diffusers import WanPipeline

    tokenizer = _t5_tokenizer()
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=_umt5_encoder(tokenizer),
        vae=_wan_vae(),
        scheduler=_unipc_flow(3.0),
        transformer=wide_wan_transformer(),
    )
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _original_name(name: str) -> str:
    if name == "scale_shift_table":
        return "head.modulation"
    name = name.replace(".scale_shift_table", ".modulation")
    for diffusers_name, original in _TO_ORIGINAL:
        name = name.replace(diffusers_name, original)
    return name


def original_state_dict(transformer) -> dict[str, torch.Tensor]:
    """The transformer's weights under Wan's original names; checked to go back through
    diffusers' converter to the same names and tensors."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    ours = {name: tensor.detach().clone() for name, tensor in transformer.state_dict().items()}
    original = {_original_name(name): tensor for name, tensor in ours.items()}
    back = convert_wan_transformer_to_diffusers(dict(original))
    if back.keys() != ours.keys() or any(back[name] is not ours[name] for name in ours):
        raise AssertionError(f"the renaming is not diffusers' inverse: {sorted(set(back) ^ set(ours))[:5]}")
    return original


def _is_linear_weight(name: str, tensor: torch.Tensor) -> bool:
    return tensor.ndim == 2 and name.endswith(".weight")


def gguf_tensor_type(name: str, data: np.ndarray, quant):
    """What city96's tools/convert.py keeps unquantized (F32): 1-D tensors (norms,
    biases), tensors of 1,024 values or fewer, `.modulation` parameters, and 5-D ones
    (the Conv3d patch embedding, added back as F32 by its fix_5d_tensors.py)."""
    import gguf

    if data.ndim == 1 or data.ndim > 4 or data.size <= 1024 or ".modulation" in name or name == "head.modulation":
        return gguf.GGMLQuantizationType.F32
    return quant


def write_gguf(state_dict: dict[str, torch.Tensor], path: Path, quant_name: str) -> dict[str, tuple[str, tuple, int]]:
    """Write a GGUF file; return what was written: name -> (type name, shape, bytes)."""
    import gguf

    quant = gguf.GGMLQuantizationType[quant_name]
    writer = gguf.GGUFWriter(str(path), arch="wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    written = {}
    for name, tensor in state_dict.items():
        data = tensor.float().numpy()
        tensor_type = gguf_tensor_type(name, data, quant)
        stored = gguf.quants.quantize(data, tensor_type)
        writer.add_tensor(name, stored, raw_dtype=tensor_type)
        written[name] = (tensor_type.name, tuple(tensor.shape), stored.nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


def _scaled_fp8(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI's "scaled fp8": each Linear weight divided by a per-tensor scale
    (`<layer>.scale_weight`) before the cast, and a `scaled_fp8` marker tensor. Loading
    it without multiplying the scales back gives wrong weights."""
    out = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for name, tensor in state_dict.items():
        if _is_linear_weight(name, tensor):
            scale = tensor.abs().max().float() / 448.0  # e4m3's largest value
            out[name] = (tensor / scale).to(torch.float8_e4m3fn)
            out[name.removesuffix("weight") + "scale_weight"] = scale.reshape(1)
        else:
            out[name] = tensor.to(torch.bfloat16)
    return out


@dataclass
class TinyCheckpoints:
    paths: dict[str, Path]  # "Q8_0", "Q4_0", "Q5_1", "comfy-bf16", "fp8", "scaled-fp8", "other-width"
    gguf_written: dict[str, dict[str, tuple[str, tuple, int]]]  # GGUF kind -> what write_gguf wrote


def write_checkpoints(transformer, folder: Path) -> TinyCheckpoints:
    """Every kind of single file from one transformer, plus one of another width."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    original = original_state_dict(transformer)
    paths, gguf_written = {}, {}
    for quant_name in ("Q8_0", "Q4_0", "Q5_1"):
        paths[quant_name] = folder / f"tiny-wan-{quant_name}.gguf"
        gguf_written[quant_name] = write_gguf(original, paths[quant_name], quant_name)
    paths["comfy-bf16"] = folder / "tiny-wan-comfy-bf16.safetensors"
    save_file({COMFY_PREFIX + name: t.to(torch.bfloat16).contiguous() for name, t in original.items()}, paths["comfy-bf16"])
    paths["fp8"] = folder / "tiny-wan-fp8_e4m3fn.safetensors"
    save_file(
        {name: t.to(torch.float8_e4m3fn if _is_linear_weight(name, t) else torch.bfloat16).contiguous() for name, t in original.items()},
        paths["fp8"],
    )
    paths["scaled-fp8"] = folder / "tiny-wan-fp8_scaled.safetensors"
    save_file(_scaled_fp8(original), paths["scaled-fp8"])
    paths["other-width"] = folder / "tiny-wan-other-width.safetensors"
    other = original_state_dict(wide_wan_transformer(attention_head_dim=16))
    save_file({name: t.to(torch.bfloat16).contiguous() for name, t in other.items()}, paths["other-width"])
    return TinyCheckpoints(paths, gguf_written)
