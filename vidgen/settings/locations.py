"""Where a model's weights are: `ModelLocation` (a hub repository, a local folder or a built-in
model), `resolve_model_location()` (a relative path from the preset's folder, else the current
one) and `ComponentSpec` (a pipeline component from elsewhere than the preset's model).

Below the table of settings (vidgen.settings.table): a run's settings hold the location resolved once,
when they are built, so nothing after re-reads the raw string against another folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "embedded" / "weights"


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelLocation:
    """Where a model's weights are: a hub repository, a local folder or a built-in model."""

    kind: str  # "hub", "local" or "builtin"
    location: str  # hub id, or an absolute folder path
    spec: str  # as written by the user or the preset

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"


def resolve_model_location(spec: str, base_dir: Path | None = None) -> ModelLocation:
    """`builtin:NAME`, a path (absolute, ~, ./ or an existing folder) or a hub id.

    Relative paths are taken from `base_dir` (the preset file's folder) when given,
    else from the current folder. `org/name` is a hub id unless such a folder exists.
    """
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        return ModelLocation("builtin", str(BUILTIN_WEIGHTS_DIR / name), spec)
    expanded = Path(spec).expanduser()
    candidate = expanded if expanded.is_absolute() else (base_dir or Path.cwd()) / expanded
    # A hub id has at most one slash ("org/name"); more, or a leading / ~ ., is a path.
    looks_like_path = spec.startswith(("/", "~", ".")) or spec.count("/") > 1 or "\\" in spec
    if candidate.exists() or looks_like_path or not _HUB_ID.match(spec):
        return ModelLocation("local", str(candidate.resolve()), spec)
    return ModelLocation("hub", spec, spec)


@dataclass(frozen=True)
class ComponentSpec:
    """A pipeline component loaded from elsewhere than the preset's model ([components.NAME])."""

    name: str  # the pipeline's component: transformer, image_encoder, ...
    location: ModelLocation  # hub repository or folder (a relative path is from the preset's folder)
    subfolder: str | None = None
    revision: str | None = None  # of a hub repository
    class_name: str | None = None  # None: the pipeline class's annotation for `name`

    @property
    def where(self) -> str:
        """How messages name it: `lllyasviel/flux_redux_bfl (subfolder image_encoder)`."""
        return self.location.location + (f" (subfolder {self.subfolder})" if self.subfolder else "")

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.location.location, "subfolder": self.subfolder, "revision": self.revision, "class": self.class_name}
