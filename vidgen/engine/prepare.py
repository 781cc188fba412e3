"""Flags, a preset and a batch line -> checked GenerationSettings, without torch.

- `prepare_settings()` merges preset and flags, validates, snaps, draws the seed;
- `merge_settings()` is the same for one line of a batch (and for each window's run).

Every bad input fails here, before any weights load. Nothing here imports torch or
diffusers at the top: `--dry-run`'s settings, a batch's pre-checks and `batch --processes`'
plan run without them (a class's call signature is read from diffusers only where
`--extra` or `--last-image` need it; tests/test_layout.py keeps it so).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vidgen import ui
from vidgen.engine import stages
from vidgen.engine.model_check import check_extras_taken, last_image_problem
from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError
from vidgen.media.conditioning import image_size
from vidgen.settings import story
from vidgen.settings.extras import fit_extras
from vidgen.settings.layers import AUTO_SIZE, build_settings, draw_seed, resolve_auto_size, snap_to_constraints, validate
from vidgen.settings.presets import Preset, choose_preset
from vidgen.settings.table import GenerationSettings


def merge_settings(
    chosen: Preset,
    layers: list[dict[str, Any]],
    *,
    model: str | None,
    strict: bool = False,
    env: Environment | None = None,
    video_size: tuple[int, int] | None = None,
) -> tuple[GenerationSettings, list[str]]:
    """Merge `layers` (later wins) over the preset, validate and snap. Returns the
    snapping notes for the caller to show (batch prefixes them with the line). --size auto
    reads the start image's size in `env`'s folder; without `env` (a batch checking its
    flags, before the lines bring their images) it is left to each line. `video_size`: the
    size of a video being continued, which --size auto keeps."""
    settings = build_settings(chosen, layers, model=model)
    validate(settings)
    settings, rule, changes = fit_extras(settings, chosen.constraints, strict=strict)  # extras may change the frame rule
    check_extras_taken(settings.pipeline_class, settings.extras)  # the preset's class; an ad-hoc --model's: when loading
    if settings.last_image and (problem := last_image_problem(settings.pipeline_class, given=True)):
        raise UsageError(f"preset {settings.preset}: {problem}")  # from the class's signature: before anything loads
    if settings.size == AUTO_SIZE and not (settings.image and env is None and video_size is None):
        start = image_size(settings.image, env) if settings.image and video_size is None else None
        settings, notes = resolve_auto_size(settings, rule, image_size=start, video_size=video_size)
        changes += notes
    settings, notes = snap_to_constraints(settings, rule, strict=strict)
    changes += notes
    if settings.guidance is not None and settings.guidance <= 1 and any(layer.get("negative_prompt") for layer in layers):
        # diffusers guides by the negative prompt only in classifier-free guidance, which runs above 1.
        changes.append(
            f"--negative-prompt does nothing at guidance {settings.guidance:g}: there is no unconditional pass for it "
            "to steer (a guidance above 1 uses it; distilled presets run at 1)"
        )
    stages.plan(settings)  # a staged preset's stage sizes come out whole: refused before any weights load
    return settings, changes


def prepare_settings(
    prompt: str, *, preset: str | None, model: str | None, overrides: dict[str, Any], strict: bool = False, env: Environment = PROCESS
) -> tuple[GenerationSettings, Preset]:
    """Merge, validate and snap for one command; the seed drawn when none is given. With
    --story the prompt names a storyboard file (in `env`'s folder), read here."""
    chosen = choose_preset(preset, model)
    prompt, overrides = story.expand(prompt, overrides, env)
    settings, changes = merge_settings(chosen, [{"prompt": prompt, **overrides}], model=model, strict=strict, env=env)
    story.check_length(settings, chosen.constraints)
    for change in changes:
        ui.warn(change)
    if settings.seed is None:
        settings = replace(settings, seed=draw_seed())
    return settings, chosen
