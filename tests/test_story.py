"""Storyboards (`vidgen SHOTS --story --preset ltx-video-story`): one video from several prompts.

The shipped preset runs on a tiny model laid out as its real repository is: saved as
LTXConditionPipeline (LTX-Video 0.9.8's model_index.json names that class; the preset loads
LTXI2VLongMultiPromptPipeline from it), with a VAE that compresses time 8x as the real one's. Windows of 24 frames overlapping by 8 (3 latent frames, 1 shared) make 49
frames in three windows, one a shot. Frames are compared from PNG folders: exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tiny_pipelines import repository_layout
from vidgen.media.readback import read_frames, read_recipe

SHOTS = ["a fox wakes up in its den", "the fox runs through the snow", "the fox sleeps under a tree"]
TINY = [
    "--preset",
    "ltx-video-story",
    "--size",
    "32x32",
    "--steps",
    "2",
    "--fps",
    "8",
    "--seed",
    "1",
    "--device",
    "cpu",
    "--dtype",
    "float32",
    "--extra",
    "temporal_tile_size=24",
    "--extra",
    "temporal_overlap=8",
]


def _storyboard(path: Path, shots: list[str], seconds: str = "2s") -> Path:
    path.write_text("# a day of a fox\n" + "".join(f"{seconds} {shot}\n" for shot in shots))
    return path


@pytest.fixture
def story(run_cli, tiny_pipeline_dir, tmp_path):
    image = tmp_path / "start.png"
    Image.new("RGB", (32, 32), "orange").save(image)

    def make(shots: list[str], name: str, *args: str):
        board = _storyboard(tmp_path / f"{name}.txt", shots)
        out = tmp_path / name
        model = tiny_pipeline_dir(*repository_layout("ltx-video-story", "LTXI2VLongMultiPromptPipeline"))
        assert json.loads((model / "model_index.json").read_text())["_class_name"] == "LTXConditionPipeline"  # the real layout
        result = run_cli("generate", board, "--story", "--model", model, "--image", image, *TINY, *args, "-o", out)
        assert result.exit_code == 0, result.stderr
        return out

    return make


def test_a_storyboard_is_one_video_of_the_summed_length_with_a_prompt_per_shot(story, pipeline_calls):
    import diffusers

    calls = pipeline_calls(diffusers.LTXI2VLongMultiPromptPipeline)
    out = story(SHOTS, "film")
    frames = read_frames(out)
    assert frames.shape == (49, 32, 32, 3)  # 3 x 2 s at 8 fps = 48, snapped to 8k+1
    kwargs = calls[-1].kwargs
    assert [segment["text"] for segment in kwargs["prompt_segments"]] == SHOTS  # one window a shot here
    assert kwargs["seed"] == 1 and kwargs["cond_image"] is not None and kwargs["num_frames"] == 49
    recipe = read_recipe(out)
    assert [(shot["seconds"], shot["prompt"], shot["frames"]) for shot in recipe["story"]] == [
        (2.0, SHOTS[0], [0, 16]),
        (2.0, SHOTS[1], [16, 33]),
        (2.0, SHOTS[2], [33, 49]),
    ]
    assert recipe["prompt"] == " | ".join(SHOTS) and recipe["frames"] == 49


def test_changing_one_shot_changes_only_the_frames_near_it(story, monkeypatch):
    """The last shot's prompt changed. Measured (tiny model, seed 1): the video's latents of the first
    two shots are bit-identical (latent frames 0-4, frames 0-32; the last window's overlap keeps the
    window before's), those of the last shot differ (latent frames 5-6, up to 0.03). Decoded, the first shot still moves a little:
    the VAE decoder's temporal reach spans this 7-latent-frame clip, so a change spreads into every
    frame, fading with distance; the mean |difference| per frame (0-255) is printed with -s."""
    import diffusers

    decoded = []
    original = diffusers.LTXI2VLongMultiPromptPipeline.vae_decode_tiled

    def spy(self, latents, *args, **kwargs):
        decoded.append(latents.detach().clone())
        return original(self, latents, *args, **kwargs)

    monkeypatch.setattr(diffusers.LTXI2VLongMultiPromptPipeline, "vae_decode_tiled", spy)
    before = read_frames(story(SHOTS, "before")).astype(np.int16)
    after = read_frames(story([*SHOTS[:2], "a red bird flies over the sea"], "after")).astype(np.int16)
    latent_change = (decoded[0] - decoded[1]).abs().amax(dim=(0, 1, 3, 4))
    print("max |latent difference| per latent frame:", " ".join(f"{value:.4f}" for value in latent_change.tolist()))
    assert latent_change[:5].max() == 0 and latent_change[5:].min() > 0
    difference = np.abs(before - after).mean(axis=(1, 2, 3))
    print("mean |frame difference| per frame:", " ".join(f"{value:.2f}" for value in difference))
    assert difference[:16].mean() < difference[33:].mean()  # the first shot moves less than the changed one


@pytest.mark.parametrize(
    "board, message",
    [
        ("# nothing\n\n", "storyboard {path} has no shots (one a line: '4s a fox wakes up in its den')"),
        (
            "2s a fox\nthe fox runs\n",
            "storyboard {path} line 2: a shot is its length then its prompt, e.g. '4s a fox wakes up in its den'; got 'the fox runs'",
        ),
        ("2s a fox\n0s the fox runs\n", "storyboard {path} line 2: a shot must last more than 0 s, got 0s"),
        (
            "30s a fox\n40s the fox runs\n",
            "the storyboard lasts 70 s (560 frames at 8 fps); this model makes at most 257 frames (32.125 s)",
        ),
    ],
)
def test_a_bad_storyboard_is_refused_whole_in_one_line(run_cli, tmp_path, isolated_environment, board, message):
    path = tmp_path / "shots.txt"
    path.write_text(board)
    preset = isolated_environment / "presets" / "short-story.toml"  # ltx-video-story with a shorter limit
    preset.parent.mkdir(parents=True)
    shipped = (Path(__file__).resolve().parent.parent / "presets" / "ltx-video-story.toml").read_text()
    preset.write_text(shipped.replace("max_frames = 1441", "max_frames = 257"))
    result = run_cli("generate", path, "--story", "--preset", "short-story", "--fps", "8", "-o", tmp_path / "out.mp4")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: " + message.format(path=path)


def test_a_storyboard_takes_no_frames_of_its_own(run_cli, tmp_path):
    path = _storyboard(tmp_path / "shots.txt", SHOTS)
    result = run_cli("generate", path, "--story", "--preset", "ltx-video-story", "--frames", "97")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: a storyboard's length is its shots' summed length: leave out --frames and --seconds"
