"""The built-in model's training recipe, end to end at toy size: every stage runs, checkpoints, resumes
where it stopped, and the export loads and generates through vidgen's own command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidgen.media.readback import probe_video, read_frames
from vidgen.settings.locations import BUILTIN_WEIGHTS_DIR  # the shipped weights, beside the package's code

# Each training stage runs in a subprocess: `slow` (make check leaves it out).
pytestmark = pytest.mark.slow


def train_process(stage: str, work: Path, *args: str) -> str:
    """`python -m training.train STAGE ...` in a real process, as `make train-embedded` runs it."""
    result = subprocess.run([sys.executable, "-m", "training.train", stage, "--work", str(work), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.fixture
def train(monkeypatch, capsys):
    """`train(stage, work, *args)` -> its stdout: the same main() in this process. A fresh process per
    stage spent about 5 CPU-seconds importing torch, diffusers and transformers again; every stage
    reads what it resumes from the work folder, not from memory. main() seeds torch's global
    generator and sets its thread count: both are put back for the tests that follow."""
    from training import train as recipe

    def run(stage: str, work: Path, *args: str) -> str:
        monkeypatch.setattr(sys, "argv", ["training.train", stage, "--work", str(work), *args])
        capsys.readouterr()
        threads = torch.get_num_threads()
        try:
            with torch.random.fork_rng():
                recipe.main()
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    return run


def test_every_stage_resumes_and_the_export_generates(tmp_path, run_cli, train, monkeypatch):
    work = tmp_path / "runs"
    train_process("vae", work, "--minutes", "0.03", "--z-dim", "4")  # the module runs as a command
    first = torch.load(work / "vae" / "state.pt", weights_only=False)
    assert first["step"] >= 1 and (work / "vae" / "best" / "config.json").exists()

    # A second run with a larger budget continues the same run: step count and time carry over.
    output = train("vae", work, "--minutes", f"{(first['seconds'] + 1) / 60:.4f}")
    assert f"resuming at step {first['step']}" in output
    second = torch.load(work / "vae" / "state.pt", weights_only=False)
    assert second["step"] > first["step"] and second["seconds"] > first["seconds"]
    assert second["config"]["z_dim"] == 4  # the layout comes from the checkpoint, not from flags

    train("latents", work, "--pool", "16")
    pool = torch.load(work / "latents.pt")
    assert pool["latents"].shape == (16, 4, 5, 16, 16) and len(pool["specs"]) == 16

    train("decoder", work, "--minutes", "0.03")
    assert (work / "decoder" / "best" / "config.json").exists()
    # A new decoder, twice as wide, under the vae stage's encoder: the pool's latents stay valid.
    from diffusers import AutoencoderKLWan

    autoencoder, decoder = (AutoencoderKLWan.from_pretrained(work / name / "best") for name in ("vae", "decoder"))
    assert decoder.config.decoder_base_dim == 2 * autoencoder.config.base_dim
    frozen = autoencoder.state_dict()
    assert all(
        torch.equal(tensor, frozen[name]) for name, tensor in decoder.state_dict().items() if name.startswith(("encoder.", "quant_conv."))
    )
    # Resumed with clips rendered in worker processes (the GPU set-up): the same run goes on.
    spent = torch.load(work / "decoder" / "state.pt", weights_only=False)
    output = train("decoder", work, "--minutes", f"{(spent['seconds'] + 1) / 60:.4f}", "--workers", "2")
    assert f"resuming at step {spent['step']}" in output
    assert torch.load(work / "decoder" / "state.pt", weights_only=False)["step"] > spent["step"]

    # Probe on every check: the in-training score runs the real WanPipeline on the EMA weights.
    # On 2 prompts rather than the recipe's 16 (10 steps each, most of this test's time): what is
    # checked is that the score is made and recorded, not its value.
    from training import train_denoiser

    sample_scores = train_denoiser.sample_scores
    monkeypatch.setattr(train_denoiser, "sample_scores", lambda pipe, count, **options: sample_scores(pipe, min(count, 2), **options))
    train("denoiser", work, "--minutes", "0.03", "--width", "64", "--layers", "1", "--probe-minutes", "0.001")
    scores = [json.loads(line) for line in (work / "denoiser" / "scores.jsonl").read_text().splitlines()]
    assert set(scores[0]["probe"]) == {"color", "background", "shape", "motion", "visible"}
    spent = torch.load(work / "denoiser" / "state.pt", weights_only=False)["seconds"]
    output = train("denoiser", work, "--minutes", f"{(spent + 1) / 60:.4f}", "--probe-minutes", "0")
    assert "resuming at step" in output

    model = tmp_path / "export"
    train("export", work, "--out", str(model))
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    assert not list(model.parent.glob("*.partial"))
    vae_config = json.loads((model / "vae" / "config.json").read_text())
    assert torch.allclose(torch.tensor(vae_config["latents_std"]), pool["std"])  # the pipeline un-normalises with these

    result = run_cli(
        "a red circle moving right on a black background",
        "--model",
        model,
        "--preset",
        "shapes",
        "--steps",
        "2",
        "--seed",
        "1",
        "-o",
        "clip.mp4",
    )
    assert result.exit_code == 0, result.stderr
    info = probe_video(Path("clip.mp4"))
    assert (info.frames, info.width, info.height) == (17, 64, 64)
    assert read_frames(Path("clip.mp4")).shape == (17, 64, 64, 3)


def test_latent_object_masks_cover_the_rendered_object_and_little_else():
    """The denoiser's object-weighted loss needs the object's latent cells in every latent frame (frame 0,
    then frames 4k-3..4k): every cell the rendered object touches is in the mask, the background mostly not."""
    import random

    import numpy as np
    import torch.nn.functional as F

    from training import data, shapes

    rng = random.Random(7)
    specs = [shapes.sample_spec(rng) for _ in range(12)] + [shapes.sample_spec(rng, canonical=True) for _ in range(4)]
    masks = data.latent_object_masks(specs)
    assert masks.shape == (16, 1, 5, 16, 16) and masks.dtype == torch.bool
    for spec, mask in zip(specs, masks):
        clip = shapes.render_clip(spec)
        background = np.array(shapes.BACKGROUND_COLORS[spec.background], dtype=np.int16)
        touched = torch.from_numpy(np.abs(clip.astype(np.int16) - background).sum(-1) > 0).float()[None, None]
        touched = torch.cat([touched[:, :, :1], F.max_pool3d(touched[:, :, 1:], (4, 1, 1))], dim=2)
        touched = F.max_pool3d(touched, (1, 4, 4)).bool()[0]
        assert bool((mask | ~touched).all()), spec  # no object cell left out
        assert mask.float().mean() < 0.6  # and the background is not all in it


def test_corner_masks_hold_the_four_box_corners_inside_the_object_mask():
    import random

    from training import data, shapes

    rng = random.Random(3)
    specs = [shapes.sample_spec(rng, canonical=True) for _ in range(8)]
    corners, objects = data.latent_object_masks(specs, corners=True), data.latent_object_masks(specs)
    assert not bool((corners & ~objects).any())
    first = corners[:, 0, 0]  # latent frame 0 is pixel frame 0 alone: exactly the box's four corner cells
    for spec, cells in zip(specs, first):
        half = spec.start_size / 2
        expected = {
            (int((spec.start_center[1] + dy) // 4), int((spec.start_center[0] + dx) // 4)) for dx in (-half, half) for dy in (-half, half)
        }
        assert {tuple(map(int, rc)) for rc in cells.nonzero().tolist()} == expected, spec


def test_decoder_corner_pixels_sit_on_a_rendered_square_s_corners():
    import random

    import numpy as np

    from training import data, shapes

    spec = shapes.ClipSpec(**{**shapes.sample_spec(random.Random(5)).__dict__, "shape": "square"})
    near, clip = data.box_corner_pixels(spec), shapes.render_clip(spec)
    background = np.array(shapes.BACKGROUND_COLORS[spec.background], dtype=np.int16)
    for frame, corners in zip(np.abs(clip.astype(np.int16) - background).sum(-1) > 0, near):
        rows, columns = np.nonzero(frame)
        for row in (rows.min(), rows.max()):
            for column in (columns.min(), columns.max()):
                assert corners[row, column]  # each corner of the drawn square is weighted
        assert corners.sum() <= 4 * 7 * 7  # and only the corners


def test_noisy_latents_leave_a_quarter_exact_and_scale_noise_by_channel():
    from training.train_autoencoder import noisy_latents

    generator = torch.Generator().manual_seed(0)
    # Channels of very different spread: the noise must follow each channel's own.
    latents = torch.randn(400, 2, 1, 4, 4, generator=generator) * torch.tensor([0.1, 10.0]).view(1, 2, 1, 1, 1)
    noisy = noisy_latents(latents, 0.5, generator)
    change = (noisy - latents).flatten(2)
    exact = (change == 0).all(dim=(1, 2))
    assert 0.15 < exact.float().mean() < 0.35  # a quarter stay exact
    moved = change[~exact]
    ratio = moved[:, 1].std() / moved[:, 0].std()
    assert 50 < ratio < 200  # noise in proportion to each channel's spread (100x)
    assert moved[:, 1].std() < 0.5 * 10.0  # at most half a standard deviation, on average less
    assert noisy_latents(latents, 0.0, generator) is latents


def test_sampled_pairs_keep_each_clip_s_layout_and_attributes(tmp_path):
    """The samples stage's latents come from the shipped denoiser, started from each rendered clip's
    own latent noised part way: decoded, they must show that clip's colour, background and motion."""
    from diffusers import AutoencoderKLWan

    from training import data, latents, probe

    weights = BUILTIN_WEIGHTS_DIR / "shapes"
    latents.sample_pairs(tmp_path, weights, 2)
    pairs = torch.load(tmp_path / "sampled.pt")
    assert pairs["latents"].shape == (2, 8, 5, 16, 16) and len(pairs["specs"]) == 2
    vae = AutoencoderKLWan.from_pretrained(weights / "vae").eval()
    with torch.no_grad():
        frames = data.to_uint8(vae.decode(pairs["latents"]).sample)
    for spec, clip in zip(pairs["specs"], frames):
        judged = probe.judge(clip)
        assert (judged.color, judged.background, judged.motion) == (spec["color"], spec["background"], spec["motion"])


def test_swapped_latents_are_the_same_clip_with_each_other_shape(tmp_path):
    """The swapped stage redraws pool clips with the other two shapes, in SHAPES order, keeping colours,
    motion and layout: decoded, each shows its new shape and the clip's other attributes."""
    import random
    import shutil

    from diffusers import AutoencoderKLWan

    from training import data, latents, probe, shapes

    weights = BUILTIN_WEIGHTS_DIR / "shapes"
    (tmp_path / "vae").mkdir()
    shutil.copytree(weights / "vae", tmp_path / "vae" / "best")
    rng = random.Random(3)
    specs = [shapes.sample_spec(rng, canonical=True, shape=shape) for shape in shapes.SHAPES]
    torch.save({"specs": [s.__dict__ for s in specs]}, tmp_path / "latents.pt")
    latents.encode_swapped(tmp_path, 3)
    swapped = torch.load(tmp_path / "swapped.pt")["latents"]
    assert swapped.shape == (3, 2, 8, 5, 16, 16)
    vae = AutoencoderKLWan.from_pretrained(weights / "vae").eval()
    with torch.no_grad():
        frames = data.to_uint8(vae.decode(swapped.float().flatten(0, 1)).sample)
    for i, spec in enumerate(specs):
        others = [shape for shape in shapes.SHAPES if shape != spec.shape]
        for k, shape in enumerate(others):
            judged = probe.judge(frames[2 * i + k])
            assert (judged.color, judged.background, judged.motion) == (spec.color, spec.background, spec.motion)
            assert judged.shape == shape, (spec, shape, judged)


def test_the_shipped_weights_fit_the_layouts_in_model_py():
    """model.py holds the parts' layouts that train.py's stages build: each shipped part has exactly the
    state-dict keys and shapes of a fresh part built from them, and the tokenizer it builds is the shipped one."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import PreTrainedTokenizerFast, UMT5EncoderModel

    from training import model

    weights = BUILTIN_WEIGHTS_DIR / "shapes"
    tokenizer = model.build_tokenizer()
    z_dim = model.VAE_CONFIG["z_dim"]
    layouts = {
        "vae": (model.new_vae(decoder_base_dim=model.DECODER_BASE_DIM), AutoencoderKLWan),
        "transformer": (
            WanTransformer3DModel(**model.transformer_config(z_dim, model.DENOISER_PATCH, model.DENOISER_WIDTH, model.DENOISER_LAYERS)),
            WanTransformer3DModel,
        ),
        "text_encoder": (model.new_text_encoder(tokenizer), UMT5EncoderModel),
    }
    for name, (fresh, cls) in layouts.items():
        shipped = cls.from_pretrained(weights / name)
        assert {k: tuple(v.shape) for k, v in shipped.state_dict().items()} == {k: tuple(v.shape) for k, v in fresh.state_dict().items()}, (
            name
        )
    assert tokenizer.get_vocab() == PreTrainedTokenizerFast.from_pretrained(weights / "tokenizer").get_vocab()
