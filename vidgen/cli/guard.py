"""A command's body, guarded: an error becomes one line on stderr and its exit code
(errors.outcome, the mapping a server's job uses too), a traceback only with --debug.

Its own module so that cli.py, near its line limit, keeps to parsing and calling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from vidgen import ui
from vidgen.context import RunContext, running
from vidgen.environment import switched_on
from vidgen.errors import outcome

# Every command takes it; here beside the guard it turns on.
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks (also VIDGEN_DEBUG=1).")]


def guarded(debug: bool, action: Callable[[], Any], context: RunContext | None = None) -> Any:
    """Run a command body in its run's context (--quiet, --threads: vidgen.context; this
    process's folder and terminal): an error becomes one line and its exit code
    (errors.outcome, as for a server's job)."""
    debug = debug or switched_on("VIDGEN_DEBUG")
    ui.quiet_library_loggers()
    with running(context or RunContext()):
        try:
            return action()
        except (KeyboardInterrupt, Exception) as error:
            ending = outcome(error, debug=debug)
            if isinstance(error, BrokenPipeError):
                ui.detach_stdout()  # stdout's reader is gone: no second error at the final flush
            if ending.traceback:
                ui.print_traceback()
            if ending.message is not None:
                ui.error(ending.message)
            raise typer.Exit(int(ending.code)) from None
