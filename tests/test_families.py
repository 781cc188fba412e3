"""What the newer families do differently from the rest, on their tiny pipelines.

Every preset already runs end to end in tests/test_presets_tiny.py. These tests cover what
that cannot see (their image-to-video presets following the image when loaded from the repository's
text-to-video folder are in tests/test_pipeline_class.py): SANA-Video's `frames` argument for an ad-hoc --model,
HunyuanVideo 1.5 image-to-video sizing the video from its image, Kandinsky 5 image-to-video's
smallest frame count, Kandinsky 5's tokenizer when torchvision is missing, Helios' pyramid
pipeline taking --steps per resolution stage, and Cosmos Predict 2.5 with and without NVIDIA's guardrail.
Outputs are PNG folders where frames are compared, so the comparison is exact.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.tiny_pipelines import make_tiny_pipeline
from vidgen.media.readback import read_frames, read_recipe

PROMPT = "a red fox running in the snow"
CPU = ["--steps", "2", "--seed", "1", "--device", "cpu", "--dtype", "float32"]


def _image(path: Path, colour: str, size: tuple[int, int] = (32, 32)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def test_sana_frames_default_is_read_under_its_own_name():
    """An ad-hoc --model takes the pipeline's own defaults; SANA-Video's frame count is `frames`."""
    import inspect

    from vidgen.engine.generate import VideoGenerator
    from vidgen.engine.loading import LoadedPipeline
    from vidgen.settings.layers import GenerationSettings

    pipe = make_tiny_pipeline("SanaVideoPipeline")
    loaded = LoadedPipeline(
        pipe=pipe,
        class_name="SanaVideoPipeline",
        device="cpu",
        dtype="float32",
        offload="none",
        call_parameters=set(inspect.signature(type(pipe).__call__).parameters),
    )
    asked = GenerationSettings(prompt=PROMPT, model="unused", preset="custom")
    settings = VideoGenerator(loaded).run_facts(asked).filled_in(asked)
    assert (settings.frames, settings.width, settings.height, settings.guidance) == (81, 832, 480, 6.0)


def test_hunyuanvideo15_image_to_video_sizes_the_video_from_the_image(run_cli, tiny_pipeline_dir, tmp_path):
    folder = tiny_pipeline_dir("HunyuanVideo15ImageToVideoPipeline")
    image = _image(tmp_path / "wide.png", "white", size=(64, 16))
    out = tmp_path / "wide"
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "hunyuanvideo1.5-480p-i2v",
        "--model",
        folder,
        "--image",
        image,
        "--size",
        "16x16",
        "--frames",
        "5",
        *CPU,
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert "HunyuanVideo15ImageToVideoPipeline takes no size: the video's size follows the image; --size ignored" in result.stderr
    frames, recipe = read_frames(out), read_recipe(out)
    height, width = frames.shape[1:3]
    assert width > height, (width, height)  # the wide image's shape, not the 16x16 asked for
    assert (recipe["width"], recipe["height"]) == (width, height)  # the recipe records what was made


def test_kandinsky5_image_to_video_takes_at_least_17_frames(run_cli, tiny_pipeline_dir, tmp_path):
    """Its pipeline rescales the first 4 latent frames to the next ones' statistics: with fewer
    than 5 latent frames there are none, and the video is NaN. 9 frames snap up to 17, visibly."""
    folder = tiny_pipeline_dir("Kandinsky5I2VPipeline")
    out = tmp_path / "short"
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "kandinsky5-i2v-pro",
        "--model",
        folder,
        "--image",
        _image(tmp_path / "start.png", "white"),
        "--size",
        "16x16",
        "--frames",
        "9",
        *CPU,
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert "frames 9 -> 17" in result.stderr
    assert read_frames(out).shape == (17, 16, 16, 3)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed: the processor loads")
def test_kandinsky5_processor_without_torchvision_is_one_line(run_cli, tiny_pipeline_dir, tmp_path):
    """The real repositories' `tokenizer` is a Qwen2VLProcessor, which transformers 5 cannot load
    without torchvision. The tiny folder (a plain Qwen2 tokenizer where torchvision is missing,
    tests/tiny_pipelines.py) is relabelled as the processor, as the real one is stored."""
    folder = tmp_path / "kandinsky5"
    shutil.copytree(tiny_pipeline_dir("Kandinsky5T2VPipeline"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    processor = {"processor_class": "Qwen2VLProcessor"}
    (folder / "tokenizer" / "processor_config.json").write_text(json.dumps(processor))
    (folder / "tokenizer" / "preprocessor_config.json").write_text(
        json.dumps({**processor, "image_processor_type": "Qwen2VLImageProcessor"})
    )
    result = run_cli(
        "generate",
        PROMPT,
        "--preset",
        "kandinsky5-t2v-lite",
        "--model",
        folder,
        "--size",
        "16x16",
        "--frames",
        "5",
        *CPU,
        "-o",
        tmp_path / "x.mp4",
    )
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1]
        == f"Error: cannot load {folder}: Qwen2VLVideoProcessor needs torchvision, which is not installed (pip install torchvision)"
    )
    assert not any(line.startswith("Error") for line in lines[:-1]) and "Traceback" not in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_helios_pyramid_takes_steps_per_stage():
    """HeliosPyramidPipeline (helios-mid, helios-distilled) has no num_inference_steps: --steps N
    goes in as N steps in each of its scheduler's stages, with the preset's [call] beside it, and
    an ad-hoc --model takes the pipeline's own steps per stage (10)."""
    import inspect

    from vidgen.engine.generate import VideoGenerator
    from vidgen.engine.loading import LoadedPipeline
    from vidgen.engine.prepare import prepare_settings
    from vidgen.settings.layers import GenerationSettings

    pipe = make_tiny_pipeline("HeliosPyramidPipeline", "helios-distilled")
    loaded = LoadedPipeline(
        pipe=pipe,
        class_name="HeliosPyramidPipeline",
        device="cpu",
        dtype="float32",
        offload="none",
        call_parameters=set(inspect.signature(type(pipe).__call__).parameters),
    )
    assert pipe.scheduler.config.stages == 3
    generator = VideoGenerator(loaded)
    settings = prepare_settings(PROMPT, preset="helios-distilled", model=None, overrides={"steps": 3, "seed": 1})[0]
    arguments = generator.call_arguments(settings, seed=1, image=None)
    assert arguments["pyramid_num_inference_steps_list"] == [3, 3, 3]
    assert "num_inference_steps" not in arguments
    assert arguments["is_amplify_first_chunk"] is True and arguments["guidance_scale"] == 1.0

    adhoc = GenerationSettings(prompt=PROMPT, model="unused", preset="custom")
    adhoc = generator.run_facts(adhoc).filled_in(adhoc)
    assert (adhoc.steps, adhoc.frames, adhoc.width, adhoc.height) == (10, 132, 640, 384)


COSMOS = "cosmos-predict2.5-2b"


def test_cosmos_without_its_guardrail_is_one_line_and_no_file(run_cli, tiny_pipeline_dir, tmp_path):
    """diffusers builds cosmos_guardrail's safety checker with the pipeline and will not run
    without one; vidgen does not disable it, and says in one line what to install."""
    if importlib.util.find_spec("cosmos_guardrail") is not None:
        pytest.skip("cosmos_guardrail is installed here")
    folder = tiny_pipeline_dir("Cosmos2_5_PredictBasePipeline")
    assert json.loads((folder / "model_index.json").read_text())["safety_checker"] == [None, None]  # loading builds it
    out = tmp_path / "world.mp4"
    result = run_cli("generate", PROMPT, "--preset", COSMOS, "--model", folder, "--size", "32x32", "--frames", "5", *CPU, "-o", out)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: cannot load") and "pip install cosmos_guardrail" in lines[-1], result.stderr
    assert not any(line.startswith("Error") for line in lines[:-1]) and "Traceback" not in result.stderr
    assert not out.exists()


def test_cosmos_runs_its_guardrail_on_the_prompt_and_the_frames(run_cli, tiny_pipeline_dir, tmp_path, monkeypatch):
    """With a guardrail in place (a stand-in for the real one, whose models are gated and
    several GB), the preset makes its video and the guardrail saw the prompt and the frames;
    a prompt it refuses is one line and no file."""
    from tests.tiny_pipelines import use_guardrail_stand_in

    guardrail = use_guardrail_stand_in(monkeypatch)
    folder = tiny_pipeline_dir("Cosmos2_5_PredictBasePipeline")
    out = tmp_path / "world.mp4"
    result = run_cli("generate", PROMPT, "--preset", COSMOS, "--model", folder, "--size", "32x32", "--frames", "9", *CPU, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert read_frames(out).shape == (9, 32, 32, 3)
    assert read_recipe(out)["pipeline"] == "Cosmos2_5_PredictBasePipeline"
    assert guardrail.texts == [PROMPT] and guardrail.videos == [(9, 32, 32, 3)]

    refused = tmp_path / "refused.mp4"
    result = run_cli(
        "generate", "a forbidden scene", "--preset", COSMOS, "--model", folder, "--size", "32x32", "--frames", "9", *CPU, "-o", refused
    )
    assert result.exit_code == 2, result.stderr  # the prompt is the bad input
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ") and "Cosmos Guardrail detected unsafe text" in result.stderr
    assert "Traceback" not in result.stderr and not refused.exists()
