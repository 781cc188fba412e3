"""The table of settings: every generation setting declared once, in `SETTINGS`.

A `Setting` says what one setting is (name, type, built-in default, help, limits) and
where it may come from and go to:

- `flag`: its command-line option, on `generate` and `batch` (`commands` narrows that);
  cli/options.py derives the Typer options from the table, so `--help` is the table's help;
- `preset`: a preset's `[defaults]` may set it (presets.DEFAULT_KEYS is derived);
- `line`: a prompts-file line may set it (prompts.LINE_KEYS is derived);
- `loads`: it changes how the pipeline is loaded, so the server's cache keys on it
  (engine/pipeline_cache.loading_key); the others change only the call;
- `recipe`: it is recorded in the recipe stored inside every video (and the JSON);
- `call`: the pipeline argument that receives it (generate.VideoGenerator);
  `pipeline_default`: an ad-hoc --model takes the pipeline's own default for it;
- `minimum`/`maximum`, `choices` and `check`: what layers.validate() refuses;
- `path`: it names a local file, which the server's client resolves in its own folder.

`GenerationSettings`, the object a run carries, is built from the table too (frozen, each field
typed as its setting): a new setting is one `Setting(...)` line here or in run_table.py, plus the code that uses it.
Limits and choices are checked by layers.validate(), which reads them from the table.

This module is imported by `vidgen --help` and the server's client: no torch here.
"""

from __future__ import annotations

from dataclasses import asdict, field, make_dataclass
from typing import Any, Optional, Union

from vidgen.settings.grammar import (
    parse_extras,
)
from vidgen.settings.locations import ComponentSpec, ModelLocation, resolve_model_location
from vidgen.settings.preset_tables import StageSpec
from vidgen.settings.run_table import RUN_SETTINGS
from vidgen.settings.setting import MAX_FRAMES, MAX_GUIDANCE, MAX_NUM_VIDEOS, MAX_SEED, MAX_SIDE, MAX_STEPS, MAX_TOKENS, NUMBER, Setting

# The table. Its order is the order of --help and of the recipe.
SETTINGS: tuple[Setting, ...] = (
    Setting("prompt", str, flag=None, line=True, recipe=True, call="prompt"),
    Setting("negative_prompt", str, "What the video should not show.", preset=True, line=True, recipe=True, call="negative_prompt"),
    Setting(
        "prompt_suffix",
        str,
        "Text the pipeline gets after every prompt, recorded apart from it: SANA-Video's makers end "
        "theirs with ' motion score: 30.' (more = more motion); --prompt-suffix '' adds none.",
        preset=True,
        line=True,
        recipe=True,
    ),
    Setting(
        "max_sequence_length",
        int,
        "The prompt's length limit in the text encoder's tokens; a longer prompt is cut. "
        "Absent: the pipeline's own (Wan 512, LTX-Video 128, CogVideoX 226).",
        preset=True,
        line=True,
        recipe=True,
        call="max_sequence_length",
        pipeline_default=True,
        minimum=1,
        maximum=MAX_TOKENS,
    ),
    Setting(
        "seed",
        int,
        "Random seed (drawn and printed when absent).",
        line=True,
        recipe=True,
        minimum=0,
        maximum=MAX_SEED,
        batch_help="Base seed: a line without a seed gets one derived from it and its line number (default 0).",
    ),
    Setting(
        "steps",
        int,
        "Denoising steps.",
        preset=True,
        line=True,
        recipe=True,
        call="num_inference_steps",
        pipeline_default=True,
        minimum=1,
        maximum=MAX_STEPS,
    ),
    Setting(
        "guidance",
        float,
        "Classifier-free guidance scale.",
        preset=True,
        line=True,
        recipe=True,
        call="guidance_scale",
        pipeline_default=True,
        minimum=0,
        maximum=MAX_GUIDANCE,
    ),
    Setting(
        "frames",
        int,
        "Number of frames (snapped to the model's rule).",
        preset=True,
        line=True,
        recipe=True,
        call="num_frames",
        pipeline_default=True,
        minimum=1,
        maximum=MAX_FRAMES,
    ),
    Setting("seconds", float, "Length in seconds (frames = seconds x fps, snapped).", field=False),
    Setting("fps", NUMBER, "Frames per second of the file.", default=16, preset=True, line=True, recipe=True),
    # `auto` stays as asked (the recipe records it beside the width and height it gave); WxH becomes width and height.
    Setting(
        "size",
        str,
        "WIDTHxHEIGHT, e.g. 832x480 (snapped to the model's rule), or auto: the preset's pixel area at the "
        "--image's aspect ratio (the default of image-to-video presets whose makers size the video from the image).",
        preset=True,
        recipe=True,
    ),
    Setting(
        "width",
        int,
        "Width in pixels.",
        preset=True,
        line=True,
        recipe=True,
        call="width",
        pipeline_default=True,
        minimum=1,
        maximum=MAX_SIDE,
    ),
    Setting(
        "height",
        int,
        "Height in pixels.",
        preset=True,
        line=True,
        recipe=True,
        call="height",
        pipeline_default=True,
        minimum=1,
        maximum=MAX_SIDE,
    ),
    Setting(
        "num_videos",
        int,
        "Videos to make; seeds seed, seed+1, ...",
        default=1,
        flag=("--num-videos", "-n"),
        line=True,
        minimum=1,
        maximum=MAX_NUM_VIDEOS,
        batch_help="Videos per line, with consecutive seeds.",
    ),
    Setting(
        "image",
        str,
        "Start image for image-to-video presets (a reference image for wan2.1-vace-1.3b).",
        line=True,
        recipe=True,
        path=True,
        batch_help="Start image for image-to-video presets (a line's image wins).",
    ),
    Setting(
        "last_image",
        str,
        "End image for presets whose pipeline takes one (wan2.1-flf2v-14b-720p, wan2.2-i2v-a14b, "
        "framepack-i2v): --preset wan2.1-flf2v-14b-720p --image first.png --last-image last.png",
        line=True,
        recipe=True,
        path=True,
    ),
    Setting(
        "story",
        bool,
        "PROMPT is a storyboard file: a shot a line, its length then its prompt ('4s a fox wakes up in its "
        "den'); one video of their summed length. Example: vidgen shots.txt --story --preset ltx-video-story -o film.mp4",
        commands=("generate",),
    ),
    Setting(
        "video",
        str,
        "Input video for video-to-video presets (its frame count, snapped, unless --frames is fewer).",
        commands=("generate",),
        line=True,
        recipe=True,
        path=True,
    ),
    Setting(
        "strength",
        float,
        "Video-to-video: how far to move from the input video, above 0 to 1.",
        commands=("generate",),
        preset=True,
        line=True,
        recipe=True,
        call="strength",
    ),
    Setting(
        "mask",
        str,
        "With --video, for Wan VACE presets: a mask video or one image for every frame; white = regenerate, "
        "black = keep. Example: --preset wan2.1-vace-1.3b --video in.mp4 --mask mask.png",
        commands=("generate",),
        recipe=True,
        path=True,
    ),
    Setting(
        "extras",
        dict,
        "NAME=VALUE: one of the preset's extras, e.g. --extra overlap_history=37 for skyreels-v2-df-1.3b; "
        "repeatable (vidgen presets show NAME lists them).",
        default=dict,
        flag=("--extra",),
        commands=("generate",),
        read=parse_extras,
        recipe=True,
        item=Union[int, float, str],
    ),
    # Windows (vidgen.engine.extend): `vidgen extend`, and --frames beyond one window of a preset that can continue a video.
    Setting(
        "window",
        int,
        "Windows: frames per window (default: the preset's frames, the length the model was trained for).",
        commands=("generate", "extend"),
        recipe=True,
        minimum=1,
        maximum=MAX_FRAMES,
    ),
    Setting(
        "overlap",
        int,
        "Windows: frames each window continues from the video before it (default: the preset's, else 5 "
        "for Wan VACE, 1 for image-to-video, 9 for LTX condition).",
        commands=("generate", "extend"),
        preset=True,
        recipe=True,
        minimum=1,
        maximum=MAX_FRAMES,
    ),
    Setting(
        "color_match",
        float,
        "Windows: match each window's new frames to the colours of the frames they continue, 0 (off) to 1 (default).",
        default=1.0,
        commands=("generate", "extend"),
        recipe=True,
        minimum=0,
        maximum=1,
    ),
    Setting(
        "audio",
        bool,
        "Keep (default) or leave out the soundtrack of a model that makes one (LTX-2).",
        default=True,
        flag=("--audio/--no-audio",),
    ),
    *RUN_SETTINGS,  # the model, loading, speed, outputs and post-processing: settings/run_table.py
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
FIELDS = tuple(setting for setting in SETTINGS if setting.field)


# `vidgen extend` takes generate's options but these: its input is the video, --frames and
# --seconds say how much to add, the output keeps the input's frame rate, the models that
# continue a video make no sound and cannot split a window among processes, and previews and
# kept latents are one pipeline call's (a window is one of several).
EXTEND_LEAVES_OUT = (
    "fps",
    "video",
    "mask",
    "strength",
    "story",
    "last_image",
    "num_videos",
    "audio",
    "parallel",
    "preview",
    "preview_every",
    "save_latents",
    "resume_latents",
)  # vidgen.engine.latents: one pipeline call's
EXTEND_HELP = {  # where `vidgen extend` reads a setting differently
    "frames": "Frames to add after the input's (default: one window's worth).",
    "seconds": "Seconds to add after the input's, at the input's frame rate.",
}


def option_settings(command: str) -> tuple[Setting, ...]:
    """The settings that `command` (generate, batch or extend) takes as options."""
    if command == "extend":
        return tuple(setting for setting in SETTINGS if setting.on("generate") and setting.name not in EXTEND_LEAVES_OUT)
    return tuple(setting for setting in SETTINGS if setting.on(command))


def preset_keys() -> dict[str, Any]:
    """What a preset's [defaults] may set, and the type each value must have."""
    return {setting.name: setting.type for setting in SETTINGS if setting.preset}


def line_keys() -> dict[str, Any]:
    """What a prompts-file line may set, and the type each value must have."""
    return {setting.name: setting.type for setting in SETTINGS if setting.line}


def builtin_defaults() -> dict[str, Any]:
    """The value of each setting that no layer sets (None: the preset or pipeline decides)."""
    return {setting.name: setting.default() if callable(setting.default) else setting.default for setting in FIELDS}


# ---- the object a run carries ----


def _field_of(setting: Setting):
    """A field, typed as its setting: a list is a tuple of its items (frozen: a run's settings never change), a dict
    a dict of its values; Optional where nothing need set it (a preset or the pipeline decides)."""
    kind = {list: tuple[setting.item, ...], dict: dict[str, setting.item]}.get(setting.type) or Union[setting.type]
    if callable(setting.default) and setting.type is not list:
        return (setting.name, kind, field(default_factory=setting.default))
    default = () if setting.type is list and setting.default else setting.default
    return (setting.name, kind if default is not None else Optional[kind], field(default=default))


# What a run knows besides the settings: where the model is and what its preset says of it.
# These come from the preset and the model, never from a flag or a line.
_IDENTITY = [
    ("prompt", str),
    ("model", str),  # as given: hub id, folder or builtin:NAME (a preset's relative folder made absolute)
    ("preset", str),
    # `model` resolved once, when built (a preset's relative folder from the preset's; None given: the current one)
    ("location", Optional[ModelLocation], field(default=None)),
    ("revision", Optional[str], field(default=None)),  # of a hub model: the preset's, for its own model only
    ("pipeline_class", Optional[str], field(default=None)),  # the preset's; what ran is in runfacts.RunFacts
    ("task", str, field(default="text-to-video")),
    ("video_role", str, field(default="edit")),  # what the input video is to the output (presets.VIDEO_ROLES)
    ("takes_mask", bool, field(default=False)),  # the preset's pipeline takes --mask
    ("takes_reference_image", bool, field(default=False)),  # --image is a reference image (Wan VACE), not a start frame
    ("float16_safe", bool, field(default=True)),  # False: the preset's model gives black or NaN frames in float16 (presets.float16)
    ("input_frames", Optional[int], field(default=None)),  # how many of the input video's frames go in (set once it is read)
    # True when a layer the user wrote (flags, batch line) set dtype, not just the preset:
    # on a CPU a preset's bf16/fp16 gives way to float32, an explicit choice does not.
    ("dtype_explicit", bool, field(default=False)),
    ("call_kwargs", dict[str, Any], field(default_factory=dict)),  # the preset's [call] table, passed as is
    ("components", tuple[ComponentSpec, ...], field(default=())),  # the preset's [components]: part of the loading key
    ("shots", tuple[tuple[float, str], ...], field(default=())),  # a storyboard's (seconds, prompt) per shot (vidgen.settings.story)
    ("stages", tuple[StageSpec, ...], field(default=())),  # the preset's [[stages]]: its pipeline calls, in order
]
_TUPLES = ("components", "shots", "stages") + tuple(setting.name for setting in FIELDS if setting.type is list)


def _post_init(self) -> None:
    """A list given becomes a tuple; the model's location is resolved now if not given (never again later)."""
    for name in _TUPLES:
        if isinstance(getattr(self, name), list):
            object.__setattr__(self, name, tuple(getattr(self, name)))
    if self.location is None:
        object.__setattr__(self, "location", resolve_model_location(self.model))


def _as_dict(self) -> dict[str, Any]:  # a failed video's manifest record: without the resolved location
    return {key: value for key, value in asdict(self).items() if key != "location"}


# Frozen: a change is dataclasses.replace(), a new value; what ran beside it is runfacts.RunFacts.
GenerationSettings = make_dataclass(
    "GenerationSettings",
    _IDENTITY + [_field_of(setting) for setting in FIELDS if setting.name != "prompt"],
    namespace={
        "as_dict": _as_dict,
        "__post_init__": _post_init,
        "__doc__": "Everything that decides what one video looks like (outputs live elsewhere).",
    },
    frozen=True,
)
GenerationSettings.__module__ = __name__
