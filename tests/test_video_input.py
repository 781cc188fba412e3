"""`--video` and `--strength` with the `wan2.1-v2v-1.3b` preset (WanVideoToVideoPipeline), on a
tiny folder saved as WanPipeline, as the real Wan-AI/Wan2.1-T2V-1.3B-Diffusers is.

Input videos are written with imageio-ffmpeg (not vidgen); outputs are PNG folders so
frames compare exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidgen.media.readback import read_frames, read_recipe

PROMPT = "a red fox running in the snow"
PRESET = "wan2.1-v2v-1.3b"


def _write_video(path: Path, frames: int, *, brightness: int, size: int = 48) -> Path:
    """A square sliding right over a flat background, `size` px (resized by the pipeline)."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=8, macro_block_size=1)
    writer.send(None)
    for index in range(frames):
        pixels = np.full((size, size, 3), brightness, dtype=np.uint8)
        left = index * (size - 12) // max(frames - 1, 1)
        pixels[size // 2 - 6 : size // 2 + 6, left : left + 12] = 255 - brightness
        writer.send(pixels.tobytes())
    writer.close()
    return path


@pytest.fixture
def v2v(run_cli, tiny_pipeline_dir, tmp_path):
    """`v2v(video, *args)` -> (result, output folder): the real command on the tiny model."""

    def run(video: Path, *args: str):
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        result = run_cli(
            "generate",
            PROMPT,
            "--preset",
            PRESET,
            "--model",
            tiny_pipeline_dir("WanPipeline"),
            "--video",
            video,
            "--steps",
            "4",
            "--size",
            "32x32",
            "--seed",
            "5",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            *args,
            "-o",
            out,
        )
        return result, out

    return run


def test_output_follows_the_input_video_and_the_strength(v2v, tmp_path):
    dark, light = _write_video(tmp_path / "dark.mp4", 9, brightness=20), _write_video(tmp_path / "light.mp4", 9, brightness=235)
    videos = {}
    for name, video, strength in (("dark", dark, "0.5"), ("light", light, "0.5"), ("dark-strong", dark, "1.0")):
        result, out = v2v(video, "--strength", strength)
        assert result.exit_code == 0, result.stderr
        assert "loaded WanVideoToVideoPipeline from" in result.stderr
        recipe = read_recipe(out)
        assert (recipe["video"], recipe["strength"], recipe["pipeline"]) == (str(video), float(strength), "WanVideoToVideoPipeline")
        videos[name] = read_frames(out).astype(int)
        assert videos[name].shape == (9, 32, 32, 3)
    # Half the steps start from the noised input, so a dark and a light input give different
    # videos; were the video ignored, the seed alone would make them equal. (The tiny random
    # VAE barely encodes its input, so the difference is small, but runs are exact.) ...
    assert not np.array_equal(videos["light"], videos["dark"])
    # ... and strength 1.0 starts from pure noise, away from the half-strength video.
    assert not np.array_equal(videos["dark"], videos["dark-strong"])


def test_frame_count_comes_from_the_video_snapped_down(v2v, tmp_path):
    video = _write_video(tmp_path / "eleven.mp4", 11, brightness=60)
    result, out = v2v(video)
    assert result.exit_code == 0, result.stderr
    assert "frames 11 -> 9: this model takes 4k+1, at most 81 frames" in result.stderr
    assert len(read_frames(out)) == 9 and read_recipe(out)["strength"] == 0.7  # the preset's

    result, out = v2v(video, "--frames", "5")
    assert result.exit_code == 0, result.stderr
    assert "frames" not in result.stderr
    assert len(read_frames(out)) == 5

    result, out = v2v(video, "--frames", "20")
    assert result.exit_code == 0, result.stderr
    assert "frames 20 -> 9: this model takes 4k+1, at most 81 frames and the input video has 11" in result.stderr

    result, _ = v2v(video, "--strict")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: frames 11 is not valid (this model takes 4k+1, at most 81 frames; nearest 9) (--strict)"


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda tmp: tmp / "missing.mp4", [], "video not found: {video}"),
        (lambda tmp: (tmp / "text.mp4").write_text("not a video") and tmp / "text.mp4", [], "cannot read video {video}: "),
        (
            lambda tmp: _write_video(tmp / "short.mp4", 3, brightness=60),
            [],
            "the input video has 3 frames; this model needs at least 5 (4k+1, at most 81)",
        ),
        (
            lambda tmp: _write_video(tmp / "ok.mp4", 5, brightness=60),
            ["--strength", "1.5"],
            "--strength must be above 0 and at most 1, got 1.5",
        ),
    ],
)
def test_bad_video_input_is_one_line_exit_2(make, args, message, v2v, tmp_path):
    video = make(tmp_path)
    result, out = v2v(video, *args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: " + message.format(video=video)), result.stderr
    assert not out.exists()


def test_video_options_and_presets_must_match(run_cli, tiny_pipeline_dir, tmp_path):
    video = _write_video(tmp_path / "in.mp4", 5, brightness=60)
    result = run_cli("generate", PROMPT, "--preset", PRESET, "-o", tmp_path / "x.mp4")
    assert result.exit_code == 2 and result.stderr.strip() == f"Error: preset {PRESET} is video-to-video: pass --video PATH"
    result = run_cli("generate", PROMPT, "--preset", "wan2.1-t2v-1.3b", "--video", video, "-o", tmp_path / "x.mp4")
    assert result.exit_code == 2 and result.stderr.strip() == "Error: preset wan2.1-t2v-1.3b is text-to-video and takes no --video"
    # An image-to-video folder cannot serve video-to-video: refused before loading.
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        PRESET,
        "--model",
        tiny_pipeline_dir("WanImageToVideoPipeline"),
        "--video",
        video,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "is an image-to-video WanImageToVideoPipeline, but preset wan2.1-v2v-1.3b runs WanVideoToVideoPipeline, which takes no image; choose the preset that matches the model (vidgen presets)"
    )


def test_prompts_file_lines_carry_their_own_video(run_cli, tiny_pipeline_dir, tmp_path):
    """A .jsonl line's `video` and `strength` reach the pipeline like --video and --strength;
    a line whose video cannot be read fails alone."""
    import json

    dark, light = _write_video(tmp_path / "dark.mp4", 11, brightness=20), _write_video(tmp_path / "light.mp4", 9, brightness=235)
    lines = [
        {"prompt": PROMPT, "video": str(dark), "strength": 0.5, "seed": 5, "output": "dark.mp4"},
        {"prompt": PROMPT, "video": str(light), "strength": 0.5, "seed": 5, "output": "light.mp4"},
        {"prompt": PROMPT, "video": str(tmp_path / "missing.mp4"), "output": "missing.mp4"},
        {"prompt": PROMPT, "output": "none.mp4"},
    ]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_cli(
        "batch",
        prompts,
        "-O",
        tmp_path / "out",
        "--preset",
        PRESET,
        "--model",
        tiny_pipeline_dir("WanPipeline"),
        "--steps",
        "4",
        "--size",
        "32x32",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--json",
    )
    assert result.exit_code == 1, result.stderr  # not every line succeeded
    names = {1: "dark", 2: "light", 3: "missing", 4: "none"}
    records = {names[record["line"]]: record for record in map(json.loads, result.stdout.splitlines())}
    assert records["dark"]["status"] == records["light"]["status"] == "done"
    assert (records["dark"]["settings"]["video"], records["dark"]["settings"]["strength"]) == (str(dark), 0.5)
    assert records["dark"]["settings"]["frames"] == 9  # 11 frames fitted down to 4k+1
    assert "line 1: frames 11 -> 9" in result.stderr
    assert records["missing"]["status"] == "failed" and records["missing"]["error"] == f"video not found: {tmp_path / 'missing.mp4'}"
    assert records["none"]["status"] == "failed" and "is video-to-video: pass --video PATH" in records["none"]["error"]
    dark_frames = read_frames(tmp_path / "out" / "dark.mp4").astype(int)
    light_frames = read_frames(tmp_path / "out" / "light.mp4").astype(int)
    assert len(dark_frames) == len(light_frames) == 9
    # Same seed and settings: only the line's video differs (the tiny VAE barely encodes it,
    # so the difference is small, but runs are exact).
    assert not np.array_equal(dark_frames, light_frames), "the output does not follow each line's video"
