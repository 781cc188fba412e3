"""Two `vidgen batch` processes at once, before and after thread limits (issue 11).

    .venv/bin/python benchmarks/threads_side_by_side.py [--videos 2] [--model DIR] [--rounds 1]

"before": each process gets torch's default thread count (one per core) and libx264's
(1.5 per core); "after": each runs with `--threads` set to cores / 2, its share of the
machine. Both processes start together; the script prints each
process's wall time and the per-video `seconds` from the manifest records, as a Markdown
table for docs/benchmarks.md. OMP_NUM_THREADS and VIDGEN_THREADS are removed from the
environment so "before" is what a user gets by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "a red circle moving right on a black background",
    "a blue square moving up on a gray background",
    "a green triangle growing on a white background",
    "a yellow circle moving left on a black background",
]


def run_pair(folder: Path, threads: int | None, videos: int, model: str | None) -> list[tuple[float, list[float]]]:
    """Start two batches at once; (wall seconds, per-video seconds) of each."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "VIDGEN_THREADS", "MKL_NUM_THREADS")}
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:videos]) + "\n")
    processes = []
    for index in range(2):
        out = folder / f"out-{threads}-{index}"
        command = [sys.executable, "-m", "vidgen", "batch", str(prompts), "-O", str(out), "--seed", str(index), "--quiet", "--overwrite"]
        command += ["--model", model] if model else []
        command += ["--threads", str(threads)] if threads else []
        processes.append((time.monotonic(), out, subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)))
    results = []
    for started, out, process in processes:
        if process.wait() != 0:
            raise SystemExit(f"vidgen batch failed (exit {process.returncode})")
        wall = time.monotonic() - started
        records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
        results.append((wall, [record["seconds"] for record in records if record["status"] == "done"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2, help="videos per process")
    parser.add_argument("--model", help="model folder (default: the built-in shapes model)")
    parser.add_argument("--rounds", type=int, default=1, help="before/after pairs, alternating")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, cores // 2)
    print(
        f"machine: {platform.machine()}, {cores} cores, load average before: {os.getloadavg()[0]:.2f}; Python {platform.python_version()}",
        file=sys.stderr,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidgen-threads-") as folder:
        for round_index in range(args.rounds):
            for label, threads in (("before (default threads)", None), (f"after (--threads {share})", share)):
                pair = run_pair(Path(folder), threads, args.videos, args.model)
                per_video = [seconds for _, videos in pair for seconds in videos]
                rows.append((round_index + 1, label, [wall for wall, _ in pair], statistics.median(per_video), os.getloadavg()[0]))
                print(rows[-1], file=sys.stderr)
    print("| round | run | wall per process (s) | median s per video | load average after |")
    print("|---|---|---|---|---|")
    for round_index, label, walls, median, load in rows:
        print(f"| {round_index} | {label} | {', '.join(f'{wall:.1f}' for wall in walls)} | {median:.2f} | {load:.2f} |")


if __name__ == "__main__":
    main()
