"""Write docs/reference.md from the code: every command and option (Typer's, whose settings'
options come from the table in vidgen/options.py), the environment variables
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

from vidgen.cli import app  # noqa: E402
from vidgen.environment import VARIABLES  # noqa: E402
from vidgen.errors import EXIT_MEANINGS  # noqa: E402

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
        if hasattr(command, "list_commands"):  # a group: `vidgen presets show`
            lines += _commands(command, path + " ")
        else:
            lines += _command(path, command)
    return lines


def render() -> str:
    lines = [
        "# Reference: commands, options, environment, exit codes",
        "",
        "Written by `python tools/reference.py` from the code (the options of the settings come from the",
        "table in `vidgen/options.py`); `tests/test_reference.py` fails when this page and the code differ.",
        "`vidgen COMMAND --help` says the same, with examples.",
        "",
        "## Commands",
        "",
        *_commands(typer.main.get_command(app)),
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
