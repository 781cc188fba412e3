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
import json
import struct
from pathlib import Path
from typing import Any

from vidgen.errors import UsageError

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
            raise UsageError(f"model folder {folder} is incomplete: component {component!r} ({class_name}) is listed in model_index.json but {where} is missing")
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
        raise UsageError(f"model folder {folder}: component {component!r} names class {class_name}, which {library} does not have (a typo in model_index.json, or a newer {library} is needed)")


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
            raise UsageError(f"model folder {folder}: shard {index.parent.relative_to(folder) / str(shard)} named by {index.name} is missing")


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
                raise UsageError(f"{damaged}: its header claims {header_length} bytes but the file has {size} (truncated or not safetensors)")
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
