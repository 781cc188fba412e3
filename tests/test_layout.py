"""The package's shape: no import circles (imports inside functions count too), no import
that runs up the floors docs/DESIGN.md lists, and no module too long to read as one job."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vidgen"
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the vidgen modules it imports, wherever the import statement stands
    (`from vidgen import ui` names the module vidgen.ui where one exists)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module for alias in node.names
                ]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_import_graph_reader_sees_a_circle_made_on_purpose():
    """The check below can fail: a circle through a function-level import is found."""
    graph = import_graph()
    assert "vidgen.settings.layers" in graph["vidgen.settings.extras"]  # a top-level import is read
    assert "vidgen.server.serve" in graph["vidgen.cli.models"]  # and one inside a function
    graph["vidgen.errors"] = graph["vidgen.errors"] | {"vidgen.cli.app"}
    circle = find_circle(graph)
    assert circle is not None and circle[0] == circle[-1] and "vidgen.errors" in circle


def test_no_import_circles_in_vidgen():
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_no_module_over_the_line_limit():
    long = {name: count for name, path in _modules().items() if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


DESIGN = PACKAGE.parent / "docs" / "DESIGN.md"


def design_floors() -> dict[str, int]:
    """Module -> its floor, from docs/DESIGN.md's numbered list under "## Layers" (a `name/`
    entry stands for every module of that folder)."""
    import re

    section = DESIGN.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    modules = _modules()
    floors: dict[str, int] = {}
    for number, line in re.findall(r"^(\d+)\. (.*)$", section, flags=re.M):
        for entry in re.findall(r"`([\w./]+)`", line):
            if entry.endswith("/"):
                package = "vidgen." + entry.rstrip("/").replace("/", ".")
                named = [name for name in modules if name == package or name.startswith(package + ".")]
            else:
                named = ["vidgen" if entry == "vidgen" else f"vidgen.{entry}"]
                named = [name for name in named if name in modules]
            for name in named:
                floors[name] = int(number)
    return floors


def floor_violations(graph: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
    return sorted(
        f"{module} (floor {floors[module]}) imports {target} (floor {floors[target]})"
        for module, targets in graph.items()
        for target in targets
        if module in floors and target in floors and floors[target] > floors[module]
    )


def test_every_module_is_on_a_floor_of_design_md():
    missing = sorted(set(_modules()) - set(design_floors()))
    assert not missing, f"modules on no floor of docs/DESIGN.md (add them to its list): {missing}"


def test_no_module_imports_from_a_floor_above_its_own():
    violations = floor_violations(import_graph(), design_floors())
    assert not violations, "imports that run up the floors of docs/DESIGN.md: " + "; ".join(violations)


def test_the_floor_check_sees_an_import_that_runs_up():
    graph, floors = import_graph(), design_floors()
    graph["vidgen.errors"] = graph["vidgen.errors"] | {"vidgen.engine.runner"}  # errors is on the lowest floor
    assert any(
        violation.startswith("vidgen.errors (floor 0) imports vidgen.engine.runner") for violation in floor_violations(graph, floors)
    )


# Settings are prepared before any weights load, and a batch's plan and `--dry-run`'s settings run
# in processes that may never load a model: neither may import torch or diffusers (seconds each);
# nor may a batch's checks import diffusers (`--processes`' launcher: accelerate brings torch).
_PREPARE_WITHOUT_TORCH = """
import sys
from PIL import Image
from vidgen.engine.prepare import prepare_settings
from vidgen.batch import plan

Image.new("RGB", (48, 80)).save("portrait.png")
for preset, overrides in [
    ("wan2.1-t2v-1.3b", {"frames": 30}),
    ("wan2.1-i2v-480p", {"image": "portrait.png"}),  # --size auto reads the image's header
    ("ltx-video-0.9.7-two-stage", {}),  # a staged preset's stage sizes
]:
    prepare_settings("a fox", preset=preset, model=None, overrides=overrides)
loaded = sorted({"torch", "diffusers", "transformers"} & set(sys.modules))
print("loaded:", loaded)

# A batch's checks (`--processes`' launcher runs them before any process starts): torch, but no diffusers.
from vidgen.batch.check import check_batch
from vidgen.settings.request import BatchRequest

open("p.txt", "w").write("a fox\\na red ball\\n")
assert check_batch(BatchRequest(prompts_file="p.txt", out_dir="out", preset="wan2.1-t2v-1.3b")) == 2
print("batch checks loaded:", sorted({"diffusers", "transformers", "peft"} & set(sys.modules)))
"""


def test_settings_are_prepared_without_torch(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _PREPARE_WITHOUT_TORCH], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["loaded: []", "batch checks loaded: []"], result.stderr
