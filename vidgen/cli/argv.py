"""The command line's words, rewritten before Typer parses them.

- `vidgen PROMPT ...` is `vidgen generate PROMPT ...` (the default command);
- a bare `--ray` is `--ray=local`: Click has no option whose value may be left out, so a
  `--ray` not followed by an address (auto, local, ray://HOST:PORT, HOST:PORT) gets one.
"""

from __future__ import annotations

import re

_GROUP_OPTIONS = {"--help", "-h", "--version"}
_RAY_ADDRESS = re.compile(r"auto$|local$|ray://|[\w.-]+:\d+$")


def rewrite(args: list[str], commands: dict) -> list[str]:
    if args and args[0] not in commands and args[0] not in _GROUP_OPTIONS:
        args = ["generate", *args]
    return [
        arg if arg != "--ray" or (index + 1 < len(args) and _RAY_ADDRESS.match(args[index + 1])) else "--ray=local"
        for index, arg in enumerate(args)
    ]
