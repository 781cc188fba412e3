"""Presets whose components come from several repositories ([components]): FramePack.

The shipped `framepack-i2v` preset runs exactly as written: its three hub repositories are
tiny folders laid out like the real ones (tests/tiny_pipelines.build_framepack_repositories),
put in a Hub cache as `vidgen pull` would leave them, and read offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.tiny_pipelines import put_in_hub_cache
from vidgen.media.readback import read_frames, read_recipe

PROMPT = "a red fox running in the snow"
TINY = ["--steps", "2", "--size", "16x16", "--frames", "37", "--seed", "1", "--device", "cpu", "--dtype", "float32"]
FRAMEPACK_REPOSITORIES = ("hunyuanvideo-community/HunyuanVideo", "lllyasviel/FramePackI2V_HY", "lllyasviel/flux_redux_bfl")


def _image(path: Path, colour: str) -> Path:
    Image.new("RGB", (16, 16), colour).save(path)
    return path


def test_framepack_runs_from_its_three_repositories(run_cli, framepack_repositories, pipeline_calls, monkeypatch, tmp_path):
    """The transformer is FramePack's (its own weights), the image encoder and processor flux_redux_bfl's,
    the rest HunyuanVideo's; the video has the frames asked for, and the recipe names every repository."""
    import diffusers
    import torch
    from safetensors.torch import load_file

    put_in_hub_cache(monkeypatch, tmp_path / "hub", framepack_repositories)
    calls = pipeline_calls(diffusers.HunyuanVideoFramepackPipeline)
    out = tmp_path / "fox.mp4"
    result = run_cli(
        "generate", PROMPT, "--preset", "framepack-i2v", "--image", _image(tmp_path / "start.png", "red"), *TINY, "-o", out, "--json"
    )
    assert result.exit_code == 0, result.stderr
    pipe = calls[-1].pipe
    assert type(pipe.transformer).__name__ == "HunyuanVideoFramepackTransformer3DModel"
    assert type(pipe.image_encoder).__name__ == "SiglipVisionModel" and type(pipe.feature_extractor).__name__.startswith(
        "SiglipImageProcessor"
    )
    assert type(pipe.text_encoder).__name__ == "LlamaModel"
    saved = load_file(framepack_repositories["lllyasviel/FramePackI2V_HY"] / "diffusion_pytorch_model.safetensors")
    assert torch.equal(pipe.transformer.state_dict()["x_embedder.proj.weight"], saved["x_embedder.proj.weight"])
    # FramePack counts sections from num_frames: 37 frames is one section, asked as 33.
    assert calls[-1].kwargs["num_frames"] == 33 and calls[-1].kwargs["sampling_type"] == "inverted_anti_drifting"
    assert read_frames(out).shape == (37, 16, 16, 3)
    recipe = read_recipe(out)
    assert {name: (entry["model"], entry["subfolder"]) for name, entry in recipe["components"].items()} == {
        "transformer": ("lllyasviel/FramePackI2V_HY", None),
        "image_encoder": ("lllyasviel/flux_redux_bfl", "image_encoder"),
        "feature_extractor": ("lllyasviel/flux_redux_bfl", "feature_extractor"),
    }
    assert recipe["model"] == "hunyuanvideo-community/HunyuanVideo" and recipe["frames"] == 37


def test_framepack_last_image_and_sampling_type(run_cli, framepack_repositories, pipeline_calls, monkeypatch, tmp_path):
    """--last-image goes to the pipeline's last_image; with sampling_type vanilla, which takes none,
    the run is refused in one line before loading."""
    import diffusers

    put_in_hub_cache(monkeypatch, tmp_path / "hub", framepack_repositories)
    calls = pipeline_calls(diffusers.HunyuanVideoFramepackPipeline)
    first, last = _image(tmp_path / "first.png", "red"), _image(tmp_path / "last.png", "blue")
    out = tmp_path / "both"
    result = run_cli("generate", PROMPT, "--preset", "framepack-i2v", "--image", first, "--last-image", last, *TINY, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert np.asarray(calls[-1].kwargs["last_image"])[0, 0].tolist() == [0, 0, 255]
    assert read_recipe(out)["last_image"] == str(last)

    refused = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "framepack-i2v",
        "--image",
        first,
        "--last-image",
        last,
        "--extra",
        "sampling_type=vanilla",
        *TINY,
        "-o",
        tmp_path / "no",
    )
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "Error: --last-image needs extra sampling_type=inverted_anti_drifting, not vanilla"
    vanilla = run_cli(
        "generate", PROMPT, "--preset", "framepack-i2v", "--image", first, "--extra", "sampling_type=vanilla", *TINY, "-o", tmp_path / "v"
    )
    assert vanilla.exit_code == 0, vanilla.stderr
    assert calls[-1].kwargs["sampling_type"] == "vanilla" and "last_image" not in calls[-1].kwargs


def test_a_missing_component_is_one_line_naming_it_and_its_repository(run_cli, framepack_repositories, monkeypatch, tmp_path):
    without = {repo: folder for repo, folder in framepack_repositories.items() if repo != "lllyasviel/flux_redux_bfl"}
    put_in_hub_cache(monkeypatch, tmp_path / "hub", without)
    result = run_cli(
        "generate", PROMPT, "--preset", "framepack-i2v", "--image", _image(tmp_path / "start.png", "red"), *TINY, "-o", tmp_path / "x.mp4"
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: component image_encoder (lllyasviel/flux_redux_bfl (subfolder image_encoder)) is not downloaded and "
        "HF_HUB_OFFLINE is set; vidgen pull framepack-i2v"
    )


def test_pull_and_show_name_every_repository(run_cli):
    result = run_cli("pull", "framepack-i2v")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: cannot download {', '.join(FRAMEPACK_REPOSITORIES)}: HF_HUB_OFFLINE is set"
    shown = json.loads(run_cli("presets", "show", "framepack-i2v", "--json").stdout)
    assert shown["model"] == FRAMEPACK_REPOSITORIES[0]
    assert shown["components"]["image_encoder"] == {
        "model": "lllyasviel/flux_redux_bfl",
        "subfolder": "image_encoder",
        "revision": None,
        "class": None,
    }


def test_pull_downloads_each_repository_once_with_the_subfolders_it_uses(monkeypatch):
    from vidgen.engine.hub import preset_repositories
    from vidgen.settings.presets import load_preset

    wanted = [(location.location, folders) for location, _, folders in preset_repositories(load_preset("framepack-i2v"))]
    assert wanted == [
        (FRAMEPACK_REPOSITORIES[0], None),
        (FRAMEPACK_REPOSITORIES[1], None),
        (FRAMEPACK_REPOSITORIES[2], ["image_encoder", "feature_extractor"]),
    ]


def test_the_loading_key_sees_the_components(tmp_path):
    """The server keeps a pipeline per loading key: another component source is another pipeline."""
    from dataclasses import replace

    from vidgen.engine.pipeline_cache import loading_key
    from vidgen.engine.prepare import prepare_settings
    from vidgen.settings.locations import resolve_model_location

    settings, _ = prepare_settings(
        PROMPT, preset="framepack-i2v", model=None, overrides={"image": str(_image(tmp_path / "x.png", "red")), "device": "cpu"}
    )
    other = list(settings.components)
    other[0] = replace(other[0], location=resolve_model_location(str(tmp_path)))
    changed = replace(settings, components=tuple(other))
    assert loading_key(settings) != loading_key(changed)
    assert loading_key(settings) == loading_key(replace(settings, prompt="another prompt"))


def test_a_bad_components_table_is_one_line(run_cli, isolated_environment):
    folder = isolated_environment / "presets"
    folder.mkdir(parents=True)
    (folder / "bad.toml").write_text('model = "org/name"\n[components.transformer]\nsubfolder = "x"\n')
    result = run_cli("presets", "show", "bad")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {(folder / 'bad.toml').resolve()}: [components.transformer] missing key model"


def test_dry_run_counts_the_components_from_their_repositories(run_cli, framepack_repositories, monkeypatch, tmp_path):
    """--dry-run sizes the transformer from FramePack's repository, not HunyuanVideo's own."""
    from safetensors import safe_open

    put_in_hub_cache(monkeypatch, tmp_path / "hub", framepack_repositories)
    _image(Path("start.png"), "red")  # read for its size (--size auto)
    result = run_cli("generate", PROMPT, "--preset", "framepack-i2v", "--image", "start.png", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    with safe_open(framepack_repositories["lllyasviel/FramePackI2V_HY"] / "diffusion_pytorch_model.safetensors", "pt") as weights:
        parameters = sum(int(np.prod(weights.get_slice(key).get_shape())) for key in weights.keys())
    assert report["components"]["transformer"]["parameters"] == parameters
    assert report["components"]["image_encoder"]["source"].endswith("image_encoder")
    assert report["settings"]["components"]["transformer"] == "lllyasviel/FramePackI2V_HY"


def test_a_components_run_prints_no_library_deprecation_lines(framepack_repositories, monkeypatch, tmp_path):
    """In a real process (pytest records warnings in-process, so only a process shows what a user
    sees): diffusers 0.42.1 passes huggingface_hub the deprecated `local_dir_use_symlinks` for each
    component it loads from a hub id, a two-line UserWarning on stderr; vidgen's stderr is its own."""
    import os
    import subprocess
    import sys

    hub = put_in_hub_cache(monkeypatch, tmp_path / "hub", framepack_repositories)
    out = tmp_path / "fox.mp4"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidgen",
            PROMPT,
            "--preset",
            "framepack-i2v",
            "--image",
            _image(tmp_path / "start.png", "red"),
            *TINY,
            "-o",
            out,
        ],
        capture_output=True,
        env={**os.environ, "HF_HUB_CACHE": str(hub)},
    )
    stderr = run.stderr.decode()
    assert run.returncode == 0, stderr
    assert read_frames(out).shape == (37, 16, 16, 3)
    assert "huggingface_hub" not in stderr and "deprecated" not in stderr, stderr
    assert "loaded HunyuanVideoFramepackPipeline" in stderr  # vidgen's own lines still there


def test_only_that_deprecation_is_quieted(framepack_repositories, monkeypatch, tmp_path):
    """Where diffusers asks huggingface_hub for a component's config (ConfigMixin.load_config), the
    deprecation shows without vidgen's quieting and not with it; another warning shows in both."""
    import warnings

    import diffusers

    from vidgen.engine.hub import quiet_hub

    put_in_hub_cache(monkeypatch, tmp_path / "hub", framepack_repositories)

    def warned(quiet: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_hub() if quiet else warnings.catch_warnings():
                diffusers.HunyuanVideoFramepackTransformer3DModel.load_config("lllyasviel/FramePackI2V_HY", local_files_only=True)
                warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
        return [str(warning.message).split(".")[0] for warning in caught]

    deprecation = "The `local_dir_use_symlinks` argument is deprecated and ignored in `hf_hub_download`"
    assert warned(quiet=False) == [deprecation, "an unrelated warning"]
    assert warned(quiet=True) == ["an unrelated warning"]
