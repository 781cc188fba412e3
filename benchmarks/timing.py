"""Timing whole commands for the benchmarks: each command is a separate process started as
a user starts it, and the kinds being compared take turns, so a busy machine slows them alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def time_command(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of one run of `command`; a failed run stops the benchmark."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def alternate(
    kinds: dict[str, tuple[list[str], dict[str, str] | None]],
    *,
    runs: int,
    cwd: Path,
    swap: bool,
    report: Callable[[int, dict[str, float]], None],
) -> dict[str, list[float]]:
    """`runs` rounds in which each kind (name -> (command, env)) runs once; with `swap`
    every other round runs them in reverse order. `report(round, seconds)` after each."""
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for index in range(runs):
        order = list(kinds) if not swap or index % 2 == 0 else list(reversed(kinds))
        for name in order:
            command, env = kinds[name]
            times[name].append(time_command(command, cwd=cwd, env=env))
        report(index + 1, {name: times[name][-1] for name in kinds})
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


def print_round(prefix: str, stream: TextIO = sys.stdout) -> Callable[[int, dict[str, float]], None]:
    """A `report` for alternate(): `PREFIX N: name 1.23 s, other 4.56 s`."""

    def report(index: int, seconds: dict[str, float]) -> None:
        print(f"{prefix} {index}: " + ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items()), file=stream, flush=True)

    return report
