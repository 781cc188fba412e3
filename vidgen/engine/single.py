"""`vidgen generate`: one prompt to one or more files.

The flow of one command: settings prepared (prepare.prepare_settings), outputs planned and
checked, inputs read (conditioning), the pipeline obtained and each video rendered and
written (runner), each result reported on stdout as it is written. `vidgen batch` is the
same flow for a prompts file (vidgen.batch).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vidgen import ui
from vidgen.engine import latents, parallel, resume, windows
from vidgen.engine.generate import VideoGenerator
from vidgen.engine.loading import check_last_image, check_parallel  # torch and diffusers: this module runs only to generate
from vidgen.engine.making import Inputs, MakeContext, VideoJob, VideoResult, make_video
from vidgen.engine.pipeline_cache import obtain_pipeline
from vidgen.engine.prepare import prepare_settings
from vidgen.engine.runner import build_recipe
from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError, VidgenError
from vidgen.media.audio import wav_beside
from vidgen.media.conditioning import fit_mask, load_conditioning_image, load_input_mask, load_input_video
from vidgen.media.video import check_encoder, check_output_path, output_format, prompt_slug
from vidgen.processes import Processes, current_processes
from vidgen.settings.layers import fit_frames_to_video
from vidgen.settings.request import GenerateRequest
from vidgen.settings.table import GenerationSettings


def plan_output_paths(settings: GenerationSettings, options: GenerateRequest, env: Environment = PROCESS) -> list[Path | None]:
    """One path per video (None: standard output), all checked before generating; a
    relative -o and the unnamed outputs are in `env`'s folder."""
    seeds = [settings.seed + index for index in range(settings.num_videos)]
    if options.output == "-":
        if options.as_json:
            raise UsageError("--json and -o - both need standard output; give an output path with --json")
        if settings.num_videos > 1:
            raise UsageError("-o - writes one video; use --num-videos 1 or an output path")
        check_encoder("mp4")
        return [None]
    if options.output is None:
        paths = [env.folder() / f"{prompt_slug(settings.prompt)}-{seed}.mp4" for seed in seeds]
    else:
        base = env.path(options.output)
        output_format(options.output)  # an unsupported suffix fails now
        if settings.num_videos == 1:
            paths = [base]
        else:
            paths = [base.with_name(f"{base.stem}-{index + 1}{base.suffix}") for index in range(settings.num_videos)]
    for path in paths:
        check_output_path(path, overwrite=options.overwrite)
    return paths


def _check_wavs_beside(paths: list[Path | None], *, overwrite: bool) -> None:
    """A model with sound writes a WAV beside a GIF or PNG folder: refuse an existing one
    now, before generating (write_video checks again, for a --model without a preset)."""
    for path in paths:
        if path is not None and output_format(path) in ("gif", "png") and wav_beside(path).exists() and not overwrite:
            raise UsageError(f"{wav_beside(path)} already exists (pass --overwrite to replace it)")


@dataclass
class _Planned:
    """What every process of the group knows before loading."""

    settings: GenerationSettings
    chosen: Any
    paths: list[Path | None]
    image: Any
    last_image: Any
    video: Any
    mask: Any


def _plan(request: GenerateRequest, env: Environment, group: Processes) -> _Planned:
    """Settings, outputs and inputs, all checked before anything is loaded."""
    strict, options = request.strict, request
    overrides, kept = request.settings_given(), None
    if overrides.get("resume_latents"):  # the stopped run's seed, unless one is given (then it must be the same)
        overrides["resume_latents"] = str(env.path(overrides["resume_latents"]))
        kept = latents.read_file(Path(overrides["resume_latents"]))
        overrides["seed"] = kept.recipe.get("seed") if overrides.get("seed") is None else overrides["seed"]
    settings, chosen = prepare_settings(
        request.prompt, preset=request.preset, model=request.model, overrides=overrides, strict=strict, env=env
    )
    if settings.preview:
        settings = replace(settings, preview=str(env.path(settings.preview)))
    latents.check_covered(settings.pipeline_class, settings)
    if kept is not None:
        resume.check_before_loading(
            kept, settings, build_recipe(settings, settings.seed, (settings.frames, settings.height, settings.width))
        )
    if parallel.check_group(settings.parallel, group.count) is not None:
        settings = replace(settings, seed=group.share(settings.seed))  # a drawn seed: the first process's, in every one
        if group.device and settings.device == "auto":
            settings = replace(settings, device=group.device)  # the launcher's device for this process
        check_parallel(settings, group.count)
    check_last_image(settings)  # the model's configs, where on disk: before the inputs are read
    paths = plan_output_paths(settings, options, env)
    if chosen.audio and settings.audio:
        _check_wavs_beside(paths, overwrite=options.overwrite)
    image = load_conditioning_image(settings.image, env) if settings.image else None
    last_image = load_conditioning_image(settings.last_image, env) if settings.last_image else None
    video = load_input_video(settings.video, env) if settings.video else None
    mask = load_input_mask(settings.mask, env) if settings.mask else None  # validate() made sure of a video
    if video is not None:
        settings, changes = fit_frames_to_video(settings, chosen.constraints, len(video), strict=strict)
        for change in changes:
            ui.warn(change)
    if mask is not None:
        mask = fit_mask(mask, settings.mask, settings.input_frames)
    return _Planned(settings, chosen, paths, image, last_image, video, mask)


def run(request: GenerateRequest, env: Environment = PROCESS) -> list[VideoResult]:
    """Generate `--num-videos` videos and report each on stdout as it is written; relative
    paths (-o, --image, --video, --mask) are taken from `env`'s folder. Under a launcher
    (`--parallel`) every process runs this; the first writes and reports."""
    options = request
    if windows.wanted(request.preset, request.model, request.settings_given()):  # longer than one window of a preset that continues videos
        latents.check_one_call(request.settings_given())
        return [
            windows.run_windows(
                request.prompt,
                preset=request.preset,
                model=request.model,
                overrides=request.settings_given(),
                strict=request.strict,
                output=request.output,
                overwrite=request.overwrite,
                as_json=request.as_json,
                env=env,
            )
        ]
    group = current_processes()
    if not group.is_main:
        ui.configure(quiet=True)  # one voice: the first process's
    planned, error = None, None
    try:
        planned = _plan(request, env, group)
    except VidgenError as failure:
        error = failure
    group.agree(error, one_voice=True)  # every process goes on, or all stop with the first error
    settings, chosen, paths = planned.settings, planned.chosen, planned.paths

    location = settings.location
    loaded, error = None, None
    try:
        loaded = obtain_pipeline(settings, pull_hint=f"vidgen pull {chosen.name if chosen.source else location.location}")
        if settings.parallel:
            parallel.check_sequence(
                loaded.pipe, settings.parallel, group.count, frames=settings.frames, height=settings.height, width=settings.width
            )
    except VidgenError as failure:
        error = failure
    group.agree(error, one_voice=True)
    generator = VideoGenerator(loaded)
    inputs = Inputs(image=planned.image, last_image=planned.last_image, video=planned.video, mask=planned.mask)

    results = []
    for index, path in enumerate(paths):
        label = f"video {index + 1}/{len(paths)}" if len(paths) > 1 else "video"
        context = MakeContext(label=label, write=group.is_main, parallel=loaded.parallel, processes=group.count)
        result = make_video(VideoJob(settings, settings.seed + index, path, inputs, overwrite=options.overwrite), generator, context)
        if result is None:
            continue  # the first process writes and reports
        if path is None:
            ui.emit_bytes(result.data)
        elif options.as_json:
            ui.emit_json(result.to_json())
        else:
            ui.emit_result(result.path)
        results.append(result)
    return results
