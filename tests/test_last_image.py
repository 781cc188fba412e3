"""First and last frame: the wan2.1-flf2v-14b-720p preset on a tiny model laid out as Wan's FLF2V
repository, `--last-image` reaching the pipeline (the video changes with it), and refused in one
line, before any weights load, where the pipeline or its model cannot take one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidgen.media.readback import read_frames, read_recipe

PROMPT = "a bird takes off"
CPU = ["--steps", "2", "--size", "32x32", "--frames", "9", "--seed", "3", "--device", "cpu", "--dtype", "float32"]
ONE_OF = "wan2.1-flf2v-14b-720p, wan2.2-i2v-a14b or framepack-i2v"


def _image(path: Path, colour: str) -> Path:
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def test_the_flf2v_preset_is_the_makers_recipe(run_cli):
    """Wan2.1 generate.py for flf2v-14B: shift 16, 50 steps, guidance 5.0, 81 frames at 16 fps, the
    1280*720 area at the first frame's aspect ratio."""
    preset = json.loads(run_cli("presets", "show", "wan2.1-flf2v-14b-720p", "--json").stdout)
    assert (preset["model"], preset["pipeline"], preset["task"]) == (
        "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
        "WanImageToVideoPipeline",
        "image-to-video",
    )
    defaults = preset["defaults"]
    assert {key: defaults[key] for key in ("flow_shift", "steps", "guidance", "frames", "fps", "width", "height", "size", "scheduler")} == {
        "flow_shift": 16.0,
        "steps": 50,
        "guidance": 5.0,
        "frames": 81,
        "fps": 16,
        "width": 1280,
        "height": 720,
        "size": "auto",
        "scheduler": "UniPCMultistepScheduler",
    }
    assert defaults["negative_prompt"].startswith("镜头切换，镜头晃动，色调艳丽")


def test_the_last_image_reaches_the_flf2v_pipeline(run_cli, tiny_pipeline_dir, tmp_path):
    """Same seed, same first frame, another last frame: another video, most of all at its end."""
    model = tiny_pipeline_dir("WanImageToVideoPipeline", "wan2.1-flf2v-14b-720p")
    first = _image(tmp_path / "first.png", "red")
    videos = {}
    for colour in ("white", "black"):
        out = tmp_path / colour  # PNG frames: an exact comparison
        result = run_cli(
            "generate",
            PROMPT,
            "--preset",
            "wan2.1-flf2v-14b-720p",
            "--model",
            model,
            "--image",
            first,
            "--last-image",
            _image(tmp_path / f"{colour}.png", colour),
            *CPU,
            "-o",
            out,
        )
        assert result.exit_code == 0, result.stderr
        assert read_recipe(out)["last_image"] == str(tmp_path / f"{colour}.png")
        videos[colour] = read_frames(out).astype(int)
    difference = np.abs(videos["white"] - videos["black"])
    assert difference.max() > 5, "the last image must change the video"
    assert difference[-1].mean() > 10 * difference[0].mean(), "and change its end more than its start"


def test_flf2v_without_a_last_image_is_one_line_before_loading(run_cli, tiny_pipeline_dir, tmp_path):
    model = tiny_pipeline_dir("WanImageToVideoPipeline", "wan2.1-flf2v-14b-720p")
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "wan2.1-flf2v-14b-720p",
        "--model",
        model,
        "--image",
        _image(tmp_path / "a.png", "red"),
        *CPU,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 2, result.stderr
    assert (
        result.stderr.strip() == f"Error: model {model} (Wan FLF2V) makes a video from a first to a last frame: pass --last-image LAST too"
    )


@pytest.mark.parametrize(
    ("preset", "layout", "message"),
    [
        # The class's call has no last_image: known from the preset alone, no model needed.
        ("ltx-video-i2v", None, f"preset ltx-video-i2v: LTXImageToVideoPipeline takes no last image; --last-image is for {ONE_OF}"),
        # WanImageToVideoPipeline takes one, but these models cannot: their configs say so.
        (
            "wan2.1-i2v-480p",
            ("WanImageToVideoPipeline", None),
            "(Wan 2.1 image-to-video) reads one image, not a first and a last: --last-image needs " + ONE_OF,
        ),
        (
            "wan2.2-ti2v-5b-i2v",
            ("WanPipeline", "wan2.2-ti2v-5b"),
            "(Wan 2.2 TI2V-5B) takes its first frame only (a last one would be dropped): --last-image needs " + ONE_OF,
        ),
    ],
)
def test_last_image_where_it_cannot_go_is_one_line_before_loading(preset, layout, message, run_cli, tiny_pipeline_dir, tmp_path):
    model = ["--model", tiny_pipeline_dir(*layout)] if layout else []
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        preset,
        *model,
        "--image",
        _image(tmp_path / "a.png", "red"),
        "--last-image",
        _image(tmp_path / "b.png", "blue"),
        *CPU,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 2, result.stderr
    expected = f"Error: model {model[1]} {message}" if layout else f"Error: {message}"
    assert result.stderr.strip() == expected  # one line: nothing was loaded
    assert not (tmp_path / "x.mp4").exists()


def test_wan22_i2v_a14b_takes_a_last_frame(run_cli, tiny_pipeline_dir, tmp_path):
    """No CLIP encoder: the last frame enters as latents (and the mask keeps it), which changes the video."""
    model = tiny_pipeline_dir("WanImageToVideoPipeline", "wan2.2-i2v-a14b")
    first = _image(tmp_path / "first.png", "red")
    videos = []
    for last in ([], ["--last-image", _image(tmp_path / "last.png", "white")]):
        out = tmp_path / f"v{len(videos)}"
        result = run_cli("generate", PROMPT, "--preset", "wan2.2-i2v-a14b", "--model", model, "--image", first, *last, *CPU, "-o", out)
        assert result.exit_code == 0, result.stderr
        videos.append(read_frames(out).astype(int))
    assert not np.array_equal(videos[0], videos[1])
