"""Issue 21, "GPU figures, second round": one part of the round in this process. gpu_suite.py runs the parts
in the issue's order, each in its own process with its own limit, and merges what each one wrote:

    python benchmarks/gpu_suite.py OUTDIR                       # the round, on a CUDA card (at most 8.7 min: --deadline 520)
    python benchmarks/gpu_suite.py OUTDIR --dry-run             # the same parts at tiny sizes on a CPU
    python benchmarks/round21.py PART --out FILE.json [--budget SECONDS] [--dry-run]   # one part alone

A part rewrites FILE.json after every variant, so a part stopped at its limit keeps what it measured, and
skips a variant that its own measurements so far say will not fit the budget (recorded as skipped, with
the seconds it needed). A variant that fails is recorded with its error and the next one runs; a variant
this machine cannot run (fp8 kernels, cuDNN attention, CUDA graphs and SageAttention on a CPU; a package
that is not installed) is recorded as skipped with the reason.

Budget (issue 21: 15 minutes of device time in all, one call of at most 8 minutes). Estimates for one H200,
from issue 12's figures there (Wan 2.1 1.3B at 480p, 81 frames, guidance 5: plain diffusers 1.244 s a step,
vidgen compiled 1.072, bf16 decode 1.8-2.6 s, a 2-step warm-up with compilation 13.6 s, about 6 s of it the
compile) and about 10 s of imports for each process (that machine's CPU imports slowly: the built-in model's
whole command on its CPU took 16.9 s). Not measured: every figure below is an estimate.
  1. big (165 s)      Wan 2.1 14B, eager, random bf16 weights built on the card (float32 init there, cast in
                      place). A step with guidance is 6.0x the 1.3B's FLOPs (3.3 PFLOP: linears 1.6, attention
                      1.8), so about 7.4 s a step in bf16 (11-12 s if it scales like the issue's "10x"), about
                      6 s with fp8-dynamic (fp8 matmuls speed up the linears only). Imports, VAE 12 s; bf16
                      (1 warm-up + 3 timed steps, decode) ~35 s; fp8-dynamic (build, quantize, 1 + 3) ~32 s;
                      fp8-dynamic with --offload model (3 steps, the first pays the onload; 14.5 GB each way)
                      ~31 s; the 4-step guidance-1 video ~14 s: 124 s. Then int8 (1 + 2 steps) ~30 s fits,
                      fp8 does not unless 14B runs faster than estimated (the part skips what will not fit).
  2. probe (55 s)     the built-in model on CUDA (7 M parameters, not compiled), the probe's 100 prompts for
                      lossless, --cache taylorseer, --quantize fp8-dynamic, --quantize int8, --fast: every
                      attribute's score and s/video. About 0.1-0.2 s a video: 10-20 s a mode; 3 to 5 modes fit.
  3. modes (80 s)     Wan 1.3B at 480p, 2 warm-up + 3 timed steps a variant: plain diffusers ~10 s, vidgen
                      lossless (compiled) ~18 s, --cache taylorseer at the real 50 steps (about 13 computed)
                      ~20 s, fp8-dynamic (compiled) ~20 s, --fast ~9 s, int8 ~20 s: int8 is the likely cut.
                      SageAttention is recorded as not usable at once (PyPI's sageattention is 1.0.6; diffusers'
                      `sage` needs 2.1.1, built from source against CUDA).
  4. lossless (75 s)  Wan 1.3B at 480p: plain ~10 s, then vidgen compiled with SDPA, `_native_cudnn`, CUDA
                      graphs (reduce-overhead) on the best backend, `_native_flash` at ~14 s each (Inductor's
                      cache from `modes` shortens the first), `flash` (flash-attn is not there: recorded at
                      once), max-autotune-no-cudagraphs last (minutes of GEMM autotuning: the likely cut).
  5. load (30 s)      a saved 1.3B folder (transformer and VAE, random weights, about 3 GB; the built-in model's
                      tiny text encoder: a real folder adds UMT5-XXL's 11 GB): vidgen's load_pipeline against
                      plain from_pretrained(...).to(device), alternating, twice each: imports 10 s, writing 6 s,
                      four loads ~10 s.
  6. cli (45 s)       (gpu_suite.py itself) the built-in model's whole command on CUDA, three runs, ~13 s each.
  7. preview (issue 36's addition, 70 s; the round's deadline 520 s) Wan 1.3B at 480p, 10 steps a video,
                      with and without --preview (round21_preview.py): a compile warm-up ~15 s, then about
                      14 s a pair (10 steps ~10.7 s, the decode 2-3 s), two pairs, imports 10 s.
The limits sum to 520 s, gpu_suite.py's default deadline: with the wheels' install (~10 s) the call takes
about 9 minutes (under the device's 10-minute limit a call); the machine's start (a minute or two) comes on top, and the rest of the 15 minutes is for
one rerun of a failed part (`--only PART`).

What the issue asks and this round cuts, to fit: warm-up of 1 step (not 2) for the 14B variants (eager, so
nothing compiles; one step brings cuBLAS and the allocator to their steady state, and a 14B step costs
~7 s); int8 and fp8 on 14B time 2 steps, not 3; the 14B is not compiled (vidgen would compile at 50 steps;
its warm-up on 40 blocks of 14B with quantized weights would cost a variant's budget); the 50-step bf16
video with guidance is computed from the measured s/step and decode; on Wan 1.3B each variant times 3 steps
and the 50-step videos are computed from them, except TaylorSeer's, which runs 50 steps (its steps are not
uniform); its PSNR against lossless is not given (no lossless 50-step video fits the budget: the probe judges
its quality); the 4-step video uses the faster of bf16 and fp8-dynamic (the weight-only int8 and fp8 compute
in bf16 after dequantizing, so they are not faster on these compute-bound steps, and they run last).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import round21_big, round21_preview, round21_small  # noqa: E402
from benchmarks import round21_wan as wan_parts  # noqa: E402

BUILTIN = REPO / "vidgen" / "embedded" / "weights" / "shapes"
PACKAGES = (
    "torch",
    "diffusers",
    "torchao",
    "transformers",
    "accelerate",
    "triton",
    "typer",
    "imageio-ffmpeg",
    "sageattention",
    "flash-attn",
)


def environment(device: str) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cuda": torch.version.cuda,
        "device": device,
        "cpu_threads": torch.get_num_threads(),
    }
    for name in PACKAGES:
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            facts[name] = None
    if device.startswith("cuda"):
        facts["device_name"] = torch.cuda.get_device_name(0)
        facts["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return facts


class Part:
    """The part's JSON, rewritten after every variant; each variant run, skipped or failed and recorded."""

    def __init__(self, name: str, out: Path, budget: float, device: str):
        self.out, self.device, self.deadline = out, device, time.monotonic() + budget
        self.data: dict[str, Any] = {"part": name, "budget_seconds": budget, "environment": environment(device), "records": []}
        self.save()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        temporary = self.out.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(temporary, self.out)

    def __call__(self, name: str, action: Callable[[], dict[str, Any]], estimate: float | None) -> dict[str, Any]:
        from vidgen.errors import UsageError

        started = time.monotonic()
        if estimate is not None and estimate > self.left():
            record = {"variant": name, "skipped": f"budget: about {estimate:.0f} s needed, {self.left():.0f} s left"}
        else:
            print(f"[round21] {name} ...", file=sys.stderr, flush=True)
            try:
                record = action()
            except (wan_parts.Skip, UsageError) as why:
                record = {"variant": name, "skipped": getattr(why, "message", None) or str(why)}
            except Exception as error:  # a failed variant is a figure too: recorded, and the next one runs
                traceback.print_exc()
                record = {"variant": name, "error": f"{type(error).__name__}: {' '.join(str(error).split())[:400]}"}
            finally:
                wan_parts.release(self.device)
        record.setdefault("variant", name)
        record["seconds"] = round(time.monotonic() - started, 1)
        self.data["records"].append(record)
        self.save()
        print(f"[round21] {json.dumps(record, default=str)}", file=sys.stderr, flush=True)
        return record


# ---- part 2, first half: the built-in model's probe ----


def part_probe(run: Part, device: str, count: int) -> None:
    """The probe's prompts through vidgen's path for each mode: every attribute's score, s/video, and the
    drop in points from lossless (issue 21's bar: within 3 points on every attribute)."""
    from benchmarks.probe_shapes import evaluate
    from training.probe import ATTRIBUTES
    from vidgen.engine.acceleration import FAST_CACHE

    modes = [
        ("lossless", {}),
        ("--cache taylorseer", {"cache": "taylorseer"}),
        ("--quantize fp8-dynamic", {"quantize": "fp8-dynamic"}),
        ("--quantize int8", {"quantize": "int8"}),
        (f"--fast ({FAST_CACHE})", {"cache": FAST_CACHE}),
    ]
    lossless: dict[str, Any] = {}
    for name, overrides in modes:

        def action(name=name, overrides=overrides) -> dict[str, Any]:
            report = evaluate(count=count, seed=0, held_out=False, model=None, overrides={"device": device, **overrides})
            record = {
                "variant": name,
                "prompts": count,
                **{k: round(100 * v, 1) for k, v in report["accuracy"].items()},
                "seconds_per_video": report["seconds_per_video"],
                "most_common_errors": report["most_common_errors"][:4],
            }
            if lossless:
                drops = {a: round(lossless[a] - record[a], 1) for a in (*ATTRIBUTES, "visible")}
                record["worst_drop_points"] = max(drops.values())
                record["within_3_points"] = record["worst_drop_points"] <= 3
                record["speedup_per_video"] = round(lossless["seconds_per_video"] / record["seconds_per_video"], 3)
            else:
                lossless.update(record)
            return record

        estimate = count * lossless["seconds_per_video"] * 1.3 + 5 if lossless else None
        run(name, action, estimate)


# ---- part 4, first half: load time of a saved 1.3B folder ----


def part_load(run: Part, device: str, dry: bool, scratch: Path) -> None:
    """A WanPipeline folder with the 1.3B's transformer and VAE (random weights, safetensors) and the
    built-in model's tiny tokenizer and text encoder (WanPipeline needs both; a real folder's UMT5-XXL adds
    11 GB that neither loader is measured on here). Loaded alternately as plain diffusers does it and as
    vidgen does (load_pipeline: the folder's checks, then device_map straight onto the card), twice each:
    the first of each reads through the OS file cache too (the folder was just written)."""
    import torch
    from diffusers import DiffusionPipeline

    from vidgen.engine import loading as loader
    from vidgen.engine.prepare import prepare_settings

    folder = scratch / "wan2.1-t2v-1.3b-random"
    wan = wan_parts.Wan(wan_parts.config_folder("wan2.1-t2v-1.3b", scratch, dry), device)

    def write() -> dict[str, Any]:
        shutil.copytree(BUILTIN, folder)
        for name, build in (("transformer", wan.transformer), ("vae", lambda: wan.vae(torch.float32))):
            module = build()
            shutil.rmtree(folder / name)
            module.to("cpu").save_pretrained(folder / name, safe_serialization=True)
            del module
        size = sum(path.stat().st_size for path in folder.rglob("*.safetensors"))
        return {"variant": "write the folder", "weights_gib": round(size / 2**30, 3), "note": "transformer bf16, VAE float32"}

    if not run("write the folder", write, None).get("weights_gib"):
        return

    def plain() -> Any:
        return DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.bfloat16).to(device)

    def mine() -> Any:
        settings, _ = prepare_settings(
            "load", preset="wan2.1-t2v-1.3b", model=str(folder), overrides={"device": device, "dtype": "bfloat16"}
        )
        return loader.load_pipeline(settings)

    loaders = {"diffusers from_pretrained(...).to(device)": plain, "vidgen load_pipeline": mine}
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for attempt in (1, 2):
        for name, load in loaders.items():

            def action(name=name, load=load, attempt=attempt) -> dict[str, Any]:
                started = time.perf_counter()
                loaded = load()
                wan_parts.sync(device)
                times[name].append(round(time.perf_counter() - started, 3))
                del loaded
                return {"variant": f"{name}, load {attempt}", "load_seconds": times[name][-1]}

            run(f"{name}, load {attempt}", action, max(times[name], default=0) * 1.5 or None)
    run(
        "load time (the second of each)",
        lambda: {
            "variant": "load time (the second of each)",
            "seconds_each": times,
            "load_seconds": {name: values[-1] for name, values in times.items() if values},
        },
        None,
    )


# ---- the table ----

COLUMNS = [
    ("variant", "variant"),
    ("skipped", "skipped"),
    ("error", "error"),
    ("seconds_per_step_median", "s/step"),
    ("step_seconds", "each step s"),
    ("speedup_per_step_vs_bf16", "x bf16 a step"),
    ("speedup_per_step", "x plain a step"),
    ("steps", "steps"),
    ("whole_video_seconds", "whole video s"),
    ("whole_video_50_steps", "50-step video s"),
    ("whole_video_50_steps_computed", "50-step video s (computed)"),
    ("speedup_whole_video_50_steps", "x plain, 50-step video"),
    ("speedup_of_4_step_video", "4-step video's speed-up"),
    ("decode_seconds", "decode s"),
    ("peak_memory_gib", "peak GiB"),
    ("peak_denoise_gib", "peak before decode GiB"),
    ("transformer_resident_gib", "transformer GiB"),
    ("transformer_predicted_gib", "vidgen's estimate GiB"),
    ("quantized_linears", "quantized Linear"),
    ("psnr_vs_diffusers_db", "PSNR vs plain dB"),
    ("psnr_vs_vidgen_db", "PSNR vs lossless dB"),
    ("meets_lossless_target", "<= 0.95 s, >= 40 dB"),
    ("targets", "targets"),
    ("cached_steps", "cached steps"),
    ("offload", "offload"),
    ("compiled", "compiled"),
    ("attention_backend", "attention"),
    ("color", "colour %"),
    ("background", "background %"),
    ("shape", "shape %"),
    ("motion", "motion %"),
    ("visible", "visible %"),
    ("worst_drop_points", "worst drop (points)"),
    ("within_3_points", "within 3 points"),
    ("seconds_per_video", "s/video"),
    ("speedup_per_video", "x lossless"),
    ("weights_gib", "weights GiB"),
    ("load_seconds", "load s"),
    ("warmup_seconds", "warm-up s"),
    ("build_seconds", "build s"),
    ("computed", "how"),
    ("note", "note"),
    ("seconds", "seconds"),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        text = ", ".join(_cell(item) for item in value)
    elif isinstance(value, dict):
        text = "; ".join(f"{key}: {_cell(item)}" for key, item in value.items())
    else:
        text = " ".join(str(value).split()).replace("|", "/")
    return text if len(text) <= 160 else text[:157] + "..."


def markdown(report: dict[str, Any]) -> str:
    """One part's table: the columns its records have, in COLUMNS' order."""
    env = report.get("environment", {})
    versions = ", ".join(f"{name} {env.get(name)}" for name in PACKAGES if env.get(name))
    records = report.get("records", [])
    columns = [(key, title) for key, title in COLUMNS if any(key in record for record in records)]
    workload = f"; workload: {json.dumps(report['workload'])}" if report.get("workload") else ""
    lines = [f"{env.get('device_name', env.get('device', '?'))}; {versions}; CUDA {env.get('cuda')}{workload}", ""]
    if columns:
        lines += ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(record.get(key)) for key, _ in columns) + " |" for record in records]
    return "\n".join(lines) + "\n"


PARTS = ("big", "probe", "modes", "lossless", "load", "preview")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=PARTS)
    parser.add_argument("--out", type=Path, required=True, help="the part's JSON, rewritten after every variant")
    parser.add_argument("--budget", type=float, default=600, help="seconds this part may take; variants that would not fit are skipped")
    parser.add_argument("--until", type=float, help="a wall-clock time (epoch seconds) the part must end by, imports included")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: every code path, no figure")
    args = parser.parse_args(argv)
    import torch

    if args.until is not None:  # the seconds spent importing count against the part's limit too
        args.budget = min(args.budget, args.until - time.time())

    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    run = Part(args.part, args.out, args.budget, device)
    scratch = Path(tempfile.mkdtemp(prefix=f"vidgen-round21-{args.part}-"))
    try:
        if args.part == "probe":
            part_probe(run, device, count=2 if args.dry_run else 100)
        elif args.part == "load":
            part_load(run, device, args.dry_run, scratch)
        else:
            name = "wan2.1-t2v-14b" if args.part == "big" else "wan2.1-t2v-1.3b"
            wan = wan_parts.Wan(wan_parts.config_folder(name, scratch, args.dry_run), device)
            run.data["workload"] = wan.workload
            if args.part == "preview":
                round21_preview.part_preview(run, wan, pairs=1 if args.dry_run else 2)
            else:
                {"big": round21_big.part_big, "modes": round21_small.part_modes, "lossless": round21_small.part_lossless}[args.part](
                    run, wan
                )
    finally:
        run.save()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all("error" not in record for record in run.data["records"]) else 1


if __name__ == "__main__":
    sys.exit(main())
