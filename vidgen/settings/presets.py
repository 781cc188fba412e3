"""Find and read presets: TOML files that describe one model each.

Where presets come from, in the order a name is looked up:
1. a path to a `.toml` file,
2. `$VIDGEN_HOME/presets/NAME.toml` (the user's own; it may shadow a shipped one),
3. the presets shipped with vidgen (`vidgen/presets` in a wheel, `<repo>/presets` in a
   source checkout).

Unknown keys and wrong types are rejected with the file and key named, so a typo in a
preset never silently falls back to a default. The schema is in docs/DESIGN.md.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.environment import variable
from vidgen.errors import UsageError
from vidgen.settings.grammar import EXTRA_TYPES, TRANSFORMERS, LoraSpec

# Model locations live below the table of settings (a run's settings hold one resolved); still named here for their users.
from vidgen.settings.locations import ComponentSpec, ModelLocation, resolve_model_location
from vidgen.settings.preset_tables import StageSpec
from vidgen.settings.preset_tables import check_table as _check_table
from vidgen.settings.preset_tables import read_stages as _read_stages
from vidgen.settings.table import preset_keys

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # vidgen/
FALLBACK_PRESET = "shapes"  # the embedded model: works offline out of the box
TASKS = ("text-to-video", "image-to-video", "video-to-video")
# `vidgen presets --task NAME` takes a task, or "audio" for the presets whose model also
# makes a soundtrack (LTX-2): sound comes with a task rather than being one of its own.
TASK_FILTERS = (*TASKS, "audio")
# What a video-to-video preset's --video is to its output:
# - "edit": the output is the input video changed (its frame count, fitted to the model);
# - "condition": the input conditions the start of an output of --frames frames (LTX-2);
# - "extend": the output is the input video followed by --frames new frames (SkyReels-V2).
VIDEO_ROLES = ("edit", "condition", "extend")

# Allowed keys and their types. `defaults` uses the command-line option names.
TOP_LEVEL_KEYS = {
    "name": str,
    "description": str,
    "model": str,
    "revision": str,  # a branch, tag or commit of the hub repository (its diffusers weights may live on one)
    "pipeline": str,
    "task": str,
    "audio": bool,  # the pipeline returns a soundtrack with the frames
    "mask": bool,  # the pipeline takes --mask (Wan VACE)
    "reference_image": bool,  # --image is a reference image for a video-to-video preset (Wan VACE)
    "video_role": str,  # one of VIDEO_ROLES
    "vram": str,
    "float16": bool,  # false: the model gives black or NaN frames in float16 (--dtype auto then avoids it)
    "defaults": dict,
    "constraints": dict,
    "call": dict,
    "extras": dict,  # checked pipeline parameters (vidgen.settings.extras)
    "lora": list,  # [[lora]] tables: LoRA adapters the model always runs with (LORA_KEYS)
    "components": dict,  # [components.NAME] tables: a component from another repository (COMPONENT_KEYS)
    "stages": list,  # [[stages]] tables: pipeline calls in order, each taking the last one's latents (STAGE_KEYS)
}
# One [[lora]]: its file (a path, from the preset's folder if relative; a hub id; or REPO/FILENAME
# on the hub), its weight, the denoiser it goes into (absent: the pipeline's default, `transformer`;
# options.TRANSFORMERS) and the name --lora-scale calls it by (absent: its file's name).
LORA_KEYS = {"source": str, "weight": float, "into": str, "name": str}
# One [components.NAME]: the pipeline component NAME from another repository or folder than the
# preset's model (FramePack's transformer and SigLIP image encoder), at its subfolder and revision;
# its class is the pipeline's own annotation for NAME unless `class` names another.
COMPONENT_KEYS = {"model": str, "subfolder": str, "revision": str, "class": str}
# What [defaults] may set: the settings the table (vidgen.settings.table) lets a preset set,
# under their command-line names; [extras] takes the pipeline parameters of EXTRA_TYPES.
DEFAULT_KEYS = preset_keys()
CONSTRAINT_KEYS = {
    "frames_step": int,
    "frames_offset": int,
    "size_multiple": int,
    "min_frames": int,
    "max_frames": int,
    "min_width": int,
    "min_height": int,
    "max_width": int,
    "max_height": int,
}


def vidgen_home() -> Path:
    """The user's state and config folder; VIDGEN_HOME moves it (tests use a temp dir)."""
    if variable("VIDGEN_HOME"):
        return Path(variable("VIDGEN_HOME")).expanduser()
    config_root = variable("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_root) / "vidgen"


def user_presets_dir() -> Path:
    return vidgen_home() / "presets"


def shipped_presets_dir() -> Path:
    """`vidgen/presets` inside an installed wheel, else the checkout's `presets/`."""
    in_package = PACKAGE_DIR / "presets"
    if in_package.is_dir():
        return in_package
    return PACKAGE_DIR.parent / "presets"


def default_preset_name() -> str:
    """VIDGEN_PRESET, else `preset = "..."` in $VIDGEN_HOME/config.toml, else shapes."""
    if variable("VIDGEN_PRESET"):
        return variable("VIDGEN_PRESET")
    config_file = vidgen_home() / "config.toml"
    if config_file.is_file():
        config = _read_toml(config_file)
        unknown = set(config) - {"preset"}
        if unknown:
            raise UsageError(f"{config_file}: unknown key(s) {', '.join(sorted(unknown))}")
        if "preset" in config:
            return str(config["preset"])
    return FALLBACK_PRESET


# ---- presets ----


@dataclass
class Constraints:
    """What sizes and frame counts a model takes; absent values mean "anything"."""

    frames_step: int = 1
    frames_offset: int = 0
    size_multiple: int = 1
    min_frames: int = 1
    max_frames: int | None = None
    min_width: int | None = None
    min_height: int | None = None
    max_width: int | None = None
    max_height: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {key: value for key, value in vars(self).items() if value is not None}


@dataclass
class Preset:
    name: str
    model: str  # as written in the file: hub id, path or builtin:NAME
    revision: str | None = None  # of a hub model: branch, tag or commit (None: the default branch)
    pipeline: str | None = None  # expected diffusers pipeline class; None: any
    task: str = "text-to-video"
    audio: bool = False
    mask: bool = False
    reference_image: bool = False
    video_role: str = "edit"
    description: str = ""
    vram: str = ""
    float16: bool = True  # false: known to give black or NaN frames in float16
    defaults: dict[str, Any] = field(default_factory=dict)
    constraints: Constraints = field(default_factory=Constraints)
    call: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    loras: list[LoraSpec] = field(default_factory=list)  # [[lora]]: before any --lora
    components: dict[str, ComponentSpec] = field(default_factory=dict)  # [components.NAME]: from other repositories
    stages: list[StageSpec] = field(default_factory=list)  # [[stages]]: empty for one pipeline call
    source: Path | None = None  # the TOML file; None for the ad-hoc preset of --model

    @property
    def task_label(self) -> str:
        """The task as listed: `text-to-video`, or `text-to-video+audio` for a model with sound."""
        return f"{self.task}+audio" if self.audio else self.task

    def has_task(self, name: str) -> bool:
        """Whether `vidgen presets --task NAME` lists this preset (NAME from TASK_FILTERS)."""
        return self.audio if name == "audio" else self.task == name

    def model_location(self) -> ModelLocation:
        base_dir = self.source.parent if self.source else None
        return resolve_model_location(self.model, base_dir)

    @classmethod
    def for_model(cls, model: str) -> Preset:
        """The preset used for `--model X` when no preset names X: the pipeline's own defaults."""
        return cls(name="custom", model=model, description=f"ad-hoc preset for {model}")

    def as_dict(self) -> dict[str, Any]:
        """The preset as resolved: model location absolute for local/builtin models."""
        return {
            "name": self.name,
            "description": self.description,
            "model": self.model_location().location,
            "revision": self.revision,
            "pipeline": self.pipeline,
            "task": self.task,
            "audio": self.audio,
            "mask": self.mask,
            "reference_image": self.reference_image,
            "video_role": self.video_role,
            "vram": self.vram,
            "float16": self.float16,
            "defaults": dict(self.defaults),
            "constraints": self.constraints.as_dict(),
            "call": dict(self.call),
            "extras": dict(self.extras),
            "loras": [{"source": lora.source, "weight": lora.scale, "into": lora.into, "name": lora.label} for lora in self.loras],
            "components": {name: component.as_dict() for name, component in self.components.items()},
            "stages": [stage.as_dict() for stage in self.stages],
            "source": str(self.source) if self.source else None,
        }


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML ({error})") from error
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from error


def _read_sigmas(path: Path, defaults: dict[str, Any]) -> None:
    """[defaults] sigmas: a fixed schedule (numbers from 1 down, above 0, before the flow shift)."""
    sigmas = defaults.get("sigmas")
    if sigmas is None:
        return
    if not sigmas or any(isinstance(value, bool) or not isinstance(value, (int, float)) for value in sigmas):
        raise UsageError(f"{path}: [defaults] sigmas must be a list of numbers, got {sigmas!r}")
    if not all(0 < value <= 1 for value in sigmas) or any(a <= b for a, b in zip(sigmas, sigmas[1:])):
        raise UsageError(f"{path}: [defaults] sigmas must fall from at most 1 to above 0, got {sigmas!r}")
    defaults["sigmas"] = [float(value) for value in sigmas]


def _read_loras(path: Path, tables: list[Any]) -> list[LoraSpec]:
    """[[lora]] tables, checked like every preset key; a relative path is from the preset's folder."""
    loras = []
    for table in tables:
        if not isinstance(table, dict):
            raise UsageError(f"{path}: lora must be [[lora]] tables (source, weight, into, name), got {table!r}")
        entry = _check_table(path, "[lora]", table, LORA_KEYS)
        if "source" not in entry:
            raise UsageError(f"{path}: [[lora]] missing key source")
        into = entry.get("into")
        if into is not None and into not in TRANSFORMERS:
            raise UsageError(f"{path}: [[lora]] into must be one of {', '.join(TRANSFORMERS)}, got {into!r}")
        source = entry["source"]
        local = path.parent / Path(source).expanduser()
        if source.startswith((".", "~")) or local.exists():  # else a hub id or REPO/FILENAME, as written
            source = str(local.resolve())
        name = entry.get("name")
        if name is not None and name in {lora.name for lora in loras}:
            raise UsageError(f"{path}: two [[lora]] are named {name!r} (--lora-scale NAME=SCALE tells them apart by name)")
        loras.append(LoraSpec(source, entry.get("weight", 1.0), into, name))
    return loras


def _read_components(path: Path, tables: dict[str, Any]) -> dict[str, ComponentSpec]:
    """[components.NAME] tables, checked like every preset key."""
    components = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(f"{path}: components.{name} must be a table (model, subfolder, revision, class), got {table!r}")
        entry = _check_table(path, f"components.{name}", table, COMPONENT_KEYS)
        if "model" not in entry:
            raise UsageError(f"{path}: [components.{name}] missing key model")
        location = resolve_model_location(entry["model"], path.parent)
        components[name] = ComponentSpec(name, location, entry.get("subfolder"), entry.get("revision"), entry.get("class"))
    return components


# Presets read, by file and its size and modification time: `--model X` looks through every preset
# for the one made for X, and reading the 52 shipped files took about half of a whole `vidgen` call
# on the fake pipeline. A file changed on disk (a server running for days) is read again.
_read: dict[tuple[Path, int, int], Preset] = {}


def read_preset(path: Path) -> Preset:
    """A preset file, read and checked (once per version of the file: the Preset is not changed by its users)."""
    path = path.resolve()
    try:
        status = path.stat()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from error
    key = (path, status.st_mtime_ns, status.st_size)
    if key not in _read:
        _read[key] = _read_preset(path)
    return _read[key]


def _read_preset(path: Path) -> Preset:
    data = _check_table(path, "", _read_toml(path), TOP_LEVEL_KEYS)
    if "model" not in data:
        raise UsageError(f"{path}: missing key model")
    task = data.get("task", "text-to-video")
    if task not in TASKS:
        raise UsageError(f"{path}: task must be one of {', '.join(TASKS)}, got {task!r}")
    defaults = _check_table(path, "defaults", data.get("defaults", {}), DEFAULT_KEYS)
    _read_sigmas(path, defaults)
    extras = _check_table(path, "extras", data.get("extras", {}), EXTRA_TYPES)
    video_role = data.get("video_role", "edit")
    if video_role not in VIDEO_ROLES:
        raise UsageError(f"{path}: video_role must be one of {', '.join(VIDEO_ROLES)}, got {video_role!r}")
    constraints = _check_table(path, "constraints", data.get("constraints", {}), CONSTRAINT_KEYS)
    for key, value in constraints.items():
        if value < (0 if key == "frames_offset" else 1):
            raise UsageError(f"{path}: [constraints] {key} must be positive, got {value}")
    return Preset(
        name=data.get("name", path.stem),
        model=data["model"],
        revision=data.get("revision"),
        pipeline=data.get("pipeline"),
        task=task,
        audio=data.get("audio", False),
        mask=data.get("mask", False),
        reference_image=data.get("reference_image", False),
        video_role=video_role,
        description=data.get("description", ""),
        vram=data.get("vram", ""),
        float16=data.get("float16", True),
        defaults=defaults,
        constraints=Constraints(**constraints),
        call=dict(data.get("call", {})),
        extras=extras,
        loras=_read_loras(path, data.get("lora", [])),
        components=_read_components(path, data.get("components", {})),
        stages=_read_stages(path, data.get("stages", [])),
        source=path,
    )


def _preset_files() -> dict[str, Path]:
    """Name -> file; the user's folder shadows the shipped presets."""
    files: dict[str, Path] = {}
    for folder in (shipped_presets_dir(), user_presets_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                files[path.stem] = path
    return files


def load_preset(name_or_path: str) -> Preset:
    """A preset by name, or from a `.toml` path."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UsageError(f"preset file not found: {path}")
        return read_preset(path)
    files = _preset_files()
    if name_or_path not in files:
        known = ", ".join(sorted(files)) or "none"
        raise UsageError(f"unknown preset {name_or_path!r} (known: {known})")
    return read_preset(files[name_or_path])


def list_presets() -> tuple[list[Preset], list[str]]:
    """Every readable preset, and one problem line for each unreadable file."""
    presets, problems = [], []
    for path in _preset_files().values():
        try:
            presets.append(read_preset(path))
        except UsageError as error:
            problems.append(str(error))
    return sorted(presets, key=lambda preset: preset.name), problems


def find_preset_for_model(model: str) -> Preset | None:
    """The preset whose model is `model` (same hub id or same folder), if any."""
    wanted = resolve_model_location(model)
    presets, _ = list_presets()
    for preset in presets:
        if preset.model_location().location == wanted.location:
            return preset
    return None


def choose_preset(preset: str | None, model: str | None) -> Preset:
    """--preset wins; --model alone uses the preset made for that model, else an ad-hoc
    one; neither uses the default preset (VIDGEN_PRESET, config file, shapes)."""
    if preset:
        return load_preset(preset)
    if model:
        return find_preset_for_model(model) or Preset.for_model(model)
    return load_preset(default_preset_name())
