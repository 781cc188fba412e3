"""Longer than one window (issue 33): the colour match at a join (vidgen.media.colormatch),
`vidgen extend` on tiny real pipelines, and sliding windows for Wan VACE.

Outputs are PNG folders where frames are compared exactly; input videos are written with
imageio-ffmpeg (not vidgen) and read back.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vidgen.engine import latents
from vidgen.media import colormatch
from vidgen.media.readback import read_frames, read_recipe


def _scene(frames: int, size: int = 48) -> np.ndarray:
    """A textured scene that moves: colour gradients sliding right, a bright square crossing,
    fixed noise (uint8 (T, H, W, 3))."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    texture = rng.normal(0, 12, (size, size, 3))
    out = []
    for t in range(frames):
        shift = x + 2 * t
        rgb = np.stack([120 + 80 * np.sin(shift / 9), 100 + 60 * np.cos(y / 7 + t / 5), 90 + 50 * np.sin((shift + y) / 11)], axis=-1)
        left = (3 * t) % (size - 10)
        rgb[20:30, left : left + 10] = (230, 220, 60)
        out.append(rgb + texture)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _drift(frames: np.ndarray) -> np.ndarray:
    """Warmer, brighter and more saturated, as windows drift."""
    rgb = frames.astype(np.float64) * np.array([1.08, 1.0, 0.9]) + 10
    luma = rgb @ np.array([0.2126, 0.7152, 0.0722])
    return np.clip(np.round(luma[..., None] + 1.25 * (rgb - luma[..., None])), 0, 255).astype(np.uint8)


def _mean_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    return float(colormatch.delta_e_2000(colormatch.rgb_to_lab(a), colormatch.rgb_to_lab(b)).mean())


def test_colour_match_moves_a_drifted_window_back_to_the_frames_it_continues():
    scene = _scene(20)
    kept, truth = scene[:5], scene[5:]  # the frames a window continues, and what should follow them
    drifted = _drift(scene)
    rendered, new = drifted[:5], drifted[5:]  # the window's rendering of the overlap, then its new frames
    before = _mean_delta_e(new, truth)
    matched = colormatch.match_window(new, rendered, kept)
    after = _mean_delta_e(matched, truth)
    assert before > 6, before  # a visible drift
    assert after < before / 2, (before, after)
    half = _mean_delta_e(colormatch.match_window(new, rendered, kept, strength=0.5), truth)
    assert after < half < before
    assert colormatch.match_window(new, rendered, kept, strength=0) is new  # the off switch


# ---- vidgen extend and sliding windows, on tiny real pipelines ----

PROMPT = "a red fox running in the snow"
CPU = ("--steps", "2", "--size", "32x32", "--device", "cpu", "--dtype", "float32")


def _write_input(path: Path, frames: int, size: int = 32, fps: int = 16) -> Path:
    """A bright square sliding right over a dark background, written by imageio-ffmpeg."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=fps, macro_block_size=1)
    writer.send(None)
    for index in range(frames):
        pixels = np.full((size, size, 3), 40, np.uint8)
        pixels[10:20, 2 * index : 2 * index + 8] = (220, 200, 60)
        writer.send(pixels.tobytes())
    writer.close()
    return path


@pytest.fixture
def made_frames(monkeypatch):
    """`watch(cls)`: a list that gets, for each call of a `cls` pipeline, its keyword
    arguments and the frames it returned (uint8, as vidgen turns them)."""

    def watch(cls) -> list[SimpleNamespace]:
        calls: list[SimpleNamespace] = []
        original = cls.__call__

        @functools.wraps(original)  # vidgen reads the call's parameters from its signature
        def spy(self, *args, **kwargs):
            output = original(self, *args, **kwargs)
            decoded = output.frames
            if kwargs.get("output_type") == "latent":  # the Wan family: vidgen decodes as the pipeline would (vidgen.engine.latents)
                decoded = latents.decode(self.vae, output.frames, self.video_processor)
            frames = (
                (np.clip(np.asarray(decoded[0]), 0.0, 1.0) * 255.0).round().astype(np.uint8)
            )  # in the pipeline's float32, as vidgen does
            calls.append(SimpleNamespace(kwargs=kwargs, frames=frames))
            return output

        monkeypatch.setattr(cls, "__call__", spy)
        return calls

    return watch


def _pil_frames(images) -> np.ndarray:
    return np.stack([np.asarray(image.convert("RGB")) for image in images])


def test_three_vace_windows_join_with_no_repeated_or_missing_frame(run_cli, tiny_pipeline_dir, made_frames, tmp_path):
    """A storyboard of 17 frames at 16 fps with `-p wan2.1-vace-1.3b --window 9`: the first
    window from its shot's prompt, two more continuing the last 5 frames under VACE's mask;
    the output is, frame for frame, window 1 then each later window's frames after its
    overlap, colour-matched."""
    from diffusers import WanVACEPipeline

    calls = made_frames(WanVACEPipeline)
    shots, second = tmp_path / "shots.txt", "the fox runs into the forest"
    shots.write_text(f"0.5625s {PROMPT}\n0.5s {second}\n")  # 9 then 8 frames
    out = tmp_path / "long"
    result = run_cli(
        shots,
        "--story",
        "--preset",
        "wan2.1-vace-1.3b",
        "--model",
        tiny_pipeline_dir("WanVACEPipeline"),
        *CPU,
        "--window",
        "9",
        "--seed",
        "11",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert "3 windows of at most 9 frames, overlap 5" in result.stderr  # said before the work starts
    frames = read_frames(out)
    assert len(frames) == 17 and len(calls) == 3
    assert [call.kwargs["prompt"] for call in calls] == [PROMPT, second, second]  # each window its shot's prompt
    assert all(call.kwargs["num_frames"] <= 9 for call in calls)  # one window on the card at a time
    assert "video" not in calls[0].kwargs  # the first window: from the prompt
    np.testing.assert_array_equal(frames[:9], calls[0].frames)
    expected = calls[0].frames
    for call, start in zip(calls[1:], (9, 13)):
        control, mask = _pil_frames(call.kwargs["video"]), _pil_frames(call.kwargs["mask"])
        np.testing.assert_array_equal(control[:5], frames[start - 5 : start])  # it continues the video so far
        assert (mask[:5] == 0).all() and (mask[5:] == 255).all()  # black: keep; white: make
        new = colormatch.match_window(call.frames[5:9], call.frames[:5], expected[-5:])
        assert not np.array_equal(new, call.frames[5:9])  # the match changed them: it is on by default
        expected = np.concatenate([expected, new])
    np.testing.assert_array_equal(frames, expected)
    recipe = read_recipe(out)
    assert [(w["index"], w["seed"], w["prompt"], w["start"], w["new"], w["keep"]) for w in recipe["windows"]] == [
        (1, 11, PROMPT, 0, 9, 0),
        (2, 12, second, 9, 4, 5),
        (3, 13, second, 13, 4, 5),
    ]
    assert (recipe["overlap"], recipe["window"], recipe["color_match"], recipe["frames"]) == (5, 9, 1.0, 17)
    shown = run_cli("inspect", out)
    assert "window 3: frames 13-16, continues 5, seed 13: " + second in shown.stdout


@pytest.mark.parametrize(
    "pipeline, preset, window, overlap",
    [
        ("WanImageToVideoPipeline", "wan2.1-i2v-480p", "9", 1),
        ("LTXConditionPipeline", None, "17", 9),
    ],
)
def test_extend_keeps_the_input_then_adds_what_was_asked(
    pipeline, preset, window, overlap, run_cli, tiny_pipeline_dir, made_frames, tmp_path
):
    """`vidgen extend IN PROMPT --frames 10`: the input's frames first, as they were read, then
    10 new ones: each window's frames after what it continues (I2V: the last frame; LTX
    condition: the last 9 as a video condition)."""
    import diffusers

    calls = made_frames(getattr(diffusers, pipeline))
    if preset is None:  # the shipped LTX condition preset is two-stage: a one-call preset for the test
        preset = str(tmp_path / "ltx-condition.toml")
        Path(preset).write_text(
            'name = "ltx-condition"\nmodel = "Lightricks/LTX-Video-0.9.7-dev"\npipeline = "LTXConditionPipeline"\n'
            "[defaults]\nframes = 121\nfps = 24\n[constraints]\nframes_step = 8\nframes_offset = 1\n"
            "size_multiple = 32\nmin_frames = 9\nmax_frames = 257\n"
        )
    source = _write_input(tmp_path / "in.mp4", 12)
    out = tmp_path / "out"
    # wan2.1-i2v-480p's default --size auto continues the 32x32 input at its own size (no --size given).
    size = () if preset == "wan2.1-i2v-480p" else CPU[2:4]
    result = run_cli(
        "extend",
        source,
        PROMPT,
        "--preset",
        preset,
        "--model",
        tiny_pipeline_dir(pipeline),
        *CPU[:2],
        *CPU[4:],
        *size,
        "--window",
        window,
        "--frames",
        "10",
        "--seed",
        "4",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert ("size auto -> 32x32: the input video's own size" in result.stderr) == (not size)
    frames, before = read_frames(out), read_frames(source)
    assert len(frames) == 12 + 10
    np.testing.assert_array_equal(frames[:12], before)  # the input, unchanged
    video = before
    for call in calls:
        kept = _pil_frames(call.kwargs["video"]) if "video" in call.kwargs else np.asarray(call.kwargs["image"].convert("RGB"))[None]
        assert len(kept) == overlap
        np.testing.assert_array_equal(kept, video[-overlap:])
        new = call.frames[overlap : overlap + min(len(call.frames) - overlap, 22 - len(video))]
        video = np.concatenate([video, colormatch.match_window(new, call.frames[:overlap], kept)])
    np.testing.assert_array_equal(frames, video)
    recipe = read_recipe(out)
    assert recipe["extended_from"] == {"path": str(source), "frames": 12}
    assert [window["seed"] for window in recipe["windows"]] == list(range(4, 4 + len(calls)))


def test_a_failed_window_leaves_the_windows_made_for_extend_to_go_on_from(run_cli, tiny_pipeline_dir, monkeypatch, tmp_path):
    from diffusers import WanVACEPipeline

    original, calls = WanVACEPipeline.__call__, []

    @functools.wraps(original)
    def fail_second(self, *args, **kwargs):
        calls.append(kwargs["num_frames"])
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WanVACEPipeline, "__call__", fail_second)
    model, out = tiny_pipeline_dir("WanVACEPipeline"), tmp_path / "long"
    common = ("--preset", "wan2.1-vace-1.3b", "--model", model, *CPU, "--window", "9", "--seed", "2")
    failed = run_cli(PROMPT, *common, "--frames", "17", "-o", out)
    assert failed.exit_code == 1 and not out.exists()
    so_far = tmp_path / "long.so-far.mp4"
    assert f"windows 1-1 of 3 are in {so_far} (9 frames)" in failed.stderr
    assert [window["index"] for window in read_recipe(so_far)["windows"]] == [1]
    kept = read_frames(so_far)
    assert len(kept) == 9

    monkeypatch.setattr(WanVACEPipeline, "__call__", original)
    resumed = run_cli("extend", so_far, PROMPT, *common, "--frames", "8", "-o", out)
    assert resumed.exit_code == 0, resumed.stderr
    frames = read_frames(out)
    assert len(frames) == 17
    np.testing.assert_array_equal(frames[:9], kept)
    assert so_far.exists()  # it was the input: not removed


@pytest.mark.parametrize(
    "frames, args, message",
    [
        (12, ("--preset", "wan2.1-t2v-1.3b", "--size", "32x32"), "preset wan2.1-t2v-1.3b (WanPipeline) cannot continue a video"),
        (
            3,
            ("--preset", "wan2.1-vace-1.3b", "--size", "32x32"),
            "the input video has 3 frames; continuing it needs at least the overlap (5)",
        ),
        (
            12,
            ("--preset", "wan2.1-vace-1.3b", "--size", "32x32", "--window", "9", "--overlap", "9"),
            "--overlap 9 is not less than a window of 9 frames",
        ),
        (
            12,
            ("--preset", "wan2.1-vace-1.3b"),
            "the input video is 32x32 and the run would make 832x480: pass --size auto (the input's own size)",
        ),
        (
            12,
            ("--preset", "wan2.1-i2v-480p", "--size", "32x32", "--overlap", "3"),
            "--overlap 3: WanImageToVideoPipeline continues from one frame",
        ),
    ],
)
def test_bad_input_to_extend_is_one_line_exit_2_before_loading(frames, args, message, run_cli, tmp_path):
    """Refused before any weights load: the model named does not even exist."""
    source = _write_input(tmp_path / "in.mp4", frames)
    result = run_cli("extend", source, PROMPT, *args, "--model", tmp_path / "no-model-here", "-o", tmp_path / "out.mp4")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: " + message), lines
