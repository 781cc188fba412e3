"""Settings + a loaded pipeline -> frames -> files, and the single-video command's flow.

Two layers, so `batch.py` can reuse the middle one:
- `prepare_settings()` merges preset and flags, validates, snaps, draws the seed;
- `VideoGenerator(loaded).generate(settings, seed)` runs one pipeline call and returns
  uint8 frames; the pipeline is loaded once (pipeline.load_pipeline) and reused;
- `run()` is `vidgen generate`: plan outputs, load, generate each video, write, report
  (loading and writing go through vidgen.runner, shared with batch and the server).
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidgen import __version__, signals, ui
from vidgen.audio import Audio, audio_from_output, fit_to_video
from vidgen.errors import GenerationError, Interrupted, UsageError
from vidgen.presets import Preset, choose_preset, resolve_model_location
from vidgen.settings import GenerationSettings, build_settings, draw_seed, fit_frames_to_video, snap_to_constraints, validate


@dataclass
class OutputOptions:
    output: str | None = None  # a path, "-" for standard output, None: named after the prompt
    overwrite: bool = False
    as_json: bool = False


def merge_settings(chosen: Preset, layers: list[dict[str, Any]], *, model: str | None, strict: bool = False) -> tuple[GenerationSettings, list[str]]:
    """Merge `layers` (later wins) over the preset, validate and snap. Returns the
    snapping notes for the caller to show (batch prefixes them with the line)."""
    from vidgen.extras import fit_extras

    settings = build_settings(chosen, layers, model=model)
    validate(settings)
    rule, changes = fit_extras(settings, chosen.constraints, strict=strict)  # extras may change the frame rule
    return settings, changes + snap_to_constraints(settings, rule, strict=strict)


def prepare_settings(prompt: str, *, preset: str | None, model: str | None, overrides: dict[str, Any], strict: bool = False) -> tuple[GenerationSettings, Preset]:
    """Merge, validate and snap; every bad input fails here, before any weights load."""
    chosen = choose_preset(preset, model)
    settings, changes = merge_settings(chosen, [{"prompt": prompt, **overrides}], model=model, strict=strict)
    for change in changes:
        ui.warn(change)
    if settings.seed is None:
        settings.seed = draw_seed()
    return settings, chosen


# ---- output names ----


def prompt_slug(prompt: str, max_length: int = 48) -> str:
    """`A red ball, bouncing!` -> `a-red-ball-bouncing`."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "video"


def plan_output_paths(settings: GenerationSettings, options: OutputOptions) -> list[Path | None]:
    """One path per video (None: standard output), all checked before generating."""
    from vidgen.video import check_encoder, check_output_path, output_format

    seeds = [settings.seed + index for index in range(settings.num_videos)]
    if options.output == "-":
        if options.as_json:
            raise UsageError("--json and -o - both need standard output; give an output path with --json")
        if settings.num_videos > 1:
            raise UsageError("-o - writes one video; use --num-videos 1 or an output path")
        check_encoder("mp4")
        return [None]
    if options.output is None:
        paths = [Path.cwd() / f"{prompt_slug(settings.prompt)}-{seed}.mp4" for seed in seeds]
    else:
        base = Path(options.output).expanduser()
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
    from vidgen.audio import wav_beside
    from vidgen.video import output_format

    for path in paths:
        if path is not None and output_format(path) in ("gif", "png") and wav_beside(path).exists() and not overwrite:
            raise UsageError(f"{wav_beside(path)} already exists (pass --overwrite to replace it)")


def load_conditioning_image(path: str):
    """The --image of an image-to-video preset, as a PIL image; unreadable -> exit 2."""
    from diffusers.utils import load_image

    if not path.startswith(("http://", "https://")) and not Path(path).expanduser().is_file():
        raise UsageError(f"image not found: {path}")
    try:
        return load_image(str(Path(path).expanduser()) if "://" not in path else path)
    except Exception as error:  # PIL raises several kinds for a bad file
        raise UsageError(f"cannot read image {path}: {error}") from error


def load_input_video(path: str) -> np.ndarray:
    """The --video of a video-to-video preset as uint8 frames (T, H, W, 3): any file
    imageio's ffmpeg reads, a GIF, or a folder of PNG frames; unreadable or empty -> exit 2."""
    from vidgen.video import read_frames

    source = Path(path).expanduser()
    if not source.exists():
        raise UsageError(f"video not found: {path}")
    return _frames_or_refuse(lambda: read_frames(source), "video", path)


def _frames_or_refuse(read, what: str, path: str) -> np.ndarray:
    """`read()`'s frames (T, H, W, 3), or one line and exit 2 for a file that is unreadable or empty."""
    try:
        frames = read()
    except Exception as error:  # ffmpeg, PIL and numpy raise several kinds for a bad file
        raise UsageError(f"cannot read {what} {path}: {_first_line(error)}") from error
    if frames.ndim != 4 or len(frames) == 0:
        raise UsageError(f"{what} {path} has no frames")
    return frames


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # a --mask that is one image


def load_input_mask(path: str) -> tuple[np.ndarray, bool]:
    """The --mask of a VACE preset as uint8 frames (T, H, W, 3), white = regenerate, and
    whether it is one image for every frame (PNG, JPEG, ...) rather than a video (any file
    imageio's ffmpeg reads, a GIF, or a folder of PNG frames). Unreadable or empty -> exit 2."""
    from vidgen.video import read_frames

    source = Path(path).expanduser()
    if not source.exists():
        raise UsageError(f"mask not found: {path}")
    single_image = source.is_file() and source.suffix.lower() in _IMAGE_SUFFIXES

    def read() -> np.ndarray:
        if not single_image:
            return read_frames(source)
        from PIL import Image

        with Image.open(source) as image:
            return np.asarray(image.convert("RGB"))[None]

    return _frames_or_refuse(read, "mask", path), single_image


def fit_mask(mask: tuple[np.ndarray, bool], path: str, video_frames: int) -> np.ndarray:
    """One mask frame per video frame used: an image repeated, a video's first ones; a
    mask video shorter than that is bad input."""
    frames, single_image = mask
    if single_image:
        return frames.repeat(video_frames, axis=0)
    if len(frames) < video_frames:
        raise UsageError(f"mask {path} has {len(frames)} frames; the video uses {video_frames} (give one mask frame per video frame, or a single image)")
    return frames[:video_frames]


# ---- one pipeline call ----


def _stop_now():
    raise KeyboardInterrupt


def _cancel_on_ctrl_c() -> signals.StopRequest:
    """During denoising, a first Ctrl-C asks to stop after the current step (the step
    callback raises Interrupted); a second one stops at once. Elsewhere Ctrl-C is a
    plain KeyboardInterrupt."""
    return signals.after_current_step(second=_stop_now)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _frames_to_uint8(output: Any) -> np.ndarray:
    """The first video of a pipeline output as uint8 (T, H, W, 3); non-finite -> error."""
    frames = output.frames[0] if hasattr(output, "frames") else output[0][0]
    if isinstance(frames, list):  # some pipelines return PIL images whatever output_type says
        frames = np.stack([np.asarray(image.convert("RGB")) for image in frames])
    if hasattr(frames, "detach"):  # a torch tensor
        frames = frames.detach().float().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] != 3 and frames.shape[1] == 3:  # (T, C, H, W)
        frames = frames.transpose(0, 2, 3, 1)
    if frames.dtype == np.uint8:
        return frames
    if not np.isfinite(frames).all():
        raise GenerationError(
            "the model produced non-finite values (NaN or inf) in the decoded frames; nothing was written "
            "(try --dtype float32 or bfloat16, or fewer --steps)"
        )
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _as_pil_frames(frames: np.ndarray) -> list:
    from PIL import Image

    return [Image.fromarray(frame) for frame in frames]


# Other names some pipelines give a standard argument, and why: where a pipeline lacks the
# standard name and has the other, the value goes in under the other.
ARGUMENT_ALIASES = {
    "num_frames": "frames",  # SANA-Video (SanaVideoPipeline, SanaImageToVideoPipeline)
    # Stable Video Diffusion: the guidance goes in as its ramp's top value, so it is not one
    # the pipeline "takes no" of (the warning in _call_arguments).
    "guidance_scale": "max_guidance_scale",
}


def _argument_name(name: str, parameters: set[str]) -> str:
    """`name`, or its alias where the pipeline's __call__ takes only the alias."""
    alias = ARGUMENT_ALIASES.get(name)
    return alias if name not in parameters and alias in parameters else name


# Helios' pyramid pipeline (Helios-Mid, Helios-Distilled) denoises each chunk in resolution
# stages and takes its steps per stage as a list, with no num_inference_steps: --steps N is
# N steps in every stage, as the model's own examples give them ([20, 20, 20], [2, 2, 2]).
PYRAMID_STEPS = "pyramid_num_inference_steps_list"


def pyramid_stages(pipe: Any) -> int:
    """How many resolution stages a pyramid pipeline runs: its scheduler's `stages` (the
    list's length must equal it), else the length of the pipeline's own default list."""
    import inspect

    stages = getattr(getattr(pipe, "scheduler", None), "config", {}).get("stages")
    if isinstance(stages, int) and stages > 0:
        return stages
    default = inspect.signature(type(pipe).__call__).parameters[PYRAMID_STEPS].default
    return len(default) if isinstance(default, (list, tuple)) and default else 1


def _takes_pyramid_steps(parameters: set[str]) -> bool:
    return "num_inference_steps" not in parameters and PYRAMID_STEPS in parameters


def _start_condition(pipe: Any, frames: list) -> Any:
    """LTX-2's conditioning item for a video at the start of the output (latent index 0,
    full strength, as the example in LTX2ConditionPipeline's docstring places a first frame);
    its class lives in the pipeline's own module."""
    import sys

    condition_class = getattr(sys.modules[type(pipe).__module__], "LTX2VideoCondition", None)
    if condition_class is None:
        raise UsageError(f"{type(pipe).__name__} takes no input video; --video needs a video-to-video preset or model")
    return condition_class(frames=frames, index=0, strength=1.0)


class VideoGenerator:
    """Calls a loaded pipeline for one video at a time; reuse it for many videos."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self._warned: set[str] = set()

    def fill_pipeline_defaults(self, settings: GenerationSettings) -> None:
        """An ad-hoc --model has no preset defaults: take the pipeline's own."""
        defaults = self.loaded.call_defaults()
        if _takes_pyramid_steps(self.loaded.call_parameters) and isinstance(defaults.get(PYRAMID_STEPS), (list, tuple)):
            defaults["num_inference_steps"] = defaults[PYRAMID_STEPS][0]  # steps per stage
        pairs = {"steps": "num_inference_steps", "guidance": "guidance_scale", "frames": "num_frames", "width": "width", "height": "height"}
        for setting, parameter in pairs.items():
            parameter = _argument_name(parameter, self.loaded.call_parameters)
            if getattr(settings, setting) is None and isinstance(defaults.get(parameter), (int, float)):
                setattr(settings, setting, defaults[parameter])
        guider = getattr(self.loaded.pipe, "guider", None)
        if settings.guidance is None and "guidance_scale" in getattr(guider, "config", {}):
            settings.guidance = guider.config["guidance_scale"]  # recorded in the recipe

    def _set_guider_scale(self, guidance: float | None) -> bool:
        """Pipelines built on diffusers' guiders (HunyuanVideo 1.5) take no guidance_scale
        argument: the scale lives in `pipe.guider`, replaced here by a copy with the new
        scale. True when the guidance was applied that way."""
        guider = getattr(self.loaded.pipe, "guider", None)
        if guidance is None or guider is None or "guidance_scale" not in getattr(guider, "config", {}):
            return False
        if guider.config["guidance_scale"] != guidance:
            self.loaded.pipe.guider = guider.new(guidance_scale=guidance)
        return True

    def _call_arguments(self, settings: GenerationSettings, seed: int, image: Any) -> dict[str, Any]:
        import torch

        parameters = self.loaded.call_parameters
        # A CPU generator draws the same starting noise on every device, so a seed
        # means the same video on a laptop and a GPU server (up to kernel differences).
        generator = torch.Generator("cpu").manual_seed(seed)
        wanted = {
            "prompt": settings.prompt,
            "negative_prompt": settings.negative_prompt,
            "image": image,
            "strength": settings.strength,
            "height": settings.height,
            "width": settings.width,
            "num_frames": settings.frames,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance,
            "generator": generator,
            "output_type": "np",
        }
        for name in ARGUMENT_ALIASES:
            wanted[_argument_name(name, parameters)] = wanted.pop(name)
        if _takes_pyramid_steps(parameters) and settings.steps is not None:
            wanted[PYRAMID_STEPS] = [settings.steps] * pyramid_stages(self.loaded.pipe)
        if "fps" in parameters:
            wanted["fps"] = round(settings.fps)  # SVD conditions on the frame rate
        if "frame_rate" in parameters:
            wanted["frame_rate"] = settings.fps  # LTX: enters the positional encoding of time
        if "guidance_scale" not in parameters and self._set_guider_scale(settings.guidance):
            wanted.pop("guidance_scale")
        for name in ("prompt", "negative_prompt", "guidance_scale"):
            if wanted.get(name) and name not in parameters and name not in self._warned:
                self._warned.add(name)
                ui.warn(f"{self.loaded.class_name} takes no {name.replace('_scale', '')}; ignored")
        if wanted.get("height") and "height" not in parameters and "image" in parameters and "size" not in self._warned:
            # HunyuanVideo 1.5 image-to-video sizes the video from the start image itself.
            self._warned.add("size")
            ui.warn(f"{self.loaded.class_name} takes no size: the video's size follows the image; --size ignored")
        arguments = {name: value for name, value in wanted.items() if value is not None and name in parameters}
        arguments.update(settings.call_kwargs)  # the preset's [call] table, as is
        if image is not None and "image" not in parameters and "reference_images" in parameters:
            arguments["reference_images"] = [image]  # Wan VACE: what the subject looks like
        for name, value in settings.extras.items():  # checked and snapped by vidgen.extras
            if name not in parameters:
                raise UsageError(f"{self.loaded.class_name} takes no {name}; --extra {name} is for another preset's pipeline")
            arguments[name] = value
        return arguments

    def _add_input_video(self, arguments: dict[str, Any], settings: GenerationSettings, video: np.ndarray, mask: np.ndarray | None) -> None:
        """The input video (and VACE's mask) as the pipeline takes them: a `video` list of
        PIL frames, or LTX-2's `conditions` (the video conditioning the start)."""
        parameters = self.loaded.call_parameters
        # The frames fit_frames_to_video chose (all of an extended video, which the pipeline
        # keeps and adds to); the pipeline resizes them itself.
        frames = _as_pil_frames(video[: settings.input_frames or settings.frames])
        if "video" in parameters:
            arguments["video"] = frames
        elif "conditions" in parameters:
            arguments["conditions"] = [_start_condition(self.loaded.pipe, frames)]
        else:
            raise UsageError(f"{self.loaded.class_name} takes no input video; --video needs a video-to-video preset or model")
        if mask is not None:
            if "mask" not in parameters:
                raise UsageError(f"{self.loaded.class_name} takes no mask; --mask needs a Wan VACE preset such as wan2.1-vace-1.3b")
            arguments["mask"] = _as_pil_frames(mask[: len(frames)])

    def generate(self, settings: GenerationSettings, seed: int, *, image: Any = None, video: np.ndarray | None = None, mask: np.ndarray | None = None,
                 progress: ui.Progress | None = None) -> np.ndarray:  # fmt: skip
        """One video as uint8 frames (T, H, W, 3)."""
        return self.generate_with_audio(settings, seed, image=image, video=video, mask=mask, progress=progress)[0]

    def generate_with_audio(self, settings: GenerationSettings, seed: int, *, image: Any = None, video: np.ndarray | None = None, mask: np.ndarray | None = None,
                            progress: ui.Progress | None = None) -> tuple[np.ndarray, Audio | None]:  # fmt: skip
        """One video as uint8 frames (T, H, W, 3), and the soundtrack the pipeline made
        with it (LTX-2), fitted to the frames' length; None for a silent model."""
        import torch

        from vidgen.extras import windows

        progress = progress or ui.Progress("", 0, visible=False)
        pipe = self.loaded.pipe
        arguments = self._call_arguments(settings, seed, image)
        if video is not None:
            self._add_input_video(arguments, settings, video, mask)
        total_steps = settings.steps or 0
        if "strength" in arguments and total_steps:  # img2img-style: only the last steps run
            total_steps = min(int(total_steps * arguments["strength"]), total_steps)
        # Diffusion forcing runs the steps once per window, counting each window from 0, so
        # the bar follows the calls. (Its asynchronous mode makes more calls per window than
        # steps: the bar then fills early and waits for the last window.)
        expected_calls = total_steps * windows(settings)
        if PYRAMID_STEPS in arguments:  # the steps run once per resolution stage
            expected_calls *= len(arguments[PYRAMID_STEPS])
        calls = 0

        with _cancel_on_ctrl_c() as cancel:

            def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
                nonlocal calls
                calls += 1
                progress.step(min(total_steps, calls * total_steps // max(expected_calls, 1)))
                if calls >= expected_calls:
                    progress.phase("decode")
                if cancel.requested or ui.remote_cancelled():  # Ctrl-C, or a server's client gone or stopped
                    message = "interrupted during denoising; nothing was written"
                    raise ui.remote_interruption(message) or Interrupted(message)
                return callback_kwargs

            if "callback_on_step_end" in self.loaded.call_parameters:
                arguments["callback_on_step_end"] = on_step_end
            denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
            hook = None
            if isinstance(denoiser, torch.nn.Module):

                def mark_denoising(module, args) -> None:
                    # The first denoiser call marks the end of text encoding. Returning
                    # None matters: a forward pre-hook's return value replaces the inputs.
                    progress.phase("denoise")

                hook = denoiser.register_forward_pre_hook(mark_denoising)
            progress.phase("encode")
            try:
                with torch.inference_mode():
                    output = pipe(**arguments)
            except torch.OutOfMemoryError as error:
                raise GenerationError(
                    f"out of memory on {self.loaded.device}: try --offload model (or group, sequential), "
                    "--vae-tiling, a smaller --size or fewer --frames"
                ) from error
            except ValueError as error:
                # diffusers checks its inputs with ValueError (sizes, frame counts): bad input.
                raise UsageError(f"{self.loaded.class_name} refused the input: {_first_line(error)}") from error
            except (RuntimeError, TypeError) as error:
                raise GenerationError(f"generation failed: {_first_line(error)}") from error
            finally:
                if hook is not None:
                    hook.remove()
        frames = _frames_to_uint8(output)
        try:
            audio = audio_from_output(output, pipe)
        except ValueError as error:
            raise GenerationError(f"{error}; nothing was written") from error
        return frames, None if audio is None else fit_to_video(audio, len(frames), settings.fps)


def build_recipe(settings: GenerationSettings, seed: int, frames: np.ndarray) -> dict[str, Any]:
    """What went into a video, stored inside it; sizes are read from the real frames."""
    count, height, width = frames.shape[:3]
    return {
        "vidgen_version": __version__,
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": seed,
        "model": resolve_model_location(settings.model).location,
        "revision": settings.revision,
        "preset": settings.preset,
        "pipeline": settings.pipeline_class,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "width": width,
        "height": height,
        "frames": count,
        "fps": settings.fps,
        "scheduler": settings.scheduler,
        "flow_shift": settings.flow_shift,
        "dtype": settings.dtype,
        "cache": settings.cache,  # a step cache changes the output (compilation does not)
        "image": settings.image,
        "video": settings.video,
        "mask": settings.mask,
        "strength": settings.strength,
        "loras": [{"source": lora.source, "scale": lora.scale} for lora in settings.loras],
        "call": settings.call_kwargs,
        "extras": settings.extras,
    }


def audio_record(audio: Audio | None, fmt: str) -> dict[str, Any] | bool:
    """The recipe's `audio`: the soundtrack written (codec, rate, channels), or false."""
    if audio is None:
        return False
    from vidgen.audio import CODECS

    codec = {"aac": "aac", "libopus": "opus"}.get(CODECS.get(fmt, ""), "pcm_s16le, WAV beside")
    return {"codec": codec, "sample_rate": audio.rate, "channels": audio.channels}


# ---- `vidgen generate` ----


def run(prompt: str, *, preset: str | None, model: str | None, overrides: dict[str, Any], options: OutputOptions, strict: bool = False) -> list[dict[str, Any]]:
    """Generate `--num-videos` videos and report each on stdout as it is written."""
    from vidgen.runner import obtain_pipeline, render
    from vidgen.video import output_format

    settings, chosen = prepare_settings(prompt, preset=preset, model=model, overrides=overrides, strict=strict)
    paths = plan_output_paths(settings, options)
    if chosen.audio and settings.audio:
        _check_wavs_beside(paths, overwrite=options.overwrite)
    image = load_conditioning_image(settings.image) if settings.image else None
    video = load_input_video(settings.video) if settings.video else None
    mask = load_input_mask(settings.mask) if settings.mask else None  # validate() made sure of a video
    if video is not None:
        for change in fit_frames_to_video(settings, chosen.constraints, len(video), strict=strict):
            ui.warn(change)
    if mask is not None:
        mask = fit_mask(mask, settings.mask, settings.input_frames)
    location = resolve_model_location(settings.model)

    loaded = obtain_pipeline(settings, pull_hint=f"vidgen pull {chosen.name if chosen.source else location.location}")
    generator = VideoGenerator(loaded)
    generator.fill_pipeline_defaults(settings)
    settings.dtype = loaded.dtype  # record what ran, not "auto"
    settings.pipeline_class = settings.pipeline_class or loaded.class_name

    results = []
    for index, path in enumerate(paths):
        seed = settings.seed + index
        ui.info(f"seed {seed}")
        started = time.monotonic()
        label = f"video {index + 1}/{len(paths)}" if len(paths) > 1 else "video"
        with ui.progress(label, settings.steps or 0) as bar:
            recipe, data = render(generator, settings, seed, path=path, image=image, video=video, mask=mask, progress=bar, overwrite=options.overwrite)
        if recipe["audio"] and path is not None and output_format(path) in ("gif", "png"):
            from vidgen.audio import wav_beside

            kind = "a GIF carries" if output_format(path) == "gif" else "PNG frames carry"
            ui.warn(f"{kind} no sound: the audio is in {wav_beside(path)}")
        result = {
            "path": "-" if path is None else str(path.resolve()),
            "prompt": settings.prompt,
            "seed": seed,
            "frames": recipe["frames"],
            "fps": settings.fps,
            "width": recipe["width"],
            "height": recipe["height"],
            "model": recipe["model"],
            "preset": settings.preset,
            "audio": bool(recipe["audio"]),
            "seconds": round(time.monotonic() - started, 3),
        }
        if path is None:
            ui.emit_bytes(data)
        elif options.as_json:
            ui.emit_json(result)
        else:
            ui.emit_result(result["path"])
        results.append(result)
    return results
