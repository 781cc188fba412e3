"""`vidgen generate --dry-run`: will it fit? Everything a run would resolve, before it loads.

The settings merged, checked and snapped; the pipeline class; each component's size from its
safetensors (or GGUF) headers, as stored and as it would sit in memory at the run's dtype,
quantized where --quantize says; and the offload that `--offload auto` would choose on this
device from those sizes. No weights are read and nothing is written. A model that is not on
disk still gets its settings, and a note that its sizes are unknown until `vidgen pull`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vidgen.engine import acceleration, checkpoints, quantize, windows
from vidgen.engine.devices import resolve_device, run_dtype
from vidgen.engine.hub import cached_folder, read_model_index, resolve_checkpoint
from vidgen.engine.loading import check_last_image
from vidgen.engine.lora import check_targets
from vidgen.engine.model_check import class_to_load
from vidgen.engine.prepare import prepare_settings
from vidgen.errors import ModelNotAvailableError
from vidgen.settings.grammar import TRANSFORMERS, parse_quantize
from vidgen.settings.request import GenerateRequest
from vidgen.settings.table import SETTINGS


def _component(
    size: checkpoints.WeightSize, *, source: str, item_bytes: int, method: str | None, stays_quantized: bool = False
) -> dict[str, Any]:
    """One component's figures: stored bytes, and bytes in memory at the run's dtype (a GGUF
    file's Linear weights stay quantized; --quantize shrinks the block Linear weights)."""
    memory = size.bytes if stays_quantized else size.parameters * item_bytes
    if method:
        others = (size.parameters - size.block_linear_parameters) * item_bytes
        memory = others + round(size.block_linear_parameters * quantize.bytes_per_weight(method))
    return {"source": source, "parameters": size.parameters, "disk_bytes": size.bytes, "memory_bytes": memory, "quantize": method}


def _file_size(spec: str) -> tuple[checkpoints.CheckpointInfo | None, str]:
    """A single file's header, if the file is on disk (a hub file only if already downloaded)."""
    try:
        path = resolve_checkpoint(spec, download=False)
    except ModelNotAvailableError:
        return None, spec
    return checkpoints.inspect_checkpoint(path), str(path)


def plan(request: GenerateRequest) -> dict[str, Any]:
    """What `vidgen generate` would do with this request, as one JSON-ready object."""
    given = request.settings_given()
    windowed = (
        windows.prepare(request.prompt, preset=request.preset, model=request.model, overrides=given, strict=request.strict)
        if windows.wanted(request.preset, request.model, given)
        else None
    )
    settings, chosen = (
        (windowed.settings, windowed.chosen)
        if windowed
        else prepare_settings(request.prompt, preset=request.preset, model=request.model, overrides=given, strict=request.strict)
    )
    check_last_image(settings)  # a run would refuse it before loading too
    location = settings.location
    device = resolve_device(settings.device)
    dtype = run_dtype(settings, device)
    report: dict[str, Any] = {
        "prompt": settings.prompt,
        "preset": settings.preset,
        "model": location.location,
        "pipeline": settings.pipeline_class,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "settings": {setting.name: getattr(settings, setting.name) for setting in SETTINGS if setting.recipe and setting.field},
        "components": None,
        "memory_bytes": None,
        "offload_auto": None,
        "notes": [],
    }
    if windowed:  # longer than one window: the windows and their frames (vidgen.engine.windows)
        report["windows"] = windows.show_plan(windowed)
    report["settings"]["loras"] = [f"{lora.source}:{lora.scale:g}" + (f"@{lora.into}" if lora.into else "") for lora in settings.loras]
    if settings.components:  # the preset's [components]: where each comes from
        report["settings"]["components"] = {spec.name: spec.where for spec in settings.components}
    hint = f"vidgen pull {chosen.name if chosen.source else location.location}"
    try:
        model_index = read_model_index(location, hint, settings.revision)
        folder = Path(location.location) if location.is_local else cached_folder(location, settings.revision)
    except ModelNotAvailableError:
        model_index, folder = None, None
    if model_index is None or folder is None:
        report["notes"].append(f"{location.location} is not on disk: its sizes are unknown until `{hint}`")
        return report
    check_targets(settings.loras, model_index)  # as loading would, before it
    class_name = str(model_index.get("_class_name"))
    report["pipeline"] = class_to_load(class_name, settings.pipeline_class) or class_name
    mapping = quantize.resolve_components(parse_quantize(settings.quantize), model_index) if settings.quantize else {}
    item_bytes = torch.tensor([], dtype=dtype).element_size()
    components = {}
    for name, size in checkpoints.component_sizes(folder).items():
        components[name] = _component(size, source=str(folder / name), item_bytes=item_bytes, method=mapping.get(name))
    for spec in settings.components:  # from other repositories: their own folders' sizes, where on disk
        root = Path(spec.location.location) if spec.location.is_local else cached_folder(spec.location, spec.revision)
        size = checkpoints.folder_size(root / (spec.subfolder or "")) if root else None
        components.pop(spec.name, None)
        if size is None:
            report["notes"].append(f"component {spec.name} ({spec.where}) is not on disk: its size is unknown until `{hint}`")
            continue
        components[spec.name] = _component(size, source=str(root / (spec.subfolder or "")), item_bytes=item_bytes, method=None)
    for name in TRANSFORMERS:
        spec = getattr(settings, name)
        if not spec:
            continue
        info, source = _file_size(spec)
        if info is None:
            report["notes"].append(f"--{name.replace('_', '-')} {spec} is not downloaded: its size is unknown until `vidgen pull {spec}`")
            components.pop(name, None)
            continue
        components[name] = _component(info.size, source=source, item_bytes=item_bytes, method=None, stays_quantized=info.format == "gguf")
    report["components"] = components
    sizes = [component["memory_bytes"] for component in components.values()]
    report["memory_bytes"] = sum(sizes)
    if device.startswith("cuda"):
        free_bytes, _ = torch.cuda.mem_get_info(torch.device(device))
        report["offload_auto"] = acceleration.choose_offload(sum(sizes), max(sizes, default=0), free_bytes, on_cuda=True)
    else:
        report["offload_auto"] = "none"  # offloading moves weights to the CPU: there they already are
    return report


def _gigabytes(count: int | None) -> str:
    return "unknown" if count is None else f"{count / 1e9:.2f} GB" if count >= 1e8 else f"{count / 1e6:.2f} MB"


def lines(report: dict[str, Any]) -> list[str]:
    """The report as lines for a terminal."""
    out = [f"{key}: {report[key]}" for key in ("prompt", "preset", "model", "pipeline", "device", "dtype")]
    out += [f"settings.{key}: {value}" for key, value in report["settings"].items() if value not in (None, [], {})]
    for name, component in (report["components"] or {}).items():
        quantized = f", quantized {component['quantize']}" if component["quantize"] else ""
        out.append(
            f"component {name}: {component['parameters']:,} parameters, {_gigabytes(component['disk_bytes'])} on disk, "
            f"{_gigabytes(component['memory_bytes'])} in memory{quantized}"
        )
    out.append(f"memory: {_gigabytes(report['memory_bytes'])} of weights")
    if report["offload_auto"] is not None:
        out.append(f"offload auto: {report['offload_auto']}")
    out += report.get("windows") or []
    out += [f"note: {note}" for note in report["notes"]]
    return out
