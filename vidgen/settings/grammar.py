"""The grammar of the settings whose values are small languages, for the table's checks
(settings/table.py) and for the code that acts on them: `--quantize` choices, `--parallel` specs,
`--lora PATH[:SCALE][@COMPONENT]`, `--lora-scale NAME=SCALE`, `--extra NAME=VALUE`, the
step-cache names, `--preview`'s formats, and the names diffusers gives denoisers. Light: the
table is read for `vidgen --help`.

    parse_quantize("transformer=fp8,text_encoder=int8")  -> {"transformer": "fp8", "text_encoder": "int8"}
    parse_parallel("ulysses=2,ring=2")                   -> {"ulysses": 2, "ring": 2}
    LoraSpec.parse("style.safetensors:0.8@transformer_2")
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from vidgen.errors import UsageError

# What video pipelines call their denoisers in diffusers 0.42: `transformer` (Wan, LTX, CogVideoX, HunyuanVideo,
# Mochi, ...), `transformer_2` (Wan 2.2 A14B's low-noise expert), `unet` (StableVideoDiffusion, I2VGenXL,
# AnimateDiff, TextToVideoSD). The transformers are what a LoRA (`@transformer_2`, diffusers'
# load_into_transformer_2), a single file (--transformer, --transformer-2) and context parallelism go into.
DENOISERS = ("transformer", "transformer_2", "unet")
TRANSFORMERS = DENOISERS[:2]

# --quantize: what quantize.py can apply (its TORCHAO_CONFIGS and nf4), and "none".
METHODS = ("int8", "int8-dynamic", "fp8", "fp8-dynamic", "nf4", "none")
# The key `parse_quantize` gives a bare method: "the denoiser(s)", resolved against a model's components.
DENOISERS_KEY = "*"
_COMPONENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# --cache: diffusers' step caches acceleration.py configures, and "none".
CACHE_METHODS = ("none", "first-block", "taylorseer", "pab")

# --parallel: context parallelism's kinds, each with a degree or "the rest of the group".
_PART = re.compile(r"(ulysses|ring)(?:=(\d+))?")


# A preset's [extras] table and --extra NAME=VALUE: pipeline parameters beyond the common
# settings (vidgen.settings.extras checks and snaps them). name -> type; the pipeline parameter
# has the same name.
EXTRA_TYPES: dict[str, type] = {
    "overlap_history": int,  # frames each window shares with the one before
    "base_num_frames": int,  # frames in one window (the model's context)
    "ar_step": int,  # asynchronous mode: steps each block lags the one before (0: synchronous)
    "causal_block_size": int,  # asynchronous mode: latent frames denoised together
    "addnoise_condition": float,  # noise added to the overlap frames that condition a window
    "sampling_type": str,  # FramePack: "inverted_anti_drifting" (the default; takes --last-image) or "vanilla"
    "temporal_tile_size": int,  # LTX's multi-prompt pipeline (storyboards): frames in one window
    "temporal_overlap": int,  # and the frames each window shares with the one before
}

PREVIEW_FORMATS = {".png": "PNG", ".gif": "GIF", ".webp": "WEBP"}  # --preview's suffixes, and Pillow's names for them


def preview_suffix_problem(value: Any) -> str | None:
    """--preview must name a format the preview is written in (vidgen.engine.preview)."""
    if isinstance(value, str) and os.path.splitext(value)[1].lower() not in PREVIEW_FORMATS:
        return f"--preview {value!r}: give a .png, .gif or .webp file"
    return None


_NUMBER = r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"


@dataclass
class LoraSpec:
    """`--lora PATH_OR_ID[:SCALE][@COMPONENT]`, or one `[[lora]]` of a preset (its `weight` is the scale)."""

    source: str
    scale: float = 1.0
    into: str | None = None  # one of TRANSFORMERS; None: the pipeline's default (transformer)
    name: str | None = None  # a preset [[lora]]'s name for --lora-scale; None: its file's name (label)

    @property
    def label(self) -> str:
        """What --lora-scale calls it: its name, else its file's name without `.safetensors`."""
        return self.name or self.source.rstrip("/").rsplit("/", 1)[-1].removesuffix(".safetensors")

    def text(self) -> str:
        """It as --lora takes it (what a server's client sends)."""
        return f"{self.source}:{self.scale!r}" + (f"@{self.into}" if self.into else "")

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        into = None
        body, at, component = text.rpartition("@")
        if at and body and re.fullmatch(r"[A-Za-z_]\w*", component):  # a file name's `@v2.safetensors` is no component
            if component not in TRANSFORMERS:
                raise UsageError(
                    f"--lora {text}: @{component} is no component a LoRA goes into (@transformer, or "
                    "@transformer_2: Wan 2.2 A14B's low-noise expert)"
                )
            text, into = body, component
        source, sep, scale_text = text.rpartition(":")
        if sep and source and re.fullmatch(r"-?\d+(\.\d*)?", scale_text):
            return cls(source, float(scale_text), into)  # validate() refuses a scale too long to be finite
        if not text.strip():
            raise UsageError("--lora needs a path or hub id")
        return cls(text, 1.0, into)


def parse_lora_scales(texts: list[str] | None) -> dict[str, float] | None:
    """Every `--lora-scale NAME=SCALE` (a preset [[lora]]'s new weight), later ones winning; None when none was given."""
    if not texts:
        return None
    scales = {}
    for text in texts:
        name, sep, scale_text = text.partition("=")
        if not sep or not name.strip() or not re.fullmatch(_NUMBER, scale_text.strip()):
            raise UsageError(f"--lora-scale must look like NAME=SCALE (a preset LoRA's name, e.g. high_noise=2.0), got {text!r}")
        scales[name.strip()] = float(scale_text)
    return scales


def parse_extra(text: str) -> tuple[str, Any]:
    """`--extra NAME=VALUE` -> (name, value of the extra's type)."""
    name, sep, value_text = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise UsageError(f"--extra must look like NAME=VALUE (for example overlap_history=37), got {text!r}")
    if name not in EXTRA_TYPES:
        raise UsageError(f"unknown extra {name!r} (known: {', '.join(EXTRA_TYPES)})")
    kind = EXTRA_TYPES[name]
    value_text = value_text.strip()
    if kind is str:  # a choice among words, checked by vidgen.settings.extras
        return name, value_text
    pattern = r"-?\d+" if kind is int else _NUMBER
    if not re.fullmatch(pattern, value_text):
        raise UsageError(f"--extra {name} must be {'a whole number' if kind is int else 'a number'}, got {value_text!r}")
    return name, kind(value_text)


def parse_extras(texts: list[str] | None) -> dict[str, Any] | None:
    """Every --extra, later ones winning; None when none was given."""
    if not texts:
        return None
    return dict(parse_extra(text) for text in texts)


def parse_quantize(text: str, *, source: str = "--quantize") -> dict[str, str]:
    """`int8` -> {"*": "int8"} (the denoisers); `transformer=fp8,text_encoder=int8` -> per component;
    `fp8,text_encoder=int8` -> both; `none` -> {}. A component set to `none` is left out. No torch here."""
    mapping: dict[str, str] = {}
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise UsageError(f"{source} needs a method ({', '.join(METHODS)}) or COMPONENT=METHOD pairs")
    for item in items:
        if not item:
            raise UsageError(f"{source}: an empty item in {text!r}")
        component, equals, method = (part.strip() for part in item.partition("="))
        if not equals:
            component, method = DENOISERS_KEY, component
        elif not _COMPONENT.fullmatch(component) or not method:
            raise UsageError(f"{source}: {item!r} is not METHOD or COMPONENT=METHOD (e.g. transformer=fp8,text_encoder=int8)")
        if method not in METHODS:
            raise UsageError(f"{source}: unknown method {method!r} (known: {', '.join(METHODS)})")
        if component in mapping:
            what = "the denoisers" if component == DENOISERS_KEY else component
            raise UsageError(f"{source} gives {what} twice: {text!r}")
        mapping[component] = method
    if len(mapping) > 1 and mapping.get(DENOISERS_KEY) == "none":
        raise UsageError(f"{source}: 'none' cannot be combined with other methods: {text!r}")
    return {component: method for component, method in mapping.items() if method != "none"}


def quantize_problem(text: str | None) -> str | None:
    """What is wrong with a --quantize value, as layers.validate() reports it; None: nothing."""
    if text is None:
        return None
    try:
        parse_quantize(text)
    except UsageError as error:
        return error.message
    return None


def parse_parallel(text: str) -> dict[str, int | None]:
    """`ulysses`, `ring=2`, `ulysses=2,ring=2` -> {kind: degree or None (the rest of the group)}."""
    parts: dict[str, int | None] = {}
    for part in text.replace(" ", "").lower().split(","):
        match = _PART.fullmatch(part)
        if not match:
            raise UsageError(f"--parallel must be ulysses, ring, or degrees such as ulysses=2,ring=2; got {text!r}")
        kind, degree = match.group(1), match.group(2)
        if kind in parts:
            raise UsageError(f"--parallel names {kind} twice: {text!r}")
        if degree is not None and int(degree) < 1:
            raise UsageError(f"--parallel {kind} degree must be at least 1, got {degree}")
        parts[kind] = None if degree is None else int(degree)
    if sum(degree is None for degree in parts.values()) > 1:
        raise UsageError(f"--parallel {text}: give a degree to one of them at least (for example ulysses=2,ring=2)")
    return parts


def parallel_problem(text: str | None) -> str | None:
    """The table's check: the spec's syntax only (the group is known later)."""
    if text is None:
        return None
    try:
        parse_parallel(text)
    except UsageError as error:
        return error.message
    return None
