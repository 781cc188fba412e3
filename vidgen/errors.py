"""Error classes and the process exit codes they map to.

Every error a user can cause or meet is a `VidgenError`; the command line prints its
message as one `Error: ...` line and exits with its code. Anything else is a bug and
exits FAILURE (with the traceback under --debug). `outcome()` is that mapping, the one
place both the command line (cli._guarded) and a `vidgen serve` job use.
"""

from __future__ import annotations

import errno
from enum import IntEnum
from typing import NamedTuple


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILURE = 1
    USAGE = 2
    INTERRUPTED = 130
    TERMINATED = 143


# What each code means, declared once (docs/reference.md lists them).
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.SUCCESS: "Every video asked for was written (a batch: every line's every video).",
    ExitCode.FAILURE: "Something failed while loading a model, generating or writing; or a batch line failed (the others "
    "are made, the manifest says which). A failure after denoising began is this, not 2.",
    ExitCode.USAGE: "Bad command line or bad input (options, preset, prompts file, images, a model that cannot serve the "
    "preset), found before any weights were loaded or any denoising ran; nothing was written.",
    ExitCode.INTERRUPTED: "Ctrl-C (128 + SIGINT): stopped after the current step; no partial file is left.",
    ExitCode.TERMINATED: "SIGTERM (128 + 15): a batch stopped after the current video (a second SIGTERM: at once); "
    "--resume makes the rest.",
}


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


class SharedError(VidgenError):
    """Another process of this group failed first and shows the error; this one ends with
    its exit code and prints nothing (vidgen.processes, for `--parallel`)."""


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


class Outcome(NamedTuple):
    """How an error ends a command: its exit code, the one line to show (None: nothing),
    and whether to show the traceback first."""

    code: ExitCode
    message: str | None
    traceback: bool


def outcome(error: BaseException, *, debug: bool) -> Outcome:
    """The exit code and message of a command that raised `error` (--debug: the traceback too)."""
    if isinstance(error, SharedError):
        return Outcome(error.exit_code, None, False)
    if isinstance(error, VidgenError):
        return Outcome(error.exit_code, error.message, debug)
    if isinstance(error, KeyboardInterrupt):
        return Outcome(ExitCode.INTERRUPTED, "interrupted", False)
    if isinstance(error, BrokenPipeError):
        # The reader stopped early (`vidgen presets | head -3`): stop quietly, as cat or ls do,
        # but not with success, since not every result was delivered.
        return Outcome(ExitCode.FAILURE, None, False)
    hint = "" if debug else " (run with --debug for the traceback)"  # a bug: one line
    return Outcome(ExitCode.FAILURE, f"unexpected {type(error).__name__}: {error}{hint}", debug)


def describe_os_error(error: OSError) -> str:
    """A file system error in words: the system's own, with the usual cause named."""
    text = error.strerror or str(error)
    if error.errno == errno.EFBIG:
        return f"{text} (a file-size limit: ulimit -f)"
    if error.errno == errno.ENOSPC:
        return f"{text} (free some space or choose another folder)"
    return text
