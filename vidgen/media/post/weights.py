"""Model files of the learned methods: read as tensors only, and their sha256 for the recipe.

`.pth`, `.pt`, `.ckpt` and `.pkl` files are read with `torch.load(weights_only=True)`, which
unpickles tensors and plain containers and refuses code; `.safetensors` with safetensors.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from vidgen.errors import UsageError

_hashes: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: a batch hashes a model once


def read(path: Path) -> Any:
    """What the file holds (a state dict, or a dict around one); not weights: UsageError."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and safetensors each raise their own
        raise UsageError(f"cannot read {path} as weights: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    """torch.load's refusal in a few words: its message is a paragraph of advice (to load with
    weights_only=False, which is what must not be done with a file from elsewhere)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        detail = next((line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()), "")
        return f"not tensors alone, or not a PyTorch file ({detail[:100]})"
    if isinstance(error, EOFError):
        return "the file is empty or cut short"
    first = text.strip().splitlines()[0][:120] if text.strip() else "no message"
    return f"{type(error).__name__}: {first}"


def sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def record(path: Path) -> dict[str, str]:
    """The recipe's `model` of a step: the file's name and hash (its folder is this machine's)."""
    return {"file": path.name, "sha256": sha256(path)}
