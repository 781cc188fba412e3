"""A preset's TOML tables checked: keys and types (`check_table`), and its [[stages]] (`read_stages`).

Kept apart from vidgen.settings.presets (which finds and reads preset files) so that each stays small;
vidgen.engine.stages runs what [[stages]] describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen.errors import UsageError

# One [[stages]] table: a pipeline call of a staged preset (two-stage LTX: base, latent upsampling,
# refinement). `scale`: its size as a share of the video's (0.5: half); `steps` and `guidance`: its
# own, absent = the command's; `pipeline`: another class, built from the loaded components (the
# latent upsampler), absent = the preset's; `call`: arguments passed as is (denoise_strength, ...).
# `lora`: [[stages.lora]] adapters (source, weight) active in this stage only (LTX-2's distilled refinement);
# `scheduler`: the scheduler's config changed for this stage only (from_config overrides).
STAGE_KEYS = {"name": str, "pipeline": str, "scale": float, "steps": int, "guidance": float, "call": dict, "lora": list, "scheduler": dict}
STAGE_LORA_KEYS = {"source": str, "weight": float}


@dataclass(frozen=True)
class StageSpec:
    """One [[stages]] table (STAGE_KEYS); frozen, with `call` as sorted pairs, so settings stay hashable."""

    name: str
    pipeline: str | None = None
    scale: float = 1.0
    steps: int | None = None
    guidance: float | None = None
    call: tuple = ()
    loras: tuple = ()  # (source, weight) pairs
    scheduler: tuple = ()  # (config key, value) pairs

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pipeline": self.pipeline,
            "scale": self.scale,
            "steps": self.steps,
            "guidance": self.guidance,
            "call": unfrozen(self.call),
            "lora": [{"source": source, "weight": weight} for source, weight in self.loras],
            "scheduler": unfrozen(self.scheduler),
        }


def _frozen(table: dict[str, Any]) -> tuple:
    return tuple(sorted((key, tuple(value) if isinstance(value, list) else value) for key, value in table.items()))


def unfrozen(pairs: tuple) -> dict[str, Any]:
    """A frozen table as the pipeline and JSON take it: lists again."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in pairs}


def check_table(path: Path, table_name: str, table: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown keys and wrong types; ints are accepted where floats are due."""
    where = f"{path}: [{table_name}]" if table_name else f"{path}:"
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise UsageError(f"{where} unknown key(s) {', '.join(unknown)} (allowed: {', '.join(schema)})")
    checked = {}
    for key, value in table.items():
        expected = schema[key]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
            type_name = "number" if isinstance(expected, tuple) else expected.__name__
            raise UsageError(f"{where} {key} must be {type_name}, got {value!r}")
        checked[key] = value
    return checked


def read_stages(path: Path, tables: list[Any]) -> list[StageSpec]:
    """[[stages]] tables, checked like every preset key: at least two, each named once."""
    stages = []
    for table in tables:
        if not isinstance(table, dict):
            raise UsageError(f"{path}: stages must be [[stages]] tables ({', '.join(STAGE_KEYS)}), got {table!r}")
        entry = check_table(path, "[stages]", table, STAGE_KEYS)
        name = entry.get("name", f"stage {len(stages) + 1}")
        if not 0 < entry.get("scale", 1.0) <= 1:
            raise UsageError(f"{path}: [[stages]] {name}: scale must be above 0 and at most 1, got {entry['scale']}")
        if entry.get("steps", 1) < 1:
            raise UsageError(f"{path}: [[stages]] {name}: steps must be at least 1, got {entry['steps']}")
        loras = []
        for lora in entry.get("lora", []):
            lora = check_table(path, f"stages.{name}.lora", lora if isinstance(lora, dict) else {"source": lora}, STAGE_LORA_KEYS)
            local = path.parent / Path(lora["source"]).expanduser()  # relative to the preset, as [[lora]]
            source = str(local.resolve()) if lora["source"].startswith((".", "~")) or local.exists() else lora["source"]
            loras.append((source, lora.get("weight", 1.0)))
        stages.append(
            StageSpec(
                name,
                entry.get("pipeline"),
                entry.get("scale", 1.0),
                entry.get("steps"),
                entry.get("guidance"),
                _frozen(entry.get("call", {})),
                tuple(loras),
                _frozen(entry.get("scheduler", {})),
            )
        )
    if len(stages) == 1 or len({stage.name for stage in stages}) != len(stages):
        raise UsageError(f"{path}: [[stages]] must be two or more, each with its own name")
    if stages and stages[-1].scale != 1.0:
        raise UsageError(f"{path}: the last of [[stages]] makes the video: its scale must be 1")
    return stages
