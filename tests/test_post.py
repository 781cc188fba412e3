"""After the decode: `vidgen post`, and --interpolate/--upscale on generate and batch.
Files are read back (frames, size, fps, duration, sound, recipe); the methods are checked
on a square that moves: repetition holds it, blending makes two half-bright squares,
minterpolate puts one whole square halfway."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARGS
from vidgen.batch import MANIFEST_NAME
from vidgen.media.post import ffmpeg as post_ffmpeg
from vidgen.media.post.rife import IFNet
from vidgen.media.post.weights import sha256
from vidgen.media.readback import describe_audio, probe_video, read_frames, read_recipe
from vidgen.media.video import ffmpeg_exe

# post-processing models (RIFE, spandrel upscalers) and tiny real pipelines: `model` (make check leaves it out).
pytestmark = pytest.mark.model


def _clip_with_sound(path: Path, *, size: str = "64x48", fps: int = 12, seconds: int = 1) -> Path:
    """A test pattern with a 440 Hz tone, made by ffmpeg (not by vidgen: no recipe)."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate={fps}:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}:sample_rate=24000",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
    )
    return path


def _moving_square(count: int = 5) -> np.ndarray:
    frames = np.zeros((count, 48, 64, 3), np.uint8)
    for t in range(count):
        frames[t, 20:28, 8 + 8 * t : 16 + 8 * t] = 255  # 8 px a frame to the right
    return frames


def _centre_and_bright(frame: np.ndarray) -> tuple[float, int]:
    """The horizontal centre of the light, and how many pixels are nearly white."""
    light = frame[..., 0].astype(float)
    return float((light.sum(0) * np.arange(light.shape[1])).sum() / light.sum()), int((frame[..., 0] > 200).sum())


@pytest.mark.parametrize("method", ["repeat", "blend", "minterpolate"])
def test_each_method_makes_the_frames_it_says(method):
    frames = _moving_square()
    out = post_ffmpeg.interpolate(frames, 16, 2, method, lambda done, total: None)
    assert len(out) == 2 * len(frames)
    assert all(np.array_equal(out[2 * index], frame) for index, frame in enumerate(frames))  # the input frames, untouched
    assert np.array_equal(out[-1], frames[-1])  # the last one held
    for index in (1, 2):  # inner pairs: the new frame between frames[index] and frames[index + 1]
        centre, bright = _centre_and_bright(out[2 * index + 1])
        halfway = (_centre_and_bright(frames[index])[0] + _centre_and_bright(frames[index + 1])[0]) / 2
        if method == "repeat":
            assert np.array_equal(out[2 * index + 1], frames[index])
        elif method == "blend":  # two half-bright squares, centred halfway
            assert bright == 0 and abs(centre - halfway) < 0.5
            assert np.abs(out[2 * index + 1].astype(int) - (frames[index].astype(int) + frames[index + 1]) / 2).max() <= 2
        else:  # one whole square, moved halfway
            assert bright >= 48 and abs(centre - halfway) <= 1.5, (centre, halfway, bright)


def test_post_doubles_frames_and_fps_keeps_duration_and_sound(run_cli, tmp_path):
    clip = _clip_with_sound(tmp_path / "tone.mp4")
    before = probe_video(clip)
    out = tmp_path / "smooth.mp4"
    result = run_cli("post", clip, "--interpolate", "2", "--upscale", "2", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    info = probe_video(out)
    assert (info.frames, info.width, info.height, info.fps) == (2 * before.frames, 128, 96, 2 * before.fps)
    assert abs(info.seconds - before.seconds) < 1e-6
    assert abs(describe_audio(out)["seconds"] - describe_audio(clip)["seconds"]) <= 1 / info.fps
    recipe = read_recipe(out)
    assert recipe["source"] == {
        "file": "tone.mp4",
        "sha256": sha256(clip),
        "frames": before.frames,
        "fps": before.fps,
        "width": 64,
        "height": 48,
    }
    steps = [(step["step"], step["method"], step["factor"], step["frames"], step["width"], step["fps"]) for step in recipe["post"]]
    assert steps == [("interpolate", "minterpolate", 2, 24, 64, 24.0), ("upscale", "lanczos", 2, 24, 128, 24.0)]
    assert recipe["audio"]["codec"] == "aac"
    assert json.loads(result.stdout)["frames"] == 24
    shown = run_cli("inspect", out).stdout
    assert "post 1: interpolate x2 by minterpolate -> 24 frames, 64x48, 24.0 fps" in shown
    assert "post 2: upscale x2 by lanczos -> 24 frames, 128x96, 24.0 fps" in shown


def test_generate_interpolates_after_the_decode_with_the_recipe_saying_how(generate_tiny):
    result = generate_tiny("a red circle moving left", "--interpolate", "2", "--fps", "16", "-o", "x.mp4", "--json")
    assert result.exit_code == 0, result.stderr
    info = probe_video(Path("x.mp4"))
    assert (info.frames, info.fps, info.width) == (18, 32.0, 32)
    recipe = read_recipe(Path("x.mp4"))
    assert (recipe["frames"], recipe["fps"], recipe["interpolate"], recipe["interpolate_method"]) == (9, 16, 2, "minterpolate")
    assert recipe["post"] == [
        {"step": "interpolate", "method": "minterpolate", "factor": 2, "frames": 18, "width": 32, "height": 32, "fps": 32}
    ]
    reported = json.loads(result.stdout)
    assert (reported["frames"], reported["fps"]) == (18, 32)


def test_batch_lines_take_interpolate_and_upscale(run_cli, tiny_wan_dir):
    Path("p.jsonl").write_text(
        '{"prompt": "a red ball", "interpolate": 3, "interpolate_method": "blend", "output": "ball.mp4"}\n'
        '{"prompt": "a blue sky", "upscale": 2, "output": "sky.mp4"}\n'
    )
    result = run_cli("batch", "p.jsonl", "-O", "out", "--model", tiny_wan_dir, *TINY_ARGS, "--fps", "8")
    assert result.exit_code == 0, result.stderr
    ball, sky = probe_video(Path("out/ball.mp4")), probe_video(Path("out/sky.mp4"))
    assert (ball.frames, ball.fps, ball.width) == (27, 24.0, 32)
    assert (sky.frames, sky.fps, sky.width, sky.height) == (9, 8.0, 64, 64)
    records = {record["output"]: record for record in map(json.loads, Path("out", MANIFEST_NAME).read_text().splitlines())}
    assert [step["method"] for step in records["ball.mp4"]["settings"]["post"]] == ["blend"]
    assert records["sky.mp4"]["settings"]["post"][0]["step"] == "upscale"


@pytest.fixture
def tiny_rife(tmp_path) -> Path:
    """RIFE's HD IFNet with random weights, saved as the published file is (a `module.` prefix)."""
    torch.manual_seed(0)
    path = tmp_path / "flownet.pkl"
    torch.save({f"module.{key}": value for key, value in IFNet().state_dict().items()}, path)
    return path


def test_rife_from_a_weights_file_is_recorded_with_its_hash(run_cli, tmp_path, tiny_rife):
    clip = _clip_with_sound(tmp_path / "tone.mp4", size="48x32", fps=6)
    out = tmp_path / "rife.mp4"
    result = run_cli("post", clip, "--interpolate-model", tiny_rife, "-o", out)  # no --interpolate: RIFE's own 2x
    assert result.exit_code == 0, result.stderr
    info = probe_video(out)
    assert (info.frames, info.fps, info.width, info.height) == (12, 12.0, 48, 32)
    (step,) = read_recipe(out)["post"]
    assert (step["step"], step["method"], step["factor"]) == ("interpolate", "rife", 2)
    assert step["model"]["file"] == "flownet.pkl" and step["model"]["sha256"] == sha256(tiny_rife)


def test_upscaler_spandrel_detects_in_tiles(run_cli, tmp_path):
    if importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel is not installed: pip install 'vidgen[post]' (make install adds it)")
    from vidgen.media.post import upscaler

    upscaler._spandrel()  # spandrel imported as vidgen does (with a stand-in where torchvision cannot load)
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = tmp_path / "tiny_x2.pth"
    torch.save(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict(), model)
    clip = _clip_with_sound(tmp_path / "wide.mp4", size="272x16", fps=4)  # wider than a tile (256): two tiles a frame
    out = tmp_path / "wide-x2.mp4"
    result = run_cli("post", clip, "--upscale-model", model, "-o", out)
    assert result.exit_code == 0, result.stderr
    info = probe_video(out)
    assert (info.frames, info.width, info.height, info.fps) == (4, 544, 32, 4.0)
    (step,) = read_recipe(out)["post"]
    assert (step["method"], step["factor"], step["model"]["architecture"], step["model"]["sha256"]) == ("model", 2, "ESRGAN", sha256(model))
    loaded = upscaler.Upscaler(model)  # the tiles, stitched, are the whole frame's answer
    frames = read_frames(clip)[:1]
    with torch.inference_mode():
        whole = loaded.model(torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255)
    whole = (whole[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(loaded.upscale(frames, lambda done, total: None)[0].astype(int) - whole).max() <= 1


def _junk(tmp_path: Path) -> Path:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not weights at all")
    return path


@pytest.mark.parametrize(
    ("source", "args", "message"),
    [
        pytest.param("CLIP", ["--interpolate", "0"], "--interpolate must be from 1 to 8, got 0", id="factor-0"),
        pytest.param("CLIP", ["--upscale", "16"], "--upscale must be from 1 to 8, got 16", id="upscale-16"),
        pytest.param("CLIP", ["--interpolate", "2.5"], "Invalid value for '--interpolate'", id="factor-2.5"),
        pytest.param(
            "CLIP",
            ["--interpolate", "2", "--interpolate-method", "warp"],
            "--interpolate-method must be one of minterpolate, blend, repeat",
            id="method-unknown",
        ),
        pytest.param(
            "CLIP",
            ["--interpolate", "3", "--interpolate-model", "RIFE"],
            "RIFE makes midpoints: --interpolate 2, 4 or 8",
            id="rife-factor-3",
        ),
        pytest.param("CLIP", ["--interpolate-model", "JUNK"], "junk.pth: cannot read as weights", id="rife-junk"),
        pytest.param("CLIP", ["--upscale-model", "JUNK"], "junk.pth: cannot read as weights", id="upscaler-junk"),
        pytest.param("CLIP", ["--upscale-model", "RIFE"], "spandrel does not recognise its architecture", id="upscaler-wrong-kind"),
        pytest.param("CLIP", ["--interpolate-model", "NOTES"], "not a model file", id="model-not-a-model-file"),
        pytest.param("NOTES", ["--interpolate", "2"], "notes.txt: not a video", id="input-not-a-video"),
        pytest.param("CLIP", ["--interpolate", "2", "-o", "TAKEN"], "already exists (pass --overwrite to replace it)", id="output-exists"),
        pytest.param("CLIP", [], "nothing to do", id="nothing-to-do"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(run_cli, tmp_path, tiny_rife, source, args, message):
    if "spandrel" in message and importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel is not installed")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"someone's file")
    names = {"CLIP": _clip_with_sound(tmp_path / "tone.mp4"), "JUNK": _junk(tmp_path), "RIFE": tiny_rife, "NOTES": notes, "TAKEN": taken}
    before = sorted(path.name for path in tmp_path.iterdir())
    output = [] if "-o" in args else ["-o", tmp_path / "out.mp4"]
    result = run_cli("post", names[source], *[names.get(arg, arg) for arg in args], *output)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # nothing written, no temporary file left
    assert taken.read_bytes() == b"someone's file"


@pytest.mark.parametrize("flag", ["--upscale-model", "--interpolate-model"])
def test_generate_refuses_a_bad_model_file_before_loading(generate_tiny, tmp_path, flag):
    result = generate_tiny("a red circle", flag, _junk(tmp_path), "-o", "x.mp4")
    assert result.exit_code == 2, result.stderr
    assert "loaded" not in result.stderr and f"Error: {flag} {tmp_path / 'junk.pth'}: cannot read as weights" in result.stderr
    assert not Path("x.mp4").exists()
