"""Single-file checkpoints (GGUF, original-format safetensors): find, read, check, load.

One job: a denoiser published as one file (city96's GGUF quantizations, Comfy-Org's and
Kijai's bf16/fp8 safetensors) found locally or on the Hub, its header read without
reading the weights, refused in one line when diffusers cannot load it right, and
loaded with the class's `from_single_file` against the preset's own config. The sizes of
weights on disk (a pipeline folder's components, a single file) come from the same
headers, for `--dry-run`.

    path = resolve_checkpoint("city96/Wan2.1-T2V-14B-gguf/wan2.1-t2v-14b-Q4_K_M.gguf")
    transformer = load_transformer(path, transformer_class="WanTransformer3DModel",
                                   config_folder=model_folder, dtype=torch.bfloat16)

Only the loading path imports this module (never `vidgen --help`), so torch and
diffusers are imported at the top; gguf is imported where a GGUF file is read, because
it is an optional package (`vidgen[quant]`) and its absence is one line.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from accelerate import init_empty_weights
from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

from vidgen import ui
from vidgen.engine.hub import FORMATS, resolve_checkpoint
from vidgen.engine.model_check import check_safetensors
from vidgen.errors import GenerationError, UsageError, first_line

__all__ = [
    "CheckpointInfo",
    "TensorInfo",
    "WeightSize",
    "check_checkpoint",
    "component_sizes",
    "dtype_keyword",
    "inspect_checkpoint",
    "load_transformer",
    "model_size",
]

COMFY_PREFIX = "model.diffusion_model."  # ComfyUI's whole-checkpoint prefix; diffusers strips it
# Weights stored divided by a scale that diffusers never multiplies back: ComfyUI's
# "scaled fp8" (`<layer>.scale_weight` and a `scaled_fp8` marker) and its newer quantized
# layout (`<layer>.weight_scale`, `<layer>.comfy_quant`). diffusers loads them with only an
# unused-keys warning, and the frames come out NaN.
SCALED_KEY_ENDINGS = ("scale_weight", "scaled_fp8", "weight_scale", "comfy_quant")
# A 2-D weight inside a numbered block (blocks.3., transformer_blocks.0., encoder.block.5.,
# model.layers.2.): the Linear layers that --quantize shrinks. Embedding tables sit outside.
_IN_BLOCK = re.compile(r"(?:^|\.)\w*(?:blocks?|layers?)\.\d+\.")


# ---- headers: what a file holds, without its weights ----


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]  # logical shape, in torch's order (GGUF's reversed back, quantized rows unpacked)
    dtype: str  # safetensors' name (BF16, F8_E4M3, ...) or the GGUF type's (Q4_0, F32, ...)
    nbytes: int  # as stored

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightSize:
    bytes: int  # tensor data as stored
    parameters: int
    block_linear_parameters: int  # of 2-D weights inside numbered blocks: what --quantize shrinks
    block_linear_bytes: int  # what those take now; quantized: bytes - block_linear_bytes + parameters x bytes a weight
    files: tuple[Path, ...] = ()


def _size_of(tensors: Iterable[tuple[str, TensorInfo]], files: tuple[Path, ...] = ()) -> WeightSize:
    total = parameters = block_linear = block_linear_bytes = 0
    for name, info in tensors:
        total += info.nbytes
        parameters += info.numel
        if len(info.shape) == 2 and name.endswith("weight") and _IN_BLOCK.search(name):
            block_linear += info.numel
            block_linear_bytes += info.nbytes
    return WeightSize(total, parameters, block_linear, block_linear_bytes, files)


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    format: str  # "gguf" or "safetensors"
    tensors: dict[str, TensorInfo]
    file_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(info.nbytes for info in self.tensors.values())

    @property
    def size(self) -> WeightSize:
        return _size_of(self.tensors.items(), (self.path,))

    @property
    def comfy_prefix(self) -> bool:
        return any(name.startswith(COMFY_PREFIX) for name in self.tensors)

    @property
    def scaled_keys(self) -> list[str]:
        return [name for name in self.tensors if name.endswith(SCALED_KEY_ENDINGS)]

    @property
    def scaled_fp8(self) -> bool:
        return bool(self.scaled_keys)


def _safetensors_tensors(path: Path) -> dict[str, TensorInfo]:
    check_safetensors(path)  # one line for a truncated or damaged file
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    header.pop("__metadata__", None)
    return {
        name: TensorInfo(tuple(entry["shape"]), entry["dtype"], entry["data_offsets"][1] - entry["data_offsets"][0])
        for name, entry in header.items()
    }


def _gguf_tensors(path: Path) -> dict[str, TensorInfo]:
    try:
        import gguf  # here, not at the top: optional (vidgen[quant]), needed only for a GGUF file
    except ImportError:
        raise UsageError("reading GGUF files needs the gguf package: pip install 'vidgen[quant]'") from None
    try:
        reader = gguf.GGUFReader(path)  # memory-mapped: the tensor table only is read
    except Exception as error:  # the reader raises ValueError, struct.error, IndexError... on a damaged file
        raise UsageError(f"{path} is not a readable GGUF file ({first_line(error)})") from None
    # GGUF lists dimensions innermost first and in values, not in packed bytes.
    return {
        tensor.name: TensorInfo(tuple(int(n) for n in reversed(tensor.shape.tolist())), tensor.tensor_type.name, int(tensor.n_bytes))
        for tensor in reader.tensors
    }


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a .safetensors or .gguf file's tensor table (names, shapes, types, sizes)."""
    path = Path(path)
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UsageError(f"{path}: a single-file checkpoint must be a .safetensors or .gguf file")
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    tensors = _gguf_tensors(path) if file_format == "gguf" else _safetensors_tensors(path)
    return CheckpointInfo(path, file_format, tensors, path.stat().st_size)


def _weight_files(component: Path) -> tuple[Path, ...]:
    """The safetensors files diffusers/transformers load for a component: a shard index's
    files, else the standard single file, else whatever safetensors files are there."""
    for index_name in ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"):
        index = component / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise UsageError(f"{index} is not a valid shard index ({first_line(error)})") from None
            return tuple(component / shard for shard in dict.fromkeys(weight_map.values()))
    for single in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        if (component / single).is_file():
            return (component / single,)
    return tuple(sorted(component.glob("*.safetensors")))


def component_sizes(folder: str | Path) -> dict[str, WeightSize]:
    """Bytes and parameter counts of each weighted component of a diffusers pipeline
    folder, from safetensors headers (sharded ones through their index)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"model folder not found: {folder}")
    index = folder / "model_index.json"
    if index.is_file():
        declared = json.loads(index.read_text(encoding="utf-8"))
        names = [name for name, value in declared.items() if not name.startswith("_") and isinstance(value, list) and value[-1]]
    else:
        names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    sizes = {}
    for name in names:
        files = _weight_files(folder / name)
        if files:
            sizes[name] = _size_of(((key, info) for file in files for key, info in _safetensors_tensors(file).items()), files)
    return sizes


def folder_size(folder: Path) -> WeightSize | None:
    """The figures of one component's folder (a [components] repository or its subfolder), None without weights."""
    files = _weight_files(folder) if folder.is_dir() else []
    return _size_of(((key, info) for file in files for key, info in _safetensors_tensors(file).items()), files) if files else None


def model_size(model: torch.nn.Module) -> WeightSize:
    """The same figures for a model built from its config (on the meta device: no weights)."""
    return _size_of(
        (name, TensorInfo(tuple(tensor.shape), str(tensor.dtype), tensor.numel() * tensor.element_size()))
        for name, tensor in model.state_dict().items()
    )


# ---- checking a file against the preset's transformer, before loading ----


def _single_file_mapping(cls: type) -> dict[str, Any] | None:
    """diffusers' entry (its key converter) for a class that has from_single_file."""
    for name, mapping in SINGLE_FILE_LOADABLE_CLASSES.items():
        loadable = getattr(diffusers, name, None)
        if isinstance(loadable, type) and issubclass(cls, loadable):
            return mapping
    return None


def _transformer_class(name: str) -> type:
    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type):
        raise UsageError(f"unknown transformer class {name!r} (a diffusers model class)")
    if not hasattr(cls, "from_single_file") or _single_file_mapping(cls) is None:
        raise UsageError(
            f"{name} cannot be loaded from a single file (diffusers has no from_single_file for it); use the model's diffusers folder"
        )
    return cls


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "a scalar"


def check_checkpoint(
    info: CheckpointInfo, *, transformer_class: str, config_folder: str | Path, subfolder: str = "transformer"
) -> list[str]:
    """Refuse in one line (UsageError) what diffusers would load wrong or fail on: a class
    without from_single_file, a scaled fp8 file, a file whose tensors do not fit the
    transformer that `config_folder/subfolder/config.json` describes (the first missing or
    differently shaped tensor is named). Return the file's tensors the model does not use.

    The file's names and shapes go through diffusers' own converter for the class, as meta
    tensors, and are compared with the model built from the config on the meta device."""
    cls = _transformer_class(transformer_class)
    if info.scaled_fp8:
        raise UsageError(
            f'{info.path.name} is a "scaled fp8" file ({info.scaled_keys[0]}): diffusers ignores its scales and the '
            "frames come out NaN; use an unscaled fp8_e4m3fn, bf16 or GGUF file of the same model"
        )
    config_file = Path(config_folder) / subfolder / "config.json"
    if not config_file.is_file():
        raise UsageError(f"no transformer config at {config_file}: the preset's model must be on disk (vidgen pull)")
    config = cls.load_config(str(config_folder), subfolder=subfolder, local_files_only=True)
    with init_empty_weights():
        model = cls.from_config(config)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    required = [name for name, _ in model.named_parameters()]  # buffers are built, not read
    stand_ins = {name: torch.empty(tensor.shape, device="meta") for name, tensor in info.tensors.items()}
    original_name = {id(tensor): name for name, tensor in stand_ins.items()}
    if stand_ins.keys() == expected.keys():  # already in diffusers' names: diffusers converts nothing
        converted = stand_ins
    else:
        try:
            converted = _single_file_mapping(cls)["checkpoint_mapping_fn"](config=dict(config), checkpoint=dict(stand_ins))
        except Exception:  # a converter that needs real values: loading reports its own error
            return []
    where = f"{transformer_class} of {config_folder}"
    missing = [name for name in required if name not in converted]
    misfits = [name for name in expected if name in converted and tuple(converted[name].shape) != expected[name]]
    if misfits:
        name = misfits[0]
        in_file = original_name.get(id(converted[name]), name)
        more = f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""
        raise UsageError(
            f"{info.path.name} does not fit {where}: {in_file} is {_shape(tuple(converted[name].shape))} in the file, "
            f"{_shape(expected[name])} in the model ({name}){more}; a checkpoint of another model or size?"
        )
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UsageError(f"{info.path.name} does not fit {where}: it has no {missing[0]}{more}; a checkpoint of another model or size?")
    return [original_name.get(id(tensor), name) for name, tensor in converted.items() if name not in expected]


def dtype_keyword() -> str:
    """diffusers renamed `torch_dtype` to `dtype` (and warns on the old name) after 0.35."""
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401  here: a probe of the diffusers version
    except ImportError:
        return "torch_dtype"
    return "dtype"


def load_transformer(
    spec: str | Path, *, transformer_class: str, config_folder: str | Path, subfolder: str = "transformer", dtype: torch.dtype
) -> torch.nn.Module:
    """Resolve, inspect, check and load a single-file denoiser with `from_single_file`,
    always against the preset's config (without it diffusers guesses a Hub repository
    from the shapes and goes online). GGUF files keep their quantized Linear weights
    (GGUFLinear layers, dequantized at each forward to `dtype`)."""
    path = resolve_checkpoint(spec)
    info = inspect_checkpoint(path)
    unused = check_checkpoint(info, transformer_class=transformer_class, config_folder=config_folder, subfolder=subfolder)
    if unused:
        ui.warn(f"{len(unused)} tensor(s) of {path.name} are not used by {transformer_class} (the first: {unused[0]})")
    options: dict[str, Any] = {"config": str(config_folder), "subfolder": subfolder, dtype_keyword(): dtype, "local_files_only": True}
    if info.format == "gguf":
        options["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    # diffusers logs each kept-in-fp32 dequantization and dtype cast as a warning.
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    try:
        return getattr(diffusers, transformer_class).from_single_file(str(path), **options)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as error:
        raise GenerationError(f"cannot load {path.name} as {transformer_class}: {first_line(error)}") from error
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)
