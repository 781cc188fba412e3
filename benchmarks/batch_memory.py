"""Peak memory of a batch's work before any video: 1,000 lines against 100,000 (issue 11).

    .venv/bin/python benchmarks/batch_memory.py            # 1,000 and 100,000 lines
    .venv/bin/python benchmarks/batch_memory.py --lines 1000 10000 100000 --json out.json

Each figure is a fresh process's peak resident memory (ru_maxrss) for one stage, less the
same process's resident memory after its imports (its baseline), on the built-in preset
(no model is loaded: the stages stop before the first video):
- check: what `vidgen batch --processes N` checks before it starts any process (the
  options and the whole prompts file, read and planned);
- resume: a batch's preparation with --resume over a manifest holding a done record for
  every line (read and plan, take DIR's lock, read the manifest for the finished videos),
  the files themselves absent, so nothing is skipped and nothing generated.
Not a test: resident memory depends on the allocator and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_STAGE = r"""
import json, resource, sys
from pathlib import Path

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

from vidgen.batch import run as batch_run
from vidgen.batch.folder import FolderLock
from vidgen.processes import Processes
from vidgen.settings.presets import choose_preset
import vidgen.engine.generate, vidgen.media.video  # imported by the stages themselves: part of the baseline
stage, prompts, out = sys.argv[1:4]
baseline = rss_kib()
if stage == "check":
    jobs = batch_run.check_batch(prompts, out, preset=None, model=None, overrides={})
else:
    lock = FolderLock(Path(out))
    prepared = batch_run.prepare(prompts, out, Processes(), lock, chosen=choose_preset(None, None), model=None, flags={},
                                  base_seed=0, strict=False, resume=True, overwrite=False)
    jobs = len(prepared.jobs)
    lock.release()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"jobs": jobs, "baseline_kib": baseline, "peak_kib": peak}))
"""


def write_inputs(folder: Path, lines: int) -> tuple[Path, Path]:
    """A prompts file of `lines` lines and an output folder whose manifest says each is done."""
    sys.path.insert(0, str(REPO))
    from vidgen.batch.plan import derive_seed

    prompts = folder / f"p{lines}.txt"
    out = folder / f"out{lines}"
    out.mkdir()
    with open(prompts, "w") as file, open(out / "manifest.jsonl", "w") as manifest:
        for number in range(1, lines + 1):
            prompt = f"a red circle moving left on a black background, take {number}"
            file.write(prompt + "\n")
            seed = derive_seed(0, number)
            slug = prompt.replace(",", "").replace(" ", "-")[:40].rstrip("-")
            record = {
                "line": number,
                "video": 1,
                "prompt": prompt,
                "seed": seed,
                "output": f"{number:04d}-{slug}-s{seed}.mp4",
                "status": "done",
                "sha256": "0" * 64,
                "seconds": 0.8,
                "error": None,
                "settings": {"steps": 20},
                "process": 0,
                "finished_at": "2026-11-26T12:00:00+00:00",
            }
            manifest.write(json.dumps(record) + "\n")
    return prompts, out


def measure(stage: str, prompts: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "VIDGEN_NO_SERVER": "1"}
    done = subprocess.run([sys.executable, "-c", _STAGE, stage, str(prompts), str(out)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{stage} failed: {done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["growth_mib"] = round((figures["peak_kib"] - figures["baseline_kib"]) / 1024, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vg-batch-memory-"))
    results = []
    try:
        for lines in options.lines:
            prompts, out = write_inputs(folder, lines)
            for stage in ("check", "resume"):
                figures = {
                    "lines": lines,
                    "stage": stage,
                    "file_mib": round(prompts.stat().st_size / 2**20, 1),
                    "manifest_mib": round((out / "manifest.jsonl").stat().st_size / 2**20, 1),
                    **measure(stage, prompts, out),
                }
                print(json.dumps(figures), flush=True)
                results.append(figures)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", "results": results}
    if options.json:
        options.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
