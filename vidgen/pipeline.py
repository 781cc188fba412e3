"""The one place that loads diffusers pipelines.

`load_pipeline(settings)` turns a model location into a ready pipeline: weights
found (hub cache, local folder or built-in), the preset's class loaded (its folder's
components checked first to serve it), dtype,
scheduler and flow shift, LoRA adapters, device placement or offloading, VAE tiling.
Loading is separate from generating so a batch loads once and generates many times.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen import acceleration, ui
from vidgen.errors import GenerationError, ModelNotAvailableError, UsageError
from vidgen.presets import ModelLocation, resolve_model_location, vidgen_home
from vidgen.settings import GenerationSettings

# Only safetensors are loaded; these other weight formats are never downloaded.
NON_SAFETENSORS_WEIGHTS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.gguf"]


@dataclass
class LoadedPipeline:
    """A pipeline ready to call, and what generate.py needs to know about it."""

    pipe: Any  # a diffusers DiffusionPipeline
    class_name: str
    device: str  # where the computation runs (the offload target with offloading)
    dtype: str
    offload: str
    call_parameters: set[str] = field(default_factory=set)
    cache: str = "none"  # step cache installed on the denoiser
    compiled: bool = False  # repeated blocks compiled (regional compilation)

    def call_defaults(self) -> dict[str, Any]:
        """The pipeline's own defaults for the values an ad-hoc --model leaves open."""
        signature = inspect.signature(type(self.pipe).__call__)
        return {
            name: parameter.default
            for name, parameter in signature.parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }


def _quiet_library_logging() -> None:
    """diffusers/transformers draw their own tqdm bars and warnings; ui.py draws ours."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_device(name: str) -> str:
    """`auto` is CUDA, else Apple MPS, else XPU, else CPU; an absent backend is bad input."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        if hasattr(torch, "xpu") and torch.xpu.is_available():
            return "xpu"
        return "cpu"
    backend = name.split(":")[0]
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "xpu": hasattr(torch, "xpu") and torch.xpu.is_available(),
    }
    if not available.get(backend, False):
        raise UsageError(f"device {name!r} is not available on this machine (torch {torch.__version__})")
    return name


def resolve_dtype(name: str, device: str):
    """`auto`: float32 on CPU (fast and exact there), bfloat16 on GPUs that have it, else float16."""
    import torch

    if name == "auto":
        if device.startswith("cpu"):
            return torch.float32
        if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _dtype_keyword() -> str:
    """diffusers renamed `torch_dtype` to `dtype` (and warns on the old name) after 0.35."""
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def _is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _revision(location: ModelLocation, revision: str | None) -> dict[str, str]:
    """`revision=` for huggingface_hub and diffusers where a hub model has one; a local
    folder has no branches, so nothing."""
    return {"revision": revision} if revision and not location.is_local else {}


def read_model_index(location: ModelLocation, pull_hint: str, revision: str | None = None) -> dict[str, Any]:
    """model_index.json of the model: from its folder, or the hub (cache first).

    Reading this small file first finds a missing model or a wrong pipeline class
    before gigabytes of weights are read.
    """
    if location.is_local:
        folder = Path(location.location)
        if not folder.is_dir():
            if location.kind == "builtin":
                raise ModelNotAvailableError(
                    f"the built-in model has no weights at {folder}; this install is incomplete "
                    "(reinstall vidgen, or choose another --preset or --model)"
                )
            raise UsageError(f"model folder not found: {folder}")
        index_file = folder / "model_index.json"
        if not index_file.is_file():
            raise UsageError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            index_file = Path(hf_hub_download(location.location, "model_index.json", **_revision(location, revision)))
        except GatedRepoError as error:
            raise ModelNotAvailableError(
                f"model {location.location} is gated: accept its licence on huggingface.co and set HF_TOKEN"
            ) from error
        except RepositoryNotFoundError as error:
            raise UsageError(
                f"model {location.location} not found on the Hugging Face Hub (private? set HF_TOKEN)"
            ) from error
        except LocalEntryNotFoundError as error:
            if _is_offline():
                raise ModelNotAvailableError(
                    f"model {location.location} is not downloaded and HF_HUB_OFFLINE is set; "
                    f"download it with network access: {pull_hint}"
                ) from error
            raise ModelNotAvailableError(
                f"cannot reach the Hugging Face Hub to download {location.location}; {pull_hint} once online"
            ) from error
        except RevisionNotFoundError as error:
            raise UsageError(f"model {location.location} has no revision {revision!r} on the Hugging Face Hub") from error
        except EntryNotFoundError as error:  # after LocalEntryNotFoundError, its subclass
            where = f" at revision {revision!r}" if revision else ""
            raise UsageError(f"model {location.location} is not in diffusers layout{where} (no model_index.json)") from error
    try:
        return json.loads(index_file.read_text())
    except (OSError, ValueError) as error:
        raise GenerationError(f"cannot read {index_file}: {error}") from error


def check_pipeline_class(actual: str, expected: str | None, model: str, preset: str) -> None:
    """The model's class must be the preset's, a subclass, or of the same family
    (same diffusers pipelines package, for example Wan's)."""
    if expected is None or actual == expected:
        return
    import diffusers

    actual_class = getattr(diffusers, actual, None)
    expected_class = getattr(diffusers, expected, None)
    if actual_class is not None and expected_class is not None:
        if issubclass(actual_class, expected_class):
            return
        if actual_class.__module__.rsplit(".", 1)[0] == expected_class.__module__.rsplit(".", 1)[0]:
            return
    raise UsageError(
        f"model {model} is a {actual}, but preset {preset} expects a {expected}; "
        "choose the preset that matches the model (vidgen presets)"
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
    import diffusers

    actual_class = getattr(diffusers, actual, None)
    expected_class = getattr(diffusers, expected, None)
    if actual_class is not None and expected_class is not None and issubclass(actual_class, expected_class):
        return None
    return expected


def _takes_image(pipeline_class: Any) -> bool:
    return "image" in inspect.signature(pipeline_class.__call__).parameters


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


def _component_config(location: ModelLocation, component: str, revision: str | None = None) -> dict[str, Any] | None:
    """A component's config.json (a few hundred bytes), or None when it cannot be read:
    the check that wanted it is then skipped and loading reports the real problem."""
    try:
        if location.is_local:
            path = Path(location.location) / component / "config.json"
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(location.location, f"{component}/config.json", **_revision(location, revision)))
        return json.loads(path.read_text())
    except Exception:  # absent, offline, unreadable: not this check's business
        return None


def check_components_serve(model_index: dict[str, Any], location: ModelLocation, expected: str | None, preset: str,
                           revision: str | None = None) -> None:
    """Refuse, before any weights are read, a folder whose components cannot run the
    preset's class: a required component missing, an image-to-video folder under a
    text-to-video preset, or a denoiser with the wrong number of input channels."""
    actual = model_index.get("_class_name")
    if expected is None or not isinstance(actual, str) or class_to_load(actual, expected) is None:
        return
    import diffusers

    expected_class = getattr(diffusers, expected, None)
    actual_class = getattr(diffusers, actual, None)
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
    missing = [name for name in required if not (isinstance(model_index.get(name), list) and model_index[name][-1])]
    if missing:
        raise UsageError(f"model {model} ({actual}) has no {', '.join(missing)}, which preset {preset}'s {expected} needs; {hint}")
    rule = _DENOISER_INPUTS.get(expected)
    if rule is None:
        return
    latent_key, needed_for = rule
    vae, transformer = _component_config(location, "vae", revision), _component_config(location, "transformer", revision)
    if not vae or not transformer or latent_key not in vae or "in_channels" not in transformer:
        return
    needed = needed_for(vae[latent_key], model_index)
    if transformer["in_channels"] not in needed:
        raise UsageError(
            f"model {model} ({actual}) has a transformer with {transformer['in_channels']} input channels; "
            f"preset {preset}'s {expected} needs {' or '.join(map(str, sorted(needed)))}; {hint}"
        )


def _apply_scheduler(pipe: Any, settings: GenerationSettings) -> None:
    """Swap the scheduler class and/or set the flow shift, keeping the model's config."""
    if settings.scheduler is None and settings.flow_shift is None:
        return
    import diffusers

    scheduler_class = type(pipe.scheduler)
    if settings.scheduler is not None:
        scheduler_class = getattr(diffusers, settings.scheduler, None)
        if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
            raise UsageError(f"unknown scheduler {settings.scheduler!r} (a diffusers scheduler class name)")
    overrides = {}
    if settings.flow_shift is not None:
        # UniPC and DPM++ call it flow_shift; FlowMatchEuler calls it shift.
        config_keys = set(inspect.signature(scheduler_class.__init__).parameters)
        shift_key = "flow_shift" if "flow_shift" in config_keys or "shift" not in config_keys else "shift"
        overrides[shift_key] = settings.flow_shift
        if shift_key == "flow_shift" and "use_flow_sigmas" in config_keys:
            overrides["use_flow_sigmas"] = True
            overrides.setdefault("prediction_type", "flow_prediction")
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **overrides)


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _lora_location(source: str) -> str:
    """A file or folder on disk, or a hub id; offline, a hub id becomes its cached folder
    (diffusers cannot guess the weight file's name offline)."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path)
    if not _HUB_ID.match(source) or source.endswith(".safetensors"):
        raise UsageError(f"LoRA not found: {source} (not a file, a folder or a Hugging Face Hub id)")
    if not _is_offline():
        return source
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(source, allow_patterns=["*.safetensors", "*.json"], local_files_only=True)
    except LocalEntryNotFoundError as error:
        raise UsageError(f"cannot load LoRA {source}: not downloaded and HF_HUB_OFFLINE is set") from error


def _lora_misfit(error: BaseException) -> str | None:
    """Why a LoRA's layers do not fit the model, from peft's or torch's message: the usual
    sign of a LoRA made for another model family or size."""
    text = str(error)
    if "not found in the base model" in text:  # peft: none of its target layers exist here
        return "none of its layers are in the model"
    if "size mismatch" in text:  # torch: same layer names, other widths
        return "its layers have other sizes than the model's"
    return None


def _apply_loras(pipe: Any, settings: GenerationSettings) -> None:
    if not settings.loras:
        return
    class_name = type(pipe).__name__
    if not hasattr(pipe, "load_lora_weights"):
        raise UsageError(f"{class_name} does not support LoRA adapters")
    import importlib.util
    import warnings

    if importlib.util.find_spec("peft") is None:
        raise UsageError("--lora needs the peft package: pip install peft")
    import diffusers

    names = []
    for index, lora in enumerate(settings.loras):
        name = f"lora{index}"
        location = _lora_location(lora.source)
        # diffusers logs a failed load as an error before raising it, and peft warns that a
        # second adapter joins the first (intended here): the user gets one line, below.
        verbosity = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity(diffusers.utils.logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe.load_lora_weights(location, adapter_name=name)
        except Exception as error:  # diffusers raises many kinds; the message is what helps
            misfit = _lora_misfit(error)
            if misfit:
                raise UsageError(f"LoRA {lora.source} does not fit {class_name}: {misfit} (a LoRA for another model family or size?)") from error
            text = str(error).strip()
            raise UsageError(f"cannot load LoRA {lora.source}: {text.splitlines()[0] if text else type(error).__name__}") from error
        finally:
            diffusers.utils.logging.set_verbosity(verbosity)
        # A file whose keys name no component of this pipeline loads as nothing, silently.
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise UsageError(f"LoRA {lora.source} does not fit {class_name}: it has no layers for its components (a LoRA for another model family?)")
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in settings.loras])


def _choose_auto_offload(pipe: Any, device: str) -> str:
    """By free memory on the card (the rule itself is acceleration.choose_offload)."""
    import torch

    if not device.startswith("cuda"):
        return "none"
    free_bytes, _ = torch.cuda.mem_get_info(torch.device(device))
    sizes = acceleration.weight_bytes(pipe)
    return acceleration.choose_offload(sum(sizes), max(sizes, default=0), free_bytes, on_cuda=True)


def _place(pipe: Any, device: str, offload: str) -> str:
    if offload == "auto":
        offload = _choose_auto_offload(pipe, device)
    if offload != "none" and device == "cpu":
        ui.warn(f"--offload {offload} has no effect on the CPU; ignored")
        offload = "none"
    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        import torch

        options = dict(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=device.startswith("cuda"),  # overlap transfers with compute
        )
        if hasattr(pipe, "enable_group_offload"):
            pipe.enable_group_offload(**options)
        else:  # older diffusers: the same hook, one component at a time
            from diffusers.hooks import apply_group_offloading

            for component in pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    apply_group_offloading(component, **options)
    return offload


def _missing_library(error: ImportError) -> str:
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


def load_pipeline(settings: GenerationSettings, *, pull_hint: str | None = None) -> LoadedPipeline:
    """Load, check and place the pipeline that `settings` names."""
    location = resolve_model_location(settings.model)
    pull_hint = pull_hint or f"vidgen pull {settings.preset if settings.preset != 'custom' else location.location}"
    model_index = read_model_index(location, pull_hint, settings.revision)
    class_name = model_index.get("_class_name")
    if isinstance(class_name, list):  # custom pipelines name [module, class]
        class_name = class_name[-1]
    # Before any class lookup: importing some diffusers pipelines makes transformers warn
    # (CLIPImageProcessor without torchvision), which would come before an Error line.
    _quiet_library_logging()
    if location.is_local:  # a damaged folder: one line naming the file or component
        from vidgen.model_check import check_model_folder

        check_model_folder(Path(location.location), model_index)
    check_pipeline_class(str(class_name), settings.pipeline_class, location.location, settings.preset)
    check_components_serve(model_index, location, settings.pipeline_class, settings.preset, settings.revision)
    load_name = class_to_load(str(class_name), settings.pipeline_class)

    import torch

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    if device.startswith("cpu") and dtype != torch.float32 and not settings.dtype_explicit:
        # A GPU preset's bf16/fp16 is slow on a CPU (no fast kernels) and fp16 can fail there.
        ui.info(f"using float32 on the CPU instead of the preset's {settings.dtype} (--dtype {settings.dtype} keeps it)")
        dtype = torch.float32
    import diffusers

    pipeline_type = getattr(diffusers, load_name) if load_name else diffusers.DiffusionPipeline
    # Without offloading, weights go from safetensors straight onto the card instead of
    # through CPU memory and a .to() copy. Only plain "cuda": diffusers' pipeline-level
    # device_map takes no index, and a device-mapped pipeline refuses later offloading.
    straight_to_device = device == "cuda" and settings.offload == "none"
    try:
        pipe = pipeline_type.from_pretrained(
            location.location,
            **{_dtype_keyword(): dtype},
            use_safetensors=True,
            trust_remote_code=settings.trust_remote_code,
            local_files_only=_is_offline(),
            **_revision(location, settings.revision),
            **({"device_map": device} if straight_to_device else {}),
        )
    except ImportError as error:
        # A component class needs a library vidgen does not depend on: Kandinsky 5's
        # Qwen2VLProcessor needs torchvision in transformers 5. transformers' own message
        # spans several lines; the class and the library are what the user needs.
        raise GenerationError(f"cannot load {location.location}: {_missing_library(error)}") from error
    except (OSError, ValueError, EnvironmentError) as error:
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        if "safetensors" in str(error).lower():
            raise GenerationError(
                f"cannot load {location.location}: no safetensors weights (vidgen loads only safetensors)"
            ) from error
        if "trust_remote_code" in str(error):
            raise UsageError(f"{location.location} needs its own code to run: pass --trust-remote-code if you trust it") from error
        raise GenerationError(f"cannot load {location.location}: {first_line}") from error
    return prepare_pipeline(pipe, settings, device=device, dtype=dtype, placed=straight_to_device)


def prepare_pipeline(pipe: Any, settings: GenerationSettings, *, device: str, dtype: Any, placed: bool = False) -> LoadedPipeline:
    """Everything after the weights are read: scheduler, LoRA, placement, VAE tiling,
    attention backend, step cache, compilation. benchmarks/bench.py calls it on pipelines
    built from configs, so what it times is exactly vidgen's path."""
    pipe.set_progress_bar_config(disable=True)

    _apply_scheduler(pipe, settings)
    _apply_loras(pipe, settings)
    offload = "none" if placed else _place(pipe, device, settings.offload)
    if device == "cpu":  # PyTorch's own kernel for a video VAE's convolutions is its slowest
        acceleration.use_onednn_conv3d(pipe)
    if settings.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        else:
            ui.warn(f"{type(pipe).__name__} has no tiled VAE; --vae-tiling ignored")
    if settings.attention_backend:
        acceleration.set_attention_backend(pipe, settings.attention_backend)
    acceleration.apply_cache(pipe, settings.cache)
    compiled = False
    denoiser_parameters = acceleration.parameter_count(acceleration.denoiser_of(pipe))
    if acceleration.should_compile(settings.compile, device=device, steps=settings.steps, cache=settings.cache, offload=offload,
                                   denoiser_parameters=denoiser_parameters):
        acceleration.use_persistent_compile_cache(vidgen_home() / "compile-cache")
        # Step-cache hooks run outside the graph (torch.compiler.disable), so with a cache
        # the blocks are compiled with graph breaks allowed.
        compiled = acceleration.compile_denoiser(pipe, fullgraph=settings.cache == "none")
        if compiled:
            ui.info("compiling the denoiser's repeated blocks on first use (cached for later runs; --no-compile skips)")

    return LoadedPipeline(
        pipe=pipe,
        class_name=type(pipe).__name__,
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        offload=offload,
        call_parameters=set(inspect.signature(type(pipe).__call__).parameters),
        cache=settings.cache,
        compiled=compiled,
    )


def download_model(location: ModelLocation, revision: str | None = None) -> str:
    """`vidgen pull`: fetch a hub model's safetensors and configs (at `revision`, a
    branch, tag or commit, where the preset names one) into the HF cache; return the
    folder it is in (a local model is already there)."""
    if location.is_local:
        return location.location
    model = location.location
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if _is_offline():
        raise ModelNotAvailableError(f"cannot download {model}: HF_HUB_OFFLINE is set")
    try:
        return snapshot_download(model, ignore_patterns=NON_SAFETENSORS_WEIGHTS, **_revision(location, revision))
    except GatedRepoError as error:
        raise ModelNotAvailableError(f"model {model} is gated: accept its licence on huggingface.co and set HF_TOKEN") from error
    except RevisionNotFoundError as error:
        raise UsageError(f"model {model} has no revision {revision!r} on the Hugging Face Hub") from error
    except RepositoryNotFoundError as error:
        raise UsageError(f"model {model} not found on the Hugging Face Hub (private? set HF_TOKEN)") from error
    except OSError as error:
        raise ModelNotAvailableError(f"cannot download {model}: {error}") from error
