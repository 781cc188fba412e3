"""Every preset, end to end, on a tiny random model of the preset's own pipeline class.

For each `presets/*.toml` (except the embedded `shapes`, tested on its own weights):

1. `tests/tiny_pipelines.py` builds a randomly initialised pipeline of the preset's
   `pipeline` class, with the real model's component classes, and saves it in diffusers
   layout (safetensors). One build per class/variant per session.
   Where the real repository's model_index.json names another class (`Lightricks/LTX-Video`
   names LTXPipeline for `ltx-video-i2v`), the tiny folder is saved as that class
   (`tiny_pipelines.REPOSITORY_LAYOUT`).
2. `test_tiny_pipelines_load_and_run` loads it back as the preset's class and calls it
   with the preset's `[call]` arguments.
3. `test_preset_generates_video_with_tiny_model` runs the real command,
   `vidgen generate PROMPT --preset NAME --model TINY_DIR ...`, in-process (Typer's
   CliRunner, stdout and stderr apart) and reads the MP4 back to check frame count, width,
   height and fps. A fresh Python process per preset spent most of its time importing
   torch and diffusers again; `test_preset_generates_video_in_a_fresh_process` keeps one
   preset on the real `python -m vidgen` process (exit code, a clean stdout from a cold start).

Sizes and frame counts are the smallest the preset's constraints allow, so the whole
module stays in the tens of seconds on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_pipelines import PIPELINE_CLASSES, repository_layout
from vidgen.families import helios

# every preset on a tiny real pipeline: `model` (make check leaves it out).
pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parent.parent
PRESET_DIR = REPO / "presets"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.toml") if p.stem != "shapes")
PROMPT = "a red fox running in the snow"

# Sizes the tiny models can take that the real constraints also allow. The tiny
# CogVideoX I2V transformer has learned positional embeddings for 16x16 only (the real
# one for 720x480 only), so its size is fixed like the real model's.
TINY_SIZE_OVERRIDES = {"cogvideox-5b-i2v": (16, 16)}
# Helios-Mid's CFG-Zero* step fails in diffusers 0.42.1 where the smallest pyramid stage is one
# token wide (64 px); its preset's minimum is 128.
TINY_SIZE_OVERRIDES["helios-mid"] = TINY_SIZE_OVERRIDES["helios-mid-i2v"] = (128, 128)
# Diffusion forcing windows scaled to the tiny clips (the real ones are 97 frames with 17
# shared): video extension continues from the input's last frame.
TINY_EXTRAS = {"skyreels-v2-df-1.3b-extend": {"base_num_frames": 5, "overlap_history": 1}}


def _preset(name: str) -> dict:
    with open(PRESET_DIR / f"{name}.toml", "rb") as handle:
        return tomllib.load(handle)


def _tiny_shape(name: str) -> tuple[int, int, int]:
    """(width, height, frames): the smallest valid values (at least 16 px, at least 3 frames)."""
    constraints = _preset(name).get("constraints", {})
    multiple = constraints.get("size_multiple", 16)
    side = multiple * -(-16 // multiple)
    width, height = TINY_SIZE_OVERRIDES.get(name, (side, side))
    step = constraints.get("frames_step", 1)
    offset = constraints.get("frames_offset", 0)
    least = max(constraints.get("min_frames", 1), 3)
    frames = offset + step * max(0, -(-(least - offset) // step))
    return width, height, frames


def _steps(name: str) -> int:
    """2, or one per sigma where the preset fixes its schedule (a distilled model's)."""
    return len(_preset(name)["defaults"].get("sigmas", [None, None]))


def _cache_tiny_loras(name: str, folder: Path, root: Path, monkeypatch) -> None:
    """The preset's [[lora]] files (REPO/FILENAME on the hub), made for its tiny model in
    LightX2V's key style and put in a Hub cache under `root`, as `vidgen pull` would leave them."""
    import diffusers

    from tests.test_distilled import _in_hub_cache, write_lightx2v_lora

    for index, lora in enumerate(_preset(name).get("lora", [])):
        component = lora.get("into", "transformer")
        repo, filename = lora["source"].split("/", 2)[:2], lora["source"].split("/", 2)[2]
        transformer = diffusers.WanTransformer3DModel.from_pretrained(folder / component)
        root.mkdir(exist_ok=True)
        made = root / f"made-{index}.safetensors"
        write_lightx2v_lora(made, transformer, seed=index)
        _in_hub_cache(monkeypatch, root, "/".join(repo), filename, made)


def _start_image(path: Path, width: int, height: int) -> Path:
    from PIL import Image

    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[..., 2] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    Image.fromarray(pixels).save(path)
    return path


def _needs_last_image(folder: Path) -> bool:
    """Wan FLF2V's transformer (a positional table over two images' CLIP tokens) needs a last frame."""
    config = folder / "transformer" / "config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("pos_embed_seq_len"))


def _input_video(path: Path, width: int, height: int, frames: int) -> Path:
    """An MP4 for video-to-video presets: a bright square sliding right, written with
    imageio-ffmpeg (not vidgen), twice the output size so resizing is exercised too."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (2 * width, 2 * height), fps=8, macro_block_size=1)
    writer.send(None)
    for index in range(frames):
        pixels = np.full((2 * height, 2 * width, 3), 40, dtype=np.uint8)
        left = index * (2 * width - 8) // max(frames - 1, 1)
        pixels[height - 4 : height + 4, left : left + 8] = 230
        writer.send(pixels.tobytes())
    writer.close()
    return path


@pytest.fixture(autouse=True)
def cosmos_guardrail(request, monkeypatch):
    """Cosmos presets run with a stand-in for NVIDIA's guardrail, which diffusers requires and
    whose real models cannot be fetched offline (tests/test_families.py checks both the line
    without it and that the pipeline shows it the prompt and the frames)."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("name", "") if callspec else ""
    if name.startswith("cosmos"):
        from tests.tiny_pipelines import use_guardrail_stand_in

        use_guardrail_stand_in(monkeypatch)


@pytest.fixture
def tiny_components(request, monkeypatch, tmp_path):
    """`get(name)`: a preset's [components] (FramePack's), their tiny repositories put in a Hub cache
    as `vidgen pull` leaves them; name -> the component loaded, for a direct from_pretrained."""

    def get(preset_name: str) -> dict:
        tables = _preset(preset_name).get("components", {})
        if not tables:
            return {}
        import inspect

        import diffusers
        import torch

        from tests.tiny_pipelines import put_in_hub_cache
        from vidgen.engine.components import load_components
        from vidgen.settings.presets import load_preset

        put_in_hub_cache(monkeypatch, tmp_path / "hub-components", request.getfixturevalue("component_repositories"))

        preset = load_preset(preset_name)
        classes = [preset.pipeline, *(stage.pipeline for stage in preset.stages if stage.pipeline)]
        loaded = load_components(tuple(preset.components.values()), classes, torch.float32)
        takes = inspect.signature(getattr(diffusers, preset.pipeline).__init__).parameters
        return {name: component for name, component in loaded.items() if name in takes}  # the others are a stage pipeline's

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pipeline_dir):
    """preset name -> its tiny folder, laid out like the preset's real repository (built once)."""

    def get(preset_name: str) -> Path:
        return tiny_pipeline_dir(*repository_layout(preset_name, _preset(preset_name)["pipeline"]))

    return get


def test_every_preset_class_has_a_tiny_builder():
    assert PRESETS, "no presets found"
    missing = {_preset(name)["pipeline"] for name in PRESETS} - set(PIPELINE_CLASSES)
    assert not missing, f"no tiny builder for {sorted(missing)}"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_pipeline_class_exists_in_diffusers(name):
    import diffusers

    preset = _preset(name)
    cls = getattr(diffusers, preset["pipeline"], None)
    assert cls is not None, f"{name}: diffusers has no {preset['pipeline']}"
    import inspect

    parameters = inspect.signature(cls.__call__).parameters
    unknown = set(preset.get("call", {})) - set(parameters)
    assert not unknown, f"{name}: [call] keys {sorted(unknown)} are not arguments of {cls.__name__}.__call__"

    def required(argument: str) -> bool:
        return argument in parameters and parameters[argument].default is inspect.Parameter.empty

    # A preset's task needs its input (LTX-2 takes its input video as `conditions`); other presets'
    # classes take none, or only optionally (HeliosPipeline runs text-, image- and video-to-video in one class).
    for arguments, task in ((("image",), "image-to-video"), (("video", "conditions"), "video-to-video")):
        if preset["task"] == task:
            assert any(a in parameters for a in arguments), arguments
        else:
            assert not any(required(a) for a in arguments), arguments
    unknown = set(preset.get("extras", {})) - set(parameters)
    assert not unknown, f"{name}: [extras] keys {sorted(unknown)} are not arguments of {cls.__name__}.__call__"


@pytest.mark.parametrize("name", PRESETS)
def test_tiny_pipelines_load_and_run(name, tiny_model_dir, tiny_components, tmp_path):
    """The tiny model, saved as its real repository is, loads as the preset's class and runs
    with the preset's [call] arguments."""
    import inspect

    import diffusers
    import torch
    from PIL import Image

    preset = _preset(name)
    folder = tiny_model_dir(name)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == repository_layout(name, preset["pipeline"])[0]
    assert list(folder.rglob("*.safetensors")), "weights must be safetensors"
    assert not list(folder.rglob("*.bin"))

    pipe = getattr(diffusers, preset["pipeline"]).from_pretrained(folder, use_safetensors=True, **tiny_components(name))
    assert type(pipe).__name__ == preset["pipeline"]
    helios.mend(pipe)  # as vidgen.engine.loading does: Helios' pyramid noise at the shipped gamma (vidgen.families.helios)
    for component, (_library, class_name) in ((k, v) for k, v in index.items() if isinstance(v, list) and v[1]):
        if component not in preset.get("components", {}):  # else from its own repository
            assert type(getattr(pipe, component)).__name__ == class_name, component
    pipe.set_progress_bar_config(disable=True)

    width, height, frames = _tiny_shape(name)
    parameters = inspect.signature(type(pipe).__call__).parameters
    kwargs = dict(preset.get("call", {}))
    kwargs.update(TINY_EXTRAS.get(name, preset.get("extras", {})))
    kwargs.update(num_inference_steps=2, output_type="np")
    if "num_inference_steps" not in parameters:  # Helios' pyramid pipeline: steps per resolution stage
        kwargs["pyramid_num_inference_steps_list"] = [kwargs.pop("num_inference_steps")] * pipe.scheduler.config.stages
    if "height" in parameters:  # HunyuanVideo 1.5 image-to-video sizes the video from its image
        kwargs.update(height=height, width=width)
    # SANA-Video calls it `frames`; video-to-video takes its frame count from the input video.
    frames_argument = next((name for name in ("num_frames", "frames") if name in parameters), None)
    if frames_argument:
        kwargs[frames_argument] = frames
    if "latent_window_size" in parameters:  # FramePack counts sections from num_frames (vidgen.engine.generate)
        from vidgen.families.framepack import framepack_sections

        kwargs["num_frames"] = framepack_sections(pipe, frames, parameters["latent_window_size"].default)[1]
    kwargs["generator"] = torch.Generator("cpu").manual_seed(0)
    if "prompt" in parameters:
        kwargs["prompt"] = PROMPT
    if preset["task"] == "image-to-video":  # by task: HeliosPipeline takes both, optionally
        kwargs["image"] = Image.open(_start_image(tmp_path / "start.png", width, height))
    if _needs_last_image(folder):
        kwargs["last_image"] = Image.open(_start_image(tmp_path / "start.png", width, height)).transpose(Image.Transpose.ROTATE_180)
    if preset["task"] == "video-to-video" and "video" in parameters:  # LTX-2 conditioning: tests/test_video_models.py
        kwargs["video"] = [Image.open(_start_image(tmp_path / "start.png", width, height))] * frames
    with torch.no_grad():
        video = np.asarray(pipe(**kwargs).frames)
    extended = frames if preset.get("video_role") == "extend" else 0  # the input comes first
    assert video.shape == (1, extended + frames, height, width, 3)
    assert np.isfinite(video).all()
    assert video.min() >= 0.0 and video.max() <= 1.0
    assert video.std() > 0.0, "a constant video means the decoder produced nothing"


def _generate_args(name: str, model: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """The `vidgen generate` arguments for preset `name` on its tiny model, and the output path."""
    preset = _preset(name)
    width, height, frames = _tiny_shape(name)
    out = tmp_path / f"{name}.mp4"
    args = [
        "generate",
        PROMPT,
        "--preset",
        name,
        "--model",
        str(model),
        "--steps",
        str(_steps(name)),
        "--size",
        f"{width}x{height}",
        "--frames",
        str(frames),
        "--fps",
        "8",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "-o",
        str(out),
        "--seed",
        "1",
        "--quiet",
        "--json",
    ]
    if preset["task"] == "image-to-video":
        args += ["--image", str(_start_image(tmp_path / "start.png", width, height))]
    if _needs_last_image(model):
        from PIL import Image

        Image.open(tmp_path / "start.png").transpose(Image.Transpose.ROTATE_180).save(tmp_path / "last.png")
        args += ["--last-image", str(tmp_path / "last.png")]
    if preset["task"] == "video-to-video":
        args += ["--video", str(_input_video(tmp_path / "input.mp4", width, height, frames))]
    for extra in TINY_EXTRAS.get(name, {}).items():
        args += ["--extra", "=".join(map(str, extra))]
    return args, out


# The shift the model folders' own schedulers get where a preset sets one: none of the presets' values.
MODEL_SHIFT = 1.5


def _with_another_shift(folder: Path, tmp_path: Path, defaults: dict) -> Path:
    """`folder` with its scheduler's shift set to MODEL_SHIFT, and its timestep spacing to one the
    preset does not ask for (everything else linked, not copied). Many tiny models ship the
    preset's own values, as the real ones do, so only a model that disagrees shows whether the
    preset's scheduler settings are applied."""
    model = tmp_path / "model"
    model.mkdir()
    for entry in folder.iterdir():
        if entry.name != "scheduler":
            (model / entry.name).symlink_to(entry)
    (model / "scheduler").mkdir()
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    if "flow_shift" in defaults:
        config["flow_shift" if "flow_shift" in config else "shift"] = MODEL_SHIFT
    if "timestep_spacing" in defaults:
        config["timestep_spacing"] = "leading" if defaults["timestep_spacing"] != "leading" else "trailing"
    (model / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    return model


@pytest.mark.parametrize("name", PRESETS)
def test_preset_generates_video_with_tiny_model(name, tiny_model_dir, tiny_components, run_cli, tmp_path, pipeline_calls, monkeypatch):
    """The real command, with only the model location replaced, writes a video of the requested
    shape; the pipeline runs with the preset's scheduler class and shift."""
    import diffusers

    defaults = _preset(name)["defaults"]
    folder = tiny_model_dir(name)
    if "flow_shift" in defaults or "timestep_spacing" in defaults:
        folder = _with_another_shift(folder, tmp_path, defaults)
    _cache_tiny_loras(name, tiny_model_dir(name), tmp_path / "hub", monkeypatch)
    tiny_components(name)  # [components] from their repositories, in the Hub cache
    calls = pipeline_calls(getattr(diffusers, _preset(name)["pipeline"]))
    args, out = _generate_args(name, folder, tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}\nstderr:\n{result.stderr}\n{result.exception!r}"
    _check_generated_video(name, result.stdout, out, tmp_path)
    ran = calls[-1].scheduler
    if "scheduler" in defaults:
        assert type(ran).__name__ == defaults["scheduler"]
    if "flow_shift" in defaults:
        # The scheduler's own name for it: a FlowMatchEuler config made from UniPC's keeps UniPC's flow_shift, unused.
        import inspect

        key = "flow_shift" if "flow_shift" in inspect.signature(type(ran).__init__).parameters else "shift"
        assert ran.config[key] == defaults["flow_shift"] != MODEL_SHIFT
    if "timestep_spacing" in defaults:  # CogVideoX's trailing spacing (cli_demo.py)
        assert ran.config["timestep_spacing"] == defaults["timestep_spacing"]
    if "prompt_suffix" in defaults:  # SANA-Video's motion score: after the prompt in the call, apart in the recipe
        assert calls[-1].kwargs["prompt"] == PROMPT + defaults["prompt_suffix"]
        from vidgen.media.readback import read_recipe

        recipe = read_recipe(out)
        assert (recipe["prompt"], recipe["prompt_suffix"]) == (PROMPT, defaults["prompt_suffix"])
    if "sigmas" in defaults:  # the preset's schedule, shifted (tests/test_distilled.py checks the values)
        assert len(ran.timesteps) == len(defaults["sigmas"]) and float(ran.sigmas[0]) == 1.0
    if _preset(name).get("lora"):  # each [[lora]] in the expert it names
        wanted = {lora.get("into", "transformer") for lora in _preset(name)["lora"]}
        assert {component for component, adapters in calls[-1].pipe.get_list_adapters().items() if adapters} == wanted


# One preset through a real `python -m vidgen` process as well: the exit status, and a stdout that
# holds only the JSON line when torch, diffusers and the pipeline's libraries are imported cold.
# LTX-2, because it also muxes a soundtrack.
FRESH_PROCESS_PRESET = "ltx2"


def test_preset_generates_video_in_a_fresh_process(tiny_model_dir, tmp_path):
    args, out = _generate_args(FRESH_PROCESS_PRESET, tiny_model_dir(FRESH_PROCESS_PRESET), tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "vidgen", *args], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, f"exit {result.returncode}\nstderr:\n{result.stderr}"
    _check_generated_video(FRESH_PROCESS_PRESET, result.stdout, out, tmp_path)


def _check_generated_video(name: str, stdout: str, out: Path, tmp_path: Path) -> None:
    """The one --json line on stdout, and the file read back, match what was asked of preset `name`."""
    import imageio_ffmpeg

    preset = _preset(name)
    width, height, frames = _tiny_shape(name)
    frames_out = frames * (2 if preset.get("video_role") == "extend" else 1)  # the input, then as many new
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    record = json.loads(lines[0])
    assert Path(record["path"]).resolve() == out.resolve()
    assert (record["frames"], record["width"], record["height"]) == (frames_out, width, height)
    assert float(record["fps"]) == 8.0
    assert record["seed"] == 1

    # Read the file back independently of vidgen.
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    decoded = sum(1 for _ in reader)
    assert decoded == frames_out
    assert tuple(meta["size"]) == (width, height)
    assert float(meta["fps"]) == pytest.approx(8.0)
    assert not list(tmp_path.glob(f".{name}*")), "temporary file left behind"

    # A model with sound (LTX-2): its soundtrack is in the file, as long as the video.
    assert record["audio"] is bool(preset.get("audio"))
    if preset.get("audio"):
        from tests.test_audio import read_streams

        audio = read_streams(out)["audio"]
        assert audio is not None and audio["codec"] == "aac"
        assert abs(audio["seconds"] - frames_out / 8) <= 1 / 8

    # The recipe in the file shows the preset's own settings were used, not just its model class.
    from vidgen.media.readback import read_recipe

    recipe = read_recipe(out)
    assert recipe["preset"] == name and recipe["pipeline"] == preset["pipeline"]
    assert recipe["steps"] == _steps(name) and recipe["seed"] == 1
    assert recipe["call"] == preset.get("call", {})
    assert recipe["extras"] == {**preset.get("extras", {}), **TINY_EXTRAS.get(name, {})}
    for key in ("guidance", "flow_shift", "negative_prompt", "scheduler", "strength"):
        if key in preset["defaults"]:
            assert recipe[key] == preset["defaults"][key], key


def _loaded(pipe):
    import inspect

    from vidgen.engine.loading import LoadedPipeline

    pipe.set_progress_bar_config(disable=True)
    return LoadedPipeline(
        pipe=pipe,
        class_name=type(pipe).__name__,
        device="cpu",
        dtype="float32",
        offload="none",
        call_parameters=set(inspect.signature(type(pipe).__call__).parameters),
    )


def _settings(name: str, **values):
    from vidgen.engine.prepare import prepare_settings

    width, height, frames = _tiny_shape(name)
    overrides = {"steps": 2, "width": width, "height": height, "frames": frames, "seed": 1, **values}
    return prepare_settings(PROMPT, preset=name, model=None, overrides=overrides)[0]


def test_ltx_gets_the_frame_rate():
    """LTX's positional encoding of time depends on frame_rate: it must be the video's fps."""
    from tests.tiny_pipelines import PIPELINE_CLASSES
    from vidgen.engine.generate import VideoGenerator

    generator = VideoGenerator(_loaded(PIPELINE_CLASSES["LTXPipeline"](None)))
    arguments = generator.call_arguments(_settings("ltx-video", fps=12), seed=1, image=None)
    assert arguments["frame_rate"] == 12


def test_hunyuanvideo15_guidance_goes_to_its_guider(capsys):
    """HunyuanVideo 1.5 has no guidance_scale argument; --guidance sets the guider's scale."""
    from tests.tiny_pipelines import PIPELINE_CLASSES
    from vidgen.engine.generate import VideoGenerator

    pipe = PIPELINE_CLASSES["HunyuanVideo15Pipeline"](None)
    generator = VideoGenerator(_loaded(pipe))
    settings = _settings("hunyuanvideo1.5-480p", guidance=3.0)
    arguments = generator.call_arguments(settings, seed=1, image=None)
    assert "guidance_scale" not in arguments
    assert pipe.guider.config["guidance_scale"] == 3.0
    frames = generator.generate(settings, seed=1)  # the replaced guider runs
    assert frames.shape[0] == settings.frames
    assert "ignored" not in capsys.readouterr().err
