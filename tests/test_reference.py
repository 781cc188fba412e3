"""docs/reference.md is written from the code (tools/reference.py) and cannot drift from it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _reference():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "tools" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_page_is_what_the_code_writes():
    assert (ROOT / "docs" / "reference.md").read_text() == _reference().render(), (
        "docs/reference.md is stale: run `python tools/reference.py`"
    )


def test_every_option_of_generate_and_batch_help_is_in_the_reference(run_cli):
    page = (ROOT / "docs" / "reference.md").read_text()
    for command in ("generate", "batch"):
        shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", run_cli(command, "--help").stdout))
        section = page.split(f"### `vidgen {command}`", 1)[1].split("\n### ", 1)[0]
        missing = sorted(flag for flag in shown - {"--help"} if flag not in section)
        assert len(shown) > 20 and not missing, (command, missing)
