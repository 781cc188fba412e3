"""Settings + a loaded pipeline -> frames: the core under every command.

`VideoGenerator(loaded).generate(settings, seed)` runs one pipeline call and returns uint8
frames; the pipeline is loaded once (pipeline_cache.obtain_pipeline) and reused. The settings come
checked from vidgen.engine.prepare.

The commands above it (single.py for `vidgen generate`, vidgen.batch) plan outputs and
write files through vidgen.engine.runner; nothing here writes a file or reads an input file, but
for the start image's header (its size, for --size auto).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from PIL import Image

from vidgen import signals, ui
from vidgen.context import current
from vidgen.engine import acceleration, latents, preview, prompt_cache, resume, stages
from vidgen.engine.model_check import LAST_IMAGE_PRESETS, last_image_problem
from vidgen.errors import ExitCode, GenerationError, Interrupted, UsageError, first_line
from vidgen.families import ARGUMENT_ALIASES, argument_name
from vidgen.families.framepack import framepack_sections, framepack_window
from vidgen.families.guiders import guider_scale, set_guider_scale
from vidgen.families.helios import PYRAMID_STEPS, pyramid_stages, takes_pyramid_steps
from vidgen.families.ltx import callback_tensor_inputs, start_condition
from vidgen.media.audio import Audio, audio_from_output, fit_to_video
from vidgen.settings import story
from vidgen.settings.extras import windows
from vidgen.settings.runfacts import RunFacts
from vidgen.settings.table import SETTINGS, GenerationSettings

# The settings the pipeline call receives, by the table's `call` (setting -> argument).
CALL_ARGUMENTS = {setting.name: setting.call for setting in SETTINGS if setting.call}


# ---- one pipeline call ----


def _stop_now():
    raise KeyboardInterrupt


def _cancel_on_ctrl_c() -> signals.StopRequest:
    """During denoising, a first Ctrl-C asks to stop after the current step (the step
    callback raises Interrupted); a second one stops at once. Elsewhere Ctrl-C is a
    plain KeyboardInterrupt."""
    return signals.after_current_step(second=_stop_now)


def _frames_to_uint8(output: Any) -> np.ndarray:
    """The first video of a pipeline output as uint8 (T, H, W, 3); non-finite -> error."""
    return frames_to_uint8(output.frames[0] if hasattr(output, "frames") else output[0][0])


def frames_to_uint8(frames: Any) -> np.ndarray:
    """One video's frames (PIL images, a tensor or an array, values in [0, 1]) as uint8 (T, H, W, 3)."""
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
    return [Image.fromarray(frame) for frame in frames]


class VideoGenerator:
    """Calls a loaded pipeline for one video at a time; reuse it for many videos."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self._warned: set[str] = set()

    def run_facts(self, settings: GenerationSettings) -> RunFacts:
        """What runs for `settings` (built once after loading): the device, dtype and class loaded, and the
        pipeline's own values for what the settings leave unset (an ad-hoc --model has no preset defaults)."""
        defaults = self.loaded.call_defaults()
        if takes_pyramid_steps(self.loaded.call_parameters) and isinstance(defaults.get(PYRAMID_STEPS), (list, tuple)):
            defaults["num_inference_steps"] = defaults[PYRAMID_STEPS][0]  # steps per stage
        filled = {}
        for setting in SETTINGS:
            parameter = argument_name(setting.call, self.loaded.call_parameters) if setting.pipeline_default else None
            if parameter and getattr(settings, setting.name) is None and isinstance(defaults.get(parameter), (int, float)):
                filled[setting.name] = defaults[parameter]
        boundary = getattr(self.loaded.pipe, "config", {}).get("boundary_ratio")
        if settings.boundary_ratio is None and boundary is not None:  # Wan 2.2 A14B's own switch between its experts, recorded
            filled["boundary_ratio"] = boundary
        if settings.guidance is None and "guidance" not in filled and (scale := guider_scale(self.loaded.pipe)) is not None:
            filled["guidance"] = scale  # recorded in the recipe
        return RunFacts(self.loaded.device, self.loaded.dtype, self.loaded.class_name, tuple(filled.items()))

    def call_arguments(self, settings: GenerationSettings, seed: int, image: Any) -> dict[str, Any]:
        parameters = self.loaded.call_parameters
        # A CPU generator draws the same starting noise on every device, so a seed
        # means the same video on a laptop and a GPU server (up to kernel differences).
        generator = torch.Generator("cpu").manual_seed(seed)
        wanted = {argument: getattr(settings, name) for name, argument in CALL_ARGUMENTS.items()}
        if settings.prompt_suffix and wanted.get("prompt"):  # SANA-Video's motion score: the recipe keeps the two apart
            wanted["prompt"] += settings.prompt_suffix
        wanted.update(image=image, generator=generator, output_type="np")
        for name in ARGUMENT_ALIASES:
            wanted[argument_name(name, parameters)] = wanted.pop(name)
        if takes_pyramid_steps(parameters) and settings.steps is not None:
            wanted[PYRAMID_STEPS] = [settings.steps] * pyramid_stages(self.loaded.pipe)
        if "fps" in parameters:
            wanted["fps"] = round(settings.fps)  # SVD conditions on the frame rate
        if "frame_rate" in parameters:
            wanted["frame_rate"] = settings.fps  # LTX: enters the positional encoding of time
        if "guidance_scale" not in parameters and set_guider_scale(self.loaded.pipe, settings.guidance):
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
        if arguments.get("min_guidance_scale", 0) > arguments.get("max_guidance_scale", float("inf")):
            # SVD's guidance ramps from the preset's minimum (1.5) up to --guidance; a lower --guidance lowers both
            # (at 1 there is no guidance; a ramp that rose above 1 would turn it on half-way and fail).
            arguments["min_guidance_scale"] = arguments["max_guidance_scale"]
        if image is not None and "image" not in parameters and "reference_images" in parameters:
            arguments["reference_images"] = [image]  # Wan VACE: what the subject looks like
        for name, value in settings.extras.items():  # checked and snapped by vidgen.settings.extras
            if name not in parameters:
                raise UsageError(f"{self.loaded.class_name} takes no {name}; --extra {name} is for another preset's pipeline")
            arguments[name] = value
        if "seed" in parameters:  # LTX's multi-prompt pipeline seeds each window from it (default 0: every run alike)
            arguments["seed"] = seed
        if settings.shots and "prompt_segments" in parameters:  # a storyboard: each window its shot's prompt
            arguments["prompt_segments"] = story.segments(self.loaded.pipe, settings, arguments)
        elif settings.shots:
            raise UsageError(f"{self.loaded.class_name} takes one prompt; a storyboard (--story) needs a preset such as ltx-video-story")
        window = framepack_window(parameters, arguments, self.loaded.pipe)
        if window and settings.frames:
            arguments["num_frames"] = framepack_sections(self.loaded.pipe, settings.frames, window)[1]
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
            arguments["conditions"] = [start_condition(self.loaded.pipe, frames)]
        else:
            raise UsageError(f"{self.loaded.class_name} takes no input video; --video needs a video-to-video preset or model")
        if mask is not None:
            if "mask" not in parameters:
                raise UsageError(f"{self.loaded.class_name} takes no mask; --mask needs a Wan VACE preset such as wan2.1-vace-1.3b")
            arguments["mask"] = _as_pil_frames(mask[: len(frames)])

    def _memory_advice(self, settings: GenerationSettings) -> str:
        """The next step that should fit, from the pipeline's weights and the card's free memory."""
        if not self.loaded.device.startswith("cuda"):
            return "--offload model (or group, sequential)"
        sizes = acceleration.weight_bytes(self.loaded.pipe)
        denoiser = acceleration.denoiser_of(self.loaded.pipe)
        free_bytes, _ = torch.cuda.mem_get_info(torch.device(self.loaded.device))
        return acceleration.memory_advice(
            total_bytes=sum(sizes),
            denoiser_bytes=acceleration.parameter_bytes(denoiser),
            largest_bytes=max(sizes, default=0),
            free_bytes=free_bytes,
            quantized=bool(settings.quantize and settings.quantize != "none"),
            offload=self.loaded.offload,
        )

    def generate(
        self,
        settings: GenerationSettings,
        seed: int,
        *,
        image: Any = None,
        video: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        progress: ui.Progress | None = None,
    ) -> np.ndarray:
        """One video as uint8 frames (T, H, W, 3)."""
        return self.generate_with_audio(settings, seed, image=image, video=video, mask=mask, progress=progress)[0]

    def generate_with_audio(
        self,
        settings: GenerationSettings,
        seed: int,
        *,
        image: Any = None,
        video: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        progress: ui.Progress | None = None,
        last_image: Any = None,
        keeper: latents.Keeper | None = None,
        resumed: latents.Kept | None = None,
    ) -> tuple[np.ndarray, Audio | None]:
        """One video as uint8 frames (T, H, W, 3), and the soundtrack the pipeline made
        with it (LTX-2), fitted to the frames' length; None for a silent model.

        For the Wan family (vidgen.engine.latents) the decode after the last step is vidgen's own:
        `keeper` gets the latents first (and, on a stop during denoising with --save-latents,
        the last finished step's); `resumed` goes on from a stopped run's latents."""
        progress = progress or ui.Progress("", 0, visible=False)
        pipe = self.loaded.pipe
        arguments = self.call_arguments(settings, seed, image)
        # Checked before loading where the model's files were at hand (loading.check_last_image); again here,
        # from the loaded pipeline, for a pipeline the server kept and for a batch line's own --last-image.
        transformer = getattr(pipe, "transformer", None)
        problem = last_image_problem(
            self.loaded.class_name,
            given=last_image is not None,
            model=f"model {settings.model}",
            model_index=dict(getattr(pipe, "config", {})),
            transformer=dict(getattr(transformer, "config", {})),
        )
        if problem:
            raise UsageError(problem)
        latents.check_covered(self.loaded.class_name, settings)  # an ad-hoc --model is known only now
        own_decode = latents.covered(self.loaded.class_name) and not settings.stages
        if own_decode:
            arguments["output_type"] = "latent"
        start = 0  # steps done before this call: a resumed run's
        continuing = contextlib.nullcontext()
        if resumed is not None:
            arguments["latents"], start = resumed.latents, resumed.step
            continuing = resume.continuing(
                pipe.scheduler, resumed.step, resumed.scheduler_tensors, resumed.info.get("scheduler_state") or {}
            )
        previewer = None
        if settings.preview:
            previewer = preview.Previewer(pipe, settings.preview, every=settings.preview_every, steps=settings.steps or 0, fps=settings.fps)
        if last_image is not None:
            if "last_image" not in self.loaded.call_parameters:  # a pipeline of custom code
                raise UsageError(f"{self.loaded.class_name} takes no last image; --last-image is for {LAST_IMAGE_PRESETS}")
            arguments["last_image"] = last_image
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
        if window := framepack_window(self.loaded.call_parameters, arguments, pipe):  # and FramePack's once per section
            expected_calls *= framepack_sections(pipe, settings.frames or 1, window)[0]
        if settings.stages:  # a staged preset: every stage's steps, the bar naming the stage
            progress, expected_calls = stages.StageProgress(progress, ""), stages.denoising_steps(settings)
        calls = 0

        with _cancel_on_ctrl_c() as cancel, signals.sigterm_after_current_step() as terminate:

            def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
                nonlocal calls
                calls += 1
                done = start + calls
                progress.step(min(total_steps, done * total_steps // max(expected_calls, 1)))
                if done >= expected_calls:
                    progress.phase("decode")
                if previewer is not None and "latents" in callback_kwargs:
                    previewer.after_step(callback_kwargs["latents"], done)
                terminated = terminate is not None and terminate.requested
                if (
                    cancel.requested or terminated or current().cancel.cancelled()
                ):  # Ctrl-C, SIGTERM, or a served job's client gone or stopped
                    message = "interrupted during denoising; nothing was written"
                    if keeper is not None and "latents" in callback_kwargs:
                        message += keeper.interrupted(
                            pipeline, callback_kwargs["latents"], done, resume.scheduler_state(pipeline.scheduler)
                        )
                    remote = current().cancel.interruption(message)
                    raise remote or Interrupted(message, ExitCode.TERMINATED if terminated else None)
                return callback_kwargs

            if "callback_on_step_end" in self.loaded.call_parameters:
                arguments["callback_on_step_end"] = on_step_end
                if (tensors := callback_tensor_inputs(self.loaded.call_parameters)) is not None:
                    arguments["callback_on_step_end_tensor_inputs"] = tensors
            denoiser = acceleration.denoiser_of(pipe)
            hook = None
            denoising = False  # whether the denoiser has run: a ValueError before it is bad input, after it a failure
            if isinstance(denoiser, torch.nn.Module):

                def mark_denoising(module, args) -> None:
                    # The first denoiser call marks the end of text encoding. Returning
                    # None matters: a forward pre-hook's return value replaces the inputs.
                    nonlocal denoising
                    denoising = True
                    progress.phase("denoise")

                hook = denoiser.register_forward_pre_hook(mark_denoising)
            progress.phase("encode")
            try:
                with torch.inference_mode():
                    if previewer is not None:
                        previewer.prepare()
                    if own_decode:
                        prompt_cache.use_cached_embeddings(pipe, arguments)
                    if settings.stages:
                        output = stages.run(self.loaded, arguments, settings, progress, lambda stage_pipe, kwargs: stage_pipe(**kwargs))
                    else:
                        with continuing:
                            output = pipe(**arguments)
            except torch.OutOfMemoryError as error:
                raise GenerationError(
                    f"out of memory on {self.loaded.device}: try {self._memory_advice(settings)}, "
                    "--vae-tiling, a smaller --size or fewer --frames"
                ) from error
            except ValueError as error:
                if denoising or calls:  # the decode, a scheduler, a model's own check mid-run: not the user's input
                    raise GenerationError(f"generation failed after denoising began: {first_line(error)}") from error
                # diffusers checks its inputs with ValueError (sizes, frame counts) before the first step: bad input.
                raise UsageError(f"{self.loaded.class_name} refused the input: {first_line(error)}") from error
            except (RuntimeError, TypeError) as error:
                raise GenerationError(f"generation failed: {first_line(error)}") from error
            finally:
                if hook is not None:
                    hook.remove()
        if own_decode:
            output = type(output)(frames=latents.decode_denoised(pipe, output.frames, keeper))
        frames = _frames_to_uint8(output)
        try:
            audio = audio_from_output(output, pipe)
        except ValueError as error:
            raise GenerationError(f"{error}; nothing was written") from error
        return frames, None if audio is None else fit_to_video(audio, len(frames), settings.fps)
