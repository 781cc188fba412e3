"""Every bad input: one `Error: ...` line on stderr, the right exit code, no file left."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest


def assert_one_error_line(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def assert_work_folder_empty() -> None:
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["   "], "the prompt is empty"),
        (["a ball", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["a ball", "--frames", "-3"], "--frames must be at least 1, got -3"),
        (["a ball", "--num-videos", "0"], "--num-videos must be at least 1"),
        (["a ball", "--fps", "0"], "--fps must be positive"),
        (["a ball", "--crf", "60"], "--crf must be at most 51"),
        (["a ball", "--size", "big"], "--size must look like WIDTHxHEIGHT"),
        (["a ball", "--dtype", "float8"], "unknown dtype 'float8'"),
        (["a ball", "--device", "gpu0"], "unknown device 'gpu0'"),
        (["a ball", "--offload", "disk"], "--offload must be one of"),
        (["a ball", "--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["a ball", "--preset", "missing.toml"], "preset file not found"),
        (["a ball", "-o", "clip.avi"], "cannot write .avi files"),
        (["a ball", "-o", "no/such/folder/clip.mp4"], "output folder does not exist"),
        (["a ball", "-o", "/proc/clip.mp4"], "cannot write to output folder /proc"),
        (["a ball", "--steps", "abc"], "Invalid value for '--steps'"),
        (["a ball", "--frames", "9", "--seconds", "2"], "give --frames or --seconds, not both"),
        (["a ball", "-o", "-", "--json"], "--json and -o - both need standard output"),
        (["a ball", "-o", "-", "--num-videos", "2"], "-o - writes one video"),
    ],
)
def test_bad_input_exits_2_before_loading(run_cli, args, fragment):
    result = run_cli(*args)
    assert_one_error_line(result, 2, fragment)
    assert_work_folder_empty()


def test_several_problems_reported_together(run_cli):
    result = run_cli("a ball", "--steps", "0", "--fps", "-1")
    assert_one_error_line(result, 2, "--steps must be at least 1, got 0; --fps must be positive")


def test_empty_prompt_from_stdin(run_cli):
    assert_one_error_line(run_cli("-", input=""), 2, "the prompt is empty")


def test_cuda_device_absent_is_usage_error(generate_fake):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_error_line(generate_fake("a ball", "--device", "cuda"), 2, "device 'cuda' is not available")


def test_missing_local_model_folder(run_cli):
    assert_one_error_line(run_cli("a ball", "--model", "./no-such-model"), 2, "model folder not found")


def test_folder_that_is_not_a_pipeline(run_cli, tmp_path):
    assert_one_error_line(run_cli("a ball", "--model", tmp_path, "-o", "x.mp4"), 2, "no model_index.json")


def test_missing_hub_model_offline_names_model_and_pull(run_cli):
    result = run_cli("a ball", "--preset", "wan2.1-t2v-1.3b", "-o", "x.mp4")
    assert_one_error_line(result, 1, "model Wan-AI/Wan2.1-T2V-1.3B-Diffusers is not downloaded")
    assert "vidgen pull wan2.1-t2v-1.3b" in result.stderr
    assert_work_folder_empty()


def test_missing_builtin_weights(run_cli, tmp_path):
    preset = tmp_path / "gone.toml"
    preset.write_text('model = "builtin:no-such-model"\npipeline = "WanPipeline"\n')
    assert_one_error_line(run_cli("a ball", "--preset", preset, "-o", "x.mp4"), 1, "the built-in model has no weights")


@pytest.mark.model
def test_pipeline_class_mismatch(generate_tiny, tmp_path):
    preset = tmp_path / "cog.toml"
    preset.write_text('model = "THUDM/CogVideoX-2b"\npipeline = "CogVideoXPipeline"\n')
    result = generate_tiny("a ball", "--preset", preset, "-o", "x.mp4")
    assert_one_error_line(result, 2, "is a WanPipeline, but preset cog expects a CogVideoXPipeline")


def test_same_family_or_subclass_pipeline_class_is_accepted(monkeypatch):
    import diffusers

    from vidgen.engine.loading import check_pipeline_class
    from vidgen.errors import UsageError

    # A specialised pipeline from another package (a plugin's): a subclass, not of the family.
    special = type("SpecialWanPipeline", (diffusers.WanPipeline,), {"__module__": "someplugin.pipelines.special"})
    monkeypatch.setattr(diffusers, "SpecialWanPipeline", special, raising=False)

    assert check_pipeline_class("WanPipeline", "WanPipeline", "m", "p") is None
    assert check_pipeline_class("WanImageToVideoPipeline", "WanPipeline", "m", "p") is None  # same family
    assert check_pipeline_class("SpecialWanPipeline", "WanPipeline", "m", "p") is None  # a subclass
    assert check_pipeline_class("WanPipeline", None, "m", "p") is None  # ad-hoc --model: anything
    for actual, expected in (("CogVideoXPipeline", "WanPipeline"), ("WanPipeline", "SpecialWanPipeline")):  # neither
        with pytest.raises(UsageError, match=f"model m is a {actual}, but preset p expects a {expected}"):
            check_pipeline_class(actual, expected, "m", "p")


def test_unreadable_image(generate_fake, tmp_path):
    image = tmp_path / "broken.png"
    image.write_bytes(b"not a png")
    assert_one_error_line(generate_fake("a ball", "--image", image, "-o", "x.mp4"), 2, "cannot read image")
    assert_one_error_line(generate_fake("a ball", "--image", tmp_path / "none.png", "-o", "x.mp4"), 2, "image not found")
    assert_work_folder_empty()


def test_image_to_video_preset_needs_image(run_cli):
    assert_one_error_line(run_cli("a ball", "--preset", "wan2.1-i2v-480p"), 2, "is image-to-video: pass --image")


def test_debug_shows_traceback(run_cli, monkeypatch):
    result = run_cli("a ball", "--steps", "0", "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "Error: --steps" in result.stderr

    monkeypatch.setenv("VIDGEN_DEBUG", "1")
    assert "Traceback" in run_cli("a ball", "--steps", "0").stderr


@pytest.mark.model
def test_non_finite_frames_are_an_error_and_nothing_is_written(generate_tiny, monkeypatch):
    """NaN starting latents make NaN frames: the real pipeline, a real failure."""
    import torch

    from vidgen.engine.generate import VideoGenerator

    original = VideoGenerator.call_arguments

    def with_nan_latents(self, settings, seed, image):
        arguments = original(self, settings, seed, image)
        latent_frames = (settings.frames - 1) // 4 + 1
        arguments["latents"] = torch.full((1, 16, latent_frames, settings.height // 8, settings.width // 8), float("nan"))
        return arguments

    monkeypatch.setattr(VideoGenerator, "call_arguments", with_nan_latents)
    result = generate_tiny("a ball", "--seed", "1", "-o", "nan.mp4")
    assert result.exit_code == 1
    assert "Error: the model produced non-finite values" in result.stderr
    assert result.stdout == ""
    assert_work_folder_empty()


def test_ctrl_c_during_denoising_exits_130_and_leaves_nothing(generate_fake, monkeypatch):
    """A real SIGINT at the first step: the handler asks to stop, the step callback stops."""
    from vidgen import ui

    monkeypatch.setattr(ui.Progress, "step", lambda self, completed: os.kill(os.getpid(), signal.SIGINT))
    result = generate_fake("a ball", "--seed", "1", "-o", "stop.mp4")
    assert result.exit_code == 130
    assert "Error: interrupted during denoising; nothing was written" in result.stderr
    assert_work_folder_empty()


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import numpy as np

    from vidgen.errors import GenerationError
    from vidgen.media import video

    def broken_ffmpeg(frames, path, *args, **kwargs):  # kwargs: audio=
        path.write_bytes(b"partial")
        raise RuntimeError("ffmpeg died")

    monkeypatch.setattr(video, "_write_with_ffmpeg", broken_ffmpeg)
    frames = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(GenerationError, match="cannot write"):
        video.write_video(frames, Path.cwd() / "x.mp4", fps=8, recipe={})
    assert_work_folder_empty()


def test_usage_errors_from_click_are_one_line(run_cli):
    result = run_cli("generate")  # no prompt
    assert_one_error_line(result, 2, "Missing argument")
    result = run_cli("a ball", "--no-such-option")
    assert_one_error_line(result, 2, "No such option")


def test_a_value_error_before_denoising_is_bad_input(generate_fake):
    """diffusers checks its inputs with ValueError before the first step: the user's input (the
    fake pipeline refuses sides not divisible by 16 as Wan does; the ad-hoc --model snaps nothing)."""
    result = generate_fake("a ball", "--seed", "1", "--size", "40x40", "-o", "x.mp4")
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "FakeVideoPipeline refused the input: `height` and `width` have to be divisible by 16" in errors[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert_work_folder_empty()


@pytest.mark.model
@pytest.mark.parametrize(
    ("where", "code", "fragment"),
    [
        # diffusers checks its inputs with ValueError before the first step: the user's input.
        ("check_inputs", 2, "WanPipeline refused the input: height and width have to be divisible"),
        # A ValueError from the decode, after the denoising the user waited for: a failure, not bad input.
        ("decode", 1, "generation failed after denoising began: the decoder broke"),
    ],
)
def test_a_value_error_is_bad_input_only_before_denoising(generate_tiny, monkeypatch, where, code, fragment):
    from diffusers import AutoencoderKLWan, WanPipeline

    def refuse(*args, **kwargs):
        raise ValueError("height and width have to be divisible by 16" if where == "check_inputs" else "the decoder broke")

    monkeypatch.setattr(WanPipeline if where == "check_inputs" else AutoencoderKLWan, where, refuse)
    result = generate_tiny("a ball", "--seed", "1", "-o", "x.mp4")
    assert result.exit_code == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    if where == "decode":  # the denoising is kept for `vidgen decode` (vidgen.engine.latents)
        assert "finish with `vidgen decode x.latents.safetensors -o x.mp4`" in errors[0]
        assert sorted(os.listdir()) == ["x.latents.safetensors"]
    else:
        assert_work_folder_empty()
