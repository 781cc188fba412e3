"""Write docs/reference.md from the code: every command and option (Typer's, whose settings'
options come from the table in vidgen/settings/table.py), the keys a prompts-file line may set
(vidgen.settings.prompts.LINE_KEYS, from the same table), the environment variables
(vidgen.environment.VARIABLES) and the exit codes (vidgen.errors.EXIT_MEANINGS).

    python tools/reference.py            # rewrite docs/reference.md
    python tools/reference.py --check    # exit 1 when it differs (tests/test_reference.py does this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's vidgen, whatever is installed

from vidgen.cli.app import app  # noqa: E402
from vidgen.environment import VARIABLES  # noqa: E402
from vidgen.errors import EXIT_MEANINGS  # noqa: E402
from vidgen.settings.prompts import LINE_KEYS  # noqa: E402
from vidgen.settings.setting import NUMBER  # noqa: E402
from vidgen.settings.table import SETTINGS  # noqa: E402

PAGE = ROOT / "docs" / "reference.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("\\[", "[")


# Typer vendors its own Click, so its classes are known by their attributes here, not imported.


def _row(param, context) -> str:
    """A parameter as `--help` shows it (Click's help record: its names and type, its help)."""
    names, text = param.get_help_record(context) or (param.name, "")
    return f"| `{names}` | {_cell(text)} |"


def _command(path: str, command) -> list[str]:
    context = command.context_class(command)
    lines = [f"### `vidgen {path}`", "", _cell(command.help or ""), ""]
    arguments = [param for param in command.params if param.param_type_name == "argument"]
    options = [param for param in command.params if param.param_type_name == "option" and not param.hidden]
    if arguments:
        lines += ["| argument | |", "|---|---|"]
        lines += [_row(param, context) for param in arguments]
        lines.append("")
    if options:
        lines += ["| option | |", "|---|---|", *(_row(param, context) for param in options), ""]
    if command.epilog:
        lines += ["```", command.epilog.strip(), "```", ""]
    return lines


def _commands(group, prefix: str = "") -> list[str]:
    lines: list[str] = []
    context = group.context_class(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        path = f"{prefix}{name}"
        if hasattr(command, "list_commands"):  # a group (`vidgen presets`): its own options, then `presets show`
            lines += _command(path, command)
            lines += _commands(command, path + " ")
        else:
            lines += _command(path, command)
    return lines


def _type_name(kind) -> str:
    return "number" if kind is NUMBER else getattr(kind, "__name__", str(kind))


# The line keys with no option of their own, and the seed, which a line sets as is.
_LINE_ONLY = {
    "prompt": "The line's prompt (required).",
    "seed": "The line's seed, used as is; absent: derived from --seed (default 0) and the line number.",
    "output": "Where the line's video goes: a .mp4, .webm or .gif path relative to -O (N videos: -1, -2, ... added).",
}


def _line_keys() -> list[str]:
    """Each key a .jsonl line or a CSV column may set: its type and the option it stands for."""
    by_name = {setting.name: setting for setting in SETTINGS}
    rows = []
    for key, kind in LINE_KEYS.items():
        setting = by_name.get(key)
        if key in _LINE_ONLY or setting is None or not setting.flags:
            meaning = _LINE_ONLY.get(key, "")
        else:
            meaning = f"as `{setting.flags[0]}`: " + (setting.batch_help or setting.help)
        rows.append(f"| `{key}` | {_type_name(kind)} | {_cell(meaning)} |")
    return rows


def render() -> str:
    lines = [
        "# Reference: commands, options, prompts-file keys, environment, exit codes",
        "",
        "Written by `python tools/reference.py` from the code (the options of the settings come from the",
        "table in `vidgen/settings/table.py`); `tests/test_reference.py` fails when this page and the code differ.",
        "`vidgen COMMAND --help` says the same, with examples.",
        "",
        "## Commands",
        "",
        *_commands(typer.main.get_command(app)),
        "## Prompts-file line keys",
        "",
        "What a `.jsonl` line or a `.csv` column of `vidgen batch` may set (docs/batch.md); any other key",
        "fails that line. A line's value wins over the command line's.",
        "",
        "| key | type | |",
        "|---|---|---|",
        *_line_keys(),
        "",
        "## Environment variables",
        "",
        "| variable | |",
        "|---|---|",
        *(f"| `{name}` | {_cell(meaning)} |" for name, meaning in VARIABLES.items()),
        "",
        "## Exit codes",
        "",
        "| code | |",
        "|---|---|",
        *(f"| {int(code)} | {_cell(meaning)} |" for code, meaning in EXIT_MEANINGS.items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv[1:]:
        sys.exit(0 if PAGE.exists() and PAGE.read_text() == text else 1)
    PAGE.write_text(text)
