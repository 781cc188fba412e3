"""Video input beyond Wan video-to-video, and long videos: the real `vidgen generate` on tiny
random pipelines of each preset's own class, saved as the real repository is, files read back.

- `wan2.1-vace-1.3b` (WanVACEPipeline): --video with --mask (one image, or a video), and
  --image as its reference image;
- `ltx2-condition` (LTX2ConditionPipeline, from an LTX2Pipeline folder): --video conditions
  the start of an output of --frames frames, with its soundtrack;
- `skyreels-v2-df-1.3b` (SkyReelsV2DiffusionForcingPipeline): a clip longer than one window,
  its extras (--extra) checked, snapped and reaching the pipeline;
- `skyreels-v2-df-1.3b-extend` (SkyReelsV2DiffusionForcingVideoToVideoPipeline, from a
  diffusion forcing folder): the input video followed by new frames.

PNG folders are written where frames are compared exactly; MP4s where the file is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_video_input import _write_video
from vidgen.media.readback import read_frames, read_recipe

PROMPT = "a red fox running in the snow"
CPU = ["--device", "cpu", "--dtype", "float32", "--seed", "5", "--steps", "2", "--size", "32x32"]


def _read_mp4(path: Path) -> tuple[int, tuple[int, int], float]:
    """(frames, (width, height), fps) as imageio-ffmpeg reads the file, not vidgen."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), tuple(meta["size"]), float(meta["fps"])


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0].removeprefix("Error: ")


def _mask_image(path: Path, value: int) -> Path:
    from PIL import Image

    Image.fromarray(np.full((48, 48), value, dtype=np.uint8)).save(path)
    return path


# ---- Wan VACE ----


@pytest.fixture
def vace(run_cli, tiny_pipeline_dir, tmp_path):
    """`vace(*args)` -> result: the real command on a tiny WanVACEPipeline (its repository's class)."""
    model = tiny_pipeline_dir("WanVACEPipeline")

    def run(*args):
        return run_cli("generate", PROMPT, "--preset", "wan2.1-vace-1.3b", "--model", model, *CPU, *args)

    return run


def test_vace_mask_decides_what_is_regenerated(vace, tmp_path):
    video = _write_video(tmp_path / "in.mp4", 11, brightness=60)
    keep, regenerate = _mask_image(tmp_path / "black.png", 0), _mask_image(tmp_path / "white.png", 255)
    frames = {}
    for name, mask in (("keep", keep), ("regenerate", regenerate)):
        result = vace("--video", video, "--mask", mask, "-o", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        assert "loaded WanVACEPipeline from" in result.stderr
        assert "frames 11 -> 9: this model takes 4k+1, at most 81 frames" in result.stderr
        frames[name] = read_frames(tmp_path / name).astype(int)
        assert frames[name].shape == (9, 32, 32, 3)
        recipe = read_recipe(tmp_path / name)
        assert (recipe["video"], recipe["mask"], recipe["pipeline"]) == (str(video), str(mask), "WanVACEPipeline")
    # Same seed and video: only the mask differs, and it reaches the pipeline.
    assert not np.array_equal(frames["keep"], frames["regenerate"])

    # A mask video (one mask per frame) in an MP4, read back: frames, size, the preset's fps.
    mask_video = _write_video(tmp_path / "mask.mp4", 9, brightness=255)
    result = vace("--video", video, "--mask", mask_video, "-o", tmp_path / "out.mp4")
    assert result.exit_code == 0, result.stderr
    assert _read_mp4(tmp_path / "out.mp4") == (9, (32, 32), 16.0)


def test_vace_takes_image_as_its_reference(vace, tmp_path):
    """--image is VACE's reference image: it changes the video, and is not a frame of it."""
    video = _write_video(tmp_path / "in.mp4", 9, brightness=60)
    frames = {}
    for name, value in (("dark", 0), ("light", 255)):
        out = tmp_path / f"ref-{name}"
        result = vace("--video", video, "--image", _mask_image(tmp_path / f"{name}.png", value), "-o", out)
        assert result.exit_code == 0, result.stderr
        frames[name] = read_frames(out).astype(int)
        assert frames[name].shape == (9, 32, 32, 3)
        assert read_recipe(out)["image"] == str(tmp_path / f"{name}.png")
    assert not np.array_equal(frames["dark"], frames["light"]), "the reference image did not reach the pipeline"


def test_bad_masks_are_one_line_exit_2(vace, run_cli, tmp_path):
    video = _write_video(tmp_path / "in.mp4", 9, brightness=60)
    (tmp_path / "text.png").write_text("not an image")
    short = _write_video(tmp_path / "short.mp4", 5, brightness=255)
    cases = [
        (["--mask", tmp_path / "missing.png"], f"mask not found: {tmp_path / 'missing.png'}"),
        (["--mask", tmp_path / "text.png"], f"cannot read mask {tmp_path / 'text.png'}: "),
        (["--mask", short], f"mask {short} has 5 frames; the video uses 9 (give one mask frame per video frame, or a single image)"),
    ]
    for args, message in cases:
        out = tmp_path / "x.mp4"
        assert _one_error_line(vace("--video", video, *args, "-o", out)).startswith(message)
        assert not out.exists()
    # Usage mistakes are caught before any model is read (no --model: the hub is offline).
    result = run_cli("generate", PROMPT, "--preset", "wan2.1-vace-1.3b", "--mask", tmp_path / "x.png", "-o", tmp_path / "x.mp4")
    assert "--mask needs --video: the mask marks what to regenerate in that video" in _one_error_line(result)
    result = run_cli(
        "generate", PROMPT, "--preset", "wan2.1-v2v-1.3b", "--video", video, "--mask", tmp_path / "x.png", "-o", tmp_path / "x.mp4"
    )
    assert _one_error_line(result) == "preset wan2.1-v2v-1.3b takes no --mask (a mask is for Wan VACE presets such as wan2.1-vace-1.3b)"


# ---- LTX-2 conditioning ----


def test_ltx2_condition_follows_the_video_and_keeps_the_sound(run_cli, tiny_pipeline_dir, tmp_path):
    from tests.test_audio import read_streams

    model = tiny_pipeline_dir("LTX2Pipeline", "ltx2-condition")  # Lightricks/LTX-2 names LTX2Pipeline
    dark, light = _write_video(tmp_path / "dark.mp4", 11, brightness=20), _write_video(tmp_path / "light.mp4", 11, brightness=235)
    frames = {}
    for name, video in (("dark", dark), ("light", light)):
        out = tmp_path / f"out-{name}.mp4"
        result = run_cli(
            "generate",
            PROMPT,
            "--preset",
            "ltx2-condition",
            "--model",
            model,
            "--video",
            video,
            "--frames",
            "17",
            "--fps",
            "8",
            *CPU,
            "-o",
            out,
            "--json",
        )
        assert result.exit_code == 0, result.stderr
        assert "loaded LTX2ConditionPipeline from" in result.stderr
        # The output has --frames frames; the video's first 8k+1 condition its start.
        assert "input video frames 11 -> 9: the first 9 condition the start (this model takes 8k+1 frames)" in result.stderr
        assert json.loads(result.stdout)["audio"] is True
        streams = read_streams(out)
        assert streams["frames"] == 17
        assert abs(streams["audio"]["seconds"] - 17 / 8) <= 1 / 8  # sound as long as the video
        assert _read_mp4(out)[1:] == ((32, 32), 8.0)
        frames[name] = read_frames(out).astype(int)
    assert not np.array_equal(frames["dark"], frames["light"]), "the output does not follow the input video"


# ---- SkyReels-V2 diffusion forcing ----

# Windows scaled to tiny clips: 9 frames a window (the real model's 97), 5 shared (17).
TINY_WINDOWS = ["--extra", "base_num_frames=9", "--extra", "overlap_history=5"]


@pytest.fixture
def skyreels(run_cli, tiny_pipeline_dir):
    model = tiny_pipeline_dir("SkyReelsV2DiffusionForcingPipeline")

    def run(preset: str, *args):
        return run_cli("generate", PROMPT, "--preset", preset, "--model", model, *CPU, *args)

    return run


def test_long_video_is_longer_than_one_window_and_the_extras_reach_the_pipeline(skyreels, tmp_path):
    # --seconds 3 at 8 fps is 24 frames, snapped to 25 (4k+1): more than two 9-frame windows.
    result = skyreels("skyreels-v2-df-1.3b", "--seconds", "3", "--fps", "8", *TINY_WINDOWS, "-o", tmp_path / "long.mp4")
    assert result.exit_code == 0, result.stderr
    assert "frames 24 -> 25: this model takes 4k+1 frames" in result.stderr
    assert _read_mp4(tmp_path / "long.mp4") == (25, (32, 32), 8.0)
    recipe = read_recipe(tmp_path / "long.mp4")
    assert recipe["extras"] == {"base_num_frames": 9, "overlap_history": 5, "ar_step": 0, "addnoise_condition": 20.0}

    # Another overlap makes the windows differently, so the same seed gives another video.
    result = skyreels(
        "skyreels-v2-df-1.3b",
        "--frames",
        "25",
        "--fps",
        "8",
        "--extra",
        "base_num_frames=9",
        "--extra",
        "overlap_history=1",
        "-o",
        tmp_path / "overlap-1.mp4",
    )
    assert result.exit_code == 0, result.stderr
    assert read_recipe(tmp_path / "overlap-1.mp4")["extras"]["overlap_history"] == 1
    long, other = read_frames(tmp_path / "long.mp4").astype(int), read_frames(tmp_path / "overlap-1.mp4").astype(int)
    assert long.shape == other.shape == (25, 32, 32, 3)
    # (The tiny random model's frames are all near grey, so the difference is small, but the
    # runs are exact: the same settings give the same file.)
    assert not np.array_equal(long, other), "overlap_history did not reach the pipeline"


def test_video_extension_puts_the_input_first(skyreels, tmp_path):
    video = _write_video(tmp_path / "in.mp4", 11, brightness=200, size=32)
    out = tmp_path / "extended"
    result = skyreels("skyreels-v2-df-1.3b-extend", "--video", video, "--frames", "13", "--fps", "8", *TINY_WINDOWS, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "loaded SkyReelsV2DiffusionForcingVideoToVideoPipeline from" in result.stderr
    frames = read_frames(out).astype(int)
    assert frames.shape == (11 + 13, 32, 32, 3)  # the input, then --frames more
    source = read_frames(video).astype(int)
    # The input comes back as it was (up to the pipeline's round trip through [-1, 1]) ...
    assert np.abs(frames[:11] - source).mean() < 3
    # ... and the new frames are generated (the tiny random model's frames look nothing like it).
    assert np.abs(frames[11:] - source[-1]).mean() > 20

    result = skyreels("skyreels-v2-df-1.3b-extend", "--video", video, "--frames", "5", *TINY_WINDOWS, "-o", tmp_path / "x.mp4")
    assert _one_error_line(result).startswith("--frames 5 adds nothing: extending starts with the input's last overlap_history (5) frames")
    short = _write_video(tmp_path / "short.mp4", 3, brightness=200, size=32)
    result = skyreels("skyreels-v2-df-1.3b-extend", "--video", short, *TINY_WINDOWS, "-o", tmp_path / "x.mp4")
    assert _one_error_line(result) == "the input video has 3 frames; extending it needs at least overlap_history (5)"


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        (["overlap_history=97"], "extra overlap_history (97) must be fewer frames than base_num_frames (97), the window it overlaps"),
        (["ar_step=-1"], "extra ar_step must be from 0 to 1000, got -1"),
        (["addnoise_condition=99"], "extra addnoise_condition must be from 0 to 60 (SkyReels-V2 recommends 20), got 99"),
        (["overlap_history=abc"], "--extra overlap_history must be a whole number, got 'abc'"),
        (["overlap-history"], "--extra must look like NAME=VALUE (for example overlap_history=37), got 'overlap-history'"),
        (
            ["bogus=1"],
            "unknown extra 'bogus' (known: overlap_history, base_num_frames, ar_step, causal_block_size, addnoise_condition, sampling_type, temporal_tile_size, temporal_overlap)",
        ),
        (["overlap_history=18", "--strict"], "overlap_history 18 is not valid (this model takes 4k+1 frames; nearest 17) (--strict)"),
    ],
)
def test_bad_extras_are_one_line_exit_2(extras, message, run_cli, tmp_path):
    args = [arg if arg.startswith("--") else f"--extra={arg}" for arg in extras]
    result = run_cli("generate", PROMPT, "--preset", "skyreels-v2-df-1.3b", *args, "-o", tmp_path / "x.mp4")
    assert _one_error_line(result) == message


def test_extras_are_snapped_and_causal_blocks_change_the_frame_rule():
    from vidgen.engine.prepare import merge_settings
    from vidgen.settings.presets import load_preset

    preset = load_preset("skyreels-v2-df-1.3b")
    settings, notes = merge_settings(preset, [{"prompt": PROMPT, "frames": 250, "extras": {"overlap_history": 18}}], model=None)
    assert (settings.frames, settings.extras["overlap_history"]) == (249, 17)
    assert notes == ["overlap_history 18 -> 17: this model takes 4k+1 frames", "frames 250 -> 249: this model takes 4k+1 frames"]
    # Asynchronous mode: latent frames go in blocks of causal_block_size, so counts are whole
    # blocks (20k+17 for 5), the model card's 97 and 17 among them; --seconds 30 at 24 fps
    # (720 frames) becomes 717.
    settings, notes = merge_settings(
        preset, [{"prompt": PROMPT, "seconds": 30, "extras": {"ar_step": 5, "causal_block_size": 5}}], model=None
    )
    assert (settings.frames, settings.extras["base_num_frames"], settings.extras["overlap_history"]) == (717, 97, 17)
    assert notes == ["frames 720 -> 717: this model takes 20k+17 frames"]


def test_an_extra_the_pipeline_does_not_take_is_one_line(run_cli, tiny_wan_dir, tmp_path):
    result = run_cli("generate", PROMPT, "--model", tiny_wan_dir, *CPU, "--frames", "5", "--extra", "ar_step=5", "-o", tmp_path / "x.mp4")
    assert result.exit_code == 2
    # Known from model_index.json's class, before any weights are read: no "loaded ..." note.
    assert "loaded" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == ["Error: WanPipeline takes no ar_step; --extra ar_step is for another preset's pipeline"], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()


class _RecordedProgress:
    """A ui.Progress stand-in that keeps what the generator reports."""

    def __init__(self):
        self.steps, self.phases = [], []

    def step(self, completed: int) -> None:
        self.steps.append(completed)

    def phase(self, name: str) -> None:
        self.phases.append(name)


@pytest.mark.parametrize(("overlap", "windows"), [(5, 5), (1, 3)])
def test_each_window_runs_the_steps_and_the_bar_follows(overlap, windows):
    """25 frames in 9-frame windows: 1 + ceil(16 / (9 - overlap)) windows, each running every
    step (the pipeline counts each window's steps from 0); the bar rises once to the end."""
    import inspect

    from tests.tiny_pipelines import make_tiny_pipeline
    from vidgen.engine.generate import VideoGenerator
    from vidgen.engine.loading import LoadedPipeline
    from vidgen.engine.prepare import merge_settings
    from vidgen.settings.extras import windows as count_windows
    from vidgen.settings.presets import load_preset

    pipe = make_tiny_pipeline("SkyReelsV2DiffusionForcingPipeline")
    pipe.set_progress_bar_config(disable=True)
    loaded = LoadedPipeline(
        pipe=pipe,
        class_name=type(pipe).__name__,
        device="cpu",
        dtype="float32",
        offload="none",
        call_parameters=set(inspect.signature(type(pipe).__call__).parameters),
    )
    layer = {
        "prompt": PROMPT,
        "frames": 25,
        "fps": 8,
        "steps": 2,
        "width": 32,
        "height": 32,
        "extras": {"base_num_frames": 9, "overlap_history": overlap},
    }
    settings, _ = merge_settings(load_preset("skyreels-v2-df-1.3b"), [layer], model=None)
    assert count_windows(settings) == windows
    progress = _RecordedProgress()
    frames = VideoGenerator(loaded).generate(settings, seed=1, progress=progress)
    assert frames.shape == (25, 32, 32, 3)
    assert len(progress.steps) == 2 * windows  # one callback per step per window
    assert progress.steps == sorted(progress.steps) and progress.steps[-1] == 2
    assert progress.phases[-1] == "decode"


def test_an_extra_the_presets_pipeline_does_not_take_is_refused_before_loading():
    from vidgen.engine.prepare import merge_settings
    from vidgen.errors import UsageError
    from vidgen.settings.presets import load_preset

    # wan2.1-t2v-14b runs WanPipeline, which has no ar_step (SkyReels-V2 diffusion forcing's):
    # refused from the class alone, with no weights (none are downloaded here).
    with pytest.raises(UsageError, match="^WanPipeline takes no ar_step; --extra ar_step is for another preset's pipeline$"):
        merge_settings(load_preset("wan2.1-t2v-14b"), [{"prompt": PROMPT, "extras": {"ar_step": 2}}], model=None)
