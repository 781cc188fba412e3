"""Steps 1-2 of a batch, and everything a batch checks before it creates anything: the flags
merged and checked once for the whole file, then the whole prompts file read and planned.
Light (no diffusers): `--processes`' launcher runs `check_batch` before any process starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidgen import ui
from vidgen.batch.plan import DEFAULT_BASE_SEED, Job, plan_jobs
from vidgen.engine import latents
from vidgen.engine.prepare import merge_settings
from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError
from vidgen.media.video import check_encoder
from vidgen.settings.presets import choose_preset
from vidgen.settings.prompts import detect_format, open_prompts, read_prompt_lines
from vidgen.settings.request import BatchRequest


def read_plan(
    prompts_file: str, out_dir: Path, env: Environment, *, chosen, model, flags, base_seed, strict, flag_notes: bool, line_notes: bool
) -> list[Job]:
    """Steps 1-2: check the flags, read the whole file and plan; nothing is created.
    The command line's notes and each line's are shown if asked for."""
    # Bad flags fail the whole command now (exit 2), not every line one by one. The
    # prompt and image are placeholders: lines bring their own.
    probe = {"prompt": "batch", **flags, "seed": base_seed}
    if chosen.task == "image-to-video" and not probe.get("image"):
        probe["image"] = "from each line"
    if chosen.task == "video-to-video" and not probe.get("video"):
        probe["video"] = "from each line"
    # --size auto reads a batch-wide --image now (its note once), a line's own with the line.
    probed, notes = merge_settings(chosen, [probe], model=model, strict=strict, env=env if flags.get("image") else None)
    latents.check_covered(probed.pipeline_class, probed)  # --preview, --save-latents: the Wan family's
    for note in notes if flag_notes else ():
        ui.warn(note)
    check_encoder("mp4")  # batch videos are MP4 unless a line names .webm or .gif

    # the plan, identical in every process; the whole file is read before DIR is made
    file, name = open_prompts(prompts_file, env)
    with file:
        lines = read_prompt_lines(file, name, detect_format(file, name))
        jobs = plan_jobs(
            lines,
            chosen=chosen,
            model=model,
            flags=flags,
            base_seed=base_seed,
            out_dir=out_dir,
            strict=strict,
            shown_notes=set(notes),
            warn=ui.warn if line_notes else None,
            env=env,
        )
    if not jobs:
        raise UsageError(f"no prompts in {name}")
    return jobs


def check_batch(request: BatchRequest, env: Environment = PROCESS) -> int:
    """Everything a batch checks before it creates anything (options, preset, the whole
    prompts file), without notes: for `--processes`, before any process starts. Returns
    the number of jobs planned; a bad input raises its VidgenError."""
    flags, base_seed = flags_and_base_seed(request.overrides)
    chosen = choose_preset(request.preset, request.model)
    jobs = read_plan(
        request.prompts_file,
        env.path(request.out_dir),
        env,
        chosen=chosen,
        model=request.model,
        flags=flags,
        base_seed=base_seed,
        strict=request.strict,
        flag_notes=False,
        line_notes=False,
    )
    return len(jobs)


def flags_and_base_seed(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """--seed is the base seed lines derive theirs from, not a setting of every line;
    --no-gallery is the batch's (run_batch reads it), not a setting either."""
    flags = {key: value for key, value in overrides.items() if key not in ("seed", "gallery")}
    base_seed = overrides.get("seed")
    return flags, DEFAULT_BASE_SEED if base_seed is None else base_seed
