"""What a command takes from around it, passed in rather than read from the process: the
folder its relative paths mean something in, and its standard input.

In-process (`vidgen generate`, `vidgen batch`) that is the process's own: `PROCESS`. A
`vidgen serve` job runs with its client's (the client's folder, the bytes the client read
from its standard input), so the server changes nothing of its own process to run it
and two jobs could run side by side. A run's Environment is part of its RunContext
(vidgen.context). Light: the server's client imports it.
"""

from __future__ import annotations

import io
import os
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


# ---- the environment variables vidgen reads, each declared once (docs/reference.md lists them) ----

VARIABLES: dict[str, str] = {
    "VIDGEN_HOME": "vidgen's own folder: user presets (presets/), the server's socket when XDG_RUNTIME_DIR is unset (run/), "
    "compiled-kernel caches. Default: $XDG_CONFIG_HOME/vidgen, else ~/.config/vidgen.",
    "VIDGEN_PRESET": "The preset used when --preset is not given (before `preset` in $VIDGEN_HOME/config.toml; else shapes, the built-in model).",
    "VIDGEN_THREADS": "CPU threads for torch and ffmpeg when --threads is not given.",
    "VIDGEN_NO_SERVER": "1: run every call in its own process even when `vidgen serve` is running (as --no-server).",
    "VIDGEN_DEBUG": "1: show tracebacks with the error lines (as --debug).",
    "VIDGEN_KEEP_ALIVE": "`vidgen serve`'s --keep-alive: how long an idle model stays loaded (5m, 30s, 1h, 0, -1).",
    "XDG_CONFIG_HOME": "The folder VIDGEN_HOME defaults into ($XDG_CONFIG_HOME/vidgen).",
    "XDG_RUNTIME_DIR": "Where `vidgen serve` puts its socket ($XDG_RUNTIME_DIR/vidgen/vidgen.sock).",
    "HF_HUB_OFFLINE": "1: never ask the Hugging Face Hub; only downloaded models are used (huggingface_hub's own variable).",
    "IMAGEIO_FFMPEG_EXE": "The ffmpeg to encode and read videos with (default: the one imageio-ffmpeg bundles).",
}


def variable(name: str) -> str:
    """A declared variable's value, stripped ("" when unset)."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not declared in vidgen.environment.VARIABLES")
    return os.environ.get(name, "").strip()


def switched_on(name: str) -> bool:
    """A declared on/off variable: on unless unset, empty or 0."""
    return variable(name) not in ("", "0")
