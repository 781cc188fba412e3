"""Check a local model folder before loading it, so a damaged one is one clear line.

diffusers reports a missing component folder as "no file named config.json found in
directory <the model>", and a truncated safetensors file as a deserialising error that
names neither the file nor the component. Reading model_index.json, each component's
config.json and each safetensors header (a few kilobytes, not the weights) finds those
faults first and names the file or component:

- a component folder that model_index.json lists but that is missing;
- a config.json that is not JSON;
- a class that its library (diffusers, transformers) does not have;
- a safetensors file whose header is unreadable or whose size disagrees with its header
  (truncated, or cut off by a full disk during a download or copy);
- a sharded checkpoint whose index names a shard that is not there.

Damage inside the tensor data itself cannot be seen without reading every byte; it shows
as non-finite frames (generate.py refuses those).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import struct
from pathlib import Path
from typing import Any

from vidgen.engine.hub import component_config
from vidgen.errors import UsageError
from vidgen.families import argument_name
from vidgen.settings.locations import ModelLocation

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
_LIBRARIES = ("diffusers", "transformers")  # what vidgen can check without running model code


def check_model_folder(folder: Path, model_index: dict[str, Any]) -> None:
    """Raise UsageError naming the first damaged file or missing component of `folder`."""
    for component, declared in model_index.items():
        if component.startswith("_") or not isinstance(declared, list) or len(declared) != 2:
            continue
        library, class_name = declared
        if library is None or class_name is None:
            continue  # an optional component left out on purpose
        where = folder / component
        if not where.is_dir():
            raise UsageError(
                f"model folder {folder} is incomplete: component {component!r} ({class_name}) is listed in model_index.json but {where} is missing"
            )
        _check_class(folder, component, library, class_name)
        for config in (where / "config.json", where / "scheduler_config.json"):
            if config.is_file():
                _check_json(config, folder)
        for index in where.glob("*.safetensors.index.json"):
            _check_shards(index, folder)
        for weights in sorted(where.glob("*.safetensors")):
            check_safetensors(weights, folder)


def _check_class(folder: Path, component: str, library: str, class_name: str) -> None:
    if library not in _LIBRARIES:
        return  # custom code: loading it is --trust-remote-code's business
    module = importlib.import_module(library)
    if getattr(module, class_name, None) is None:
        raise UsageError(
            f"model folder {folder}: component {component!r} names class {class_name}, which {library} does not have (a typo in model_index.json, or a newer {library} is needed)"
        )


def _check_json(path: Path, folder: Path) -> None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"model folder {folder}: {path.relative_to(folder)} is not valid JSON ({error})") from None


def _check_shards(index: Path, folder: Path) -> None:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise UsageError(f"model folder {folder}: {index.relative_to(folder)} is not a valid shard index ({error})") from None
    for shard in sorted(set(weight_map.values()) if isinstance(weight_map, dict) else ()):
        if not (index.parent / str(shard)).is_file():
            raise UsageError(
                f"model folder {folder}: shard {index.parent.relative_to(folder) / str(shard)} named by {index.name} is missing"
            )


def check_safetensors(path: Path, folder: Path | None = None) -> None:
    """The header parses and the file is exactly as long as the header says."""
    name = path.relative_to(folder) if folder else path
    damaged = f"model folder {folder}: {name} is damaged" if folder else f"{path} is damaged"
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise UsageError(f"{damaged}: {size} bytes, too short for a safetensors file (truncated?)")
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > _MAX_HEADER_BYTES or 8 + header_length > size:
                raise UsageError(
                    f"{damaged}: its header claims {header_length} bytes but the file has {size} (truncated or not safetensors)"
                )
            header_bytes = file.read(header_length)
    except OSError as error:
        raise UsageError(f"{damaged}: cannot read it ({error.strerror or error})") from None
    try:
        header = json.loads(header_bytes.decode("utf-8"))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise UsageError(f"{damaged}: its header is not safetensors JSON") from None
    expected = 8 + header_length + max(ends, default=0)
    if size != expected:
        raise UsageError(f"{damaged}: {size} bytes where its header describes {expected} (truncated, or cut off while copying)")


# ---- does the model serve the preset's class ----


def check_pipeline_class(actual: str, expected: str | None, model: str, preset: str) -> None:
    """The model's class must be the preset's, a subclass, or of the same family
    (same diffusers pipelines package, for example Wan's)."""
    if expected is None or actual == expected:
        return
    actual_class, expected_class = diffusers_class(actual), diffusers_class(expected)
    if actual_class is not None and expected_class is not None:
        if issubclass(actual_class, expected_class):
            return
        if actual_class.__module__.rsplit(".", 1)[0] == expected_class.__module__.rsplit(".", 1)[0]:
            return
    raise UsageError(
        f"model {model} is a {actual}, but preset {preset} expects a {expected}; choose the preset that matches the model (vidgen presets)"
    )


def class_to_load(actual: str, expected: str | None) -> str | None:
    """The pipeline class to instantiate, or None for the one model_index.json names.

    A repository often serves several tasks with one model_index.json: Lightricks/LTX-Video
    names LTXPipeline, Wan2.2-TI2V-5B names WanPipeline, yet both also run image-to-video.
    Loading the named class would silently drop --image, so a preset's own class wins
    (diffusers builds any compatible class from another pipeline's folder). The folder's
    class stays when it is the preset's or a subclass of it (a specialised pipeline).
    """
    if expected is None or actual == expected:
        return None
    actual_class, expected_class = diffusers_class(actual), diffusers_class(expected)
    if actual_class is not None and expected_class is not None and issubclass(actual_class, expected_class):
        return None
    return expected


def diffusers_class(class_name: str | None) -> Any:
    """diffusers' class of that name, or None. Importing some pipelines makes transformers warn
    (CLIPImageProcessor without torchvision) before the command's own lines: quiet while it is looked up."""
    if not class_name:
        return None
    import diffusers  # here, not at the top: preparing settings (vidgen.engine.prepare) runs without torch
    import transformers

    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        return getattr(diffusers, class_name, None)
    finally:
        transformers.utils.logging.set_verbosity(verbosity)


def check_extras_taken(class_name: str | None, extras: dict[str, Any]) -> None:
    """Every `--extra NAME` (or preset `[extras]` key) is a parameter of the pipeline class
    that will run: refused from the class alone, before any weights are read."""
    if not extras:
        return
    pipeline_class = diffusers_class(class_name)
    if pipeline_class is None:
        return
    parameters = inspect.signature(pipeline_class.__call__).parameters
    for name in extras:
        if name not in parameters:
            raise UsageError(f"{class_name} takes no {name}; --extra {name} is for another preset's pipeline")


def _takes_image(pipeline_class: Any) -> bool:
    """Whether the class's __call__ takes a start image, under its standard name or an alias
    (LTXI2VLongMultiPromptPipeline's `cond_image`)."""
    parameters = inspect.signature(pipeline_class.__call__).parameters
    return argument_name("image", parameters) in parameters


def takes_argument(class_name: str | None, argument: str) -> bool | None:
    """Whether diffusers' pipeline class `class_name` takes `argument` in its call, from its
    signature (no weights read); None where the class is not diffusers' own (or not given)."""
    pipeline_class = diffusers_class(class_name)
    if not isinstance(pipeline_class, type):
        return None
    return argument in inspect.signature(pipeline_class.__call__).parameters


LAST_IMAGE_PRESETS = "wan2.1-flf2v-14b-720p, wan2.2-i2v-a14b or framepack-i2v"  # what a refusal suggests


def _wan_last_image(model: str, model_index: dict[str, Any], transformer: dict[str, Any], given: bool) -> str | None:
    """WanImageToVideoPipeline takes a last image for every Wan model, but only FLF2V's
    transformer was made for one: a positional table over two images' CLIP tokens
    (pos_embed_seq_len), without which it cannot run (diffusers reshapes the tokens in pairs).
    Wan 2.1 I2V's transformer reads one image's tokens (two fail deep inside the call); Wan 2.2
    TI2V-5B (expand_timesteps) replaces the first latent frame only and drops a last image
    silently; Wan 2.2 I2V A14B has no CLIP encoder and takes the last frame as latents."""
    if transformer.get("pos_embed_seq_len") and not given:
        return f"{model} (Wan FLF2V) makes a video from a first to a last frame: pass --last-image LAST too"
    if not given:
        return None
    if model_index.get("expand_timesteps"):
        return (
            f"{model} (Wan 2.2 TI2V-5B) takes its first frame only (a last one would be dropped): --last-image needs {LAST_IMAGE_PRESETS}"
        )
    if transformer.get("image_dim") and not transformer.get("pos_embed_seq_len"):
        return f"{model} (Wan 2.1 image-to-video) reads one image, not a first and a last: --last-image needs {LAST_IMAGE_PRESETS}"
    return None


# What a model's configs say of --last-image beyond its class's signature, by class.
LAST_IMAGE_RULES = {"WanImageToVideoPipeline": _wan_last_image}


def last_image_problem(
    class_name: str | None,
    *,
    given: bool,
    model: str = "this model",
    model_index: dict[str, Any] | None = None,
    transformer: dict[str, Any] | None = None,
) -> str | None:
    """Why --last-image cannot go (or must go) to this pipeline, from its class's signature and,
    where given, the model's model_index.json and transformer config (no weights read); None: fine."""
    if given and takes_argument(class_name, "last_image") is False:
        return f"{class_name} takes no last image; --last-image is for {LAST_IMAGE_PRESETS}"
    rule = LAST_IMAGE_RULES.get(class_name or "")
    return rule(model, model_index or {}, transformer or {}, given) if rule else None


# Input channels the denoiser of a class needs, from the VAE's latent channels and the
# pipeline's config: image-to-video classes of these families concatenate the image's
# latents (and Wan a 4-channel mask) to the noise, so a text-to-video transformer cannot
# serve them, nor the reverse. Wan 2.2 TI2V (expand_timesteps) replaces the first latent
# frame instead, so one transformer serves both tasks. Families not listed (LTX, whose
# image-to-video class conditions the same transformer) are not checked.
_DENOISER_INPUTS = {
    "WanPipeline": ("z_dim", lambda latent, config: {latent}),
    "WanImageToVideoPipeline": ("z_dim", lambda latent, config: {latent} if config.get("expand_timesteps") else {2 * latent + 4}),
    "WanVideoToVideoPipeline": ("z_dim", lambda latent, config: {latent}),
    "CogVideoXPipeline": ("latent_channels", lambda latent, config: {latent}),
    "CogVideoXImageToVideoPipeline": ("latent_channels", lambda latent, config: {2 * latent}),
}


def check_components_serve(
    model_index: dict[str, Any],
    location: ModelLocation,
    expected: str | None,
    preset: str,
    revision: str | None = None,
    provided: set[str] = frozenset(),
) -> None:
    """Refuse, before any weights are read, a folder whose components cannot run the
    preset's class: a required component missing, an image-to-video folder under a
    text-to-video preset, or a denoiser with the wrong number of input channels. `provided`:
    the components the preset takes from other repositories ([components])."""
    actual = model_index.get("_class_name")
    if expected is None or not isinstance(actual, str) or class_to_load(actual, expected) is None:
        return
    expected_class, actual_class = diffusers_class(expected), diffusers_class(actual)
    if expected_class is None or actual_class is None:
        return
    model = location.location
    hint = "choose the preset that matches the model (vidgen presets)"
    if _takes_image(actual_class) and not _takes_image(expected_class):
        raise UsageError(f"model {model} is an image-to-video {actual}, but preset {preset} runs {expected}, which takes no image; {hint}")
    signature = inspect.signature(expected_class.__init__).parameters
    required = [
        name
        for name, parameter in signature.items()
        if name != "self" and parameter.default is inspect.Parameter.empty and name not in expected_class._optional_components
    ]
    missing = [
        name for name in required if name not in provided and not (isinstance(model_index.get(name), list) and model_index[name][-1])
    ]
    if missing:
        raise UsageError(f"model {model} ({actual}) has no {', '.join(missing)}, which preset {preset}'s {expected} needs; {hint}")
    rule = _DENOISER_INPUTS.get(expected)
    if rule is None:
        return
    latent_key, needed_for = rule
    vae, transformer = component_config(location, "vae", revision), component_config(location, "transformer", revision)
    if not vae or not transformer or latent_key not in vae or "in_channels" not in transformer:
        return
    needed = needed_for(vae[latent_key], model_index)
    if transformer["in_channels"] not in needed:
        raise UsageError(
            f"model {model} ({actual}) has a transformer with {transformer['in_channels']} input channels; "
            f"preset {preset}'s {expected} needs {' or '.join(map(str, sorted(needed)))}; {hint}"
        )


def missing_library(error: ImportError) -> str:
    """One line from an ImportError raised while loading: transformers says "X requires the
    Y library but it was not found in your environment" over several lines."""
    text = " ".join(str(error).split())
    found = re.search(r"(\w+) requires the (\w+) library", text)
    if found:
        library = found.group(2).lower()
        return f"{found.group(1)} needs {library}, which is not installed (pip install {library})"
    found = re.search(r"`(\w+)` is not installed\. Please install it to use (.+?): `pip install ([\w.-]+)`", text)
    if found:  # diffusers' own wording, e.g. Cosmos' required safety checker
        return f"it needs {found.group(1)} for {found.group(2)}, which is not installed (pip install {found.group(3)})"
    return f"a library it needs is missing ({text.split('. ')[0] if text else type(error).__name__})"
