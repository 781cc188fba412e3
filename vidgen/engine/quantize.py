"""`--quantize`: what a choice means, whether this machine can run it, the config that does it, and its sizes.

    parse_quantize("int8")                          -> {"*": "int8"}           (the denoiser(s))
    parse_quantize("transformer=fp8,text_encoder=int8")
    resolve_components(choice, model_index)        -> {"transformer": "int8", "transformer_2": "int8"}
    check_runnable(mapping, device)                 one UsageError line (exit 2) before any weights are read
    pipeline_quantization_config(mapping, model_index, compute_dtype=...)   -> from_pretrained(quantization_config=)
    quantized_bytes(component_bytes, linear_shapes, method, weight_bytes=2) for --dry-run and --offload auto

Weights are quantized while they load, through diffusers' `PipelineQuantizationConfig(quant_mapping=...)`:
diffusers' `TorchAoConfig` / `BitsAndBytesConfig` for diffusers components (denoisers, VAE), transformers'
for transformers components (text and image encoders). Not the `quant_backend=` shorthand: it needs both
libraries' config classes to take the same arguments, which with transformers 5 holds for bitsandbytes only.
Only `nn.Linear` weights are quantized; a model's `_keep_in_fp32_modules` (Wan: time embedder, norms) stay.

This module is imported on the light path (`vidgen --help`, settings, --dry-run): parsing and the checks
import no torch. torch, torchao, diffusers and transformers are imported inside the functions that build
configs or look at models, each saying so.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from vidgen.errors import UsageError
from vidgen.settings.grammar import DENOISERS, DENOISERS_KEY, METHODS  # a choice's grammar is the table's

# torchao 0.18 config classes (torchao.quantization), all at their defaults: version 2; int8 and fp8 weights
# per row (one float32 scale per output row); fp8-dynamic per tensor for activations and weights.
TORCHAO_CONFIGS = {
    "int8": "Int8WeightOnlyConfig",  # weights int8, matmuls in the load dtype: runs on a CPU
    "int8-dynamic": "Int8DynamicActivationInt8WeightConfig",  # activations quantized per token too: CPU too
    "fp8": "Float8WeightOnlyConfig",  # weights float8_e4m3fn, matmuls in the load dtype: CPU too
    "fp8-dynamic": "Float8DynamicActivationFloat8WeightConfig",  # fp8 matmuls: CUDA 8.9+, MI300/MI350, XPU
}
TORCHAO_MIN = "0.18"  # the declared floor: from 0.18 the int8 configs default to the new Int8Tensor (0.15-0.17 gave the deprecated one)
BITSANDBYTES_MIN = "0.43.3"  # diffusers' 4-bit floor
FP8_MIN_CAPABILITY = (8, 9)  # torchao asserts it for fp8-dynamic (Ada, Hopper, Blackwell)
FP8_ROCM_ARCHES = ("gfx94", "gfx95")  # MI300 (gfx940-942), MI350 (gfx950): torchao's other fp8 devices
NF4_BLOCK = 64  # bitsandbytes' 4-bit block: one float32 absmax per 64 weights (no double quantization)


def describe(mapping: Mapping[str, str]) -> str:
    """The choice as one stable string for the recipe, the JSON and the server's cache key: `none`,
    `int8` (the denoisers, unresolved), `transformer=int8,text_encoder=int8` (denoisers first)."""
    if not mapping:
        return "none"
    order = {name: i for i, name in enumerate((DENOISERS_KEY, *DENOISERS))}
    parts = sorted(mapping.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    return ",".join(method if component == DENOISERS_KEY else f"{component}={method}" for component, method in parts)


def _components(model_index: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """model_index.json's components that the folder holds: name -> (library, class)."""
    found = {}
    for name, value in model_index.items():
        if name.startswith("_") or not isinstance(value, (list, tuple)) or len(value) != 2:
            continue
        library, class_name = value
        if library and class_name:
            found[name] = (str(library), str(class_name))
    return found


def _is_model(library: str, class_name: str) -> bool:
    """Whether a component class is a torch module (tokenizers, schedulers and guiders are not). Imports the
    library (at load or --dry-run time, never for --help); a class that cannot be found is left to diffusers."""
    try:
        import torch  # here, not at the top: importing this module stays light (torch only where a method needs it)

        component_class = getattr(importlib.import_module(library), class_name)
    except (ImportError, AttributeError):
        return True
    return isinstance(component_class, type) and issubclass(component_class, torch.nn.Module)


def resolve_components(choice: Mapping[str, str], model_index: Mapping[str, Any]) -> dict[str, str]:
    """The parsed choice against a model's components (its model_index.json): the denoisers key becomes
    each denoiser the model has; a named component must exist and be a model. One UsageError line."""
    components = _components(model_index)
    pipeline = model_index.get("_class_name", "the pipeline")
    pipeline = pipeline[-1] if isinstance(pipeline, (list, tuple)) else pipeline
    resolved: dict[str, str] = {}
    if DENOISERS_KEY in choice:
        denoisers = [name for name in DENOISERS if name in components]
        if not denoisers:
            raise UsageError(
                f"--quantize {choice[DENOISERS_KEY]}: {pipeline} has no denoiser named {', '.join(DENOISERS)} "
                f"(its components: {', '.join(sorted(components))}); name one as COMPONENT=METHOD"
            )
        resolved.update(dict.fromkeys(denoisers, choice[DENOISERS_KEY]))
    for name, method in choice.items():
        if name == DENOISERS_KEY:
            continue
        if name not in components:
            raise UsageError(f"--quantize {name}={method}: {pipeline} has no component {name!r} (it has: {', '.join(sorted(components))})")
        if not _is_model(*components[name]):
            models = sorted(n for n, (lib, cls) in components.items() if _is_model(lib, cls))
            raise UsageError(f"--quantize {name}={method}: {name} ({components[name][1]}) is not a model; models: {', '.join(models)}")
        resolved[name] = method  # a named component overrides the denoisers' method
    return resolved


def _version_below(installed: str, least: str) -> bool:
    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])

    return numbers(installed) < numbers(least)


def method_problem(
    method: str,
    *,
    device_kind: str,
    capability: tuple[int, int] | str | None = None,
    torchao: str | None = None,
    bitsandbytes: str | None = None,
) -> str | None:
    """What stops `method` on this machine, as one line, or None. Pure (no torch): `device_kind` is cpu, cuda,
    rocm, mps or xpu; `capability` the CUDA compute capability (8, 9) or ROCm's arch name ("gfx942");
    `torchao`/`bitsandbytes` the installed versions (None: not installed)."""
    if method == "none":
        return None
    if method == "nf4":
        if device_kind not in ("cuda", "rocm"):
            return f"--quantize nf4 needs a CUDA GPU (bitsandbytes 4-bit, which diffusers runs there only; this device: {device_kind}); int8 and fp8 run here"
        if bitsandbytes is None:
            return "--quantize nf4 needs bitsandbytes: pip install 'vidgen[quant-gpu]'"
        if _version_below(bitsandbytes, BITSANDBYTES_MIN):
            return f"--quantize nf4 needs bitsandbytes {BITSANDBYTES_MIN} or newer (installed: {bitsandbytes}): pip install -U 'vidgen[quant-gpu]'"
        return None
    if method not in TORCHAO_CONFIGS:
        return f"unknown --quantize method {method!r} (known: {', '.join(METHODS)})"
    if torchao is None:
        return f"--quantize {method} needs torchao: pip install 'vidgen[quant]'"
    if _version_below(torchao, TORCHAO_MIN):
        return f"--quantize {method} needs torchao {TORCHAO_MIN} or newer (installed: {torchao}): pip install -U 'vidgen[quant]'"
    if method == "fp8-dynamic":
        needs = "fp8-dynamic needs a CUDA GPU of compute capability 8.9 or higher"
        if device_kind == "xpu":
            return None
        if device_kind == "cuda":
            major, minor = capability if isinstance(capability, tuple) else (0, 0)
            if (major, minor) < FP8_MIN_CAPABILITY:
                return f"--quantize {needs} (this one: {major}.{minor}); fp8 (weight-only) runs on it"
        elif device_kind == "rocm":
            if not str(capability or "").startswith(FP8_ROCM_ARCHES):
                return f"--quantize {needs}, or an AMD MI300/MI350 (this one: {capability}); fp8 (weight-only) runs on it"
        else:
            return f"--quantize {needs} (this device: {device_kind}); fp8 (weight-only) runs here"
    return None


def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _device_facts(device: str) -> tuple[str, tuple[int, int] | str | None]:
    """(kind, capability) of a resolved device ("cpu", "cuda", "cuda:1", "mps", "xpu")."""
    kind = device.split(":")[0]
    if kind != "cuda":
        return kind, None
    import torch  # here, not at the top: importing this module stays light; a CUDA device was resolved, so torch is loaded already

    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    if torch.version.hip:
        return "rocm", torch.cuda.get_device_properties(index).gcnArchName
    return "cuda", tuple(torch.cuda.get_device_capability(index))


def check_runnable(mapping: Mapping[str, str], device: str) -> None:
    """Refuse, in one UsageError line (exit 2) before any weights are read, a choice that this device or the
    installed packages cannot run. `device` is vidgen's resolved device. Imports torch only for a CUDA device."""
    methods = sorted(set(mapping.values()) - {"none"}, key=METHODS.index)
    if not methods:
        return
    kind, capability = _device_facts(device) if {"fp8-dynamic", "nf4"} & set(methods) else (device.split(":")[0], None)
    torchao, bitsandbytes = _installed("torchao"), _installed("bitsandbytes")
    problems = [
        problem
        for method in methods
        if (problem := method_problem(method, device_kind=kind, capability=capability, torchao=torchao, bitsandbytes=bitsandbytes))
    ]
    if problems:
        raise UsageError("; ".join(problems))


def component_config(method: str, library: str, *, compute_dtype: Any = None) -> Any:
    """The quantization config for one component: `library` is "diffusers" or "transformers" (from
    model_index.json), whose own config class the component's from_pretrained accepts."""
    if library not in ("diffusers", "transformers"):
        raise UsageError(f"--quantize {method}: cannot quantize a component from {library!r} (only diffusers and transformers models)")
    configs = importlib.import_module(library)  # heavy: at load time only
    if method == "nf4":
        import torch  # here, not at the top: importing this module stays light (torch only where a method needs it)

        return configs.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16
        )
    if method not in TORCHAO_CONFIGS:
        raise UsageError(f"unknown --quantize method {method!r} (known: {', '.join(METHODS)})")
    import torchao.quantization  # here, not at the top: torchao is slow to import and noisy on stderr, wanted only when quantizing with it

    return configs.TorchAoConfig(getattr(torchao.quantization, TORCHAO_CONFIGS[method])())


def pipeline_quantization_config(mapping: Mapping[str, str], model_index: Mapping[str, Any], *, compute_dtype: Any = None) -> Any:
    """diffusers' `PipelineQuantizationConfig(quant_mapping=...)` for a resolved mapping, or None when it quantizes
    nothing (diffusers refuses an empty mapping). `compute_dtype` is nf4's matmul dtype (the load dtype; bf16
    if None). Pass it to `from_pretrained(quantization_config=...)` after `check_runnable`."""
    mapping = {component: method for component, method in mapping.items() if method != "none"}
    if not mapping:
        return None
    if DENOISERS_KEY in mapping:
        raise ValueError("resolve_components() first: the mapping still names 'the denoisers'")
    import diffusers  # here, not at the top: importing this module stays light (torch only where a method needs it)

    components = _components(model_index)
    quant_mapping = {}
    for component, method in mapping.items():
        if component not in components:
            raise UsageError(f"--quantize {component}={method}: no component {component!r} (it has: {', '.join(sorted(components))})")
        quant_mapping[component] = component_config(method, components[component][0], compute_dtype=compute_dtype)
    return diffusers.PipelineQuantizationConfig(quant_mapping=quant_mapping)


# --------------------------------------------------------------------------------------
# sizes: what a component takes once quantized (--dry-run, --offload auto)
# --------------------------------------------------------------------------------------


def bytes_per_weight(method: str) -> float:
    """Bytes a quantized Linear weight takes, scales aside: 1 at 8 bits; nf4 half, plus
    bitsandbytes' float32 absmax per block of NF4_BLOCK weights."""
    return 0.5 + 4 / NF4_BLOCK if method == "nf4" else 1.0


def quantized_weight_bytes(shape: tuple[int, int], method: str) -> int:
    """Bytes one Linear weight of `shape` (out_features, in_features) takes once quantized: int8 and fp8 one
    byte a weight plus a float32 scale a row (fp8-dynamic: one a tensor); nf4 half a byte plus a float32
    absmax per 64 weights (bitsandbytes also keeps a few dozen bytes of state per layer, not counted)."""
    rows, columns = shape
    count = rows * columns
    if method in ("int8", "int8-dynamic", "fp8"):
        return count + 4 * rows
    if method == "fp8-dynamic":
        return count + 4
    if method == "nf4":
        return (count + 1) // 2 + 4 * math.ceil(count / NF4_BLOCK)
    raise ValueError(f"no quantized size for method {method!r}")


def quantized_bytes(component_bytes: int, linear_shapes: Iterable[tuple[int, int]], method: str, *, weight_bytes: int = 2) -> int:
    """A component's size once quantized: `component_bytes` unquantized (at the load dtype, whose element
    size is `weight_bytes`), less its quantizable Linear weights (`quantizable_linear_shapes`) at that dtype,
    plus the same weights quantized. Everything else (biases, norms, embeddings, convolutions) is unchanged."""
    if method == "none":
        return component_bytes
    shapes = list(linear_shapes)
    plain = sum(rows * columns for rows, columns in shapes) * weight_bytes
    return component_bytes - plain + sum(quantized_weight_bytes(shape, method) for shape in shapes)


def _skipped(name: str, skip: Iterable[str], library: str) -> bool:
    """Whether the loader leaves module `name` unquantized, by that library's own matching rule."""
    param = f"{name}.weight"
    if library == "diffusers":  # diffusers' torchao/bnb quantizers: `key + "." in param_name or key == param_name`
        return any(key + "." in param or key == param for key in skip)
    # transformers: a key matches from the start up to a module boundary, or as a suffix of the parameter name
    return any(re.match(rf"(?:{key})(?:(?<=\.)|(?=\.|$))", param) or param.endswith(key) for key in skip)


def quantizable_linear_shapes(model: Any) -> list[tuple[int, int]]:
    """(out, in) of each Linear weight that loading with a torchao or bitsandbytes config quantizes, for a model
    built with its real weights or on the meta device (no weights read): a diffusers model's
    `_keep_in_fp32_modules` stay; a transformers model's tied and output embeddings and last layer stay."""
    import torch  # here, not at the top: importing this module stays light (torch only where a method needs it)

    if hasattr(model, "all_tied_weights_keys"):  # transformers 5 PreTrainedModel
        from transformers.quantizers.base import (
            get_keys_to_not_convert,
        )  # here, not at the top: importing this module stays light (torch only where a method needs it)

        keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
        library, skip = "transformers", get_keys_to_not_convert(model) + keep
    else:
        library, skip = "diffusers", list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return [
        tuple(module.weight.shape)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not _skipped(name, skip, library)
    ]
