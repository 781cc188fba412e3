"""A preset runs the pipeline class it names, whatever class its folder's model_index.json names.

One repository often serves two tasks: `Lightricks/LTX-Video` and `Wan-AI/Wan2.2-TI2V-5B-Diffusers`
name their text-to-video class (LTXPipeline, WanPipeline) in model_index.json, and their
image-to-video presets must still run LTXImageToVideoPipeline / WanImageToVideoPipeline on
them. vidgen once loaded the named class and silently dropped --image. The same holds for
SANA-Video's and Motif-Video's image-to-video presets, and for Helios', whose one class serves
both (test_image_preset_on_its_text_to_video_repository_follows_the_image). The tiny folders here
are saved with the repository's class, as the real ones are (tests/tiny_pipelines.py
REPOSITORY_LAYOUT), and outputs are PNG folders so frames compare exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tiny_pipelines import REPOSITORY_LAYOUT
from vidgen.media.readback import read_frames, read_recipe

REPO = Path(__file__).resolve().parent.parent
PROMPT = "a red fox running in the snow"
CPU = ["--steps", "2", "--seed", "1", "--device", "cpu", "--dtype", "float32"]


def _image(path: Path, colour: str, size: int = 32) -> Path:
    Image.new("RGB", (size, size), colour).save(path)
    return path


def _without_weights(folder: Path, target: Path) -> Path:
    """A copy with configs, tokenizers and model_index.json but no weights: a run that gets
    past the checks to loading fails there (exit 1, "no safetensors weights"), so an exit 2
    with the check's message shows the refusal came before any weights were read."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.safetensors"))
    return target


def _assert_one_error_line(stderr: str, fragment: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]


# How far apart the white and the black image's videos must be. "clear": LTX-Video and Wan
# encode the image into the first latent frame (mean difference above 1 of 255). "faint": the
# tiny random models of the newer families show it only faintly (a mean of about 0.5 of 255
# for SANA-Video, which puts the image in the first latent frame; 0.002 for Motif-Video, whose
# random transformer barely weighs its condition channels), so any difference is asked for.
# Helios: one class serves text and image input, so its image presets load their repository's own
# class; helios-base-i2v is left out: its tiny random model, called by diffusers directly, moves the
# output by 3e-6 of full scale between the two images, below one level of 255.
@pytest.mark.parametrize(
    ("preset", "pipeline", "size", "frames", "difference"),
    [
        ("ltx-video-i2v", "LTXImageToVideoPipeline", 32, 9, "clear"),
        ("wan2.2-ti2v-5b-i2v", "WanImageToVideoPipeline", 32, 5, "clear"),
        ("sana-video-480p-i2v", "SanaImageToVideoPipeline", 32, 5, "faint"),
        ("motif-video-2b-i2v", "MotifVideoImage2VideoPipeline", 16, 5, "faint"),
        ("helios-mid-i2v", "HeliosPyramidPipeline", 128, 33, "faint"),
        ("helios-distilled-i2v", "HeliosPyramidPipeline", 64, 33, "faint"),
    ],
)
def test_image_preset_on_its_text_to_video_repository_follows_the_image(
    preset, pipeline, size, frames, difference, run_cli, tiny_pipeline_dir, tmp_path
):
    repository_class, variant = REPOSITORY_LAYOUT[preset]
    folder = tiny_pipeline_dir(repository_class, variant)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == repository_class

    videos = {}
    for colour in ("white", "black"):
        out = tmp_path / colour
        result = run_cli(
            "generate",
            PROMPT,
            "--preset",
            preset,
            "--model",
            folder,
            "--image",
            _image(tmp_path / f"{colour}.png", colour, size),
            "--size",
            f"{size}x{size}",
            "--frames",
            frames,
            *CPU,
            "-o",
            out,
        )
        assert result.exit_code == 0, result.stderr
        assert f"loaded {pipeline} from" in result.stderr
        assert read_recipe(out)["pipeline"] == pipeline
        videos[colour] = read_frames(out).astype(int)
    # --frames reached the pipeline (SANA-Video's argument is `frames`).
    assert videos["white"].shape == videos["black"].shape == (frames, size, size, 3)
    # Same seed, prompt and settings on a deterministic CPU: only the image differs, so any
    # difference is its doing. Loaded as the repository's text-to-video class, which ignores
    # the image, both videos would be identical.
    if difference == "clear":
        assert np.abs(videos["white"] - videos["black"]).mean() > 1.0
    else:
        assert np.abs(videos["white"] - videos["black"]).max() > 0


def test_image_to_video_folder_under_a_text_to_video_preset_fails_before_loading(run_cli, tiny_pipeline_dir, tmp_path):
    folder = _without_weights(tiny_pipeline_dir("WanImageToVideoPipeline"), tmp_path / "wan-i2v")
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "wan2.1-t2v-1.3b",
        "--model",
        folder,
        "--size",
        "32x32",
        "--frames",
        "5",
        *CPU,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 2, result.stderr
    _assert_one_error_line(
        result.stderr, "is an image-to-video WanImageToVideoPipeline, but preset wan2.1-t2v-1.3b runs WanPipeline, which takes no image"
    )
    # The same weightless folder under its own preset does reach loading, and fails there.
    image = _image(tmp_path / "start.png", "white")
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "wan2.1-i2v-480p",
        "--model",
        folder,
        "--image",
        image,
        "--size",
        "32x32",
        "--frames",
        "5",
        *CPU,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 1 and "no safetensors weights" in result.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    ("folder_class", "preset", "fragment"),
    [
        # Wan 2.1 and CogVideoX image-to-video concatenate the image latents (and Wan a
        # 4-channel mask) to the noise: a text-to-video transformer cannot take them.
        (
            "WanPipeline",
            "wan2.1-i2v-480p",
            "has a transformer with 16 input channels; preset wan2.1-i2v-480p's WanImageToVideoPipeline needs 36",
        ),
        (
            "CogVideoXPipeline",
            "cogvideox-5b-i2v",
            "has a transformer with 4 input channels; preset cogvideox-5b-i2v's CogVideoXImageToVideoPipeline needs 8",
        ),
    ],
)
def test_text_to_video_folder_that_cannot_serve_an_image_preset_is_refused(
    folder_class, preset, fragment, run_cli, tiny_pipeline_dir, tmp_path
):
    folder = _without_weights(tiny_pipeline_dir(folder_class), tmp_path / "model")
    image = _image(tmp_path / "start.png", "white")
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        preset,
        "--model",
        folder,
        "--image",
        image,
        "--size",
        "16x16",
        "--frames",
        "9",
        *CPU,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 2, result.stderr
    _assert_one_error_line(result.stderr, fragment)


def test_folder_missing_a_component_the_preset_class_needs_is_refused(run_cli, tiny_pipeline_dir, tmp_path):
    folder = _without_weights(tiny_pipeline_dir("LTXPipeline"), tmp_path / "ltx")
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    image = _image(tmp_path / "start.png", "white")
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "ltx-video-i2v",
        "--model",
        folder,
        "--image",
        image,
        "--size",
        "32x32",
        "--frames",
        "9",
        *CPU,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 2, result.stderr
    _assert_one_error_line(result.stderr, "(LTXPipeline) has no text_encoder, which preset ltx-video-i2v's LTXImageToVideoPipeline needs")


@pytest.mark.parametrize(
    ("preset", "expected"), [("wan2.1-i2v-480p", "WanImageToVideoPipeline"), ("svd-xt", "StableVideoDiffusionPipeline")]
)
def test_class_mismatch_is_one_line_in_a_fresh_process(preset, expected, tiny_pipeline_dir, tmp_path):
    """Looking these classes up imports transformers' CLIPImageProcessor, which warns about
    torchvision unless library logging is already quiet. The warning comes once per process,
    so this runs the command in a new one."""
    image = _image(tmp_path / "start.png", "white")
    command = [
        sys.executable,
        "-m",
        "vidgen",
        "generate",
        PROMPT,
        "--preset",
        preset,
        "--model",
        str(tiny_pipeline_dir("LTXPipeline")),
        "--image",
        str(image),
        "--size",
        "64x64",
        "-o",
        str(tmp_path / "x.mp4"),
    ]  # a size of its own: no `size auto` line
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 2
    _assert_one_error_line(result.stderr, f"is a LTXPipeline, but preset {preset} expects a {expected}")
    assert result.stdout == ""


def test_svd_guidance_reaches_the_pipeline_without_an_ignored_warning(run_cli, tiny_pipeline_dir, tmp_path):
    folder = tiny_pipeline_dir("StableVideoDiffusionPipeline")
    image = _image(tmp_path / "start.png", "white")
    videos = {}
    for guidance in ("1.0", "3.0"):
        out = tmp_path / f"guidance-{guidance.replace('.', '-')}"
        result = run_cli(
            "generate",
            PROMPT,
            "--preset",
            "svd-xt",
            "--model",
            folder,
            "--image",
            image,
            "--size",
            "64x64",
            "--frames",
            "3",
            "--guidance",
            guidance,
            *CPU,
            "-o",
            out,
        )
        assert result.exit_code == 0, result.stderr
        assert "takes no guidance" not in result.stderr
        assert "StableVideoDiffusionPipeline takes no prompt; ignored" in result.stderr  # true: SVD has no text input
        assert read_recipe(out)["guidance"] == float(guidance)
        videos[guidance] = read_frames(out).astype(int)
    # max_guidance_scale 1.0 (the preset's min of 1.5 comes down with it) turns classifier-free guidance off; 3.0 uses it.
    assert np.abs(videos["1.0"] - videos["3.0"]).max() > 0
