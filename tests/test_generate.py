"""The single-video path end to end: prompt -> pipeline -> file on disk. The output, naming and
exit-code tests run the fake pipeline (tests/fake_pipeline.py); the scheduler, placement and
LoRA tests the tiny real WanPipeline (marked `model`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidgen.media.readback import probe_video, read_frames, read_recipe


def test_prompt_becomes_mp4_with_recipe(generate_fake):
    result = generate_fake("a red ball", "--seed", "7", "--fps", "8", "-o", "clip.mp4")

    assert result.exit_code == 0, result.stderr
    path = Path("clip.mp4").resolve()
    assert result.stdout == f"{path}\n"
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.fps) == (9, 32, 32, 8.0)
    recipe = read_recipe(path)
    assert recipe["prompt"] == "a red ball"
    assert recipe["seed"] == 7
    assert recipe["steps"] == 2
    assert (recipe["width"], recipe["height"], recipe["frames"], recipe["fps"]) == (32, 32, 9, 8)
    assert recipe["vidgen_version"]
    assert "seed 7" in result.stderr


def test_mp4_is_h264_yuv420p_with_faststart(generate_fake):
    import subprocess

    import imageio_ffmpeg

    assert generate_fake("a cat", "--seed", "1", "-o", "clip.mp4").exit_code == 0
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", "clip.mp4"], capture_output=True, text=True)
    assert "h264" in probe.stderr and "yuv420p" in probe.stderr
    data = Path("clip.mp4").read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the media


def test_same_seed_same_frames_other_seed_other_frames(generate_fake):
    for name, seed in (("a.mp4", "5"), ("b.mp4", "5"), ("c.mp4", "6")):
        assert generate_fake("a blue square", "--seed", seed, "-o", name).exit_code == 0
    a, b, c = (read_frames(Path(name)).astype(int) for name in ("a.mp4", "b.mp4", "c.mp4"))
    assert np.abs(a - b).max() <= 1
    assert np.abs(a - c).max() > 1


def test_json_output_one_object_per_video(generate_fake):
    result = generate_fake("a dog", "--seed", "10", "--num-videos", "2", "--json", "-o", "dog.mp4")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    objects = [json.loads(line) for line in lines]
    assert [o["seed"] for o in objects] == [10, 11]
    assert [Path(o["path"]).name for o in objects] == ["dog-1.mp4", "dog-2.mp4"]
    for o in objects:
        assert set(o) >= {"path", "prompt", "seed", "frames", "fps", "width", "height", "model", "preset", "seconds"}
        assert (o["frames"], o["width"], o["height"], o["fps"]) == (9, 32, 32, 16)
        assert Path(o["path"]).is_file()
        assert o["prompt"] == "a dog"


def test_default_name_from_prompt_and_seed_and_no_overwrite(generate_fake):
    first = generate_fake("A Red Ball, bouncing!", "--seed", "3")
    assert first.exit_code == 0, first.stderr
    assert Path("a-red-ball-bouncing-3.mp4").is_file()

    again = generate_fake("A Red Ball, bouncing!", "--seed", "3")
    assert again.exit_code == 2
    assert again.stderr.strip().endswith("already exists (pass --overwrite to replace it)")
    assert again.stdout == ""

    replaced = generate_fake("A Red Ball, bouncing!", "--seed", "3", "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr


def test_random_seed_is_drawn_printed_and_recorded(generate_fake):
    result = generate_fake("a ball", "--json", "-o", "x.mp4")

    assert result.exit_code == 0, result.stderr
    seed = json.loads(result.stdout)["seed"]
    assert f"seed {seed}" in result.stderr
    assert read_recipe(Path("x.mp4"))["seed"] == seed


def test_stdout_output_is_mp4_bytes(generate_fake, tmp_path):
    result = generate_fake("a ball", "--seed", "1", "-o", "-")

    assert result.exit_code == 0, result.stderr
    data = result.stdout_bytes
    assert data[4:8] == b"ftyp"
    copy = tmp_path / "from-stdout.mp4"
    copy.write_bytes(data)
    assert probe_video(copy).frames == 9
    assert read_recipe(copy)["seed"] == 1
    assert list(Path.cwd().iterdir()) == []  # nothing written beside


def test_prompt_from_stdin(generate_fake):
    result = generate_fake("-", "--seed", "2", "-o", "s.mp4", input="a green triangle\n")

    assert result.exit_code == 0, result.stderr
    assert read_recipe(Path("s.mp4"))["prompt"] == "a green triangle"


def test_no_temporary_files_left(generate_fake):
    assert generate_fake("a ball", "--seed", "1", "-o", "clip.mp4").exit_code == 0
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["clip.mp4"]


def test_webm_gif_and_png_folder(generate_fake):
    for output in ("clip.webm", "clip.gif", "frames/"):
        result = generate_fake("a ball", "--seed", "4", "--fps", "8", "-o", output)
        assert result.exit_code == 0, result.stderr
        path = Path(output)
        info = probe_video(path)
        assert (info.frames, info.width, info.height) == (9, 32, 32), output
        assert read_recipe(path)["seed"] == 4, output
    assert sorted(p.name for p in Path("frames").iterdir())[-1] == "recipe.json"
    assert round(probe_video(Path("clip.webm")).fps) == 8


def test_snapping_says_what_changed(generate_fake, fake_model_dir, tmp_path):
    preset = tmp_path / "wanlike.toml"
    preset.write_text(f'model = "{fake_model_dir}"\n[constraints]\nframes_step = 4\nframes_offset = 1\nsize_multiple = 16\n')
    result = generate_fake("a ball", "--preset", preset, "--frames", "10", "--size", "40x30", "--seed", "1", "--json", "-o", "s.mp4")

    assert result.exit_code == 0, result.stderr
    assert "frames 10 -> 9: this model takes 4k+1 frames" in result.stderr
    assert "size 40x30 -> 48x32: this model takes sides divisible by 16" in result.stderr
    record = json.loads(result.stdout)
    assert (record["frames"], record["width"], record["height"]) == (9, 48, 32)

    strict = generate_fake("a ball", "--preset", preset, "--frames", "10", "--strict", "-o", "t.mp4")
    assert strict.exit_code == 2
    assert strict.stderr.count("\n") == 1 and "frames 10 is not valid" in strict.stderr
    assert not Path("t.mp4").exists()


def test_seconds_convert_with_fps_then_snap(generate_fake, fake_model_dir, tmp_path):
    preset = tmp_path / "wanlike.toml"
    preset.write_text(f'model = "{fake_model_dir}"\n[constraints]\nframes_step = 4\nframes_offset = 1\n')
    result = generate_fake("a ball", "--preset", preset, "--seconds", "1", "--fps", "8", "--json", "-o", "s.mp4")
    # --frames 9 from FAKE_ARGS conflicts with --seconds
    assert result.exit_code == 2 and "not both" in result.stderr

    from vidgen.settings.layers import build_settings, snap_to_constraints
    from vidgen.settings.presets import read_preset

    chosen = read_preset(preset)
    settings = build_settings(chosen, [{"prompt": "x", "seconds": 1, "fps": 8}])
    assert settings.frames == 8
    snapped, notes = snap_to_constraints(settings, chosen.constraints, strict=False)
    assert notes == ["frames 8 -> 9: this model takes 4k+1 frames"] and snapped.frames == 9


def test_explicit_generate_subcommand_and_prompt_named_like_a_command(generate_fake, run_cli, fake_model_dir):
    from tests.conftest import FAKE_ARGS

    result = run_cli("generate", "presets", "--model", fake_model_dir, *FAKE_ARGS, "--seed", "1", "-o", "p.mp4")
    assert result.exit_code == 0, result.stderr
    assert read_recipe(Path("p.mp4"))["prompt"] == "presets"


def test_options_before_prompt_route_to_generate(run_cli, fake_model_dir):
    from tests.conftest import FAKE_ARGS

    result = run_cli("--model", fake_model_dir, *FAKE_ARGS, "--seed", "1", "-o", "q.mp4", "a ball")
    assert result.exit_code == 0, result.stderr
    assert Path("q.mp4").is_file()


def test_argv_rewrite_routes_to_generate_and_gives_a_bare_ray_its_address():
    """The words before Typer parses them (vidgen.cli.argv), without rendering a video: the two
    tests above check the same routing end to end on the fake pipeline."""
    from vidgen.cli.argv import rewrite

    commands = {"generate": None, "batch": None, "presets": None}
    assert rewrite(["a ball"], commands) == ["generate", "a ball"]
    assert rewrite(["--model", "m", "a ball"], commands) == ["generate", "--model", "m", "a ball"]
    assert rewrite(["presets"], commands) == ["presets"]
    assert rewrite(["generate", "presets"], commands) == ["generate", "presets"]
    assert rewrite(["--help"], commands) == ["--help"]
    assert rewrite(["batch", "p.txt", "--ray"], commands) == ["batch", "p.txt", "--ray=local"]
    assert rewrite(["batch", "--ray", "p.txt"], commands) == ["batch", "--ray=local", "p.txt"]
    for address in ("auto", "local", "ray://head:10001", "head:6379"):
        assert rewrite(["batch", "p.txt", "--ray", address], commands) == ["batch", "p.txt", "--ray", address]


def test_quiet_hides_notes(generate_fake):
    result = generate_fake("a ball", "--seed", "1", "--quiet", "-o", "q.mp4")
    assert result.exit_code == 0
    assert result.stderr == ""


@pytest.mark.model
def test_scheduler_and_flow_shift_from_preset(generate_tiny, tiny_wan_dir, tmp_path, pipeline_calls):
    """The pipeline runs with the preset's scheduler and shift, not the model's own (the tiny
    model ships UniPC with flow_shift 3.0, so both presets here differ from it)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanPipeline

    calls = pipeline_calls(WanPipeline)
    for name, scheduler, shift in (("euler", FlowMatchEulerDiscreteScheduler, 7.0), ("unipc", UniPCMultistepScheduler, 5.0)):
        preset = tmp_path / f"{name}.toml"
        preset.write_text(
            f'model = "{tiny_wan_dir}"\npipeline = "WanPipeline"\n[defaults]\nscheduler = "{scheduler.__name__}"\nflow_shift = {shift}\n'
        )
        result = generate_tiny("a ball", "--preset", preset, "--seed", "1", "-o", f"{name}.mp4")
        assert result.exit_code == 0, result.stderr
        assert read_recipe(Path(f"{name}.mp4"))["flow_shift"] == shift
        ran = calls[-1].scheduler
        assert type(ran) is scheduler, name
        if scheduler is UniPCMultistepScheduler:  # UniPC calls it flow_shift, and needs flow sigmas for it
            assert ran.config.flow_shift == shift and ran.config.use_flow_sigmas
        else:
            assert ran.config.shift == shift
    assert len(calls) == 2


@pytest.mark.model
def test_cpu_options_offload_tiling_dtype_in_one_run(generate_tiny, pipeline_calls):
    import torch
    from diffusers import WanPipeline

    calls = pipeline_calls(WanPipeline)
    result = generate_tiny(
        "a ball",
        "--seed",
        "2",
        "--offload",
        "model",
        "--vae-tiling",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--guidance",
        "1.0",
        "--negative-prompt",
        "blurry",
        "--json",
        "-o",
        "o.mp4",
    )
    assert result.exit_code == 0, result.stderr
    assert "--offload model has no effect on the CPU; ignored" in result.stderr
    record = json.loads(result.stdout)
    recipe = read_recipe(Path(record["path"]))
    assert (recipe["guidance"], recipe["negative_prompt"], recipe["dtype"]) == (1.0, "blurry", "float32")
    # What the pipeline ran with, not what the recipe echoes: a tiling VAE, float32 weights.
    [call] = calls
    assert call.vae_tiling is True
    # The prompt arrives encoded (vidgen.engine.prompt_cache); at guidance 1 Wan encodes no negative prompt.
    assert call.kwargs["guidance_scale"] == 1.0 and call.kwargs["negative_prompt_embeds"] is None and "negative_prompt" not in call.kwargs
    assert {p.dtype for p in call.pipe.transformer.parameters()} == {torch.float32}

    untiled = generate_tiny("a ball", "--seed", "2", "-o", "p.mp4")  # without the flag: no tiling
    assert untiled.exit_code == 0, untiled.stderr
    assert calls[-1].vae_tiling is False


@pytest.mark.model
def test_lora_without_peft_or_support_is_a_clear_error(generate_tiny):
    import importlib.util

    result = generate_tiny("a ball", "--lora", "org/some-lora:0.5", "-o", "l.mp4")
    assert result.exit_code == 2
    if importlib.util.find_spec("peft") is None:
        assert result.stderr.strip().splitlines()[-1] == "Error: --lora needs the peft package: pip install peft"
    else:
        assert "cannot load LoRA org/some-lora" in result.stderr
    assert not Path("l.mp4").exists()


def test_flow_shift_goes_to_the_right_scheduler_key():
    from types import SimpleNamespace

    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    from vidgen.engine.loading import apply_scheduler
    from vidgen.settings.layers import build_settings
    from vidgen.settings.presets import Preset

    pipe = SimpleNamespace(scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    apply_scheduler(pipe, build_settings(Preset("p", "a/b", defaults={"flow_shift": 3.0}), [{"prompt": "x"}]))
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler) and pipe.scheduler.config.shift == 3.0

    settings = build_settings(Preset("p", "a/b", defaults={"scheduler": "UniPCMultistepScheduler", "flow_shift": 5.0}), [{"prompt": "x"}])
    apply_scheduler(pipe, settings)
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler)
    assert pipe.scheduler.config.flow_shift == 5.0 and pipe.scheduler.config.use_flow_sigmas


def test_progress_bar_on_a_terminal(generate_fake, monkeypatch):
    """With a terminal on stderr the rich bar runs through every phase without harm."""
    import io

    from rich.console import Console

    from vidgen import ui

    screen = io.StringIO()
    monkeypatch.setattr(ui, "_stderr", Console(file=screen, force_terminal=True, width=100, highlight=False))
    phases = []
    original_phase = ui.Progress.phase
    monkeypatch.setattr(ui.Progress, "phase", lambda self, name: (phases.append(name), original_phase(self, name)))
    result = generate_fake("a ball", "--seed", "1", "-o", "bar.mp4")

    assert result.exit_code == 0, screen.getvalue()[-3000:]
    assert phases[0] == "encode" and "denoise" in phases and phases[-2:] == ["decode", "write"]
    assert "loaded FakeVideoPipeline" in screen.getvalue()
    assert result.stdout.strip().endswith("bar.mp4")


def test_max_sequence_length_reaches_the_text_encoder_and_the_recipe(generate_tiny, pipeline_calls):
    """--max-sequence-length is one line of the settings table: the text encoder's output has
    that many tokens, and the recipe records it; absent, the pipeline's own (Wan: 512) is recorded."""
    from diffusers import WanPipeline

    calls = pipeline_calls(WanPipeline)
    short = generate_tiny("a red ball", "--max-sequence-length", "16", "--seed", "1", "-o", "short.mp4")
    assert short.exit_code == 0, short.stderr
    assert calls[-1].kwargs["prompt_embeds"].shape[1] == 16
    assert read_recipe(Path("short.mp4"))["max_sequence_length"] == 16
    plain = generate_tiny("a red ball", "--seed", "1", "-o", "plain.mp4")
    assert plain.exit_code == 0, plain.stderr
    assert calls[-1].kwargs["prompt_embeds"].shape[1] == 512
    assert read_recipe(Path("plain.mp4"))["max_sequence_length"] == 512
