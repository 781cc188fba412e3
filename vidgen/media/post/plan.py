"""What to do after the decode: the steps of `--interpolate N` and `--upscale N`, their
methods and model files, and the checks of those files.

The settings table (vidgen.settings.table) imports this module for its limits and checks, and
`vidgen --help` imports the table: nothing heavy here (the checks import torch inside).

Frame counts: `--interpolate N` on n frames at F fps gives N x n frames at N x F fps, so
the duration (n / F) and the sound are kept. Input frame i stays frame N x i; the N - 1
frames after it are made between it and frame i + 1; after the last frame, which has no
next one, it is held N - 1 more times.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FACTOR = 8  # 16 -> 128 fps, 480p -> 4K: anything beyond is a typo
INTERPOLATION_METHODS = ("minterpolate", "blend", "repeat")  # and "rife", chosen by --interpolate-model
DEFAULT_INTERPOLATION = "minterpolate"  # the best of the three on real footage (docs/benchmarks.md)
MODEL_SUFFIXES = (".pth", ".pt", ".pkl", ".safetensors")


@dataclass(frozen=True)
class Step:
    """One step: `interpolate` (method minterpolate, blend, repeat or rife) or `upscale`
    (lanczos or model); `factor` 0 for an upscaler model means its own scale."""

    kind: str
    factor: int
    method: str
    model: str | None = None


@dataclass(frozen=True)
class PostPlan:
    steps: tuple[Step, ...] = ()

    @classmethod
    def of(cls, values: Any) -> PostPlan:
        """The plan of a settings object or a dict with the table's names (interpolate,
        interpolate_method, interpolate_model, upscale, upscale_model); absent means none.

        A model file chooses the learned method; without a factor it runs at its own (RIFE
        2x, an upscaler its scale). A learned upscaler runs before interpolation (it costs
        the most per frame, so it sees n frames, not N x n); Lanczos runs after it."""
        get = values.get if isinstance(values, dict) else lambda name: getattr(values, name, None)
        interpolate, upscale = get("interpolate"), get("upscale")
        rife, upscaler = get("interpolate_model"), get("upscale_model")
        steps = []
        if rife or (interpolate or 1) > 1:
            method = "rife" if rife else get("interpolate_method") or DEFAULT_INTERPOLATION
            steps.append(Step("interpolate", interpolate or 2, method, rife))
        if upscaler:
            steps.insert(0, Step("upscale", upscale or 0, "model", upscaler))
        elif (upscale or 1) > 1:
            steps.append(Step("upscale", upscale, "lanczos"))
        return cls(tuple(steps))

    @property
    def frame_factor(self) -> int:
        return next((step.factor for step in self.steps if step.kind == "interpolate"), 1)


RIFE_FACTORS = (2, 4, 8)  # its IFNet makes midpoints: 4x and 8x by halving again


def plan_problem(values: Any) -> str | None:
    """What is wrong with the settings together (settings.validate, vidgen post), or None."""
    for step in PostPlan.of(values).steps:
        if step.method == "rife" and step.factor not in RIFE_FACTORS:
            return f"RIFE makes midpoints: --interpolate 2, 4 or 8 with --interpolate-model, not {step.factor}"
    return None


# ---- the checks the settings table runs (settings.validate), before any weights load ----

_checked: dict[tuple, str | None] = {}  # (flag, path, size, mtime) -> problem: a batch checks each line


def file_problem(flag: str, value: Any, check) -> str | None:
    """What is wrong with `value` as `flag`'s model file, or None; `check(path)` reads a file that is there."""
    if value is None:
        return None
    try:
        path = Path(os.path.expanduser(str(value)))
        found = path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long: no file of that name
        found = False
    if not found:
        return f"{flag} {value}: no such file"
    if path.suffix.lower() not in MODEL_SUFFIXES:
        return f"{flag} {value}: not a model file (use a {', '.join(MODEL_SUFFIXES)} file)"
    stat = path.stat()
    key = (flag, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _checked:
        problem = check(path)
        _checked[key] = f"{flag} {value}: {problem}" if problem else None
    return _checked[key]


def interpolate_model_problem(value: Any) -> str | None:
    """What is wrong with a RIFE weights file, or None (the file is read, not run)."""

    def check(path: Path) -> str | None:
        from vidgen.media.post.rife import weights_problem  # here, not at the top: torch, only for a file given

        return weights_problem(path)

    return file_problem("--interpolate-model", value, check)


def upscale_model_problem(value: Any) -> str | None:
    """What is wrong with an upscaler file (spandrel does not know it, not an upscaler), or None."""

    def check(path: Path) -> str | None:
        from vidgen.media.post.upscaler import model_problem  # here, not at the top: torch and spandrel (as above)

        return model_problem(path)

    return file_problem("--upscale-model", value, check)


# ---- what the recipe says ----


def describe_steps(recipe: dict[str, Any] | None) -> list[str]:
    """`vidgen inspect`'s lines for the recipe's post-processing steps."""
    lines = []
    for index, step in enumerate((recipe or {}).get("post") or [], start=1):
        if not isinstance(step, dict):
            continue
        model = step.get("model") or {}
        using = f" ({model.get('file')}, sha256 {str(model.get('sha256'))[:12]}...)" if model else ""
        lines.append(
            f"post {index}: {step.get('step')} x{step.get('factor')} by {step.get('method')}{using} -> "
            f"{step.get('frames')} frames, {step.get('width')}x{step.get('height')}, {step.get('fps')} fps"
        )
    return lines


def file_fields(recipe: dict[str, Any], fps: float) -> dict[str, Any]:
    """Frames, fps, width and height of the written file: the last step's, else the decode's."""
    last = (recipe.get("post") or [None])[-1]
    source = last if isinstance(last, dict) else {**recipe, "fps": fps}
    return {name: source.get(name) for name in ("frames", "fps", "width", "height")}
