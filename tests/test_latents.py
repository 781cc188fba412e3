"""The latents of a run kept when what comes after the denoising fails, and `vidgen decode`
making the video the run would have made from them (vidgen.engine.latents, vidgen.engine.decode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_reliability import one_error_line, run_vidgen
from vidgen.engine.latents import read_file
from vidgen.errors import GenerationError
from vidgen.media.readback import read_frames, read_recipe

# tiny real Wan pipelines decode here: `model` (make check leaves it out).
pytestmark = pytest.mark.model


def _out_of_memory_decode(monkeypatch, *, with_tiling_too: bool) -> list[bool]:
    """AutoencoderKLWan.decode raises CUDA's out-of-memory error (always, or only untiled);
    returns whether tiling was on at each call."""
    from diffusers import AutoencoderKLWan

    original = AutoencoderKLWan.decode
    calls: list[bool] = []

    def decode(self, *args, **kwargs):
        calls.append(self.use_tiling)
        if with_tiling_too or not self.use_tiling:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKLWan, "decode", decode)
    return calls


def _same_video(path: Path, reference: Path) -> None:
    assert np.array_equal(read_frames(path), read_frames(reference))
    assert read_recipe(path) == read_recipe(reference)


def test_decode_out_of_memory_keeps_the_latents_and_vidgen_decode_makes_the_same_video(generate_tiny, run_cli):
    args = ["--seed", "3", "--interpolate", "2"]  # vidgen decode applies the run's --interpolate too, from its recipe
    reference = generate_tiny("a red ball", *args, "-o", "ref.mp4", "--save-latents")
    assert reference.exit_code == 0, reference.stderr
    assert Path("ref.latents.safetensors").is_file()  # --save-latents keeps them on purpose

    with pytest.MonkeyPatch.context() as patch:
        calls = _out_of_memory_decode(patch, with_tiling_too=True)
        failed = generate_tiny("a red ball", *args, "-o", "clip.mp4")
    assert failed.exit_code == 1, failed.stderr
    assert calls == [False, True]  # once as loaded, once more with tiling, then it gives up
    assert "trying once more with VAE tiling" in failed.stderr
    line = one_error_line(failed.stderr)
    assert "out of memory in the VAE decode" in line
    assert (
        "the latents are kept in clip.latents.safetensors: finish with `vidgen decode clip.latents.safetensors -o clip.mp4` --vae-tiling"
        in line
    )
    assert not Path("clip.mp4").exists() and Path("clip.latents.safetensors").is_file()

    decoded = run_cli("decode", "clip.latents.safetensors", "-o", "clip.mp4")  # memory enough now
    assert decoded.exit_code == 0, decoded.stderr
    assert decoded.stdout.strip() == str(Path("clip.mp4").resolve())
    _same_video(Path("clip.mp4"), Path("ref.mp4"))


def test_decode_out_of_memory_once_is_retried_with_tiling(generate_tiny, monkeypatch):
    reference = generate_tiny("a red ball", "--seed", "4", "-o", "ref.mp4")
    calls = _out_of_memory_decode(monkeypatch, with_tiling_too=False)
    retried = generate_tiny("a red ball", "--seed", "4", "-o", "clip.mp4")
    assert reference.exit_code == 0 and retried.exit_code == 0, retried.stderr
    assert calls == [False, True] and "out of memory in the VAE decode; trying once more with VAE tiling" in retried.stderr
    _same_video(Path("clip.mp4"), Path("ref.mp4"))  # 64x64 is one tile: the same frames
    assert sorted(path.name for path in Path.cwd().iterdir()) == ["clip.mp4", "ref.mp4"]  # the latents went with the success


# Under this file-size limit (ulimit -f) the latents of a 64x64, 33-frame run (about 38 kB)
# fit and its lossless video (about 62 kB) does not: ffmpeg is killed by SIGXFSZ mid-write.
LIMIT_ARGS = ["--steps", "2", "--size", "64x64", "--frames", "33", "--crf", "0", "--seed", "5"]
FILE_SIZE_LIMIT = 50_000


def test_a_file_size_limit_keeps_the_latents_and_vidgen_decode_finishes(tiny_wan_dir, run_cli):
    code, _, stderr = run_vidgen("a red ball", "--model", tiny_wan_dir, *LIMIT_ARGS, "-o", "x.mp4", limit_file_size=FILE_SIZE_LIMIT)
    assert code == 1, stderr
    line = one_error_line(stderr)
    assert line.startswith("Error: cannot write x.mp4: ") and "finish with `vidgen decode x.latents.safetensors -o x.mp4`" in line
    assert sorted(path.name for path in Path.cwd().iterdir()) == ["x.latents.safetensors"]  # no video, no temporary file

    decoded = run_cli("decode", "x.latents.safetensors", "-o", "x.mp4")  # in this process, without the limit
    reference = run_cli("a red ball", "--model", tiny_wan_dir, *LIMIT_ARGS, "-o", "ref.mp4")
    assert decoded.exit_code == 0 and reference.exit_code == 0, decoded.stderr + reference.stderr
    _same_video(Path("x.mp4"), Path("ref.mp4"))


@pytest.mark.parametrize("flag", [["--save-latents"], ["--preview", "p.png"]])
def test_families_not_covered_are_refused_before_loading(run_cli, flag):
    result = run_cli("a fox", "--preset", "ltx-video", *flag)
    assert result.exit_code == 2
    assert (
        f"{flag[0]} covers the Wan family (WanPipeline," in one_error_line(result.stderr) and "LTXPipeline is not covered" in result.stderr
    )


def test_decode_refuses_what_is_not_a_finished_runs_latents(run_cli):
    Path("x.latents.safetensors").write_bytes(b"not safetensors")
    result = run_cli("decode", "x.latents.safetensors", "-o", "x.mp4")
    assert result.exit_code == 2 and "is not a latents file vidgen wrote" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    "class_name, variant",
    [
        ("WanPipeline", None),
        ("WanPipeline", "wan2.2-ti2v-5b"),
        ("WanPipeline", "wan2.2-t2v-a14b"),
        ("WanImageToVideoPipeline", None),
        ("WanImageToVideoPipeline", "wan2.2-i2v-a14b"),
        ("WanVideoToVideoPipeline", None),
        ("SkyReelsV2Pipeline", None),
    ],
)
def test_the_covered_pipelines_decode_as_their_own_call_does(class_name, variant):
    """vidgen.engine.latents.COVERED: the latents a call returns with output_type="latent", decoded
    by vidgen, are the frames the same call decodes itself."""
    from PIL import Image

    from tests.tiny_pipelines import make_tiny_pipeline
    from vidgen.engine import latents

    assert class_name in latents.COVERED
    pipe = make_tiny_pipeline(class_name, variant)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"prompt": "a red ball", "num_inference_steps": 2, "height": 32, "width": 32, "num_frames": 9}
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    if "Image" in class_name:
        kwargs["image"] = picture
    if "Video" in class_name and "Image" not in class_name:
        kwargs["video"] = [picture] * 9
        del kwargs["num_frames"]
    with torch.no_grad():
        own = pipe(**kwargs, generator=torch.Generator().manual_seed(0), output_type="np").frames
        kept = pipe(**kwargs, generator=torch.Generator().manual_seed(0), output_type="latent").frames
    assert np.array_equal(latents.decode(pipe.vae, kept, pipe.video_processor), own)


def test_latents_go_home_when_the_targets_folder_cannot_take_them(isolated_environment):
    """The target's folder gone (or full, or read-only): the latents go to $VIDGEN_HOME/latents."""
    from types import SimpleNamespace

    from vidgen.engine.latents import Keeper
    from vidgen.settings.table import GenerationSettings

    settings = GenerationSettings(prompt="a red ball", model="builtin:shapes", preset="shapes", steps=4, crf=18)
    pipe = SimpleNamespace(scheduler=SimpleNamespace(), vae_scale_factor_temporal=4, vae_scale_factor_spatial=8)
    keeper = Keeper(settings, 9, Path("gone") / "x.mp4", lambda frames, height, width: {"frames": frames, "height": height, "width": width})
    latents = torch.randn(1, 16, 3, 4, 4)
    keeper.denoised(pipe, latents)
    assert keeper.path == isolated_environment / "latents" / "x-9.latents.safetensors" and not Path("gone").exists()
    kept = read_file(keeper.path)
    assert torch.equal(kept.latents, latents) and kept.recipe == {"frames": 9, "height": 32, "width": 32} and kept.finished
    error = keeper.failure(GenerationError("cannot write gone/x.mp4: No such file or directory; nothing was written"))
    assert f"finish with `vidgen decode {keeper.path} -o gone/x.mp4`" in str(error) and error.exit_code == 1
