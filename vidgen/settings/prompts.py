"""Prompts files for `vidgen batch`, read as a stream: one line in memory at a time.

Formats: `.txt` (a prompt a line), `.jsonl` (a JSON object a line) and `.csv` (a header
naming the fields); standard input and other suffixes are recognised by their first
line that is not blank or a `#` comment.

Two kinds of problems, kept apart so a batch never half-starts on a file it cannot use:
- the whole file cannot be a prompts file (not UTF-8 text, a CSV header without a
  `prompt` column or with unknown columns, a JSONL file in which no line is an object,
  malformed CSV): `UsageError` (exit 2), raised while the file is read, which the batch
  does before it creates anything;
- one line cannot be used (invalid JSON, no prompt, an unknown key, a wrong type, a line
  longer than MAX_LINE_BYTES): a `PromptLine` with an `error`, recorded as failed.

Line numbers are physical lines of the file (a CSV record spanning lines takes the
number of its last one), so seeds and names derived from them are stable.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vidgen.environment import PROCESS, Environment
from vidgen.errors import UsageError
from vidgen.settings.setting import NUMBER
from vidgen.settings.table import line_keys

# What a .jsonl object or a .csv header may name, and the type each value must have:
# the settings the table (vidgen.settings.table) lets a line set, and the line's own file name.
LINE_KEYS: dict[str, Any] = {**line_keys(), "output": str}

# A longer line is one failed line, read past in blocks and never held whole.
MAX_LINE_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "txt"}


@dataclass
class PromptLine:
    number: int  # 1-based physical line in the file: stable, so seeds and names are too
    values: dict[str, Any]  # checked per-line values, prompt included
    error: str | None = None


class _LineProblem(Exception):
    """One line cannot be used; the batch records it and goes on."""

    def __init__(self, message: str, prompt: str = ""):
        super().__init__(message)
        self.prompt = prompt  # for the record and the summary, when the line had one


class _Overlong:
    """Stands for a line longer than MAX_LINE_BYTES in the stream of lines."""


_OVERLONG = _Overlong()


def open_prompts(source: str, env: Environment = PROCESS) -> tuple[IO[bytes], str]:
    """The prompts file as a seekable binary file, and a name for messages: `-` is
    `env`'s standard input, a relative path is taken from `env`'s folder.

    The process's standard input is copied to a temporary file first (block by block), so
    it can be looked at twice (format detection, then reading) like any file; a server
    job's arrives as bytes, already seekable."""
    if source == "-":
        if env.stdin is not None:
            return env.standard_input(), "standard input"
        spool = tempfile.TemporaryFile()
        shutil.copyfileobj(env.standard_input(), spool)
        spool.seek(0)
        return spool, "standard input"
    path = env.path(source)
    if path.is_dir():
        raise UsageError(f"cannot read prompts file {path}: it is a folder")
    try:
        return open(path, "rb"), str(path)
    except OSError as error:
        raise UsageError(f"cannot read prompts file {path}: {error.strerror or error}") from error


def _raw_lines(file: IO[bytes]) -> Iterator[bytes | _Overlong]:
    """Physical lines as bytes (newline included), an overlong one as _OVERLONG."""
    while True:
        line = file.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest of it
                line = file.readline(MAX_LINE_BYTES)
            yield _OVERLONG
            continue
        yield line


def _text_lines(file: IO[bytes], name: str) -> Iterator[str | _Overlong]:
    """Decoded lines; a byte sequence that is not UTF-8 refuses the whole file."""
    for number, raw in enumerate(_raw_lines(file), start=1):
        if isinstance(raw, _Overlong):
            yield raw
            continue
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UsageError(
                f"cannot read prompts file {name}: not UTF-8 text (line {number}: {error.reason} at byte {error.start + 1})"
            ) from None


def _meaningful(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def detect_format(file: IO[bytes], name: str) -> str:
    """txt, jsonl or csv: by the file's suffix, else by the first line that is not
    blank or a comment. Leaves the file at its start."""
    fmt = _FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        fmt = "txt"
        for line in _text_lines(file, name):
            if isinstance(line, str) and _meaningful(line):
                first = line.strip()
                header = [cell.strip() for cell in next(csv.reader([first]), [])]
                if first.startswith("{"):
                    fmt = "jsonl"
                elif len(header) > 1 and "prompt" in header:
                    fmt = "csv"
                break
    file.seek(0)
    return fmt


def _coerce(key: str, value: Any, *, from_text: bool) -> Any:
    """A value of LINE_KEYS[key]'s type; CSV cells arrive as text and are parsed."""
    kind = float if LINE_KEYS[key] is NUMBER else LINE_KEYS[key]
    if kind is str:
        if not isinstance(value, str):
            raise _LineProblem(f"{key} must be text, got {json.dumps(value)[:80]}")
        return value
    if from_text:
        try:
            value = kind(value.strip())
        except ValueError:
            wanted = "a whole number" if kind is int else "a number"
            raise _LineProblem(f"{key} must be {wanted}, got {value[:80]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _LineProblem(f"{key} must be a number, got {json.dumps(value)[:80]}")
    if kind is int and not isinstance(value, int):
        raise _LineProblem(f"{key} must be a whole number, got {value}")
    if not math.isfinite(value):
        raise _LineProblem(f"{key} must be finite, got {value}")
    return value


def check_values(raw: dict[str, Any], *, from_text: bool) -> dict[str, Any]:
    """A line's values, each of the right type; the prompt is required."""
    prompt = raw.get("prompt") if isinstance(raw.get("prompt"), str) else ""
    unknown = sorted(set(raw) - set(LINE_KEYS))
    if unknown:
        shown = ", ".join(key[:40] for key in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise _LineProblem(f"unknown key(s) {shown} (known: {', '.join(LINE_KEYS)})", prompt)
    values = {}
    for key, value in raw.items():
        if value is None or (from_text and not value.strip()):
            continue  # absent: the command line's value (or the preset's) applies
        try:
            values[key] = _coerce(key, value, from_text=from_text)
        except _LineProblem as problem:
            raise _LineProblem(str(problem), prompt) from None
    if not str(values.get("prompt", "")).strip():
        raise _LineProblem("missing prompt")
    values["prompt"] = values["prompt"].strip()
    return values


def _line(number: int, parse) -> PromptLine:
    try:
        return PromptLine(number, parse())
    except _LineProblem as problem:
        return PromptLine(number, {"prompt": problem.prompt}, str(problem))


def _overlong(number: int) -> PromptLine:
    return PromptLine(number, {"prompt": ""}, f"line longer than {MAX_LINE_BYTES // (1 << 20)} MiB")


def _parse_json(text: str, objects: list[int]) -> dict[str, Any]:
    """One JSONL line's values; counts the lines that are objects in `objects`."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nesting thousands deep
        raise _LineProblem(f"invalid JSON: {str(error)[:200] or type(error).__name__}") from None
    if not isinstance(obj, dict):
        raise _LineProblem("not a JSON object")
    objects[0] += 1
    return check_values(obj, from_text=False)


def _plain_lines(file: IO[bytes], name: str, fmt: str) -> Iterator[PromptLine]:
    objects, seen = [0], 0  # JSONL: lines that are objects, lines that are not blank or comments
    for number, line in enumerate(_text_lines(file, name), start=1):
        if isinstance(line, _Overlong):
            seen += 1
            yield _overlong(number)
            continue
        if not _meaningful(line):
            continue
        seen += 1
        stripped = line.strip()
        if fmt == "txt":
            yield PromptLine(number, {"prompt": stripped})
            continue
        yield _line(number, lambda stripped=stripped: _parse_json(stripped, objects))
    if fmt == "jsonl" and seen and not objects[0]:
        raise UsageError(f'{name} is not a JSON Lines prompts file: no line is a JSON object like {{"prompt": "..."}}')


def _csv_lines(file: IO[bytes], name: str) -> Iterator[PromptLine]:
    overlong: list[int] = []  # physical lines replaced by an empty one for the CSV reader

    def lines() -> Iterator[str]:
        for number, line in enumerate(_text_lines(file, name), start=1):
            if isinstance(line, _Overlong):
                overlong.append(number)
                yield "\n"
            else:
                yield line

    # A cell may be as long as a line may be (the default limit, 128 KiB, would stop the file).
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    reader = csv.reader(lines())
    header: list[str] | None = None
    previous = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise UsageError(f"cannot read prompts file {name}: malformed CSV at line {reader.line_num}: {error}") from None
        span = (previous, reader.line_num)
        previous = reader.line_num
        cut = [number for number in overlong if span[0] < number <= span[1]]
        if cut:
            yield _overlong(cut[0])
            continue
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            _check_header(header, name)
            continue
        if len(row) > len(header):
            yield PromptLine(reader.line_num, {"prompt": ""}, f"{len(row)} cells but the header names {len(header)}")
            continue
        yield _line(reader.line_num, lambda row=row, header=header: check_values(dict(zip(header, row)), from_text=True))


def _check_header(header: list[str], name: str) -> None:
    """A CSV header that no line could run with refuses the file, not every line."""
    shown = ", ".join(cell[:40] for cell in header[:10])
    if "prompt" not in header:
        raise UsageError(f"{name} is not a CSV prompts file: its header ({shown}) has no prompt column")
    unknown = [cell[:40] for cell in header if cell not in LINE_KEYS]
    if unknown:
        raise UsageError(f"{name}: unknown CSV column(s) {', '.join(unknown[:5])} (known: {', '.join(LINE_KEYS)})")
    duplicates = sorted({cell for cell in header if header.count(cell) > 1})
    if duplicates:
        raise UsageError(f"{name}: CSV column(s) named twice: {', '.join(duplicates)}")


def read_prompt_lines(file: IO[bytes], name: str, fmt: str) -> Iterator[PromptLine]:
    """The file's prompt lines, one at a time; raises UsageError when the whole file
    cannot be a prompts file (possibly after some lines were yielded: read it all
    before acting on any)."""
    if fmt == "csv":
        return _csv_lines(file, name)
    return _plain_lines(file, name, fmt)
