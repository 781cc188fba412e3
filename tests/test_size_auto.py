"""`--size auto`: the preset's pixel area at the start image's aspect ratio, snapped to the
model's multiples, said in the snapping line and recorded; the default of the image-to-video
presets whose makers size the video from the image. An explicit --size still wins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidgen.media.readback import read_frames, read_recipe
from vidgen.settings.layers import size_for_image
from vidgen.settings.presets import Constraints

REPO = Path(__file__).resolve().parent.parent
WAN = Constraints(frames_step=4, frames_offset=1, size_multiple=16, min_frames=5, max_frames=81, max_width=1280, max_height=1280)


def _image(path: Path, width: int, height: int, orientation: int | None = None) -> Path:
    from PIL import Image

    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[..., 2] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    image = Image.fromarray(pixels)
    if orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif)
    return path


@pytest.mark.parametrize(
    ("image", "area", "expected"),
    [
        ((480, 832), (832, 480), (480, 832)),  # a portrait photo: the Wan 480p area turned upright
        ((832, 480), (832, 480), (832, 480)),
        ((1000, 1000), (832, 480), (624, 624)),  # sqrt(832 x 480) = 631.9, down to a multiple of 16
        ((480, 832), (1280, 720), (720, 1248)),  # Wan's own floor of sqrt(max_area x aspect): 1263.9 -> 1248
        ((8000, 1000), (832, 480), (1280, 160)),  # wider than the model's largest side: a smaller area
    ],
)
def test_size_for_image_keeps_the_area_and_the_aspect_ratio(image, area, expected):
    assert size_for_image(area[0] * area[1], image, WAN) == expected


def test_portrait_image_gives_a_portrait_video_with_a_wan_i2v_preset(run_cli, tiny_pipeline_dir, tmp_path):
    """wan2.1-i2v-480p as shipped, but for its area (832x480 / 4 a side: a tiny model's
    positional table is too short for 480x832, and that many pixels take a minute here)."""
    text = (REPO / "presets" / "wan2.1-i2v-480p.toml").read_text()
    assert "width = 832 " in text and "height = 480\n" in text and 'size = "auto"' in text
    preset = tmp_path / "wan-i2v-small.toml"
    preset.write_text(text.replace("width = 832 ", "width = 208 ").replace("height = 480\n", "height = 120\n"))
    portrait = _image(tmp_path / "portrait.png", 480, 832)
    common = [
        "a cat",
        "--preset",
        preset,
        "--model",
        tiny_pipeline_dir("WanImageToVideoPipeline"),
        "--image",
        portrait,
        "--steps",
        "2",
        "--frames",
        "5",
        "--seed",
        "1",
        "--device",
        "cpu",
    ]

    result = run_cli(*common, "-o", tmp_path / "auto.mp4")
    assert result.exit_code == 0, result.stderr
    # 208 x 120 pixels at 480:832 is 120 x 208, rounded down to multiples of 16: 112 x 208.
    assert "size auto -> 112x208: the preset's 208x120 area at the image's 480x832 aspect ratio, sides divisible by 16" in result.stderr
    assert read_frames(tmp_path / "auto.mp4").shape[1:3] == (208, 112)  # (height, width): portrait
    recipe = read_recipe(tmp_path / "auto.mp4")
    assert (recipe["size"], recipe["width"], recipe["height"]) == ("auto", 112, 208)

    result = run_cli(*common, "--size", "32x48", "-o", tmp_path / "given.mp4")  # an explicit size wins
    assert result.exit_code == 0, result.stderr
    assert "size auto" not in result.stderr
    assert read_frames(tmp_path / "given.mp4").shape[1:3] == (48, 32)
    recipe = read_recipe(tmp_path / "given.mp4")
    assert (recipe["size"], recipe["width"], recipe["height"]) == (None, 32, 48)


def test_dry_run_shows_the_size_auto_resolves_to(run_cli, tmp_path):
    """The shipped preset's own area (no weights needed): a portrait photo turned by its EXIF
    orientation (a phone's: stored 832x480, shown 480x832) gives 480x832, as diffusers'
    load_image will turn it."""
    import json

    turned = _image(tmp_path / "phone.jpg", 832, 480, orientation=6)
    result = run_cli("a cat", "--preset", "wan2.1-i2v-480p", "--image", turned, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert (settings["size"], settings["width"], settings["height"]) == ("auto", 480, 832)
    assert "size auto -> 480x832: the preset's 832x480 area at the image's 480x832 aspect ratio" in result.stderr


def test_size_auto_without_an_image_and_where_it_cannot_be(run_cli, tiny_wan_dir, tmp_path):
    import json

    # No image to take the ratio from: the preset's own size, said in a line.
    result = run_cli("a cat", "--preset", "wan2.1-t2v-1.3b", "--size", "auto", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert (json.loads(result.stdout)["settings"]["width"], json.loads(result.stdout)["settings"]["height"]) == (832, 480)
    assert "size auto -> 832x480: no --image to take the aspect ratio from, so the preset's own size" in result.stderr
    # An image that cannot be read: one line, exit 2, before anything loads.
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = run_cli("a cat", "--preset", "wan2.1-i2v-480p", "--image", broken, "-o", tmp_path / "x.mp4")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: cannot read image {broken}: ")
    assert "loaded" not in result.stderr
    # A model without a preset has no area to keep.
    result = run_cli("a cat", "--model", tiny_wan_dir, "--size", "auto", "-o", tmp_path / "x.mp4")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "Error: --size auto takes its pixel area from a preset's size, and there is none here: give --size WIDTHxHEIGHT"
    )
