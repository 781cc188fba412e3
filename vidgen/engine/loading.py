"""The one place that loads diffusers pipelines.

`load_pipeline(settings)` turns a model location into a ready pipeline: weights found (hub cache,
local folder or built-in), the preset's class loaded (its folder's components checked first to
serve it), dtype, scheduler and flow shift, LoRA adapters, device placement or offloading, VAE
tiling; `load_vae` only a model's VAE (`vidgen decode`). A batch loads once, generates many times.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import diffusers
import torch
import transformers
from diffusers.hooks import apply_group_offloading

from vidgen import ui
from vidgen.engine import acceleration, checkpoints, parallel, quantize, sampling
from vidgen.engine import components as other_repositories
from vidgen.engine.devices import resolve_device, resolve_dtype, run_dtype
from vidgen.engine.hub import component_config, config_folder, local_only, read_model_index, revision_argument
from vidgen.engine.lora import apply_loras, check_targets
from vidgen.engine.model_check import (
    LAST_IMAGE_RULES,
    check_components_serve,
    check_extras_taken,
    check_model_folder,
    check_pipeline_class,
    class_to_load,
    last_image_problem,
    missing_library,
)
from vidgen.errors import GenerationError, UsageError, VidgenError, first_line
from vidgen.families import helios
from vidgen.settings.grammar import TRANSFORMERS, parse_quantize
from vidgen.settings.locations import resolve_model_location
from vidgen.settings.presets import vidgen_home
from vidgen.settings.table import GenerationSettings


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
    parallel: str | None = None  # the denoiser's context parallelism as diffusers holds it (--parallel)
    extra_components: dict[str, Any] = field(default_factory=dict)  # [components] of a stage's pipeline (the latent upsampler)
    stage_pipelines: dict[str, Any] = field(default_factory=dict)  # class name -> a stage's pipeline, built once (vidgen.engine.stages)

    def call_defaults(self) -> dict[str, Any]:
        """The pipeline's own defaults for the values an ad-hoc --model leaves open."""
        signature = inspect.signature(type(self.pipe).__call__)
        return {
            name: parameter.default for name, parameter in signature.parameters.items() if parameter.default is not inspect.Parameter.empty
        }


def _quiet_library_logging() -> None:
    """diffusers/transformers draw their own tqdm bars and warnings; ui.py draws ours."""
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def apply_scheduler(pipe: Any, settings: GenerationSettings) -> None:
    """Swap the scheduler class and/or set the flow shift, keeping the model's config; a
    preset's fixed sigmas and stochastic sampling (a distilled model's sampler: vidgen.engine.sampling)."""
    if (
        settings.scheduler is None
        and settings.flow_shift is None
        and not settings.sigmas
        and settings.stochastic_sampling is None
        and settings.timestep_spacing is None
    ):
        return

    scheduler_class = type(pipe.scheduler)
    if settings.scheduler is not None:
        scheduler_class = getattr(diffusers, settings.scheduler, None)
        if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
            raise UsageError(f"unknown scheduler {settings.scheduler!r} (a diffusers scheduler class name)")
    overrides = sampling.stochastic_overrides(scheduler_class, settings.stochastic_sampling)
    if settings.flow_shift is not None:
        # UniPC and DPM++ call it flow_shift; FlowMatchEuler calls it shift.
        config_keys = set(inspect.signature(scheduler_class.__init__).parameters)
        shift_key = "flow_shift" if "flow_shift" in config_keys or "shift" not in config_keys else "shift"
        overrides[shift_key] = settings.flow_shift
        if shift_key == "flow_shift" and "use_flow_sigmas" in config_keys:
            overrides["use_flow_sigmas"] = True
            overrides.setdefault("prediction_type", "flow_prediction")
    if settings.timestep_spacing is not None:
        overrides["timestep_spacing"] = settings.timestep_spacing
    scheduler = scheduler_class.from_config(pipe.scheduler.config, **overrides)
    if settings.sigmas:
        sampling.fix_sigmas(scheduler, settings.sigmas)
    if settings.stochastic_sampling:
        sampling.seed_step_noise(scheduler)
    pipe.scheduler = scheduler


_NO_SECOND_EXPERT = "--boundary-ratio: {} here has no second expert (transformer_2); only Wan 2.2 A14B switches between two"


def _set_boundary(pipe: Any, ratio: float | None) -> None:
    """Where Wan 2.2 A14B's experts hand over: diffusers' Wan pipelines read `config.boundary_ratio`
    at every call (t >= ratio x num_train_timesteps runs `transformer`, the rest `transformer_2`)."""
    if ratio is None:
        return
    if getattr(pipe, "transformer_2", None) is None or "boundary_ratio" not in pipe.config:
        raise UsageError(_NO_SECOND_EXPERT.format(type(pipe).__name__))
    pipe.register_to_config(boundary_ratio=ratio)


def _choose_auto_offload(pipe: Any, device: str) -> str:
    """By free memory on the card (the rule itself is acceleration.choose_offload)."""

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
        options = dict(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=device.startswith("cuda"),  # overlap transfers with compute
        )
        if hasattr(pipe, "enable_group_offload"):
            pipe.enable_group_offload(**options)
        else:  # older diffusers: the same hook, one component at a time
            for component in pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    apply_group_offloading(component, **options)
    return offload


def _check_files_and_quantization(
    files: dict[str, str], quantization: dict[str, str], model_index: dict[str, Any], elsewhere: dict[str, Any] | None = None
) -> None:
    """Before loading: each file replaces a denoiser the model has, and is not also quantized;
    a component of the preset's [components] is neither (it comes whole from its repository)."""
    for name in sorted((set(files) | set(quantization)) & set(elsewhere or {})):
        flag = f"--{name.replace('_', '-')}" if name in files else "--quantize"
        raise UsageError(
            f"{flag} applies to {name}, which this preset loads whole from {elsewhere[name].where} ([components]); "
            "name other components, or use a preset of one repository"
        )
    for name in files:
        if not (isinstance(model_index.get(name), list) and model_index[name][-1]):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag}: {model_index.get('_class_name')} has no {name} (only Wan 2.2 A14B has a second expert)")
        if name in quantization:
            raise UsageError(
                f"--quantize applies to {name}, which --{name.replace('_', '-')} loads from a file: quantize the file "
                f"itself (a GGUF file is quantized already) or name other components (e.g. --quantize text_encoder=int8)"
            )


def _single_file_component(name: str, spec: str, location, model_index: dict[str, Any], revision: str | None, dtype: Any) -> Any:
    """A denoiser from one file, checked against and built with the preset model's own config."""
    transformer_class = model_index[name][-1]
    folder = config_folder(location, name, revision)
    with ui.status(f"loading {name} from {Path(spec).name}"):
        return checkpoints.load_transformer(spec, transformer_class=transformer_class, config_folder=folder, subfolder=name, dtype=dtype)


def check_parallel(settings: GenerationSettings, processes: int) -> None:
    """Everything about --parallel known before the weights are read: the degrees against
    the group, and the denoisers' classes, heads (from their configs) and device."""
    ulysses, ring = parallel.degrees(settings.parallel, processes)
    if settings.stages or settings.components:
        # Untried: stages at other sizes (whose tokens must divide too) and denoisers from other repositories.
        raise UsageError(f"--parallel does not run presets with [[stages]] or [components] yet ({settings.preset})")
    location = settings.location
    model_index = read_model_index(location, f"vidgen pull {location.location}", settings.revision)
    denoisers = {
        name: entry[1] for name in TRANSFORMERS if isinstance(entry := model_index.get(name), list) and len(entry) == 2 and entry[1]
    }
    heads = {name: (component_config(location, name, settings.revision) or {}).get("num_attention_heads") for name in denoisers}
    parallel.check_model(
        settings.parallel,
        ulysses,
        ring,
        pipeline_class=str(model_index.get("_class_name")),
        denoisers=denoisers,
        heads=heads,
        device=resolve_device(settings.device),
        settings_cache=settings.cache,
    )


def check_last_image(settings: GenerationSettings) -> None:
    """--last-image against the model's class and configs (model_check.last_image_problem) before
    any weights are read: a model that cannot take one, or that needs one (Wan FLF2V). A model not
    on disk yet is left to loading; generate checks again on the loaded pipeline."""
    if not settings.last_image and settings.pipeline_class is not None and settings.pipeline_class not in LAST_IMAGE_RULES:
        return
    location = settings.location
    try:
        model_index = read_model_index(location, "", settings.revision)
    except VidgenError:
        return
    _quiet_library_logging()  # before the class lookups, as in load_pipeline
    actual = model_index.get("_class_name")
    actual = str(actual[-1] if isinstance(actual, list) else actual)
    problem = last_image_problem(
        class_to_load(actual, settings.pipeline_class) or actual,
        given=bool(settings.last_image),
        model=f"model {location.location}",
        model_index=model_index,
        transformer=component_config(location, "transformer", settings.revision),
    )
    if problem:
        raise UsageError(problem)


def load_pipeline(settings: GenerationSettings, *, pull_hint: str | None = None) -> LoadedPipeline:
    """Load, check and place the pipeline that `settings` names."""
    location = settings.location
    pull_hint = pull_hint or f"vidgen pull {settings.preset if settings.preset != 'custom' else location.location}"
    model_index = read_model_index(location, pull_hint, settings.revision)
    class_name = model_index.get("_class_name")
    if isinstance(class_name, list):  # custom pipelines name [module, class]
        class_name = class_name[-1]
    # Before any class lookup: importing some diffusers pipelines makes transformers warn
    # (CLIPImageProcessor without torchvision), which would come before an Error line.
    _quiet_library_logging()
    if location.is_local:  # a damaged folder: one line naming the file or component
        check_model_folder(Path(location.location), model_index)
    check_pipeline_class(str(class_name), settings.pipeline_class, location.location, settings.preset)
    elsewhere = {spec.name: spec for spec in settings.components}  # the preset's [components]
    check_components_serve(model_index, location, settings.pipeline_class, settings.preset, settings.revision, provided=set(elsewhere))
    other_repositories.check_available(settings.components, pull_hint)
    load_name = class_to_load(str(class_name), settings.pipeline_class)
    check_extras_taken(load_name or str(class_name), settings.extras)
    quantization = quantize.resolve_components(parse_quantize(settings.quantize), model_index) if settings.quantize else {}
    files = {name: getattr(settings, name) for name in TRANSFORMERS if getattr(settings, name)}
    _check_files_and_quantization(files, quantization, model_index, elsewhere)
    check_targets(settings.loras, model_index)
    if settings.boundary_ratio is not None and not (
        isinstance(model_index.get("transformer_2"), list) and model_index["transformer_2"][-1]
    ):
        raise UsageError(_NO_SECOND_EXPERT.format(class_name))

    device = resolve_device(settings.device)
    dtype = run_dtype(settings, device)
    if dtype != resolve_dtype(settings.dtype, device) and device.startswith("cpu"):
        ui.info(f"using float32 on the CPU instead of the preset's {settings.dtype} (--dtype {settings.dtype} keeps it)")
    elif dtype != resolve_dtype(settings.dtype, device):
        ui.info(f"using float32: {settings.preset} gives black or NaN frames in float16, and this card has no bfloat16")
    quantize.check_runnable(quantization, device)  # before any weights are read
    components = {name: _single_file_component(name, spec, location, model_index, settings.revision, dtype) for name, spec in files.items()}
    classes = [settings.pipeline_class, *(stage.pipeline for stage in settings.stages if stage.pipeline)]
    elsewhere_loaded = other_repositories.load_components(settings.components, classes, dtype)
    # A [components] entry the pipeline's class does not take is for a stage's pipeline (the latent upsampler).
    pipeline_for = getattr(diffusers, load_name or str(class_name), None)
    takes = set(inspect.signature(pipeline_for.__init__).parameters) if pipeline_for else set(elsewhere_loaded)
    extra = {name: component for name, component in elsewhere_loaded.items() if name not in takes}
    components.update({name: component for name, component in elsewhere_loaded.items() if name in takes})

    pipeline_type = getattr(diffusers, load_name) if load_name else diffusers.DiffusionPipeline
    if components and pipeline_type is diffusers.DiffusionPipeline:
        # DiffusionPipeline.from_pretrained drops components passed in (diffusers 0.42): the folder's own class keeps them.
        pipeline_type = getattr(diffusers, str(class_name), pipeline_type)
    # Without offloading, weights go from safetensors straight onto the card instead of
    # through CPU memory and a .to() copy. Only plain "cuda": diffusers' pipeline-level
    # device_map takes no index, and a device-mapped pipeline refuses later offloading.
    # A component loaded from a single file is already in memory: the whole pipeline moves later.
    straight_to_device = device == "cuda" and settings.offload == "none" and not components
    try:
        pipe = pipeline_type.from_pretrained(
            location.location,
            **components,
            quantization_config=quantize.pipeline_quantization_config(quantization, model_index, compute_dtype=dtype),
            **{checkpoints.dtype_keyword(): dtype},
            use_safetensors=True,
            trust_remote_code=settings.trust_remote_code,
            local_files_only=local_only(),
            **revision_argument(location, settings.revision),
            **({"device_map": device} if straight_to_device else {}),
        )
    except ImportError as error:
        # A component class needs a library vidgen does not depend on: Kandinsky 5's
        # Qwen2VLProcessor needs torchvision in transformers 5. transformers' own message
        # spans several lines; the class and the library are what the user needs.
        raise GenerationError(f"cannot load {location.location}: {missing_library(error)}") from error
    except (OSError, ValueError) as error:
        if "safetensors" in str(error).lower():
            raise GenerationError(f"cannot load {location.location}: no safetensors weights (vidgen loads only safetensors)") from error
        if "trust_remote_code" in str(error):
            raise UsageError(f"{location.location} needs its own code to run: pass --trust-remote-code if you trust it") from error
        raise GenerationError(f"cannot load {location.location}: {first_line(error)}") from error
    loaded = prepare_pipeline(pipe, settings, device=device, dtype=dtype, placed=straight_to_device)
    loaded.extra_components = {
        name: component.to(device) if isinstance(component, torch.nn.Module) else component for name, component in extra.items()
    }
    return loaded


def prepare_pipeline(pipe: Any, settings: GenerationSettings, *, device: str, dtype: Any, placed: bool = False) -> LoadedPipeline:
    """Everything after the weights are read: scheduler, LoRA, placement, VAE tiling,
    attention backend, step cache, compilation. benchmarks/bench.py calls it on pipelines
    built from configs, so what it times is exactly vidgen's path."""
    pipe.set_progress_bar_config(disable=True)

    apply_scheduler(pipe, settings)
    helios.mend(pipe)  # Helios' pyramid noise at the shipped gamma: a float64 factor (vidgen.families.helios)
    _set_boundary(pipe, settings.boundary_ratio)
    apply_loras(pipe, settings)
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
    if settings.parallel:  # after the backend, which must support it; before compiling
        parallel.enable(pipe, settings.parallel)
    acceleration.apply_cache(pipe, settings.cache)
    compiled = False
    denoiser_parameters = acceleration.parameter_count(acceleration.denoiser_of(pipe))
    if acceleration.should_compile(
        settings.compile,
        device=device,
        steps=settings.steps,
        cache=settings.cache,
        offload=offload,
        denoiser_parameters=denoiser_parameters,
    ):
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
        parallel=parallel.describe(pipe),
    )


def load_vae(model: str, *, revision: str | None, dtype_name: str, device_name: str = "auto", tiling: bool = False) -> Any:
    """Only the VAE of a model, as `load_pipeline` would have loaded and placed it (its dtype,
    the CPU's oneDNN convolutions, tiling): `vidgen decode` writes the frames the run would have."""
    location = resolve_model_location(model)
    model_index = read_model_index(location, f"vidgen pull {location.location}", revision)
    entry = model_index.get("vae")
    vae_class = getattr(diffusers, entry[-1], None) if isinstance(entry, list) and entry and entry[-1] else None
    if vae_class is None:
        raise GenerationError(f"{location.location} has no VAE that diffusers knows ({entry})")
    device = resolve_device(device_name)
    _quiet_library_logging()
    try:
        vae = vae_class.from_pretrained(
            location.location,
            subfolder="vae",
            **{checkpoints.dtype_keyword(): resolve_dtype(dtype_name, device)},
            use_safetensors=True,
            local_files_only=local_only(),
            **revision_argument(location, revision),
        )
    except (OSError, ValueError) as error:
        raise GenerationError(f"cannot load the VAE of {location.location}: {first_line(error)}") from error
    vae.to(device).eval()
    if device == "cpu":
        acceleration.use_onednn_conv3d(SimpleNamespace(components={"vae": vae}))
    if tiling:
        vae.enable_tiling()
    return vae
