"""What a command takes from around it, passed in rather than read from the process: the
folder its relative paths mean something in, and its standard input.

In-process (`vidgen generate`, `vidgen batch`) that is the process's own: `PROCESS`. A
`vidgen serve` job runs with its client's (the client's folder, the bytes the client read
from its standard input), so the server changes nothing of its own process to run it
and two jobs could run side by side. The job's output goes through vidgen.ui, whose
sink is per thread (ui.remote_session). Light: the server's client imports it.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Environment:
    cwd: Path | None = None  # the folder relative paths are taken from; None: this process's
    stdin: bytes | None = None  # standard input, already read; None: this process's

    def path(self, text: str | Path) -> Path:
        """A path as the user meant it: `~` expanded, a relative one taken from `cwd`
        (left relative in-process, so messages show it as it was given)."""
        path = Path(text).expanduser()
        return path if self.cwd is None else self.cwd / path

    def folder(self) -> Path:
        """The working folder, absolute: where unnamed outputs go."""
        return Path.cwd() if self.cwd is None else self.cwd

    def standard_input(self) -> IO[bytes]:
        """Standard input as a binary file."""
        return sys.stdin.buffer if self.stdin is None else io.BytesIO(self.stdin)


PROCESS = Environment()
