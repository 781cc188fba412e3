"""Step 2 of a batch: prompts-file lines -> jobs, one small record per video.

Settings merge preset < command line < line; a line without a seed gets one derived
from the base seed and its line number; outputs are named `LINE-SLUG-sSEED.mp4` or the
line's `output`, always inside DIR. A line that cannot run becomes one failed job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from vidgen import ui
from vidgen.engine.prepare import merge_settings
from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError, VidgenError
from vidgen.media.video import prompt_slug
from vidgen.settings.prompts import PromptLine

DEFAULT_BASE_SEED = 0  # without --seed, reruns of the same file repeat the same videos
BATCH_SUFFIXES = (".mp4", ".webm", ".gif")  # files, so each has one SHA-256
SLUG_LENGTH = 40


@dataclass(slots=True)
class Job:
    """One video to make (or a line that cannot run, recorded as failed). Small on
    purpose: a 100,000-line file makes 100,000 of them; the settings are merged again
    from `values` when the video is made."""

    line: int
    video: int  # 1-based among its line's --num-videos
    prompt: str
    seed: int | None = None
    output: str | None = None  # relative to DIR, POSIX separators
    values: dict[str, Any] | None = None  # the line's values besides prompt, seed and output (shared by its videos)
    error: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.line, self.video)

    def line_values(self) -> dict[str, Any]:
        """The line's values as planned, for merging the settings again: its prompt and its
        own seed (this video's, less its index) are kept once, in the job, not in `values`
        too; most lines have no other value, so most jobs hold no dict."""
        return {**(self.values or {}), "prompt": self.prompt, "seed": self.seed - (self.video - 1)}


def derive_seed(base_seed: int, line_number: int) -> int:
    """A line's seed from the base seed and its line number: stable across reruns,
    different per line, below 2**31 like drawn seeds (room for --num-videos)."""
    digest = hashlib.sha256(f"vidgen-batch:{base_seed}:{line_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


def short_slug(prompt: str) -> str:
    """The prompt's slug (only a-z, 0-9 and '-': it cannot name a path), cut at a word
    boundary so names stay short: `a-red-circle-moves-left-on-a-blue`."""
    slug = prompt_slug(prompt, max_length=1000)
    if len(slug) <= SLUG_LENGTH:
        return slug
    # One more character than the limit: a '-' there means the word before it is whole.
    head, dash, _ = slug[: SLUG_LENGTH + 1].rpartition("-")
    return head if dash and len(head) >= SLUG_LENGTH // 2 else slug[:SLUG_LENGTH].rstrip("-")


def inside(out_dir: Path, relative: str) -> Path:
    """DIR/relative, refused if it resolves outside DIR (a symbolic link on the way)."""
    target = out_dir / relative
    if not target.resolve().is_relative_to(out_dir.resolve()):
        raise UsageError(f"output {relative!r} leads outside {out_dir} through a symbolic link")
    return target


def safe_output(text: str, out_dir: Path) -> str:
    """A line's `output`: a relative file path that stays inside DIR."""
    path = PurePosixPath(text.strip().replace("\\", "/"))
    if not text.strip() or "\x00" in text:
        raise UsageError(f"output {text!r} is not a file name")
    if path.is_absolute() or text.strip().startswith("~"):
        raise UsageError(f"output {text!r} must be relative to the output folder")
    if ".." in path.parts:
        raise UsageError(f"output {text!r} may not contain '..'")
    if any(part.startswith(".") for part in path.parts):
        raise UsageError(f"output {text!r} may not name hidden files or folders")
    if path.suffix.lower() not in BATCH_SUFFIXES:
        raise UsageError(f"output {text!r} must end in {', '.join(BATCH_SUFFIXES)}")
    inside(out_dir, path.as_posix())
    return path.as_posix()


def plan_jobs(
    lines: Iterable[PromptLine],
    *,
    chosen,
    model: str | None,
    flags: dict[str, Any],
    base_seed: int,
    out_dir: Path,
    strict: bool,
    shown_notes: set[str],
    warn: Callable[[str], None] | None = ui.warn,
    env: Environment = PROCESS,
) -> list[Job]:
    """Every video of every line, in file order; a line that cannot run is one failed job.
    Reads `lines` to the end, so a file refused as a whole is refused before any work.
    Each line's notes go to `warn` (None: not shown). A line's image is in `env`'s folder
    (its size is read for --size auto)."""
    jobs: list[Job] = []
    claimed: dict[str, int] = {}  # output -> the line that names it
    for line in lines:
        prompt = line.values.get("prompt", "")
        if line.error:
            jobs.append(Job(line.number, 1, prompt, error=line.error))
            continue
        values = dict(line.values)
        output = values.pop("output", None)
        values.setdefault("seed", derive_seed(base_seed, line.number))
        try:
            settings, notes = merge_settings(chosen, [flags, values], model=model, strict=strict, env=env)
            for note in notes:
                if warn is not None and note not in shown_notes:  # the command line's own notes were shown once
                    warn(f"line {line.number}: {note}")
            seeds = [settings.seed + index for index in range(settings.num_videos)]
            if output is None:
                slug = short_slug(settings.prompt)
                names = [f"{line.number:04d}-{slug}-s{seed}.mp4" for seed in seeds]
            else:
                base = PurePosixPath(safe_output(output, out_dir))
                names = (
                    [str(base)]
                    if len(seeds) == 1
                    else [str(base.with_name(f"{base.stem}-{i + 1}{base.suffix}")) for i in range(len(seeds))]
                )
            for name in names:
                if name in claimed:
                    raise UsageError(f"output {name} is also line {claimed[name]}'s")
            for name in names:
                claimed[name] = line.number
        except VidgenError as error:
            jobs.append(Job(line.number, 1, prompt, error=error.message))
            continue
        own = {key: value for key, value in values.items() if key not in ("prompt", "seed")} or None
        jobs.extend(Job(line.number, index + 1, settings.prompt, seed, name, own) for index, (seed, name) in enumerate(zip(seeds, names)))
    return jobs
