"""The options the generating commands share (`generate`, `batch`, `extend`, `post`): those that
are not settings, the settings' own from the table (`with_setting_options`), and their values
as settings overrides (`overrides`). Out of cli.py for its line limit; light, as cli.py's top.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from vidgen.engine.acceleration import FAST_CACHE
from vidgen.errors import UsageError
from vidgen.settings.table import BY_NAME, EXTEND_HELP, option_settings


def cache_choice(cache: str | None, fast: bool) -> str | None:
    """--fast is --cache with the default method; both together must agree."""
    if not fast:
        return cache
    if cache not in (None, FAST_CACHE):
        raise UsageError(f"--fast means --cache {FAST_CACHE}; give --fast or --cache {cache}, not both")
    return FAST_CACHE


# Options of the generating commands that are not settings (the settings' options come from
# the table in vidgen.settings.table, added by with_setting_options).
PresetOption = Annotated[
    Optional[str],
    typer.Option(
        "--preset", "-p", help="Preset name or FILE.toml (default: VIDGEN_PRESET, else `preset` in $VIDGEN_HOME/config.toml, else shapes)."
    ),
]
ModelOption = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Hub id or local diffusers folder; overrides the preset's model.")
]
FastOption = Annotated[bool, typer.Option("--fast", help="Fast mode: the default step cache (first-block).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
# The -o of the commands that make a new video (generate, extend).
VideoOutputOption = Annotated[
    Optional[str],
    typer.Option(
        "-o",
        "--output",
        help="FILE.mp4|.webm|.gif, a folder for PNG frames, or - for MP4 on stdout. Default: named after the prompt and seed.",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Refuse sizes and frame counts the model cannot take instead of snapping.")]
NoServerOption = Annotated[
    bool, typer.Option("--no-server", help="Run in this process even when `vidgen serve` is running (also VIDGEN_NO_SERVER=1).")
]
ThreadsOption = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        help="CPU threads for torch and ffmpeg (also VIDGEN_THREADS); default: one per core, or the cores shared among processes under accelerate.",
        show_default=False,
    ),
]


def with_setting_options(command: str, after_option: str = "model") -> Callable:
    """Give a command one Typer option per setting of the table (vidgen.settings.table) that it
    takes, after --model (or `after_option`), and its `**settings` the values given. Typer
    reads a function's signature, so parsing, types and --help all follow the table."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function, eval_str=True)
        own = [parameter for parameter in signature.parameters.values() if parameter.kind is not parameter.VAR_KEYWORD]
        after = [parameter.name for parameter in own].index(after_option) + 1
        derived = [
            inspect.Parameter(
                setting.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=None,
                annotation=Annotated[
                    setting.option_type(),
                    typer.Option(
                        *setting.flags,
                        help=EXTEND_HELP.get(setting.name, setting.help)
                        if command == "extend"
                        else setting.batch_help
                        if command == "batch" and setting.batch_help
                        else setting.help,
                        show_default=False,
                    ),
                ],
            )
            for setting in option_settings(command)
        ]
        function.__signature__ = signature.replace(parameters=own[:after] + derived + own[after:])
        return function

    return decorate


def overrides(values: dict[str, Any], *, fast: bool) -> dict[str, Any]:
    """A command's setting options as settings overrides; None means "not given"."""
    given = {}
    for name, value in values.items():
        read = BY_NAME[name].read
        given[name] = read(value) if read is not None and value is not None else value
    given["cache"] = cache_choice(given.get("cache"), fast)
    return given
