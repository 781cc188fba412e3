"""`vidgen presets` and `vidgen presets show NAME`: the preset table and one preset as resolved.

Its own module so that cli.py keeps to the generating commands; cli.py adds this group.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from vidgen import ui
from vidgen.cli.guard import DebugOption
from vidgen.cli.guard import guarded as _guarded
from vidgen.errors import UsageError
from vidgen.settings.presets import DEFAULT_KEYS, TASK_FILTERS, list_presets, load_preset
from vidgen.settings.table import builtin_defaults

presets_app = typer.Typer(help="List and show model presets.", no_args_is_help=False, pretty_exceptions_enable=False)


@presets_app.callback(invoke_without_command=True)
def presets_list(
    ctx: typer.Context,
    task: Annotated[
        Optional[str],
        typer.Option(
            "--task", help="Only presets for this task: text-to-video, image-to-video, video-to-video, or audio (models with sound)."
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """List presets (a table on a terminal, tab-separated lines in a pipe)."""
    if ctx.invoked_subcommand is not None:
        return

    def action() -> None:
        if task is not None and task not in TASK_FILTERS:
            raise UsageError(f"unknown task {task!r} (known: {', '.join(TASK_FILTERS)})")
        presets, problems = list_presets()
        for problem in problems:
            ui.warn(f"skipped a preset: {problem}")
        rows = []
        for preset in presets:
            if task is not None and not preset.has_task(task):
                continue
            d = preset.defaults
            size = f"{d['width']}x{d['height']}" if "width" in d and "height" in d else "-"
            if d.get("size") == "auto":  # the image's aspect ratio at that area
                size = f"auto ({size} area)"
            rows.append([preset.name, preset.task_label, preset.model, size, str(d.get("frames", "-")), str(d.get("fps", "-"))])
        # VRAM notes are long; `vidgen presets show NAME` has them.
        ui.emit_table("vidgen presets", ["name", "task", "model", "size", "frames", "fps"], rows, wrap=["task", "model"])

    _guarded(debug, action)


@presets_app.command("show")
def presets_show(
    name: Annotated[str, typer.Argument(help="Preset name or FILE.toml.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the resolved preset as JSON.")] = False,
    debug: DebugOption = False,
) -> None:
    """Show one preset as resolved (model location, defaults, constraints)."""

    def action() -> None:
        resolved = load_preset(name).as_dict()
        # The preset's own defaults first, then the built-in ones of what a preset may set.
        builtin = {
            key: value
            for key, value in builtin_defaults().items()
            if value is not None and key in DEFAULT_KEYS and key not in resolved["defaults"]
        }
        resolved["defaults"] = {**resolved["defaults"], **builtin}
        if as_json:
            ui.emit_result(json.dumps(resolved, indent=2, ensure_ascii=False))
            return
        for key, value in resolved.items():
            if isinstance(value, dict):
                ui.emit_result(f"{key}:")
                for sub_key, sub_value in value.items():
                    ui.emit_result(f"  {sub_key}: {sub_value}")
            else:
                ui.emit_result(f"{key}: {value}")

    _guarded(debug, action)
