"""Every GPU figure of a round in one run: one command, one folder of results.

    python benchmarks/gpu_suite.py OUTDIR                 # issue 21's round (and 36's preview) on a CUDA machine, about 8.7 minutes on an H200
    python benchmarks/gpu_suite.py OUTDIR --dry-run       # the same parts, tiny sizes, on a CPU
    python benchmarks/gpu_suite.py OUTDIR --round 12      # issue 12's round (below), about 7 minutes
    python benchmarks/gpu_suite.py OUTDIR --only load-1.3b,cli-cuda --limit load-1.3b=60

Each part is a fresh process (so each peak memory and each compile warm-up is its own) with its own time
limit, run in order of importance; a part that fails or runs out of time costs only itself (its process
group is killed at the limit, and what it had written is kept). The merged results are rewritten after
every part. Writes OUTDIR/suite.json, OUTDIR/suite.md, OUTDIR/suite.log (the suite's lines and each
part's last lines) and OUTDIR/parts.log (every part's whole output).

Issue 21 (the default round; benchmarks/round21.py has each part's plan, estimates and what was cut):
  1. 14b-quantized: Wan 2.1 14B on one card, bf16 / fp8-dynamic / --offload model / int8 / fp8, the 4-step video;
  2. fast-probe: the built-in model's probe on CUDA for each fast mode; fast-wan-1.3b: the same modes on Wan 1.3B;
  3. lossless-backends: attention backends and compile modes on Wan 1.3B against plain diffusers;
  4. load-1.3b: load time of a saved 1.3B folder; cli-cuda: the built-in model's whole command on CUDA, 3 runs;
  5. preview-wan-1.3b (issue 36): --preview's cost on Wan 1.3B at 480p, in one process.

On the H200 machine (no network; diffusers and torchao missing there), after `bash benchmarks/gpu_wheels.sh`
here filled .whl/ (an ignored folder, carried with `carry: [".whl"]`), one command:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && if [ -f .whl/ffmpeg.xz ]; then python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.whl/ffmpeg.xz'), open('/tmp/ffmpeg','wb'))" && chmod +x /tmp/ffmpeg && export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg; fi; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py $OUT/r21 --deadline 520

Issue 12 (`--round 12`):
  1. plain diffusers, the step caches (`--fast` = first-block, taylorseer, pab) and vidgen's
     default path (compiled on CUDA), on the same weights and seed; the VAE decode alone,
     float32 and vidgen's dtype, whole and tiled (`--vae-tiling`);
  2. vidgen's default path again in a second process: the compile warm-up left once Inductor's
     cache (under VIDGEN_HOME) holds the kernels;
  3. `--offload model`, `group`, `auto`;
  4. the whole `vidgen` command with the built-in model, on the CPU and on CUDA;
  5. `--offload sequential` (fewer steps: it is slow);
  6. load time of the denoiser's weights: plain `.to(device)` against vidgen's `device_map`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = [sys.executable, str(REPO / "benchmarks" / "bench.py")]
ROUND21 = [sys.executable, str(REPO / "benchmarks" / "round21.py")]
CLI_PROMPT = "a red circle moving right on a black background"

# Issue 12: (name, bench.py arguments, time limit in seconds); the steps are the timed steps of each part.
ROUND_12 = [
    ("default-and-caches", ["--variants", "diffusers,vidgen-fast,vidgen-taylorseer,vidgen-pab,vidgen", "--steps", "20", "--decode"], 240),
    ("compile-second-process", ["--variants", "vidgen", "--steps", "10"], 90),
    ("offload-model", ["--variants", "vidgen", "--offload", "model", "--steps", "10"], 90),
    ("offload-group", ["--variants", "vidgen", "--offload", "group", "--steps", "10"], 90),
    ("offload-auto", ["--variants", "vidgen", "--offload", "auto", "--steps", "10"], 90),
    ("cli-builtin-model", None, 90),
    ("offload-sequential", ["--variants", "vidgen", "--offload", "sequential", "--steps", "5"], 120),
    ("load", "load", 90),
]
# Issue 21: (name, round21.py part or "cli", time limit in seconds), in the order; the limits sum
# to 520 s, the default deadline (round21.py's docstring: the estimate behind each).
ROUND_21 = [
    ("14b-quantized", "big", 165),
    ("fast-probe", "probe", 55),
    ("fast-wan-1.3b", "modes", 80),
    ("lossless-backends", "lossless", 75),
    ("load-1.3b", "load", 30),
    ("cli-cuda", "cli", 45),
    ("preview-wan-1.3b", "preview", 70),  # issue 36: what --preview costs on Wan 1.3B (round21_preview.py)
]
ROUNDS = {"12": ROUND_12, "21": ROUND_21}
# Seconds a round21.py part keeps back from its limit for writing and exiting (its own budget is the rest).
PART_MARGIN = 8
# The dry run: the same parts on a two-layer model at 64x64, 9 frames, on the CPU.
DRY_RUN_SIZES = ["--width", "64", "--height", "64", "--frames", "9", "--device", "cpu", "--allow-cpu-full-size", "--warmup-steps", "1"]


class Log:
    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a", buffering=1)
        self.parts = open(path.with_name("parts.log"), "a", buffering=1)

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, file=sys.stderr, flush=True)
        self.handle.write(line + "\n")


def run_logged(command: list[str], log: Log, timeout: float, env: dict[str, str] | None = None) -> tuple[int, float]:
    """Run `command` in its own process group, its whole output into parts.log and its last lines into the
    log; (exit status, seconds). At the limit the whole group is killed (Inductor's compile and autotuning
    workers too, which would otherwise hold on to the card) and the status is 124."""
    log("$ " + " ".join(command))
    log.parts.write(f"\n===== {time.strftime('%H:%M:%S')} $ {' '.join(command)}\n")
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=max(timeout, 1))
        status = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        status = 124
    seconds = time.perf_counter() - started
    log.parts.write(output or "")
    for line in (output or "").splitlines()[-40:]:
        log("  " + line)
    log(f"  -> exit {status} in {seconds:.1f} s" + (" (stopped at its limit)" if status == 124 else ""))
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


def round21_part(name: str, kind: str, limit: float, scratch: Path, dry_run: bool, log: Log) -> dict:
    """One round21.py part in its own process; what it wrote is kept even when it failed or ran out of time."""
    out = scratch / f"{name}.json"
    command = [
        *ROUND21,
        kind,
        "--out",
        str(out),
        "--budget",
        str(max(limit - PART_MARGIN, 5)),
        "--until",
        f"{time.time() + limit - PART_MARGIN:.1f}",
    ]
    command += ["--dry-run"] if dry_run else []
    status, seconds = run_logged(command, log, limit)
    part = {"part": name, "exit_status": status, "seconds": round(seconds, 1), "limit_seconds": limit}
    if status == 124:
        part["error"] = f"stopped at its limit of {limit:.0f} s"
    try:
        part["report"] = json.loads(out.read_text())
    except (OSError, ValueError) as error:
        part.setdefault("error", f"no results: {error}")
    return part


def encoder_output() -> tuple[str, str]:
    """The whole command's output: MP4 when an ffmpeg is there (imageio-ffmpeg's, or IMAGEIO_FFMPEG_EXE), else
    a GIF (written without ffmpeg), said in the results."""
    sys.path.insert(0, str(REPO))
    try:
        from vidgen.media.video import ffmpeg_exe

        return ".mp4", f"ffmpeg {ffmpeg_exe()}"
    except Exception as error:  # no ffmpeg on this machine
        return ".gif", f"GIF instead of MP4: {' '.join(str(error).split())}"


def cli_part(name: str, devices: list[str], runs: int, scratch: Path, log: Log, limit: float) -> dict:
    """The whole command as a user types it, built-in model, `runs` times per device (the first run also
    fills the OS file cache and the compile cache); medians of all runs and of the runs after the first.
    Each run gets what is left of the part's limit."""
    timings: dict[str, list[float]] = {}
    statuses: dict[str, list[int]] = {}
    environment = {**os.environ, "VIDGEN_NO_SERVER": "1"}
    suffix, encoder = encoder_output()
    started = time.perf_counter()
    for device in devices:
        for attempt in range(runs):
            left = limit - (time.perf_counter() - started)
            if left < 5:
                log(f"{name}: no time left for run {attempt + 1} on {device}")
                break
            output = scratch / f"cli-{device}-{attempt}{suffix}"
            command = [sys.executable, "-m", "vidgen", CLI_PROMPT, "-o", str(output), "--overwrite", "--device", device, "--seed", "1"]
            status, seconds = run_logged(command, log, left, env=environment)
            statuses.setdefault(device, []).append(status)
            timings.setdefault(device, []).append(round(seconds, 2))
    return {
        "part": name,
        "exit_status": max((max(s) for s in statuses.values()), default=124),
        "output": encoder,
        "seconds": round(time.perf_counter() - started, 1),
        "statuses": statuses,
        "seconds_each": timings,
        "median_seconds": {device: statistics.median(times) for device, times in timings.items() if times},
        "median_seconds_after_first": {device: statistics.median(times[1:]) for device, times in timings.items() if times[1:]},
    }


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
    return {
        "part": "load",
        "exit_status": 0,
        "weights_gib": round(size / 2**30, 2),
        "seconds_each": timings,
        "load_seconds": {name: times[-1] for name, times in timings.items()},
    }


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

    lines = [f"# GPU suite, issue {header.get('round')}: {header.get('device_name', '?')}", "", json.dumps(header), ""]
    for part in results:
        lines.append(f"### {part['part']} (exit {part['exit_status']}, {part.get('seconds', '-')} s)")
        lines.append("")
        if part.get("error"):
            lines += [f"**{part['error']}**", ""]
        if "report" in part and "records" in part["report"]:
            from benchmarks.round21 import markdown as round21_markdown  # imports no torch

            lines.append(round21_markdown(part["report"]))
        elif "report" in part:
            lines.append(bench_markdown(part["report"]))
        elif part["part"] == "load":
            lines.append(
                f"{part.get('weights_gib')} GiB of bf16 weights; seconds {part.get('load_seconds')} (each: {part.get('seconds_each')}) {part.get('error', '')}"
            )
        elif "median_seconds" in part:
            lines.append(
                f"median seconds {part['median_seconds']} (after the first run: {part['median_seconds_after_first']}), "
                f"each {part['seconds_each']}, exit statuses {part['statuses']}; {part['output']}"
            )
        lines.append("")
    return "\n".join(lines)


def environment_header(log: Log, round_name: str) -> dict:
    """Versions (read from the installed packages: this process imports no torch and holds no CUDA context)
    and the card as nvidia-smi names it."""
    header: dict = {"round": round_name, "python": sys.version.split()[0], "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE")}
    for package in ("torch", "diffusers", "torchao", "transformers", "triton", "typer", "imageio-ffmpeg", "sageattention", "flash-attn"):
        try:
            header[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            header[package] = None
    try:
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        header["nvidia_smi"] = query.stdout.strip() or query.stderr.strip()
        header["device_name"] = header["nvidia_smi"].split(",")[0] if query.returncode == 0 and query.stdout.strip() else "cpu"
    except (OSError, subprocess.SubprocessError):
        header["device_name"] = "cpu"
    log(f"environment {json.dumps(header)}")
    return header


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks every step runs")
    parser.add_argument("--round", choices=sorted(ROUNDS), default="21", help="issue 21's parts (default) or issue 12's")
    parser.add_argument("--only", help="comma-separated part names (default: all of the round)")
    parser.add_argument("--limit", action="append", default=[], metavar="PART=SECONDS", help="another time limit for a part")
    parser.add_argument("--deadline", type=float, default=520, help="seconds; parts that would start after it are skipped")
    args = parser.parse_args(argv)
    parts = ROUNDS[args.round]
    limits = {name: float(seconds) for name, _, seconds in (item.partition("=") for item in args.limit)}
    unknown = (set(args.only.split(",")) if args.only else set()) | set(limits)
    unknown -= {name for name, _, _ in parts}
    if unknown:
        parser.error(f"no part {', '.join(sorted(unknown))} in round {args.round} (its parts: {', '.join(name for name, _, _ in parts)})")
    args.outdir.mkdir(parents=True, exist_ok=True)
    # The GPU machine has no network: say so to the libraries, as a user there would, so that no part (vidgen's
    # loads and whole commands ask an unset-offline Hub once, up to 3 s) times a probe of an unreachable Hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log = Log(args.outdir / "suite.log")
    started = time.perf_counter()
    header = environment_header(log, args.round)
    scratch = Path(tempfile.mkdtemp(prefix="vidgen-gpu-suite-"))
    dry_config = dry_run_config(scratch / "dry-config") if args.dry_run else None
    wanted = set(args.only.split(",")) if args.only else None
    results: list[dict] = []

    def save() -> None:
        (args.outdir / "suite.json").write_text(json.dumps({"environment": header, "parts": results}, indent=1, default=str) + "\n")
        (args.outdir / "suite.md").write_text(markdown(results, header))

    for name, arguments, limit in parts:
        if wanted is not None and name not in wanted:
            continue
        limit = limits.get(name, limit)
        left = args.deadline - (time.perf_counter() - started)
        if left < 30:
            log(f"skipping {name}: {left:.0f} s left before the deadline")
            results.append({"part": name, "exit_status": 124, "error": f"not started: {left:.0f} s left before the deadline"})
            save()
            continue
        if arguments == "cli":  # issue 21: the whole command on CUDA, three runs
            devices, runs = (["cpu"], 1) if args.dry_run else (["cuda"], 3)
            results.append(cli_part(name, devices, runs, scratch, log, limit=min(limit, left)))
        elif args.round == "21":
            results.append(round21_part(name, arguments, min(limit, left), scratch, args.dry_run, log))
        elif arguments is None:  # the whole command
            devices = ["cpu"] if args.dry_run else ["cpu", "cuda"]
            # Each run gets the part's whole limit: on an H200 a first CUDA run of the built-in model
            # spent over 20 s loading and compiling, and a shared slice cut it off.
            part = cli_part(name, devices, 3, scratch, log, limit=3 * len(devices) * min(limit, left))
            results.append(part)
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
