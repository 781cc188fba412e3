"""What --dry-run computes for Wan 2.1 14B, built from its config on the meta device (no weights).

    python benchmarks/big_model_sizes.py

The architecture is Wan-AI/Wan2.1-T2V-14B-Diffusers' transformer/config.json (written out
below: the Hub is out of reach here). Sizes use the same arithmetic as vidgen/cli/dryrun.py: every
parameter at the dtype's bytes, the block Linear weights at quantize.bytes_per_weight.
"""

from __future__ import annotations

import torch
from diffusers import WanTransformer3DModel

from vidgen.engine import checkpoints, quantize

WAN_14B = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=40,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=13824,
    num_layers=40,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
    rope_max_seq_len=1024,
)


def main() -> None:
    with torch.device("meta"):
        model = WanTransformer3DModel(**WAN_14B)
    size = checkpoints.model_size(model)
    others = size.parameters - size.block_linear_parameters
    print(f"parameters {size.parameters / 1e9:.3f} B, of which block Linear weights {size.block_linear_parameters / 1e9:.3f} B")
    print(f"bf16 {size.parameters * 2 / 1e9:.2f} GB")
    for method in ("int8", "fp8", "nf4"):
        memory = others * 2 + size.block_linear_parameters * quantize.bytes_per_weight(method)
        print(f"--quantize {method}: {memory / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
