"""Generation settings: merged from layers, validated, snapped to the model's rules.

Merge order (later wins): built-in defaults < preset [defaults] < command-line
flags < batch line (a line's own values are the most specific, so they win). Values
a layer leaves as None do not override. Everything is
checked here, before any weights load, so a typo costs no minutes of loading.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from vidgen.errors import UsageError
from vidgen.media.post.plan import plan_problem as post_plan_problem
from vidgen.settings.grammar import LoraSpec
from vidgen.settings.locations import ModelLocation, resolve_model_location
from vidgen.settings.presets import Constraints, Preset
from vidgen.settings.setting import DTYPE_ALIASES, MAX_FPS, MAX_FRAMES
from vidgen.settings.table import FIELDS, SETTINGS, GenerationSettings, builtin_defaults

_DEVICE = re.compile(r"^(auto|cpu|mps|(cuda|xpu|npu)(:\d+)?)$")
# Keys a layer (flags, batch line) may set that are not settings of their own (size, seconds).
_LAYER_ONLY_KEYS = {setting.name for setting in SETTINGS if not setting.field}


def _finite(value) -> bool:
    """math.isfinite, but an int too large for a float (a value like 10**400) is not finite either."""
    try:
        return math.isfinite(value)
    except (OverflowError, TypeError):
        return False


def parse_size(text: str) -> tuple[int, int]:
    """`832x480` -> (832, 480)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--size must look like WIDTHxHEIGHT (for example 832x480), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _preset_model(preset: Preset) -> str:
    """The preset's model as the run loads it: a relative folder is the preset file's
    (resolved once here), not the current folder's nor, under `vidgen serve`, the server's."""
    location = preset.model_location()
    return location.location if location.kind == "local" else preset.model


def from_model_folder(preset: Preset, given: ModelLocation | None) -> Preset:
    """The preset with `--model DIR` standing in for its own model repository: each piece it takes
    from that repository besides the pipeline ([components], [[lora]], [[stages.lora]]: ltx2-two-stage's
    latent upsampler and distilled LoRA are Lightricks/LTX-2's) comes from DIR where DIR holds it
    (the same subfolder or file name), as a local copy of the repository does; one DIR lacks stays
    where the preset names it (a fine-tune saved without the upsampler still finds the original's)."""
    own = preset.model_location().location
    if given is None or not given.is_local or given.location == own:
        return preset
    folder = Path(given.location)

    def moved(source: str) -> str:  # a LoRA: REPO/FILENAME (or a path) in DIR where DIR has that file
        if source == own or source.startswith(own + "/"):
            candidate = folder / source[len(own) :].lstrip("/")
            if candidate.exists():
                return str(candidate)
        return source

    components = {
        name: replace(spec, location=given, revision=None)
        if spec.location.location == own and (folder / (spec.subfolder or "")).is_dir()
        else spec
        for name, spec in preset.components.items()
    }
    loras = [replace(lora, source=moved(lora.source)) for lora in preset.loras]
    stages = [replace(stage, loras=tuple((moved(source), weight) for source, weight in stage.loras)) for stage in preset.stages]
    return replace(preset, components=components, loras=loras, stages=stages)


AUTO_SIZE = "auto"


def _size_values(size: str) -> dict[str, Any]:
    """A layer's size: `auto` as asked (resolve_auto_size resolves it), WIDTHxHEIGHT as width and height."""
    if str(size).strip().lower() == AUTO_SIZE:
        return {"size": AUTO_SIZE}
    width, height = parse_size(size)
    return {"width": width, "height": height, "size": None}


def build_settings(preset: Preset, layers: list[dict[str, Any]], *, model: str | None = None) -> GenerationSettings:
    """Merge built-in defaults, the preset and each layer (flags, then a batch line) in order."""
    given = resolve_model_location(model) if model else None  # --model, from the current folder: once, here
    preset = from_model_folder(preset, given)
    known = {f.name for f in fields(GenerationSettings)} | _LAYER_ONLY_KEYS
    merged: dict[str, Any] = builtin_defaults()
    merged.update(preset.defaults)
    if merged.get("size") is not None:
        merged.update(_size_values(merged["size"]))
    extras = dict(preset.extras)
    seconds: float | None = None
    dtype_explicit = False
    lora_scales: dict[str, float] = {}
    for layer in layers:
        values = {key: value for key, value in layer.items() if value is not None}
        extras.update(values.pop("extras", None) or {})  # one extra overrides one, not the table
        lora_scales.update(values.pop("lora_scales", None) or {})
        dtype_explicit = dtype_explicit or "dtype" in values
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown setting(s): {', '.join(unknown)}")
        if "frames" in values and "seconds" in values:
            raise UsageError("give --frames or --seconds, not both")
        if "size" in values:
            sized = _size_values(values.pop("size"))
            if sized["size"] == AUTO_SIZE and ("width" in values or "height" in values):
                raise UsageError("give --size auto or --width/--height, not both")
            for key, value in sized.items():
                values.setdefault(key, value)
        elif "width" in values or "height" in values:
            merged["size"] = None  # an explicit side wins over the preset's size auto
        if "seconds" in values:
            seconds = values.pop("seconds")
            merged.pop("frames", None)
        elif "frames" in values:
            seconds = None
        merged.update(values)

    if seconds is not None:
        if not _finite(seconds) or not seconds > 0:
            raise UsageError(f"--seconds must be a positive finite number, got {seconds}")
        fps = merged.get("fps") or 0
        if isinstance(fps, (int, float)) and _finite(fps) and fps > 0:  # else validate() names the fps
            frames = seconds * fps
            if frames > MAX_FRAMES:
                raise UsageError(f"--seconds {seconds:g} at {fps:g} fps is more than {MAX_FRAMES} frames")
            merged["frames"] = max(1, round(frames))

    if "dtype" in merged:
        dtype = str(merged["dtype"]).lower()
        if dtype not in DTYPE_ALIASES:
            raise UsageError(f"unknown dtype {merged['dtype']!r} (use one of: auto, float32, float16, bfloat16)")
        merged["dtype"] = DTYPE_ALIASES[dtype]
    if isinstance(merged.get("fps"), float) and merged["fps"].is_integer():
        merged["fps"] = int(merged["fps"])  # 16, not 16.0, in names and JSON
    # The preset's [[lora]] first, then --lora (a batch line's too) on top of them.
    merged["loras"] = _reweighted(preset, lora_scales) + [
        lora if isinstance(lora, LoraSpec) else LoraSpec.parse(lora) for lora in merged.get("loras") or []
    ]
    if merged.get("sigmas"):  # a fixed schedule (a distilled model's) is one step per sigma
        count = len(merged["sigmas"])
        if merged.get("steps") is None:
            merged["steps"] = count
        elif merged["steps"] != count:
            listed = ", ".join(f"{sigma:g}" for sigma in merged["sigmas"])
            raise UsageError(
                f"--steps {merged['steps']}: preset {preset.name} runs a fixed schedule of {count} steps "
                f"(sigmas {listed}), the ones its model was distilled for; leave out --steps"
            )

    return GenerationSettings(
        model=model or _preset_model(preset),
        location=given or preset.model_location(),  # a preset's relative folder is from the preset's
        preset=preset.name,
        # The preset's revision names a branch of its own repository, not of another --model.
        revision=preset.revision if not model or model == preset.model else None,
        pipeline_class=preset.pipeline,
        task=preset.task,
        video_role=preset.video_role,
        takes_mask=preset.mask,
        takes_reference_image=preset.reference_image,
        float16_safe=preset.float16,
        call_kwargs=dict(preset.call),
        components=tuple(preset.components.values()),
        stages=tuple(preset.stages),
        dtype_explicit=dtype_explicit,
        **{key: value for key, value in merged.items() if key in known - _LAYER_ONLY_KEYS - {"extras"}},
        extras=extras,
    )


def _reweighted(preset: Preset, scales: dict[str, float]) -> list[LoraSpec]:
    """The preset's [[lora]], each at its --lora-scale NAME=SCALE where one names it."""
    names = [lora.label for lora in preset.loras]
    for name in scales:
        if name not in names:
            have = f"its LoRAs: {', '.join(names)}" if names else "it has no [[lora]]; add one with --lora"
            raise UsageError(f"--lora-scale {name}: preset {preset.name} has no LoRA of that name ({have})")
    return [replace(lora, scale=scales.get(lora.label, lora.scale)) for lora in preset.loras]


def validate(settings: GenerationSettings) -> None:
    """Collect every problem and raise them together as one UsageError line."""
    problems: list[str] = []
    if not settings.prompt or not settings.prompt.strip():
        problems.append("the prompt is empty")
    elif "\x00" in settings.prompt:
        problems.append("the prompt contains a NUL character")

    def in_range(name: str, value: Any, minimum: float, maximum: float) -> None:
        """NaN fails every comparison, so finiteness is checked first, by name."""
        if value is None:
            return
        if isinstance(value, float) and not _finite(value):
            problems.append(f"{name} must be a finite number, got {value}")
        elif value < minimum:
            problems.append(f"{name} must be at least {minimum:g}, got {_number(value)}")
        elif value > maximum:
            problems.append(f"{name} must be at most {maximum:g}, got {_number(value)}")

    for setting in FIELDS:  # the limits and choices the table declares
        value = getattr(settings, setting.name)
        if setting.minimum is not None:
            in_range(setting.label, value, setting.minimum, setting.maximum)
        if setting.choices is not None and value is not None and value not in setting.choices:  # None: not set
            problems.append(f"{setting.label} must be one of {', '.join(setting.choices)}, got {value!r}")
        if setting.check is not None and (problem := setting.check(value)):
            problems.append(problem)
    if settings.fps is None or not _finite(settings.fps) or not settings.fps > 0:
        problems.append(f"--fps must be positive, got {settings.fps}")
    elif settings.fps > MAX_FPS:
        problems.append(f"--fps must be at most {MAX_FPS}, got {_number(settings.fps)}")
    for lora in settings.loras:
        if not _finite(lora.scale):
            problems.append(f"--lora {lora.source}: the scale must be a finite number, got {lora.scale}")
    if not _DEVICE.match(settings.device or ""):
        problems.append(f"unknown device {settings.device!r} (use auto, cpu, cuda, cuda:N, mps or xpu)")
    if settings.task == "image-to-video" and not settings.image:
        problems.append(f"preset {settings.preset} is image-to-video: pass --image PATH")
    if (
        settings.task != "image-to-video"
        and settings.image
        and settings.pipeline_class
        and not settings.takes_reference_image
        and not settings.shots
    ):  # a storyboard may start from an image
        problems.append(f"preset {settings.preset} is {settings.task} and takes no --image")
    if settings.last_image and not settings.image:
        problems.append("--last-image needs --image: the video goes from the first image to the last")
    if settings.task == "video-to-video" and not settings.video:
        problems.append(f"preset {settings.preset} is video-to-video: pass --video PATH")
    if settings.task != "video-to-video" and settings.video and settings.pipeline_class:
        problems.append(f"preset {settings.preset} is {settings.task} and takes no --video")
    if settings.mask and not settings.video:
        problems.append("--mask needs --video: the mask marks what to regenerate in that video")
    elif settings.mask and settings.pipeline_class and not settings.takes_mask:
        problems.append(f"preset {settings.preset} takes no --mask (a mask is for Wan VACE presets such as wan2.1-vace-1.3b)")
    if settings.strength is not None and not 0 < settings.strength <= 1:
        problems.append(f"--strength must be above 0 and at most 1, got {settings.strength:g}")
    elif settings.strength is not None and settings.steps is not None and int(settings.steps * settings.strength) < 1:
        # The pipeline runs int(steps x strength) of the steps: none, and diffusers fails deep inside.
        problems.append(
            f"--steps {settings.steps} with --strength {settings.strength:g} runs no denoising step "
            f"(steps x strength must be at least 1; try --steps {math.ceil(1 / settings.strength)})"
        )
    if problem := post_plan_problem(settings):  # --interpolate with --interpolate-model (vidgen/post)
        problems.append(problem)
    if problems:
        raise UsageError("; ".join(problems))


def _number(value: Any) -> str:
    """A value for a message: whole numbers as they are (`:g` would overflow a huge int)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def draw_seed() -> int:
    """A random seed small enough to type back in."""
    return secrets.randbelow(2**31)


# ---- snapping to the model's constraints ----


def nearest_valid_frames(frames: int, rule: Constraints) -> int:
    step, offset = rule.frames_step, rule.frames_offset
    k = math.floor((frames - offset) / step + 0.5)  # round half up
    k = max(k, math.ceil((max(rule.min_frames, 1) - offset) / step))
    if rule.max_frames is not None:
        k = min(k, math.floor((rule.max_frames - offset) / step))
    return step * k + offset


def _nearest_valid_side(side: int, multiple: int, minimum: int | None, maximum: int | None) -> int:
    snapped = max(multiple, math.floor(side / multiple + 0.5) * multiple)
    if minimum is not None:
        snapped = max(snapped, math.ceil(minimum / multiple) * multiple)
    if maximum is not None:
        snapped = min(snapped, math.floor(maximum / multiple) * multiple)
    return snapped


def frames_rule_text(rule: Constraints) -> str:
    if rule.frames_step == 1:
        limits = [f">= {rule.min_frames}"] if rule.min_frames > 1 else []
    else:
        offset = f"+{rule.frames_offset}" if rule.frames_offset else ""
        limits = [f"{rule.frames_step}k{offset}"]
    if rule.max_frames is not None:
        limits.append(f"at most {rule.max_frames}")
    return ", ".join(limits)


def fit_frames_to_video(
    settings: GenerationSettings, rule: Constraints, available: int, *, strict: bool
) -> tuple[GenerationSettings, list[str]]:
    """Video-to-video: the frame count is the input video's, or --frames if fewer, snapped
    down to the model's rule so that every frame exists. Returns the settings with the
    frames fitted (input_frames: how many of the video's go in) and the note for a change;
    a video too short for the model is bad input. A video that conditions the start
    (video_role "condition") or is extended ("extend") leaves --frames as it is."""
    settings = replace(settings, input_frames=available)  # fewer below, where the model uses fewer
    if settings.video_role == "condition":
        return _fit_condition_video(settings, rule, available)
    if settings.video_role == "extend":
        overlap = settings.extras.get("overlap_history")
        if overlap is not None and available < overlap:
            raise UsageError(f"the input video has {available} frames; extending it needs at least overlap_history ({overlap})")
        if overlap is not None and settings.frames is not None and settings.frames <= overlap:
            # The new frames' first overlap_history re-render the input's last ones.
            raise UsageError(
                f"--frames {settings.frames} adds nothing: extending starts with the input's last overlap_history ({overlap}) frames; ask for more"
            )
        return settings, []
    wanted = settings.frames if settings.frames is not None else available
    limit = min(wanted, available, rule.max_frames or available)
    step, offset = rule.frames_step, rule.frames_offset
    valid = offset + step * math.floor((limit - offset) / step)
    least = offset + step * max(0, math.ceil((max(rule.min_frames, 1) - offset) / step))
    if valid < least:
        raise UsageError(f"the input video has {available} frames; this model needs at least {least} ({frames_rule_text(rule)})")
    changes = []
    if valid != wanted:
        why = f"this model takes {frames_rule_text(rule)} frames" + (f" and the input video has {available}" if wanted > available else "")
        if strict:
            raise UsageError(f"frames {wanted} is not valid ({why}; nearest {valid}) (--strict)")
        changes.append(f"frames {wanted} -> {valid}: {why}")
    return replace(settings, frames=valid, input_frames=valid), changes


def _fit_condition_video(settings: GenerationSettings, rule: Constraints, available: int) -> tuple[GenerationSettings, list[str]]:
    """A video that conditions the start of the output (LTX-2): the pipeline uses its
    first frames, as many as the model's rule allows and the output has (LTX2ConditionPipeline's
    trim_conditioning_sequence); say so when that is fewer than the video has."""
    limit = min(available, settings.frames or available)
    step, offset = rule.frames_step, rule.frames_offset
    used = offset + step * math.floor((limit - offset) / step) if limit >= offset else 0
    if used < 1:
        raise UsageError(
            f"the input video has {available} frames; this model needs at least {max(offset, 1)} to condition on ({frames_rule_text(rule)})"
        )
    settings = replace(settings, input_frames=used)
    if used == available:
        return settings, []
    why = f"this model takes {frames_rule_text(replace(rule, max_frames=None))} frames" + (
        f" and the output has {settings.frames}" if settings.frames and available > settings.frames else ""
    )
    return settings, [f"input video frames {available} -> {used}: the first {used} condition the start ({why})"]


def size_for_image(area: float, image_size: tuple[int, int], rule: Constraints) -> tuple[int, int]:
    """About `area` pixels at the image's aspect ratio, each side rounded down to the model's
    multiple (so never above the area), within its largest sides: as Wan's image-to-video code
    (Wan2.1 and Wan2.2 wan/image2video.py: sqrt(max_area x aspect), floored to the latent grid)
    and diffusers' Wan image-to-video example."""
    image_width, image_height = image_size
    multiple = rule.size_multiple
    aspect = image_height / image_width
    width, height = math.sqrt(area / aspect), math.sqrt(area * aspect)
    # Too wide or tall for the model's largest side: a smaller area at the same ratio.
    shrink = min([1.0] + [cap / side for cap, side in ((rule.max_width, width), (rule.max_height, height)) if cap])
    # The epsilon keeps a side a rounding error under a multiple (479.99999999997) from becoming 464.
    return tuple(max(multiple, math.floor(side * shrink / multiple + 1e-6) * multiple) for side in (width, height))


def resolve_auto_size(
    settings: GenerationSettings,
    rule: Constraints,
    *,
    image_size: tuple[int, int] | None = None,
    video_size: tuple[int, int] | None = None,
) -> tuple[GenerationSettings, list[str]]:
    """--size auto, the one place it is decided. A video being continued (`video_size`, vidgen
    extend) keeps its own size: its frames stay as they are, so the new ones must match them.
    Otherwise the preset's pixel area (its width x height) at the start image's aspect ratio, as
    the makers' image-to-video code sizes its video (Wan's generate.py: max_area and the image's
    aspect; HunyuanVideo-I2V's and FramePack's buckets of about one area). Without either the
    preset's own size stays. Returns the settings sized and the line that says what it chose."""
    if settings.size != AUTO_SIZE:
        return settings, []
    if video_size is not None:
        width, height = video_size
        return replace(settings, width=width, height=height), [f"size auto -> {width}x{height}: the input video's own size"]
    if settings.width is None or settings.height is None:
        raise UsageError("--size auto takes its pixel area from a preset's size, and there is none here: give --size WIDTHxHEIGHT")
    asked = f"{settings.width}x{settings.height}"
    if image_size is None:
        return settings, [f"size auto -> {asked}: no --image to take the aspect ratio from, so the preset's own size"]
    width, height = size_for_image(settings.width * settings.height, image_size, rule)
    note = (
        f"size auto -> {width}x{height}: the preset's {asked} area at the image's {image_size[0]}x{image_size[1]} aspect "
        f"ratio, sides divisible by {rule.size_multiple}"
    )
    return replace(settings, width=width, height=height), [note]


def snap_to_constraints(settings: GenerationSettings, rule: Constraints, *, strict: bool) -> tuple[GenerationSettings, list[str]]:
    """Move frames and size to the nearest values the model takes.

    Returns the settings snapped and one message per change for the caller to show; with
    `strict`, raises a UsageError naming every value that would have changed instead.
    """
    changes: list[str] = []
    refusals: list[str] = []
    snapped: dict[str, int] = {}
    # An edited video's count is fitted to the video once it is read (fit_frames_to_video);
    # a video that conditions or is extended leaves --frames the output's own count.
    if settings.frames is not None and settings.frames >= 1 and not (settings.video and settings.video_role == "edit"):
        valid = nearest_valid_frames(settings.frames, rule)
        if valid != settings.frames:
            changes.append(f"frames {settings.frames} -> {valid}: this model takes {frames_rule_text(rule)} frames")
            refusals.append(f"frames {settings.frames} is not valid ({frames_rule_text(rule)}; nearest {valid})")
            snapped["frames"] = valid
    if settings.width is not None and settings.height is not None and settings.width >= 1 and settings.height >= 1:
        width = _nearest_valid_side(settings.width, rule.size_multiple, rule.min_width, rule.max_width)
        height = _nearest_valid_side(settings.height, rule.size_multiple, rule.min_height, rule.max_height)
        if (width, height) != (settings.width, settings.height):
            why = f"sides divisible by {rule.size_multiple}"
            if rule.max_width or rule.max_height:
                why += f", at most {rule.max_width or '-'}x{rule.max_height or '-'}"
            changes.append(f"size {settings.width}x{settings.height} -> {width}x{height}: this model takes {why}")
            refusals.append(f"size {settings.width}x{settings.height} is not valid ({why}; nearest {width}x{height})")
            snapped.update(width=width, height=height)
    if strict and refusals:
        raise UsageError("; ".join(refusals) + " (--strict)")
    return replace(settings, **snapped), changes
