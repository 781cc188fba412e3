"""A request to make videos, as a value: `GenerateRequest` and `BatchRequest`.

The command line builds one from its options (the settings' options as `overrides`, named
as in the table of vidgen.settings.table); the server's client sends it unchanged as JSON (its
paths made absolute in the client's folder); the server decodes it with `from_json`, which
refuses an unknown or mistyped field in one line; and the command's library function
(single.run, batch.run_batch and its launchers) takes it as it is. What was asked is
never changed after it is built: what ran is recorded beside it (the recipe).

Its JSON form is the server's API (docs/api.md, whose JSON Schema `json_schema()` writes):
{"version": 1, "command": "generate", "prompt": "...", "overrides": {"steps": 4}, ...}.

Light: imported by `vidgen --help` and the server's client (no torch, no numpy).
"""

from __future__ import annotations

import collections.abc
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

from vidgen.errors import UsageError
from vidgen.settings.setting import NUMBER
from vidgen.settings.table import option_settings

API_VERSION = 1  # a change a version-1 server would misread raises it


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only view, so a request's overrides cannot change after it is built."""
    return types.MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, kw_only=True)
class Request:
    """What `generate` and `batch` both take."""

    preset: Optional[str] = None  # a preset's name or FILE.toml; None: VIDGEN_PRESET, else the default
    model: Optional[str] = None  # a hub id or folder that replaces the preset's model
    overrides: Mapping[str, Any] = field(default_factory=dict)  # the settings given, by the table's names
    strict: bool = False  # refuse sizes and frame counts the model cannot take instead of snapping
    overwrite: bool = False
    as_json: bool = False  # one JSON record per video on stdout
    threads: Optional[int] = None  # CPU threads; None: the machine's choice
    debug: bool = False  # tracebacks with the error lines

    command = ""  # the command that runs it; not a field

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", _frozen(self.overrides))

    def settings_given(self) -> dict[str, Any]:
        """The overrides as a fresh dict, for the layers a run merges."""
        return dict(self.overrides)

    def but(self, **changes: Any) -> Request:
        """A copy with some fields changed (the client's absolute paths)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"version": API_VERSION, "command": self.command}
        for item in fields(self):
            value = getattr(self, item.name)
            body[item.name] = dict(value) if item.name == "overrides" else value
        return body


@dataclass(frozen=True, kw_only=True)
class GenerateRequest(Request):
    """`vidgen generate PROMPT`: one prompt, `--num-videos` videos."""

    prompt: str
    output: Optional[str] = None  # a path, "-" for standard output, None: named after the prompt

    command = "generate"


@dataclass(frozen=True, kw_only=True)
class BatchRequest(Request):
    """`vidgen batch PROMPTS_FILE -O DIR`: a video (or `num_videos`) for every line."""

    prompts_file: str  # a path, or "-": standard input (a served job carries it as `stdin`)
    out_dir: str
    resume: bool = False

    command = "batch"


REQUESTS: dict[str, type[Request]] = {"generate": GenerateRequest, "batch": BatchRequest}


# ---- JSON: what a server accepts ----


def _json_kind(annotation: Any) -> tuple[tuple[type, ...], bool]:
    """(the JSON types a field takes, whether null is allowed) from its annotation."""
    optional = False
    if get_origin(annotation) is Union:
        members = [member for member in get_args(annotation) if member is not type(None)]
        optional = len(members) < len(get_args(annotation))
        annotation = members[0]
    if get_origin(annotation) in (collections.abc.Mapping, dict) or annotation in (Mapping, dict):
        return (dict,), optional
    return (annotation,), optional


def _type_problem(label: str, value: Any, kinds: tuple[type, ...], optional: bool) -> str | None:
    if value is None:
        return None if optional else f"{label} must not be null"
    if bool not in kinds and isinstance(value, bool):  # JSON true is not a number
        return f"{label} must be {_type_words(kinds)}, got {value!r}"
    wanted = tuple(float if kind is float else kind for kind in kinds)
    if float in wanted:
        wanted = wanted + (int,)  # 7 is a fine guidance
    if not isinstance(value, wanted):
        return f"{label} must be {_type_words(kinds)}, got {value!r}"
    return None


def _type_words(kinds: tuple[type, ...]) -> str:
    words = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", dict: "an object", list: "a list"}
    return " or ".join(words.get(kind, kind.__name__) for kind in kinds)


def _setting_kinds(setting_type: Any) -> tuple[type, ...]:
    if setting_type is NUMBER:
        return (float,)
    return setting_type if isinstance(setting_type, tuple) else (setting_type,)


def _check_overrides(command: str, overrides: Any) -> dict[str, Any]:
    if not isinstance(overrides, dict):
        raise UsageError(f"overrides must be an object, got {overrides!r}")
    known = {setting.name: setting for setting in option_settings(command)}
    for name, value in overrides.items():
        setting = known.get(name)
        if setting is None:
            raise UsageError(f"overrides: unknown setting {name!r} for {command} (known: {', '.join(known)})")
        problem = _type_problem(f"overrides.{name}", value, _setting_kinds(setting.type), optional=True)
        if problem is None and isinstance(value, list) and not all(isinstance(item, str) for item in value):
            problem = f"overrides.{name} must be a list of strings, got {value!r}"
        if problem:
            raise UsageError(problem)
    return overrides


def from_json(body: Any) -> Request:
    """The request a JSON object describes; an unknown or mistyped field is one UsageError."""
    if not isinstance(body, dict):
        raise UsageError("a request must be a JSON object")
    version = body.get("version", API_VERSION)
    if version != API_VERSION:
        raise UsageError(f"request version {version!r} is not supported (this server speaks version {API_VERSION})")
    command = body.get("command")
    if command not in REQUESTS:
        raise UsageError(f"command must be one of {', '.join(REQUESTS)}, got {command!r}")
    cls = REQUESTS[command]
    hints = get_type_hints(cls)
    known = {item.name: item for item in fields(cls)}
    unknown = [name for name in body if name not in known and name not in ("version", "command")]
    if unknown:
        raise UsageError(f"unknown field(s) in a {command} request: {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    values = {}
    for name, item in known.items():
        if name not in body:
            if item.default is MISSING and item.default_factory is MISSING:
                raise UsageError(f"a {command} request needs {name}")
            continue
        kinds, optional = _json_kind(hints[name])
        problem = _type_problem(name, body[name], kinds, optional)
        if problem:
            raise UsageError(problem)
        values[name] = body[name]
    _check_overrides(command, values.get("overrides", {}))
    return cls(**values)


# ---- the JSON Schema of the API (docs/api.md) ----

_SCHEMA_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def _schema_of(kinds: tuple[type, ...], optional: bool) -> dict[str, Any]:
    names = [_SCHEMA_TYPES[kind] for kind in kinds] + (["null"] if optional else [])
    return {"type": names[0] if len(names) == 1 else names}


def _overrides_schema(command: str) -> dict[str, Any]:
    properties = {}
    for setting in option_settings(command):
        schema = _schema_of(_setting_kinds(setting.type), True)
        if setting.type is list:
            schema["items"] = {"type": "string"}
        if setting.choices:
            schema["enum"] = [*setting.choices, None]
        if setting.help:
            schema["description"] = setting.help
        properties[setting.name] = schema
    return {"type": "object", "additionalProperties": False, "properties": properties}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a request, from the types above and the table of settings."""
    variants = []
    for command, cls in REQUESTS.items():
        hints = get_type_hints(cls)
        properties: dict[str, Any] = {"version": {"const": API_VERSION}, "command": {"const": command}}
        required = ["command"]
        for item in fields(cls):
            if item.name == "overrides":
                properties[item.name] = _overrides_schema(command)
            else:
                properties[item.name] = _schema_of(*_json_kind(hints[item.name]))
            if item.default is MISSING and item.default_factory is MISSING:
                required.append(item.name)
        # What only a served job carries besides the request (server/jobs.py): the client's folder, and
        # for `batch -` its standard input.
        properties["cwd"] = {
            "type": "string",
            "description": "The client's folder, absolute: relative paths only the job reads are from it.",
        }
        required.append("cwd")
        if command == "batch":
            properties["stdin"] = {"type": ["string", "null"], "description": 'With prompts_file "-": the prompts, base64.'}
        variants.append(
            {
                "title": cls.__name__,
                "description": (cls.__doc__ or "").strip(),
                "type": "object",
                "additionalProperties": False,
                "required": required,
                "properties": properties,
            }
        )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "vidgen request", "version": API_VERSION, "oneOf": variants}


# ---- docs/api.md holds the schema between these lines; `python -m vidgen.settings.request docs/api.md` rewrites it ----

SCHEMA_START, SCHEMA_END = "<!-- schema: written by `python -m vidgen.settings.request docs/api.md` -->", "<!-- end of schema -->"


def schema_block() -> str:
    import json  # here: only the docs need it

    return f"{SCHEMA_START}\n```json\n{json.dumps(json_schema(), indent=2, ensure_ascii=False)}\n```\n{SCHEMA_END}"


def with_schema(page: str) -> str:
    """`page` with its schema block replaced by the current one."""
    start, end = page.index(SCHEMA_START), page.index(SCHEMA_END) + len(SCHEMA_END)
    return page[:start] + schema_block() + page[end:]


if __name__ == "__main__":
    import sys
    from pathlib import Path

    target = Path(sys.argv[1])
    target.write_text(with_schema(target.read_text()))
