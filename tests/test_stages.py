"""Staged presets ([[stages]]): LTX-Video's two-stage generation with its latent upsampler.

The shipped `ltx-video-0.9.7-two-stage` runs as written: its model is a tiny LTXConditionPipeline
(`--model`), its upsampler a tiny Lightricks/ltxv-spatial-upscaler-0.9.7 in a Hub cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_pipelines import put_in_hub_cache
from vidgen.media.readback import read_frames, read_recipe

PROMPT = "a red fox running in the snow"
PRESET = "ltx-video-0.9.7-two-stage"
TINY = ["--steps", "2", "--size", "64x64", "--frames", "9", "--seed", "1", "--device", "cpu", "--dtype", "float32"]


@pytest.fixture
def two_stage(tiny_pipeline_dir, component_repositories, monkeypatch, tmp_path) -> list[str]:
    """The preset's arguments with its model a tiny LTXConditionPipeline and its upsampler in a Hub cache."""
    put_in_hub_cache(
        monkeypatch,
        tmp_path / "hub",
        {"Lightricks/ltxv-spatial-upscaler-0.9.7": component_repositories["Lightricks/ltxv-spatial-upscaler-0.9.7"]},
    )
    return ["--preset", PRESET, "--model", str(tiny_pipeline_dir("LTXConditionPipeline")), *TINY]


def test_two_stages_run_half_size_then_upsampled_then_refined(run_cli, two_stage, pipeline_calls, tmp_path):
    import diffusers

    base_calls = pipeline_calls(diffusers.LTXConditionPipeline)
    upsample_calls = pipeline_calls(diffusers.LTXLatentUpsamplePipeline)
    out = tmp_path / "fox.mp4"
    result = run_cli("generate", PROMPT, *two_stage, "-o", out)
    assert result.exit_code == 0, result.stderr
    base, refine = base_calls
    assert (base.kwargs["width"], base.kwargs["height"], base.kwargs["num_inference_steps"], base.kwargs["output_type"]) == (
        32,
        32,
        2,
        "latent",
    )
    assert "latents" not in base.kwargs
    (upsample,) = upsample_calls
    assert tuple(upsample.kwargs["latents"].shape[-2:]) == (8, 8) and upsample.kwargs["output_type"] == "latent"
    assert upsample.pipe.vae is base.pipe.vae  # the loaded VAE, shared, not loaded twice
    assert (refine.kwargs["width"], refine.kwargs["height"], refine.kwargs["num_inference_steps"]) == (64, 64, 10)
    assert tuple(refine.kwargs["latents"].shape[-2:]) == (16, 16) and refine.kwargs["denoise_strength"] == 0.4
    assert refine.kwargs["output_type"] == "np" and refine.kwargs["decode_timestep"] == 0.05
    assert read_frames(out).shape == (9, 64, 64, 3)
    recipe = read_recipe(out)
    assert [(stage["name"], stage["width"], stage["height"], stage["steps"]) for stage in recipe["stages"]] == [
        ("base", 32, 32, 2),
        ("upsample", 64, 64, None),
        ("refine", 64, 64, 10),
    ]
    assert recipe["stages"][2]["call"] == {"denoise_strength": 0.4}
    # diffusers' LTX-Video 0.9.7 example: guidance 5.0 with guidance_rescale 0.7 in both denoising passes
    assert [(call.kwargs["guidance_scale"], call.kwargs["guidance_rescale"]) for call in (base, refine)] == [(5.0, 0.7)] * 2
    assert recipe["components"]["latent_upsampler"]["model"] == "Lightricks/ltxv-spatial-upscaler-0.9.7"


def test_the_progress_bar_names_each_stage(two_stage, tiny_pipeline_dir):
    """The bar's phases say which stage runs, and it fills over every stage's steps."""
    from vidgen.engine.generate import VideoGenerator
    from vidgen.engine.loading import load_pipeline
    from vidgen.engine.prepare import prepare_settings

    class Recorder:
        phases: list[str] = []
        steps: list[int] = []

        def phase(self, name: str) -> None:
            self.phases.append(name)

        def step(self, completed: int) -> None:
            self.steps.append(completed)

    settings, _ = prepare_settings(
        PROMPT, preset=PRESET, model=two_stage[3], overrides={"steps": 2, "size": "64x64", "frames": 9, "device": "cpu"}
    )
    recorder = Recorder()
    VideoGenerator(load_pipeline(settings)).generate(settings, seed=1, progress=recorder)
    assert [phase for phase in dict.fromkeys(recorder.phases) if phase.endswith("denoise")] == ["base denoise", "refine denoise"]
    assert "upsample " in recorder.phases and recorder.phases[-1] == "refine decode"
    assert recorder.steps[-1] == settings.steps  # full: 2 base steps + 4 of the refinement's 10 (denoise_strength 0.4)


def test_a_batch_runs_a_staged_preset(run_cli, two_stage, tmp_path):
    """Each line's own size is the video's; the first stage runs at half of it."""
    Path("prompts.jsonl").write_text('{"prompt": "a fox wakes up"}\n{"prompt": "a fox runs", "width": 128}\n')
    result = run_cli("batch", "prompts.jsonl", "-O", tmp_path / "out", *two_stage)
    assert result.exit_code == 0, result.stderr
    videos = sorted((tmp_path / "out").glob("*.mp4"))
    assert sorted(read_frames(video).shape for video in videos) == [(9, 64, 64, 3), (9, 64, 128, 3)]
    assert sorted(read_recipe(video)["stages"][0]["width"] for video in videos) == [32, 64]


def _write_preset(home: Path, name: str, stages: str) -> None:
    folder = home / "presets"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(f'model = "Lightricks/LTX-Video-0.9.7-dev"\npipeline = "LTXConditionPipeline"\n{stages}')


def test_a_stage_size_that_is_not_whole_is_refused_before_loading(run_cli, isolated_environment):
    _write_preset(isolated_environment, "thirds", '[[stages]]\nname = "small"\nscale = 0.3\n[[stages]]\nname = "full"\n')
    result = run_cli("generate", PROMPT, "--preset", "thirds", "--size", "64x64", "--frames", "9")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: stage small runs at 0.3 of --size 64x64, which is not a whole size (19.2x19.2)"


@pytest.mark.parametrize(
    "stages, message",
    [
        ('[[stages]]\nname = "only"\n', "[[stages]] must be two or more, each with its own name"),
        (
            '[[stages]]\nname = "a"\nscale = 0.5\n[[stages]]\nname = "b"\nscale = 0.5\n',
            "the last of [[stages]] makes the video: its scale must be 1",
        ),
        ('[[stages]]\nname = "a"\nsteps = 0\n[[stages]]\nname = "b"\n', "[[stages]] a: steps must be at least 1, got 0"),
        (
            '[[stages]]\nname = "a"\nsize = 3\n[[stages]]\nname = "b"\n',
            "[[stages]] unknown key(s) size (allowed: name, pipeline, scale, steps, guidance, call, lora, scheduler)",
        ),
    ],
)
def test_bad_stages_are_one_line(run_cli, isolated_environment, stages, message):
    _write_preset(isolated_environment, "bad", stages)
    result = run_cli("presets", "show", "bad")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {(isolated_environment / 'presets' / 'bad.toml').resolve()}: {message}"


def test_presets_show_lists_the_stages(run_cli):
    shown = json.loads(run_cli("presets", "show", PRESET, "--json").stdout)
    assert [stage["name"] for stage in shown["stages"]] == ["base", "upsample", "refine"]
    assert shown["stages"][0]["scale"] == 0.5 and shown["stages"][1]["pipeline"] == "LTXLatentUpsamplePipeline"


def test_model_folder_stands_in_for_the_presets_own_repository_only_where_it_holds_the_piece(tmp_path):
    """ltx2-two-stage's upsampler and stage LoRA name Lightricks/LTX-2, its own model repository: a
    --model folder holding them replaces it for both; one without them (a fine-tune saved bare) and
    another hub repository leave them to Lightricks/LTX-2."""
    from vidgen.settings.layers import build_settings
    from vidgen.settings.presets import load_preset

    lora = "ltx-2-19b-distilled-lora-384.safetensors"
    copy, bare = tmp_path / "LTX-2", tmp_path / "finetune"
    (copy / "latent_upsampler").mkdir(parents=True)
    (copy / lora).write_bytes(b"")
    bare.mkdir()

    def pieces(model: str) -> tuple[str, str]:
        settings = build_settings(load_preset("ltx2-two-stage"), [{"prompt": PROMPT}], model=model)
        (upsampler,) = settings.components
        return upsampler.where, settings.stages[2].loras[0][0]

    assert pieces(str(copy)) == (f"{copy.resolve()} (subfolder latent_upsampler)", str(copy.resolve() / lora))
    named = ("Lightricks/LTX-2 (subfolder latent_upsampler)", f"Lightricks/LTX-2/{lora}")
    assert pieces(str(bare)) == named
    assert pieces("someone/LTX-2-finetune") == named


def _lora_in_use(pipe) -> list[str]:
    """The adapters the transformer's LoRA layers apply now (none while LoRA is disabled)."""
    from peft.tuners.lora import LoraLayer

    layers = [module for module in pipe.transformer.modules() if isinstance(module, LoraLayer)]
    return sorted({name for layer in layers if not layer.disable_adapters for name in layer.active_adapters})


def test_ltx2_two_stages_carry_the_audio_and_use_the_distilled_lora_in_the_refinement_only(
    run_cli, tiny_pipeline_dir, component_repositories, monkeypatch, tmp_path
):
    """Stage 1 at half size without the LoRA and with the pipeline's scheduler; stage 2 with the
    stage's LoRA, its fixed sigmas, the scheduler without dynamic shifting, the audio latents of
    stage 1; the file has the soundtrack. `--model` is a local copy of Lightricks/LTX-2 as the real
    repository is laid out (the pipeline, latent_upsampler/ and the LoRA file): the upsampler and the
    LoRA the preset names in Lightricks/LTX-2 come from it, offline, with an empty Hub cache."""
    import functools

    import diffusers
    import huggingface_hub

    from tests.test_audio import read_streams

    empty = tmp_path / "empty-hub-cache"
    empty.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(empty))
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    seen = []
    original = diffusers.LTX2Pipeline.__call__

    @functools.wraps(original)  # vidgen reads the call's parameters from its signature
    def spy(self, *args, **kwargs):
        seen.append((kwargs, _lora_in_use(self), self.scheduler.config.use_dynamic_shifting, self.scheduler.config.shift_terminal))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.LTX2Pipeline, "__call__", spy)
    # The real repository's scheduler shifts dynamically, towards a terminal sigma; the tiny one's is made so too.
    model = tmp_path / "model"
    model.mkdir()
    for entry in [*tiny_pipeline_dir("LTX2Pipeline").iterdir(), *component_repositories["Lightricks/LTX-2"].iterdir()]:
        if entry.name != "scheduler":
            (model / entry.name).symlink_to(entry)
    config = json.loads((tiny_pipeline_dir("LTX2Pipeline") / "scheduler" / "scheduler_config.json").read_text())
    (model / "scheduler").mkdir()
    (model / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "use_dynamic_shifting": True, "shift_terminal": 0.1}))
    out = tmp_path / "fox.mp4"
    result = run_cli("generate", PROMPT, "--preset", "ltx2-two-stage", "--model", model, *TINY, "--fps", "8", "-o", out)
    assert result.exit_code == 0, result.stderr
    (base, base_lora, base_dynamic, base_terminal), (refine, refine_lora, dynamic, terminal) = seen
    assert base_dynamic is True and base_terminal == 0.1  # the model's own scheduler in stage 1
    assert (base["width"], base["num_inference_steps"], base["guidance_scale"], base["output_type"]) == (32, 2, 3.0, "latent")
    # LTX-2.0's guidance (Lightricks/LTX-2 LTX_2_PARAMS) in stage 1; none at all in stage 2, as the makers' refinement
    assert (base["spatio_temporal_guidance_blocks"], base["use_cross_timestep"], base["stg_scale"], base["audio_guidance_scale"]) == (
        [29],
        False,
        1.0,
        7.0,
    )
    assert [
        refine[name] for name in ("stg_scale", "audio_stg_scale", "modality_scale", "audio_modality_scale", "audio_guidance_scale")
    ] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert base_lora == []
    assert refine_lora == ["stage-refine-0"] and dynamic is False and not terminal
    assert (refine["width"], refine["num_inference_steps"], refine["guidance_scale"]) == (64, 3, 1.0)
    assert refine["sigmas"] == [0.909375, 0.725, 0.421875] and refine["noise_scale"] == 0.909375
    assert refine["audio_latents"] is not None and tuple(refine["latents"].shape[-2:]) == (32, 32)
    assert read_frames(out).shape == (9, 64, 64, 3)
    assert read_streams(out)["audio"] is not None
    recipe = read_recipe(out)
    assert recipe["stages"][2]["lora"] == [f"{model.resolve()}/ltx-2-19b-distilled-lora-384.safetensors:1"]
    assert recipe["components"]["latent_upsampler"] == {
        "model": str(model.resolve()),
        "subfolder": "latent_upsampler",
        "revision": None,
        "class": None,
    }
    assert not any(empty.iterdir())  # nothing looked up in, or written to, the Hub cache


def test_the_server_runs_staged_presets_and_storyboards_like_any_other(
    serve_thread,
    tiny_pipeline_dir,
    component_repositories,
    monkeypatch,
    tmp_path,  # noqa: F811  the fixture imported above
):
    """Through `vidgen serve` (on a thread of this process, which works in another folder; its
    Hub cache from the environment) and real client processes: the two-stage preset with its
    upsampler, and a storyboard named relative to the client's folder; each video as
    in-process, each preset's pipeline kept under its own key."""
    hub = put_in_hub_cache(
        monkeypatch,
        tmp_path / "hub",
        {"Lightricks/ltxv-spatial-upscaler-0.9.7": component_repositories["Lightricks/ltxv-spatial-upscaler-0.9.7"]},
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    work = Path.cwd()
    elsewhere = tmp_path / "server-home"
    elsewhere.mkdir()
    served = serve_thread()
    monkeypatch.chdir(elsewhere)  # the server's process works there; its clients here, in `work`
    staged = served.run(
        "generate", PROMPT, "--preset", PRESET, "--model", tiny_pipeline_dir("LTXConditionPipeline"), *TINY, "-o", "staged.mp4", cwd=work
    )
    assert staged.returncode == 0, staged.stderr.decode() + served.output()
    assert read_frames(work / "staged.mp4").shape == (9, 64, 64, 3)
    assert [stage["width"] for stage in read_recipe(work / "staged.mp4")["stages"]] == [32, 64, 64]
    (work / "shots.txt").write_text("1s a fox wakes up\n1s the fox runs\n")
    story = served.run(
        "shots.txt",
        "--story",
        "--preset",
        "ltx-video-story",
        "--model",
        tiny_pipeline_dir("LTXConditionPipeline", "ltx-video-story"),
        "--size",
        "32x32",
        "--steps",
        "2",
        "--fps",
        "8",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "-o",
        "film",
        cwd=work,
    )
    assert story.returncode == 0, story.stderr.decode() + served.output()
    assert read_frames(work / "film").shape == (17, 32, 32, 3)
    assert [shot["prompt"] for shot in read_recipe(work / "film")["story"]] == ["a fox wakes up", "the fox runs"]
    status = served.status()
    assert status["jobs_done"] == 2 and len(status["models"]) == 2, status
    assert list(elsewhere.iterdir()) == []
