"""LoRA adapters on a loaded pipeline: found on disk or the hub, checked to fit, weighted.

A LoRA made for another model family or size is one line saying so, not peft's traceback;
one whose keys name no component of the pipeline (which diffusers loads as nothing,
silently) is refused too.

Each adapter is read from its file for each load: diffusers' Wan converter (LightX2V's
`diffusion_model.*` keys with `alpha`) multiplies the tensors it is given in place for the
cross-attention and feed-forward layers, so one state dict loaded into both experts of
Wan 2.2 A14B would get its alpha/rank scale twice in the second. A preset's `[[lora]]`
names the expert (`into = "transformer_2"`: diffusers' `load_into_transformer_2`).
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path
from typing import Any

import diffusers
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from vidgen.engine.hub import fetch_hub_file, local_only
from vidgen.engine.stages import adapter_name
from vidgen.errors import UsageError, first_line
from vidgen.settings.grammar import LoraSpec
from vidgen.settings.table import GenerationSettings

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_HUB_FILE = re.compile(r"^([\w.-]+/[\w.-]+)/((?:[\w.-]+/)*[\w.-]+\.safetensors)$")  # org/name/sub/dir/file.safetensors


def _lora_location(source: str) -> str:
    """A file or folder on disk, or a hub id; offline, a hub id becomes its cached folder
    (diffusers cannot guess the weight file's name offline)."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path)
    hub_file = _HUB_FILE.match(source)
    if hub_file and not path.is_absolute() and not source.startswith((".", "~")):  # REPO/FILENAME: the file itself
        return str(fetch_hub_file(hub_file.group(1), hub_file.group(2)))
    if not _HUB_ID.match(source) or source.endswith(".safetensors"):
        raise UsageError(f"LoRA not found: {source} (not a file, a folder or a Hugging Face Hub id)")
    if not local_only():
        return source
    try:
        return snapshot_download(source, allow_patterns=["*.safetensors", "*.json"], local_files_only=True)
    except LocalEntryNotFoundError as error:
        raise UsageError(
            f"cannot load LoRA {source}: not downloaded, and the Hugging Face Hub is out of reach (HF_HUB_OFFLINE, or offline)"
        ) from error


def _lora_misfit(error: BaseException) -> str | None:
    """Why a LoRA's layers do not fit the model, from peft's or torch's message: the usual
    sign of a LoRA made for another model family or size."""
    text = str(error)
    if "not found in the base model" in text:  # peft: none of its target layers exist here
        return "none of its layers are in the model"
    if "size mismatch" in text:  # torch: same layer names, other widths
        return "its layers have other sizes than the model's"
    return None


def check_targets(loras: list[LoraSpec], model_index: dict[str, Any]) -> None:
    """Before any weights load: each LoRA's component (`@transformer_2`, a [[lora]]'s `into`) is one
    the model has, by its model_index.json."""
    for lora in loras:
        entry = model_index.get(lora.into) if lora.into else None
        if lora.into and not (isinstance(entry, list) and entry[-1]):
            raise UsageError(
                f"LoRA {lora.source} goes into {lora.into}, which {model_index.get('_class_name')} here has not"
                + (" (only Wan 2.2 A14B has a second expert)" if lora.into == "transformer_2" else "")
            )


def apply_loras(pipe: Any, settings: GenerationSettings) -> None:
    """The run's LoRAs (the preset's [[lora]], then --lora) active, and the LoRAs of its
    [[stages]] loaded too, each active only in its stage (vidgen.engine.stages)."""
    stage_loras = [
        (adapter_name(stage, index), LoraSpec(source, weight))
        for stage in settings.stages
        for index, (source, weight) in enumerate(stage.loras)
    ]
    if not settings.loras and not stage_loras:
        return
    class_name = type(pipe).__name__
    if not hasattr(pipe, "load_lora_weights"):
        raise UsageError(f"{class_name} does not support LoRA adapters")
    if importlib.util.find_spec("peft") is None:
        raise UsageError("--lora needs the peft package: pip install peft")
    names = []
    for name, lora in [(f"lora{index}", lora) for index, lora in enumerate(settings.loras)] + stage_loras:
        location = _lora_location(lora.source)
        # The file's location, never a state dict read once: each load reads it afresh (see above).
        target = {"load_into_transformer_2": True} if lora.into == "transformer_2" else {}
        if target and getattr(pipe, "transformer_2", None) is None:
            raise UsageError(
                f"LoRA {lora.source} goes into transformer_2, which {class_name} here has not (only Wan 2.2 A14B has a second expert)"
            )
        # diffusers logs a failed load as an error before raising it, and peft warns that a
        # second adapter joins the first (intended here): the user gets one line, below.
        verbosity = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity(diffusers.utils.logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe.load_lora_weights(location, adapter_name=name, **target)
        except Exception as error:  # diffusers raises many kinds; the message is what helps
            misfit = _lora_misfit(error)
            if misfit:
                raise UsageError(
                    f"LoRA {lora.source} does not fit {class_name}: {misfit} (a LoRA for another model family or size?)"
                ) from error
            raise UsageError(f"cannot load LoRA {lora.source}: {first_line(error)}") from error
        finally:
            diffusers.utils.logging.set_verbosity(verbosity)
        # A file whose keys name no component of this pipeline loads as nothing, silently.
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise UsageError(
                f"LoRA {lora.source} does not fit {class_name}: it has no layers for its components (a LoRA for another model family?)"
            )
        names.append(name)
    if settings.loras:  # a stage's own are switched on and off around its call (vidgen.engine.stages)
        pipe.set_adapters(names[: len(settings.loras)], adapter_weights=[lora.scale for lora in settings.loras])
