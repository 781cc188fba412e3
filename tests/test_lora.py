"""`--lora` for real: tiny LoRA adapters, made with peft and saved with diffusers'
`save_lora_weights` (the layout LoRAs are published in), for tiny Wan and LTX pipelines.

Outputs are PNG folders, so "the same video" is an exact comparison of frames. peft is in
the `test` extra; without it these tests cannot run, so they fail rather than skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidgen.media.readback import read_frames, read_recipe

PROMPT = "a red fox running in the snow"
FAMILIES = {
    # family: (pipeline class, transformer class, frames valid for it)
    "wan": ("WanPipeline", "WanTransformer3DModel", "9"),
    "ltx": ("LTXPipeline", "LTXVideoTransformer3DModel", "9"),
}


@pytest.fixture(scope="session")
def tiny_lora(tiny_pipeline_dir, tmp_path_factory):
    """`get(family, name)`: a folder holding pytorch_lora_weights.safetensors for that
    family's tiny pipeline, built once. Both LoRA matrices are random (peft's default leaves
    B at zero, which would change nothing), each adapter from its own seed."""
    import diffusers
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    built: dict[tuple[str, str], Path] = {}
    root = tmp_path_factory.mktemp("loras")

    def get(family: str, name: str) -> Path:
        if (family, name) not in built:
            pipeline_class, transformer_class, _ = FAMILIES[family]
            model = tiny_pipeline_dir(pipeline_class)
            transformer = getattr(diffusers, transformer_class).from_pretrained(model / "transformer")
            torch.manual_seed(sorted(FAMILIES).index(family) * 10 + ord(name[0]))
            config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
            transformer.add_adapter(config)
            folder = root / f"{family}-{name}"
            getattr(diffusers, pipeline_class).save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(transformer))
            built[family, name] = folder
        return built[family, name]

    return get


@pytest.fixture
def render(run_cli, tiny_pipeline_dir, tmp_path):
    """`render(family, *lora_args)` -> the video's frames (int), with the recipe checked."""

    def run(family: str, *loras: str) -> np.ndarray:
        pipeline_class, _, frames = FAMILIES[family]
        out = tmp_path / f"video-{len(list(tmp_path.iterdir()))}"
        arguments = [f for lora in loras for f in ("--lora", lora)]
        result = run_cli(
            "generate",
            PROMPT,
            "--model",
            tiny_pipeline_dir(pipeline_class),
            "--steps",
            "2",
            "--size",
            "32x32",
            "--frames",
            frames,
            "--seed",
            "3",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            *arguments,
            "-o",
            out,
        )
        assert result.exit_code == 0, result.stderr
        expected = [(lora.rsplit(":", 1)[0], float(lora.rsplit(":", 1)[1])) if ":" in lora else (lora, 1.0) for lora in loras]
        assert [(entry["source"], entry["scale"]) for entry in read_recipe(out)["loras"]] == expected
        return read_frames(out).astype(int)

    return run


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lora_changes_the_video_and_weight_zero_gives_the_base(family, render, tiny_lora):
    lora = str(tiny_lora(family, "a"))
    base = render(family)
    with_lora = render(family, lora)
    assert with_lora.shape == base.shape
    # Runs are exact (PNG frames, fixed seed, CPU): any difference is the adapter's.
    assert not np.array_equal(with_lora, base), "the adapter must change the video"
    assert np.array_equal(render(family, f"{lora}:0"), base), ":0 must give the base video exactly"
    half = render(family, f"{lora}:0.5")
    assert not np.array_equal(half, base) and not np.array_equal(half, with_lora)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_two_loras_stack(family, render, tiny_lora):
    a, b = str(tiny_lora(family, "a")), str(tiny_lora(family, "b"))
    only_a, only_b, both = render(family, a), render(family, b), render(family, a, b)
    assert not np.array_equal(both, only_a) and not np.array_equal(both, only_b)
    # Each adapter keeps its own weight: b at 0 leaves exactly a's video.
    assert np.array_equal(render(family, a, f"{b}:0"), only_a)


@pytest.mark.parametrize(("family", "lora_family", "pipeline_class"), [("wan", "ltx", "WanPipeline"), ("ltx", "wan", "LTXPipeline")])
def test_lora_for_another_family_is_one_clear_line(family, lora_family, pipeline_class, run_cli, tiny_pipeline_dir, tiny_lora, tmp_path):
    lora = tiny_lora(lora_family, "a")
    out = tmp_path / "x.mp4"
    result = run_cli(
        "generate",
        PROMPT,
        "--model",
        tiny_pipeline_dir(pipeline_class),
        "--steps",
        "2",
        "--size",
        "32x32",
        "--frames",
        "9",
        "--device",
        "cpu",
        "--lora",
        lora,
        "-o",
        out,
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1]
        == f"Error: LoRA {lora} does not fit {pipeline_class}: none of its layers are in the model (a LoRA for another model family or size?)"
    )
    assert len([line for line in lines if not line.startswith(("loaded ", "seed ", "using float32"))]) == 1, result.stderr
    assert not out.exists()


def test_lora_with_no_layers_for_the_pipeline_and_missing_lora_are_clear(run_cli, tiny_pipeline_dir, tmp_path):
    """A file whose keys name no component here (a UNet LoRA) loads as nothing in diffusers,
    silently; vidgen refuses it. A path that is not there is named as such."""
    import torch
    from safetensors.torch import save_file

    unet_lora = tmp_path / "unet-lora"
    unet_lora.mkdir()
    save_file(
        {
            "unet.down_blocks.0.attentions.0.to_q.lora_A.weight": torch.ones(4, 8),
            "unet.down_blocks.0.attentions.0.to_q.lora_B.weight": torch.ones(8, 4),
        },
        unet_lora / "pytorch_lora_weights.safetensors",
    )
    common = [
        "generate",
        PROMPT,
        "--model",
        tiny_pipeline_dir("WanPipeline"),
        "--steps",
        "2",
        "--size",
        "32x32",
        "--frames",
        "9",
        "--device",
        "cpu",
        "-q",
        "-o",
        tmp_path / "x.mp4",
    ]
    result = run_cli(*common, "--lora", unet_lora)
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"Error: LoRA {unet_lora} does not fit WanPipeline: it has no layers for its components (a LoRA for another model family?)"
    )
    result = run_cli(*common, "--lora", tmp_path / "no-such-lora.safetensors")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"Error: LoRA not found: {tmp_path / 'no-such-lora.safetensors'} (not a file, a folder or a Hugging Face Hub id)"
    )


def test_two_loras_print_nothing_else_in_a_fresh_process(tiny_pipeline_dir, tiny_lora, tmp_path):
    """peft warns (UserWarning) when a second adapter joins the first, which is intended here.
    pytest captures warnings in-process, so this runs the command in a new one: with -q,
    stderr stays empty."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    command = [
        sys.executable,
        "-m",
        "vidgen",
        "generate",
        PROMPT,
        "--model",
        str(tiny_pipeline_dir("WanPipeline")),
        "--steps",
        "2",
        "--size",
        "32x32",
        "--frames",
        "9",
        "--device",
        "cpu",
        "-q",
        "--lora",
        str(tiny_lora("wan", "a")),
        "--lora",
        f"{tiny_lora('wan', 'b')}:0.5",
        "-o",
        str(tmp_path / "x.mp4"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(repo)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert read_recipe(tmp_path / "x.mp4")["loras"][1]["scale"] == 0.5
