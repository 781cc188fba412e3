"""The loaded pipelines a process keeps: `obtain_pipeline(settings)` loads the pipeline that
`settings` names, or, in a served job, takes it from the run context's `PipelineCache` (the
server's: vidgen.context), which keeps each for `--keep-alive` (`parse_keep_alive`).

A pipeline is cached under `loading_key(settings)`: everything that changes what loading
does. Generation-only settings (prompt, seed, size, frames, guidance...) are not in it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from vidgen import ui
from vidgen.context import current
from vidgen.engine.acceleration import should_compile
from vidgen.errors import UsageError
from vidgen.settings.grammar import LoraSpec
from vidgen.settings.table import SETTINGS, GenerationSettings

# ---- keep-alive ----

KEEP_FOREVER = -1.0


def parse_keep_alive(text: str) -> float:
    """`5m`, `30s`, `1h`, `90` (seconds), `0` (unload after each job), `-1` (never):
    seconds, or KEEP_FOREVER. Anything else is a usage error."""
    value = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    number, scale = (value[:-1], units[value[-1]]) if value and value[-1] in units else (value, 1)
    try:
        seconds = float(number) * scale
    except ValueError:
        raise UsageError(f"--keep-alive {text!r}: give a duration such as 5m, 30s, 1h, 0 (unload after each job) or -1 (never)") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise UsageError(f"--keep-alive {text!r} is not a finite duration")
    return KEEP_FOREVER if seconds < 0 else seconds


# ---- the pipeline cache ----


class LoadingKey(NamedTuple):
    """What decides how a pipeline is loaded: two jobs with the same key share it. Named, so
    that a field added later cannot shift what the cache reads (the device, the model).
    `values` holds every setting the table marks `loads`, as (name, value) pairs."""

    model: str
    revision: str | None = None
    pipeline: str | None = None
    dtype_explicit: bool = False
    device: str = "cpu"
    values: tuple = ()
    components: tuple = ()  # the preset's [components] (locations.ComponentSpec, hashable)
    stages: tuple = ()  # the preset's [[stages]] (tables.StageSpec): their LoRAs are loaded with the pipeline

    def value(self, name: str) -> Any:
        return dict(self.values).get(name)


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, _hashable(item)) for key, item in value.items()))
    if isinstance(value, LoraSpec):
        return (value.source, value.scale, value.into)
    return value


def loading_key(settings: GenerationSettings) -> LoadingKey:
    """The LoadingKey of a job's settings: the device and compilation as they resolve on
    this machine ("auto" and None name different things on different machines)."""
    from vidgen.engine.devices import (
        resolve_device,
    )  # here, not at the top: `vidgen serve` imports this module and listens before torch loads

    device = resolve_device(settings.device)
    resolved = {
        "device": device,
        "compile": should_compile(settings.compile, device=device, steps=settings.steps, cache=settings.cache, offload=settings.offload),
    }
    values = tuple(
        (setting.name, _hashable(resolved.get(setting.name, getattr(settings, setting.name)))) for setting in SETTINGS if setting.loads
    )
    return LoadingKey(
        settings.location.location,
        settings.revision,
        settings.pipeline_class,
        settings.dtype_explicit,
        device,
        values,
        tuple(settings.components),
        tuple(settings.stages),
    )


@dataclass
class CachedPipeline:
    key: tuple
    loaded: Any  # pipeline.LoadedPipeline
    model: str
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    jobs: int = 0


def _model_bytes(location: str) -> int:
    """The safetensors bytes of a model on disk (local folder or hub cache), 0 if unknown."""
    folder = Path(location)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download  # here, not at the top: `vidgen serve` imports this module (huggingface_hub)

            folder = Path(snapshot_download(location, local_files_only=True))
        except Exception:  # not cached, or not a hub id: no estimate
            return 0
    return sum(path.stat().st_size for path in folder.rglob("*.safetensors") if path.is_file())


class PipelineCache:
    """Loaded pipelines by loading key, each unloaded after `keep_alive` idle seconds
    (0: after each job; KEEP_FOREVER: never). On a GPU, the least recently used ones
    are unloaded first when a new model would not fit in free memory."""

    def __init__(self, keep_alive: float):
        self.keep_alive = keep_alive
        self._entries: dict[tuple, CachedPipeline] = {}
        self._lock = threading.Lock()  # --status reads while the worker changes

    def get(self, settings: GenerationSettings, pull_hint: str | None) -> tuple[Any, bool]:
        """(loaded pipeline, True if it was already loaded)."""
        from vidgen.engine import (
            loading as pipeline_loader,
        )  # here, not at the top: `vidgen serve` imports this module and listens before torch loads

        key = loading_key(settings)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            self._make_room(key)
            loaded = pipeline_loader.load_pipeline(settings, pull_hint=pull_hint)
            entry = CachedPipeline(key, loaded, key.model)
            with self._lock:
                self._entries[key] = entry
            hit = False
        else:
            hit = True
        entry.last_used = time.monotonic()
        entry.jobs += 1
        return entry.loaded, hit

    def touch_all(self) -> None:
        """After a job: its idle time starts now."""
        now = time.monotonic()
        with self._lock:
            for entry in self._entries.values():
                entry.last_used = now

    def _make_room(self, key: tuple, free_bytes: Callable[[str], int] | None = None) -> None:
        """Unload least recently used pipelines on the new one's GPU until its weights (x1.2)
        fit in free memory, or nothing is left to unload. free_bytes(device) defaults to
        torch.cuda.mem_get_info; tests pass their own."""
        device = key.device
        if not device.startswith("cuda") or not self._entries:
            return
        if free_bytes is None:
            import torch  # here, not at the top: `vidgen serve` imports this module and listens before torch loads

            def free_bytes(device: str) -> int:
                return torch.cuda.mem_get_info(torch.device(device))[0]

        needed = _model_bytes(key.model) * 1.2
        with self._lock:
            order = sorted(self._entries.values(), key=lambda entry: entry.last_used)
        for entry in order:
            if free_bytes(device) >= needed:
                return
            ui.info(f"unloading {entry.model} to make room on {device}")
            self._unload(entry.key)

    def _unload(self, key: tuple) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return
        device = entry.loaded.device
        del entry
        gc.collect()
        if str(device).startswith("cuda"):
            import torch  # here, not at the top: `vidgen serve` imports this module and listens before torch loads

            torch.cuda.empty_cache()

    def expire(self) -> list[str]:
        """Unload what has been idle longer than the keep-alive; the models unloaded."""
        if self.keep_alive == KEEP_FOREVER:
            return []
        now = time.monotonic()
        with self._lock:
            stale = [entry for entry in self._entries.values() if now - entry.last_used >= self.keep_alive]
        for entry in stale:
            self._unload(entry.key)
        return [entry.model for entry in stale]

    def clear(self) -> None:
        with self._lock:
            keys = list(self._entries)
        for key in keys:
            self._unload(key)

    def describe(self) -> list[dict[str, Any]]:
        """What is loaded, for `vidgen serve --status`."""
        now = time.monotonic()
        rows = []
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            loaded = entry.loaded
            idle = now - entry.last_used
            rows.append(
                {
                    "model": entry.model,
                    "pipeline": loaded.class_name,
                    "device": loaded.device,
                    "dtype": loaded.dtype,
                    "offload": loaded.offload,
                    "cache": loaded.cache,
                    "compiled": loaded.compiled,
                    "loras": [f"{source}:{scale:g}" + (f"@{into}" if into else "") for source, scale, into in entry.key.value("loras")],
                    "jobs": entry.jobs,
                    "idle_seconds": round(idle, 1),
                    "unloads_in_seconds": None if self.keep_alive == KEEP_FOREVER else round(max(0.0, self.keep_alive - idle), 1),
                }
            )
        return rows


def obtain_pipeline(settings: GenerationSettings, *, pull_hint: str | None = None):
    """The pipeline for `settings`: from the run's cache (a served job's), else loaded now."""
    from vidgen.engine import (
        loading as pipeline_loader,
    )  # here, not at the top: `vidgen serve` imports this module and listens before torch loads

    location = settings.location
    started = time.monotonic()
    cache = current().cache
    if cache is None:
        with ui.status(f"loading {location.location}"):
            loaded = pipeline_loader.load_pipeline(settings, pull_hint=pull_hint)
        hit = False
    else:
        with ui.status(f"loading {location.location}"):
            loaded, hit = cache.get(settings, pull_hint)
    if hit:
        ui.info(f"using {loaded.class_name} from {location.location} on {loaded.device} ({loaded.dtype}), kept loaded by vidgen serve")
    else:
        ui.info(
            f"loaded {loaded.class_name} from {location.location} on {loaded.device} ({loaded.dtype}) in {time.monotonic() - started:.1f}s"
        )
    return loaded
