"""Preset extras: pipeline parameters beyond the common settings, checked and snapped.

A preset's `[extras]` table sets them (SkyReels-V2 diffusion forcing's window and overlap)
and `--extra NAME=VALUE` overrides one for a run (their names and types: grammar.EXTRA_TYPES). Unlike the `[call]` table, which goes to
the pipeline as written, an extra is known here by name: its type and range are checked,
frame counts are snapped to the model's rule with a visible note (refused with --strict),
and what extras imply for the frame count itself (`frames_rule`) applies to --frames.

Diffusion forcing makes a clip longer than the model's window of `base_num_frames` frames
in windows that each start from the last `overlap_history` frames of the one before. With
`causal_block_size` > 1 (asynchronous mode) the latent frames go in blocks of that many,
and every window and every overlap must be whole blocks: a latent frame left over is
never denoised by diffusers (it decodes as noise), so counts are snapped to whole blocks.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from vidgen.errors import UsageError
from vidgen.settings.grammar import EXTRA_TYPES
from vidgen.settings.layers import frames_rule_text, nearest_valid_frames

MAX_AR_STEP = 1_000
# SkyReels-V2 warns above 60 ("may cause inconsistencies"); its README recommends 20.
MAX_ADDNOISE = 60
# Frames-like extras: snapped to the model's frame rule, like --frames.
_FRAME_COUNTS = ("overlap_history", "base_num_frames")
# Extras that are words: their choices (diffusers' FramepackSamplingType values).
CHOICES = {"sampling_type": ("inverted_anti_drifting", "vanilla")}


def _block_rule(rule, block: int):
    """The frame rule for counts of whole causal blocks: with a VAE that keeps the first
    frame and compresses time by `step` (frames step*k + 1), `block` latent frames are
    step*block pixel frames, starting at step*block - step + 1 (20k + 17 for 4x and 5)."""
    if block == 1:
        return rule
    step = rule.frames_step * block
    return replace(rule, frames_step=step, frames_offset=(rule.frames_offset - rule.frames_step) % step)


def frames_rule(rule, extras: dict[str, Any]):
    """The preset's frame rule as the extras change it (whole causal blocks)."""
    return _block_rule(rule, extras.get("causal_block_size") or 1)


def fit_extras(settings, rule, *, strict: bool) -> tuple[Any, Any, list[str]]:
    """Check the extras, snap the frame counts among them, and return the settings with
    the snapped extras, the frame rule for --frames and the notes to show. Every problem
    is one UsageError line."""
    extras = dict(settings.extras)  # snapped in this copy: the settings are frozen
    problems: list[str] = []
    for name, value in extras.items():
        kind = EXTRA_TYPES.get(name)
        if kind is None:
            problems.append(f"unknown extra {name!r} (known: {', '.join(EXTRA_TYPES)})")
        elif kind is str:
            if value not in CHOICES[name]:
                problems.append(f"extra {name} must be one of {', '.join(CHOICES[name])}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            problems.append(f"extra {name} must be {'a whole number' if kind is int else 'a number'}, got {value!r}")
        elif not math.isfinite(value):
            problems.append(f"extra {name} must be a finite number, got {value}")
    if settings.last_image and extras.get("sampling_type", "inverted_anti_drifting") != "inverted_anti_drifting":
        problems.append(f"--last-image needs extra sampling_type=inverted_anti_drifting, not {extras['sampling_type']}")
    if problems:
        raise UsageError("; ".join(problems))

    def in_range(name: str, least: float, most: float, why: str = "") -> None:
        value = extras.get(name)
        if value is not None and not least <= value <= most:
            problems.append(f"extra {name} must be from {least:g} to {most:g}{why}, got {value:g}")

    in_range("ar_step", 0, MAX_AR_STEP)
    in_range("addnoise_condition", 0, MAX_ADDNOISE, " (SkyReels-V2 recommends 20)")
    in_range("causal_block_size", 1, 1_000)
    for name in (*_FRAME_COUNTS, "temporal_tile_size"):
        in_range(name, 1, 100_000)
    in_range("temporal_overlap", 0, extras.get("temporal_tile_size", 100_000) - 1, " (fewer than temporal_tile_size)")
    if problems:
        raise UsageError("; ".join(problems))

    block_rule = frames_rule(rule, extras)
    changes, refusals = [], []
    for name in _FRAME_COUNTS:
        value = extras.get(name)
        if value is None:
            continue
        valid = nearest_valid_frames(value, replace(block_rule, min_frames=1, max_frames=None))
        if valid != value:
            why = f"this model takes {frames_rule_text(replace(block_rule, max_frames=None, min_frames=1))} frames"
            if block_rule is not rule:
                why += f" (whole blocks of causal_block_size {extras['causal_block_size']})"
            changes.append(f"{name} {value} -> {valid}: {why}")
            refusals.append(f"{name} {value} is not valid ({why}; nearest {valid})")
            extras[name] = valid
    if strict and refusals:
        raise UsageError("; ".join(refusals) + " (--strict)")
    overlap, base = extras.get("overlap_history"), extras.get("base_num_frames")
    if overlap is not None and base is not None and overlap >= base:
        raise UsageError(f"extra overlap_history ({overlap}) must be fewer frames than base_num_frames ({base}), the window it overlaps")
    return replace(settings, extras=extras), block_rule, changes


def windows(settings) -> int:
    """How many windows diffusion forcing runs for `settings.frames` (1 for a short clip):
    the first covers base_num_frames, each next one adds base_num_frames - overlap_history."""
    base, overlap = settings.extras.get("base_num_frames"), settings.extras.get("overlap_history")
    if not base or overlap is None or not settings.frames or settings.frames <= base:
        return 1
    return 1 + math.ceil((settings.frames - base) / (base - overlap))
