"""Every GPU figure of issue 12 in one run: one command, one folder of results.

    python benchmarks/gpu_suite.py OUTDIR                 # on a CUDA machine, about 7 minutes on an H100/H200
    python benchmarks/gpu_suite.py OUTDIR --dry-run       # the same steps, tiny sizes, on a CPU

Each part is a fresh process (so each peak memory and each compile warm-up is its own), run in
order of importance, and the merged results are rewritten after every part, so a run cut off at
its time limit still leaves what it measured:
  1. plain diffusers, the step caches (`--fast` = first-block, taylorseer, pab) and vidgen's
     default path (compiled on CUDA), on the same weights and seed; the VAE decode alone,
     float32 and vidgen's dtype, whole and tiled (`--vae-tiling`);
  2. vidgen's default path again in a second process: the compile warm-up left once Inductor's
     cache (under VIDGEN_HOME) holds the kernels;
  3. `--offload model`, `group`, `auto`;
  4. the whole `vidgen` command with the built-in model, on the CPU and on CUDA;
  5. `--offload sequential` (fewer steps: it is slow);
  6. load time of the denoiser's weights: plain `.to(device)` against vidgen's `device_map`.
Writes OUTDIR/suite.json, OUTDIR/suite.md and OUTDIR/suite.log.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = [sys.executable, str(REPO / "benchmarks" / "bench.py")]
CLI_PROMPT = "a red circle moving right on a black background"

# (name, bench.py arguments, time limit in seconds); the steps are the timed steps of each part.
PARTS = [
    ("default-and-caches", ["--variants", "diffusers,vidgen-fast,vidgen-taylorseer,vidgen-pab,vidgen", "--steps", "20", "--decode"], 240),
    ("compile-second-process", ["--variants", "vidgen", "--steps", "10"], 90),
    ("offload-model", ["--variants", "vidgen", "--offload", "model", "--steps", "10"], 90),
    ("offload-group", ["--variants", "vidgen", "--offload", "group", "--steps", "10"], 90),
    ("offload-auto", ["--variants", "vidgen", "--offload", "auto", "--steps", "10"], 90),
    ("cli-builtin-model", None, 90),
    ("offload-sequential", ["--variants", "vidgen", "--offload", "sequential", "--steps", "5"], 120),
    ("load", "load", 90),
]
# The dry run: the same parts on a two-layer model at 64x64, 9 frames, on the CPU.
DRY_RUN_SIZES = ["--width", "64", "--height", "64", "--frames", "9", "--device", "cpu", "--allow-cpu-full-size", "--warmup-steps", "1"]


class Log:
    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a", buffering=1)

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, file=sys.stderr, flush=True)
        self.handle.write(line + "\n")


def run_logged(command: list[str], log: Log, timeout: float, env: dict[str, str] | None = None) -> tuple[int, float]:
    """Run `command`, its output into the log; (exit status, seconds). 124 when it ran out of time."""
    log("$ " + " ".join(command))
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)
        status, output = completed.returncode, completed.stdout
    except subprocess.TimeoutExpired as expired:
        status, output = 124, (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
    seconds = time.perf_counter() - started
    for line in output.splitlines()[-60:]:
        log("  " + line)
    log(f"  -> exit {status} in {seconds:.1f} s")
    return status, seconds


def bench_part(name: str, arguments: list[str], limit: float, scratch: Path, dry_config: Path | None, log: Log) -> dict:
    out = scratch / name
    command = [*BENCH, *arguments, "--out", str(out)]
    if dry_config is not None:
        command += ["--config", str(dry_config), *DRY_RUN_SIZES]
    status, seconds = run_logged(command, log, limit)
    part = {"part": name, "exit_status": status, "seconds": round(seconds, 1)}
    if status == 0:
        part["report"] = json.loads(out.with_suffix(".json").read_text())
    return part


def cli_part(devices: list[str], scratch: Path, log: Log, limit: float) -> dict:
    """The whole command as a user types it, built-in model, twice per device (the first run
    also fills the OS file cache and the compile cache); medians of the later runs."""
    timings: dict[str, list[float]] = {}
    statuses: dict[str, list[int]] = {}
    environment = {**os.environ, "VIDGEN_NO_SERVER": "1"}
    for device in devices:
        for attempt in range(3):
            output = scratch / f"cli-{device}-{attempt}.mp4"
            command = [sys.executable, "-m", "vidgen", CLI_PROMPT, "-o", str(output), "--overwrite", "--device", device, "--seed", "1"]
            status, seconds = run_logged(command, log, limit, env=environment)
            statuses.setdefault(device, []).append(status)
            if attempt:
                timings.setdefault(device, []).append(round(seconds, 2))
    return {"part": "cli-builtin-model", "exit_status": max(max(s) for s in statuses.values()),
            "statuses": statuses, "seconds_each": timings,
            "median_seconds": {device: statistics.median(times) for device, times in timings.items() if times}}  # fmt: skip


def load_part(config_dir: Path, folder: Path, device: str, log: Log) -> dict:
    """Load time of the denoiser's safetensors as plain diffusers does it (read into CPU memory,
    then `.to(device)`) and as vidgen does without offloading (`device_map`: straight onto the
    card). Random bf16 weights saved once; the second read of each comes from the OS file cache,
    so both are measured twice, alternating, and the second pair is reported."""
    import torch
    from diffusers import WanTransformer3DModel

    config = json.loads((config_dir / "transformer.json").read_text())
    WanTransformer3DModel.from_config(config).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    size = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    timings: dict[str, list[float]] = {"diffusers .to(device)": [], "vidgen device_map": []}
    for _ in range(2):
        for name, keywords in (("diffusers .to(device)", {}), ("vidgen device_map", {"device_map": device})):
            started = time.perf_counter()
            model = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16, **keywords).to(device)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            timings[name].append(round(time.perf_counter() - started, 3))
            del model
    log(f"load {json.dumps(timings)}")
    return {"part": "load", "exit_status": 0, "weights_gib": round(size / 2**30, 2), "seconds_each": timings,
            "load_seconds": {name: times[-1] for name, times in timings.items()}}  # fmt: skip


def dry_run_config(folder: Path) -> Path:
    """The reference configs shrunk to two thin layers and a small VAE: the same code paths."""
    source = REPO / "benchmarks" / "configs" / "wan2.1-t2v-1.3b"
    folder.mkdir(parents=True, exist_ok=True)
    shrink = {
        "transformer.json": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64, "freq_dim": 32},
        "vae.json": {"base_dim": 8},
        "workload.json": {"text_tokens": 16},
    }
    for name in ("transformer.json", "vae.json", "scheduler.json", "workload.json"):
        config = json.loads((source / name).read_text())
        config.update(shrink.get(name, {}))
        (folder / name).write_text(json.dumps(config, indent=1))
    return folder


def markdown(results: list[dict], header: dict) -> str:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.bench import markdown as bench_markdown  # bench.py's own table for each part

    lines = [f"# GPU suite: {header.get('device_name', '?')}", "", json.dumps(header), ""]
    for part in results:
        lines.append(f"### {part['part']} (exit {part['exit_status']}, {part.get('seconds', '-')} s)")
        lines.append("")
        if "report" in part:
            lines.append(bench_markdown(part["report"]))
        elif part["part"] == "load":
            lines.append(f"{part.get('weights_gib')} GiB of bf16 weights; seconds {part.get('load_seconds')} (each: {part.get('seconds_each')}) {part.get('error', '')}")
        elif part["part"] == "cli-builtin-model":
            lines.append(f"median seconds {part['median_seconds']}, each {part['seconds_each']}, exit statuses {part['statuses']}")
        lines.append("")
    return "\n".join(lines)


def environment_header(log: Log) -> dict:
    import torch

    header = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import diffusers

        header["diffusers"] = diffusers.__version__
    except ImportError as error:
        header["diffusers"] = f"missing: {error}"
    if torch.cuda.is_available():
        header["device_name"] = torch.cuda.get_device_name(0)
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                               capture_output=True, text=True)  # fmt: skip
        header["nvidia_smi"] = query.stdout.strip() or query.stderr.strip()
    else:
        header["device_name"] = "cpu"
    log(f"environment {json.dumps(header)}")
    return header


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks every step runs")
    parser.add_argument("--only", help="comma-separated part names (default: all)")
    parser.add_argument("--deadline", type=float, default=480, help="seconds; parts that would start after it are skipped")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    log = Log(args.outdir / "suite.log")
    started = time.perf_counter()
    header = environment_header(log)
    scratch = Path(tempfile.mkdtemp(prefix="vidgen-gpu-suite-"))
    dry_config = dry_run_config(scratch / "dry-config") if args.dry_run else None
    wanted = set(args.only.split(",")) if args.only else None
    results: list[dict] = []

    def save() -> None:
        (args.outdir / "suite.json").write_text(json.dumps({"environment": header, "parts": results}, indent=1) + "\n")
        (args.outdir / "suite.md").write_text(markdown(results, header))

    for name, arguments, limit in PARTS:
        if wanted is not None and name not in wanted:
            continue
        left = args.deadline - (time.perf_counter() - started)
        if left < 30:
            log(f"skipping {name}: {left:.0f} s left before the deadline")
            continue
        if arguments is None:  # the whole command
            devices = ["cpu"] if args.dry_run else ["cpu", "cuda"]
            # Each run gets the part's whole limit: on an H200 a first CUDA run of the built-in model
            # spent over 20 s loading and compiling, and a shared slice cut it off.
            results.append(cli_part(devices, scratch, log, limit=min(limit, left)))
        elif arguments == "load":
            config = dry_config or REPO / "benchmarks" / "configs" / "wan2.1-t2v-1.3b"
            try:
                results.append(load_part(config, scratch / "load", "cpu" if args.dry_run else "cuda", log))
            except Exception as error:  # a measurement that failed is recorded, not fatal
                log(f"load failed: {error!r}")
                results.append({"part": "load", "exit_status": 1, "error": repr(error)})
        else:
            results.append(bench_part(name, arguments, min(limit, left), scratch, dry_config, log))
        save()
    log(f"suite done in {time.perf_counter() - started:.0f} s")
    print(markdown(results, header))
    return 0 if all(part["exit_status"] == 0 for part in results) else 1


if __name__ == "__main__":
    sys.exit(main())
