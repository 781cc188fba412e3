"""A preset's `[components]`: pipeline components from other repositories than its model.

FramePack runs HunyuanVideo's text encoders and VAE (`hunyuanvideo-community/HunyuanVideo`)
with its own transformer (`lllyasviel/FramePackI2V_HY`, a transformer-only repository) and
a SigLIP image encoder from subfolders of `lllyasviel/flux_redux_bfl`: diffusers' own example
loads each with its class's `from_pretrained` and hands them to the pipeline's. That is what
`load_components` does, after `check_available` has found every one of them (one line naming
the component and its repository when one is missing, before any weights are read).
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Any

import diffusers
import huggingface_hub
import transformers
from huggingface_hub.errors import LocalEntryNotFoundError

from vidgen import ui
from vidgen.engine.checkpoints import dtype_keyword
from vidgen.engine.hub import is_offline, local_only, quiet_hub, refusals
from vidgen.engine.model_check import check_safetensors
from vidgen.errors import GenerationError, ModelNotAvailableError, UsageError, first_line
from vidgen.settings.locations import ComponentSpec


def component_class(spec: ComponentSpec, pipeline_classes: list[str | None]) -> type:
    """The class that loads `spec`: its `class`, else the annotation for it of the first of the
    preset's pipeline classes (its own, then its stages') that takes a component of that name."""
    if spec.class_name:
        found = getattr(diffusers, spec.class_name, None) or getattr(transformers, spec.class_name, None)
        if found is None:
            raise UsageError(f"component {spec.name}: neither diffusers nor transformers has a class {spec.class_name}")
        return found
    for pipeline_class in pipeline_classes:
        pipeline = getattr(diffusers, pipeline_class or "", None)
        hint = typing.get_type_hints(pipeline.__init__).get(spec.name) if pipeline is not None else None
        if isinstance(hint, type):
            return hint
    raise UsageError(
        f"component {spec.name}: {' or '.join(filter(None, pipeline_classes)) or 'the pipeline'} has no component of that "
        f'name to take its class from; give its class (class = "..." in [components.{spec.name}])'
    )


def _local_folder(spec: ComponentSpec) -> Path:
    folder = Path(spec.location.location) / (spec.subfolder or "")
    if not folder.is_dir():
        raise UsageError(f"component {spec.name}: folder {folder} not found")
    return folder


def check_available(components: tuple[ComponentSpec, ...], pull_hint: str) -> None:
    """Every component is there (a folder, or a hub repository in the cache or within reach),
    its safetensors headers sound; else one line naming the component and its repository."""
    for spec in components:
        if spec.location.is_local:
            folder = _local_folder(spec)
            for weights in sorted(folder.glob("*.safetensors")):
                check_safetensors(weights, folder)
            continue
        if not local_only():
            continue  # the Hub answers: from_pretrained downloads what is missing
        try:
            with quiet_hub():
                huggingface_hub.snapshot_download(
                    spec.location.location,
                    revision=spec.revision,
                    local_files_only=True,
                    allow_patterns=[f"{spec.subfolder}/*"] if spec.subfolder else None,
                )
        except (LocalEntryNotFoundError, OSError, ValueError):
            why = "HF_HUB_OFFLINE is set" if is_offline() else "the Hugging Face Hub is out of reach"
            raise ModelNotAvailableError(f"component {spec.name} ({spec.where}) is not downloaded and {why}; {pull_hint}") from None


def _dtype_keyword(cls: type) -> str | None:
    """The from_pretrained keyword for the dtype of a model class (None: not a model, e.g. a processor)."""
    bases = {base.__name__ for base in inspect.getmro(cls)}
    if "ModelMixin" in bases:
        return dtype_keyword()
    return "dtype" if "PreTrainedModel" in bases else None  # transformers 5's name


def load_components(components: tuple[ComponentSpec, ...], pipeline_classes: list[str | None], dtype: Any) -> dict[str, Any]:
    """name -> the loaded component (models in `dtype`), ready to hand to the pipeline's from_pretrained."""
    loaded = {}
    for spec in components:
        cls = component_class(spec, pipeline_classes)
        if spec.location.is_local:
            _local_folder(spec)
        source = spec.location.location
        options: dict[str, Any] = {"subfolder": spec.subfolder} if spec.subfolder else {}
        if not spec.location.is_local:
            options.update(local_files_only=local_only(), **({"revision": spec.revision} if spec.revision else {}))
        if keyword := _dtype_keyword(cls):
            options.update({keyword: dtype, "use_safetensors": True})
        try:
            with (
                ui.status(f"loading {spec.name} from {spec.where}"),
                quiet_hub(),
                refusals(f"component {spec.name}'s repository {spec.location.location}", spec.revision),
            ):
                loaded[spec.name] = cls.from_pretrained(source, **options)
        except (OSError, ValueError, json.JSONDecodeError) as error:
            raise GenerationError(f"cannot load component {spec.name} ({cls.__name__}) from {spec.where}: {first_line(error)}") from error
    return loaded
