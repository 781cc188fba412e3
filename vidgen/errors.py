"""Error classes and the process exit codes they map to.

Every error a user can cause or meet is a `VidgenError`; the command line prints its
message as one `Error: ...` line and exits with its code. Anything else is a bug and
exits FAILURE (with the traceback under --debug).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILURE = 1  # something went wrong while loading a model or generating
    USAGE = 2  # bad command line or bad input; nothing was attempted
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
    TERMINATED = 143  # SIGTERM (128 + 15): a batch stopped by `kill` or a scheduler


class VidgenError(Exception):
    """An error with a message meant for the user and the exit code to use."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(VidgenError):
    """Bad options or bad input files: exit 2, before any weights are loaded."""

    exit_code = ExitCode.USAGE


class GenerationError(VidgenError):
    """A failure while loading a model, generating or writing: exit 1."""

    exit_code = ExitCode.FAILURE


class ModelNotAvailableError(GenerationError):
    """The model is neither on disk nor downloadable (offline, no access)."""


# A batch sent SIGTERM twice stops at once, in its own process or in a server's.
SECOND_SIGTERM = "terminated (second SIGTERM); the video in progress was not written"


class Interrupted(VidgenError):
    """The user pressed Ctrl-C; the run stopped cleanly."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str = "interrupted", exit_code: ExitCode | None = None):
        super().__init__(message, exit_code)


def first_line(error: BaseException) -> str:
    """A library's error as one line: its message's first line, else its class name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
