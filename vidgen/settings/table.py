"""The table of settings: every generation setting declared once, in `SETTINGS`.

A `Setting` says what one setting is (name, type, built-in default, help, limits) and
where it may come from and go to:

- `flag`: its command-line option, on `generate` and `batch` (`commands` narrows that);
  cli.py derives the Typer options from the table, so `--help` is the table's help;
- `preset`: a preset's `[defaults]` may set it (presets.DEFAULT_KEYS is derived);
- `line`: a prompts-file line may set it (prompts.LINE_KEYS is derived);
- `loads`: it changes how the pipeline is loaded, so the server's cache keys on it
  (runner.loading_key); the others change only the call;
- `recipe`: it is recorded in the recipe stored inside every video (and the JSON);
- `call`: the pipeline argument that receives it (generate.VideoGenerator);
  `pipeline_default`: an ad-hoc --model takes the pipeline's own default for it;
- `minimum`/`maximum`, `choices` and `check`: what settings.validate() refuses;
- `path`: it names a local file, which the server's client resolves in its own folder.

`GenerationSettings`, the object a run carries, is built from the table too (frozen, each field
typed as its setting): a new setting is one `Setting(...)` line here plus the code that uses it.
Limits and choices are checked by settings.validate(), which reads them from the table.

This module is imported by `vidgen --help` and the server's client: no torch here.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import asdict, dataclass, field, make_dataclass
from typing import Any, Callable, Optional, Union

from vidgen.settings.grammar import (CACHE_METHODS, LoraSpec, parallel_problem, parse_extras, parse_lora_scales, preview_suffix_problem,
                            quantize_problem)
from vidgen.settings.locations import ComponentSpec, ModelLocation, resolve_model_location
from vidgen.media.post.plan import DEFAULT_INTERPOLATION, INTERPOLATION_METHODS, interpolate_model_problem, upscale_model_problem
from vidgen.media.post.plan import MAX_FACTOR as MAX_POST_FACTOR
from vidgen.settings.preset_tables import StageSpec

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit value
MAX_CRF = 51  # libx264's range; libvpx-vp9 takes up to 63 but 51 is plenty
# Upper limits far above any model's, so a typo (or 1e999) is refused before the
# arithmetic of snapping overflows or a run is planned that could never finish.
MAX_STEPS = 10_000
MAX_FRAMES = 100_000
MAX_SIDE = 16_384  # libx264's and libvpx's largest frame side
MAX_NUM_VIDEOS = 100_000
MAX_FPS = 1_000
MAX_TOKENS = 8192  # --max-sequence-length: above every video pipeline's text encoder (LTX-2: 1024)
MAX_GUIDANCE = 100  # classifier-free guidance beyond this only saturates the frames

DTYPE_ALIASES = {"auto": "auto", "float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
                 "bfloat16": "bfloat16", "bf16": "bfloat16"}
OFFLOAD_MODES = ("none", "model", "group", "sequential", "auto")

# Other names some pipelines give a standard call argument, and why: where a pipeline lacks the
# standard name and has the other, the value goes in under the other (generate.VideoGenerator), and
# the pipeline counts as taking it (model_check: whether a class takes an image).
ARGUMENT_ALIASES = {
    "num_frames": "frames",  # SANA-Video (SanaVideoPipeline, SanaImageToVideoPipeline)
    # Stable Video Diffusion: the guidance goes in as its ramp's top value, so it is not one
    # the pipeline "takes no" of (the warning in generate's _call_arguments).
    "guidance_scale": "max_guidance_scale",
    "image": "cond_image",  # LTXI2VLongMultiPromptPipeline (ltx-video-story): a storyboard's start image
}


def argument_name(name: str, parameters: Container[str]) -> str:
    """`name`, or its alias where the pipeline's __call__ (`parameters`: its names) takes only the alias."""
    alias = ARGUMENT_ALIASES.get(name)
    return alias if name not in parameters and alias in parameters else name


NUMBER = (int, float)  # a type that keeps 16 as 16 and takes 7.5 too (fps)


@dataclass(frozen=True)
class Setting:
    """One setting: see the module's docstring for what each field decides."""

    name: str
    type: Any  # str, int, float, bool, NUMBER, list or dict
    help: str = ""
    default: Any = None  # None: not set (a preset, or the pipeline, decides); list or dict: starts empty
    flag: tuple[str, ...] | None = ()  # () -> ("--name",); None: no command-line option
    commands: tuple[str, ...] = ("generate", "batch")
    batch_help: str | None = None  # where `batch` says it differently
    read: Callable[[Any], Any] | None = None  # turns the option's text into the setting's (JSON-ready: a server's client sends it)
    field: bool = True  # False: a value a layer gives that becomes other fields (size, seconds)
    preset: bool = False
    line: bool = False
    loads: bool = False
    recipe: bool = False
    call: str | None = None
    pipeline_default: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None  # the problem with a value, or None
    path: bool = False  # names a local file: the server's client makes it absolute
    item: Any = None  # a list's items' type, a dict's values' (GenerationSettings' field types)

    @property
    def label(self) -> str:
        """How messages name it: its option, else its preset key."""
        return self.flags[0] if self.flags else self.name

    @property
    def flags(self) -> tuple[str, ...]:
        if self.flag is None:
            return ()
        return self.flag or (f"--{self.name.replace('_', '-')}",)

    def on(self, command: str) -> bool:
        return bool(self.flags) and command in self.commands

    def option_type(self) -> Any:
        """The type Typer parses the option as (every option may be absent: None)."""
        if self.type in (list, dict):
            return Optional[list[str]]
        return Optional[self.type[-1] if isinstance(self.type, tuple) else self.type]


# The table. Its order is the order of --help and of the recipe.
SETTINGS: tuple[Setting, ...] = (
    Setting("prompt", str, flag=None, line=True, recipe=True, call="prompt"),
    Setting("negative_prompt", str, "What the video should not show.", preset=True, line=True, recipe=True, call="negative_prompt"),
    Setting("prompt_suffix", str, "Text the pipeline gets after every prompt, recorded apart from it: SANA-Video's makers end "
            "theirs with ' motion score: 30.' (more = more motion); --prompt-suffix '' adds none.", preset=True, line=True,
            recipe=True),
    Setting("max_sequence_length", int, "The prompt's length limit in the text encoder's tokens; a longer prompt is cut. "
            "Absent: the pipeline's own (Wan 512, LTX-Video 128, CogVideoX 226).", preset=True, line=True, recipe=True,
            call="max_sequence_length", pipeline_default=True, minimum=1, maximum=MAX_TOKENS),
    Setting("seed", int, "Random seed (drawn and printed when absent).", line=True, recipe=True, minimum=0, maximum=MAX_SEED,
            batch_help="Base seed: a line without a seed gets one derived from it and its line number (default 0)."),
    Setting("steps", int, "Denoising steps.", preset=True, line=True, recipe=True, call="num_inference_steps",
            pipeline_default=True, minimum=1, maximum=MAX_STEPS),
    Setting("guidance", float, "Classifier-free guidance scale.", preset=True, line=True, recipe=True, call="guidance_scale",
            pipeline_default=True, minimum=0, maximum=MAX_GUIDANCE),
    Setting("frames", int, "Number of frames (snapped to the model's rule).", preset=True, line=True, recipe=True,
            call="num_frames", pipeline_default=True, minimum=1, maximum=MAX_FRAMES),
    Setting("seconds", float, "Length in seconds (frames = seconds x fps, snapped).", field=False),
    Setting("fps", NUMBER, "Frames per second of the file.", default=16, preset=True, line=True, recipe=True),
    # `auto` stays as asked (the recipe records it beside the width and height it gave); WxH becomes width and height.
    Setting("size", str, "WIDTHxHEIGHT, e.g. 832x480 (snapped to the model's rule), or auto: the preset's pixel area at the "
            "--image's aspect ratio (the default of image-to-video presets whose makers size the video from the image).",
            preset=True, recipe=True),
    Setting("width", int, "Width in pixels.", preset=True, line=True, recipe=True, call="width", pipeline_default=True,
            minimum=1, maximum=MAX_SIDE),
    Setting("height", int, "Height in pixels.", preset=True, line=True, recipe=True, call="height", pipeline_default=True,
            minimum=1, maximum=MAX_SIDE),
    Setting("num_videos", int, "Videos to make; seeds seed, seed+1, ...", default=1, flag=("--num-videos", "-n"), line=True,
            minimum=1, maximum=MAX_NUM_VIDEOS, batch_help="Videos per line, with consecutive seeds."),
    Setting("image", str, "Start image for image-to-video presets (a reference image for wan2.1-vace-1.3b).", line=True,
            recipe=True, path=True, batch_help="Start image for image-to-video presets (a line's image wins)."),
    Setting("last_image", str, "End image for presets whose pipeline takes one (wan2.1-flf2v-14b-720p, wan2.2-i2v-a14b, "
            "framepack-i2v): --preset wan2.1-flf2v-14b-720p --image first.png --last-image last.png", line=True, recipe=True,
            path=True),
    Setting("story", bool, "PROMPT is a storyboard file: a shot a line, its length then its prompt ('4s a fox wakes up in its "
            "den'); one video of their summed length. Example: vidgen shots.txt --story --preset ltx-video-story -o film.mp4",
            commands=("generate",)),
    Setting("video", str, "Input video for video-to-video presets (its frame count, snapped, unless --frames is fewer).",
            commands=("generate",), line=True, recipe=True, path=True),
    Setting("strength", float, "Video-to-video: how far to move from the input video, above 0 to 1.", commands=("generate",),
            preset=True, line=True, recipe=True, call="strength"),
    Setting("mask", str, "With --video, for Wan VACE presets: a mask video or one image for every frame; white = regenerate, "
            "black = keep. Example: --preset wan2.1-vace-1.3b --video in.mp4 --mask mask.png", commands=("generate",), recipe=True,
            path=True),
    Setting("extras", dict, "NAME=VALUE: one of the preset's extras, e.g. --extra overlap_history=37 for skyreels-v2-df-1.3b; "
            "repeatable (vidgen presets show NAME lists them).", default=dict, flag=("--extra",), commands=("generate",),
            read=parse_extras, recipe=True, item=Union[int, float, str]),
    # Windows (vidgen.engine.extend): `vidgen extend`, and --frames beyond one window of a preset that can continue a video.
    Setting("window", int, "Windows: frames per window (default: the preset's frames, the length the model was trained for).",
            commands=("generate", "extend"), recipe=True, minimum=1, maximum=MAX_FRAMES),
    Setting("overlap", int, "Windows: frames each window continues from the video before it (default: the preset's, else 5 "
            "for Wan VACE, 1 for image-to-video, 9 for LTX condition).", commands=("generate", "extend"), preset=True,
            recipe=True, minimum=1, maximum=MAX_FRAMES),
    Setting("color_match", float, "Windows: match each window's new frames to the colours of the frames they continue, "
            "0 (off) to 1 (default).", default=1.0, commands=("generate", "extend"), recipe=True, minimum=0, maximum=1),
    Setting("audio", bool, "Keep (default) or leave out the soundtrack of a model that makes one (LTX-2).", default=True,
            flag=("--audio/--no-audio",)),
    Setting("loras", list, "LoRA PATH_OR_ID[:SCALE][@COMPONENT], repeatable; @transformer_2 puts it in Wan 2.2 A14B's "
            "low-noise expert (@transformer, the default: the high-noise one).", default=list, flag=("--lora",),
            loads=True, recipe=True, item=LoraSpec),
    # Layer-only: build_settings re-weights the preset's LoRAs with it, which the loading key and the recipe then carry.
    Setting("lora_scales", dict, "NAME=SCALE: a new weight for one of the preset's own LoRAs (vidgen presets show NAME "
            "names them), e.g. --lora-scale high_noise=2; repeatable.", flag=("--lora-scale",), read=parse_lora_scales,
            field=False, item=float),
    Setting("dtype", str, "auto, float32, float16 or bfloat16.", default="auto", preset=True, loads=True, recipe=True),
    Setting("quantize", str, "Quantize while loading: int8, int8-dynamic, fp8, fp8-dynamic, nf4 or none, for the denoiser(s); "
            "or per component, e.g. transformer=fp8,text_encoder=int8 (pip install 'vidgen\\[quant]').", preset=True, line=True,
            loads=True, recipe=True, check=quantize_problem),
    Setting("transformer", str, "The denoiser from one file: FILE.gguf or FILE.safetensors (original or ComfyUI key names), "
            "or REPO/FILENAME on the Hugging Face Hub; the rest of the pipeline from the preset's model.", preset=True,
            loads=True, recipe=True, path=True),
    Setting("transformer_2", str, "Wan 2.2 A14B's second (low-noise) expert from one file, as --transformer.",
            flag=("--transformer-2",), preset=True, loads=True, recipe=True, path=True),
    # diffusers' WanPipeline and WanImageToVideoPipeline read it from their config (register_to_config) at every call.
    Setting("boundary_ratio", float, "Wan 2.2 A14B: where the high-noise expert hands over to the low-noise one, as a share "
            "of the 1000 training timesteps (transformer while t >= ratio x 1000); the makers' 0.875 for text-, 0.9 for "
            "image-to-video.", preset=True, loads=True, recipe=True, minimum=0, maximum=1),
    Setting("device", str, "auto, cpu, cuda, cuda:N, mps or xpu.", default="auto", loads=True,
            batch_help="auto, cpu, cuda, cuda:N, mps or xpu (under accelerate: each process's own)."),
    Setting("offload", str, "none, model, group, sequential or auto (by free GPU memory).", default="none", preset=True,
            loads=True, choices=OFFLOAD_MODES),
    Setting("vae_tiling", bool, "Decode in tiles to save memory.", default=False, preset=True, loads=True),
    Setting("preview", str, "Rewrite FILE (.png: a strip of frames; .gif or .webp: an animation) every --preview-every steps "
            "with the video as it forms (Wan family). Example: --preview p.png, then watch it in an image viewer.", path=True,
            check=preview_suffix_problem, batch_help="As for generate: FILE shows the video in progress."),
    Setting("preview_every", int, "Steps between previews (default 5; the last step always writes one).", default=5,
            minimum=1, maximum=MAX_STEPS),
    Setting("save_latents", bool, "Keep the final latents and the recipe beside the video (NAME.latents.safetensors; "
            "`vidgen decode` makes the video from them); on Ctrl-C or SIGTERM during denoising, the last finished step's."),
    Setting("resume_latents", str, "Go on from the latents a run stopped with --save-latents left (same command otherwise): "
            "the frames an uninterrupted run makes.", commands=("generate",), path=True),
    Setting("crf", int, "Quality, 0 (lossless) to 51; default 18.", default=18, preset=True, minimum=0, maximum=MAX_CRF,
            commands=("generate", "batch", "post")),
    # After the decode, before the write (vidgen/post): N x the frames and fps, same duration; N x the width and height.
    Setting("interpolate", int, "N x the frame rate after decoding, same duration: N x the frames (e.g. 2: 16 -> 32 fps).",
            commands=("generate", "batch", "post"), preset=True, line=True, recipe=True, minimum=1, maximum=MAX_POST_FACTOR),
    Setting("interpolate_method", str, f"How --interpolate makes frames: {', '.join(INTERPOLATION_METHODS)} (default "
            f"{DEFAULT_INTERPOLATION}; docs/benchmarks.md).", default=DEFAULT_INTERPOLATION, commands=("generate", "batch", "post"),
            preset=True, line=True, recipe=True, choices=INTERPOLATION_METHODS),
    Setting("interpolate_model", str, "Interpolate with RIFE instead: ECCV2022-RIFE's HD weights (flownet.pkl); "
            "--interpolate 2, 4 or 8 (default 2).", commands=("generate", "batch", "post"), preset=True, line=True, recipe=True,
            path=True, check=interpolate_model_problem),
    Setting("upscale", int, "N x the width and height after decoding (Lanczos, or --upscale-model).",
            commands=("generate", "batch", "post"), preset=True, line=True, recipe=True, minimum=1, maximum=MAX_POST_FACTOR),
    Setting("upscale_model", str, "Upscale with a learned model: a .pth or .safetensors file spandrel knows (Real-ESRGAN, "
            "SwinIR, SPAN...; pip install 'vidgen\\[post]'); default factor: its own.", commands=("generate", "batch", "post"),
            preset=True, line=True, recipe=True, path=True, check=upscale_model_problem),
    Setting("cache", str, "Step cache: none, first-block, taylorseer or pab (faster, slightly different output).",
            default="none", loads=True, recipe=True, choices=CACHE_METHODS),
    Setting("compile", bool, "Compile the denoiser's blocks (default: on for CUDA runs of 10+ steps).",
            flag=("--compile/--no-compile",), loads=True),
    Setting("attention_backend", str, "diffusers attention backend (default: PyTorch SDPA).", loads=True),
    Setting("parallel", str, "Make the video together with the other processes of accelerate launch or torchrun (one per GPU): "
            "ulysses, ring or ulysses=2,ring=2 (docs/scaling.md).", loads=True, check=parallel_problem,
            batch_help="With --processes N (or under accelerate launch): the processes make each video together, one at a time: "
                       "ulysses, ring or ulysses=2,ring=2 (docs/scaling.md)."),
    Setting("scheduler", str, flag=None, preset=True, loads=True, recipe=True),
    Setting("flow_shift", float, flag=None, preset=True, loads=True, recipe=True, minimum=0, maximum=MAX_GUIDANCE),
    # How the scheduler spaces its steps (CogVideo's cli_demo.py: "trailing"), set on the preset's or the model's scheduler.
    Setting("timestep_spacing", str, flag=None, preset=True, loads=True, recipe=True, choices=("leading", "linspace", "trailing")),
    Setting("sigmas", list, flag=None, preset=True, loads=True, recipe=True, item=float),  # a fixed schedule, before the shift (vidgen.engine.sampling)
    Setting("stochastic_sampling", bool, flag=None, preset=True, loads=True, recipe=True),  # fresh noise at each step (vidgen.engine.sampling)
    Setting("trust_remote_code", bool, "Allow a model's own Python code to run.", default=False, loads=True),
    # A batch's, not a video's: batch.run takes it out of the flags (as --seed), so it travels to a server and to
    # --processes with the others. field=False: no video's settings carry it.
    Setting("gallery", bool, "Write DIR/index.html, a page of the batch's videos, when the batch ends (again after --resume).",
            default=True, flag=("--gallery/--no-gallery",), commands=("batch",), field=False),
)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}
FIELDS = tuple(setting for setting in SETTINGS if setting.field)


# `vidgen extend` takes generate's options but these: its input is the video, --frames and
# --seconds say how much to add, the output keeps the input's frame rate, the models that
# continue a video make no sound and cannot split a window among processes, and previews and
# kept latents are one pipeline call's (a window is one of several).
EXTEND_LEAVES_OUT = ("fps", "video", "mask", "strength", "story", "last_image", "num_videos", "audio", "parallel",
                     "preview", "preview_every", "save_latents", "resume_latents")  # vidgen.engine.latents: one pipeline call's
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
GenerationSettings = make_dataclass("GenerationSettings", _IDENTITY + [_field_of(setting) for setting in FIELDS if setting.name != "prompt"],
                                    namespace={"as_dict": _as_dict, "__post_init__": _post_init, "__doc__": "Everything that "
                                               "decides what one video looks like (outputs live elsewhere)."}, frozen=True)  # fmt: skip
GenerationSettings.__module__ = __name__
