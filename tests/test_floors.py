"""The declared dependency floors and constraints/floors.txt, the pins `make test-floors` installs
and runs the tests with, say the same thing: a floor raised or lowered in one and not the other
fails here, so the floors pyproject.toml declares are the ones the suite was run with."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# The groups `make test-floors` installs; every dependency in them must have a pin.
INSTALLED_GROUPS = ("dependencies", "test")


def declared(pyproject: str) -> dict[str, list[Requirement]]:
    """Group ("dependencies" or an extra's name) -> its requirements."""
    project = tomllib.loads(pyproject)["project"]
    groups = {"dependencies": project["dependencies"], **project.get("optional-dependencies", {})}
    return {group: [Requirement(line) for line in lines] for group, lines in groups.items()}


def floor(requirement: Requirement) -> Version | None:
    """The version after `>=`, or None where the requirement declares no floor."""
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return max(floors) if floors else None


def pins(text: str) -> dict[str, Version]:
    """Canonical package name -> its `==` version in a constraints file."""
    result = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier  # one `==` a line
        assert spec.operator == "==", f"{line!r}: a floors file pins with =="
        result[canonicalize_name(requirement.name)] = Version(spec.version)
    return result


def disagreements(pyproject: str, floors_txt: str) -> list[str]:
    """Each way the declared floors and the pins differ, as one line."""
    groups = declared(pyproject)
    pinned = pins(floors_txt)
    problems = []
    for group, requirements in groups.items():
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            low = floor(requirement)
            if name not in pinned:
                if group in INSTALLED_GROUPS:
                    problems.append(f"{group}: {requirement} has no pin in constraints/floors.txt")
            elif low is None:
                problems.append(f"{group}: {requirement} declares no floor (pinned at {pinned[name]})")
            elif low != pinned[name]:
                problems.append(f"{group}: {requirement} declares floor {low}, constraints/floors.txt pins {pinned[name]}")
    every_name = {canonicalize_name(r.name) for requirements in groups.values() for r in requirements}
    problems += [f"constraints/floors.txt pins {name}, which pyproject.toml does not declare" for name in sorted(set(pinned) - every_name)]
    return problems


def test_floors_file_pins_every_declared_floor():
    problems = disagreements((ROOT / "pyproject.toml").read_text(), (ROOT / "constraints" / "floors.txt").read_text())
    assert not problems, "\n".join(problems)


def test_a_floor_changed_on_one_side_is_reported():
    pyproject = '[project]\ndependencies = ["diffusers>=0.42.1", "rich>=13.8"]\n[project.optional-dependencies]\ntest = ["pytest>=8"]\n'
    assert disagreements(pyproject, "diffusers==0.42.1\nrich==13.8.0\npytest==8\n") == []
    assert disagreements(pyproject, "diffusers==0.40\nrich==13.8.0\npytest==8\n") == [
        "dependencies: diffusers>=0.42.1 declares floor 0.42.1, constraints/floors.txt pins 0.40"
    ]
    assert disagreements(pyproject, "diffusers==0.42.1\nrich==13.8.0\n") == ["test: pytest>=8 has no pin in constraints/floors.txt"]
    assert disagreements(pyproject, "diffusers==0.42.1\nrich==13.8.0\npytest==8\nnumpy==1.26\n") == [
        "constraints/floors.txt pins numpy, which pyproject.toml does not declare"
    ]
