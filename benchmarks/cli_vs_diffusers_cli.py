"""Time the whole `vidgen` command against `diffusers-cli run` on the same model folder.

    python benchmarks/cli_vs_diffusers_cli.py --model DIR --runs 5 --steps 20 --size 64x64 --frames 17
    python benchmarks/cli_vs_diffusers_cli.py            # the built-in model, its preset's settings

Both are separate processes started the way a user starts them (interpreter start-up,
imports, loading, generating and writing the file all count), alternating
vidgen / diffusers-cli so a busy machine slows both alike; the median of each is reported.
Same model folder, prompt, seed, steps, guidance, size, frames, fps and dtype (float32).
diffusers-cli also writes every frame as PNG (it has no switch to stop that); vidgen
writes one MP4 with the recipe inside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.timing import alternate, medians, print_round  # noqa: E402

BUILTIN_WEIGHTS = REPO / "vidgen" / "embedded" / "weights" / "shapes"
PROMPT = "a red circle moves left on a black background"


def commands(args, out_dir: Path) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    width, height = args.size.split("x")
    vidgen = [
        str(bin_dir / "vidgen"),
        PROMPT,
        "--model",
        args.model,
        "--steps",
        str(args.steps),
        "--guidance",
        str(args.guidance),
        "--size",
        args.size,
        "--frames",
        str(args.frames),
        "--fps",
        str(args.fps),
        "--seed",
        str(args.seed),
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--quiet",
        "--overwrite",
        "-o",
        str(out_dir / "vidgen.mp4"),
    ]
    if args.preset:
        vidgen += ["--preset", args.preset]
    call = {
        "prompt": PROMPT,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "width": int(width),
        "height": int(height),
        "num_frames": args.frames,
    }
    call.update(json.loads(args.extra_call))
    diffusers_cli = [
        str(bin_dir / "diffusers-cli"),
        "run",
        "--model",
        args.model,
        "--dtype",
        "float32",
        "--device-map",
        "cpu",
        "--pipeline-kwargs",
        json.dumps(call),
        "--seed",
        str(args.seed),
        "--fps",
        str(args.fps),
        "-o",
        str(out_dir / "diffusers-cli.mp4"),
    ]
    return {"vidgen": vidgen, "diffusers-cli": diffusers_cli}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(BUILTIN_WEIGHTS))
    parser.add_argument("--preset", help="vidgen preset to use with --model (default: shapes for the built-in weights)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--extra-call",
        default='{"max_sequence_length": 16}',
        help="JSON merged into diffusers-cli's pipeline kwargs (vidgen takes these from its preset)",
    )
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    if not (Path(args.model) / "model_index.json").is_file():
        raise SystemExit(f"{args.model} is not a diffusers model folder (the built-in weights may not be trained yet)")
    if args.preset is None and Path(args.model).resolve() == BUILTIN_WEIGHTS.resolve():
        args.preset = "shapes"

    out_dir = Path(tempfile.mkdtemp(prefix="cli-vs-diffusers-cli-"))
    try:
        runs = commands(args, out_dir)
        times = alternate(
            {name: (command, None) for name, command in runs.items()},
            runs=args.runs,
            cwd=out_dir,
            swap=True,
            report=print_round("run", sys.stderr),
        )
        times = {name: [round(value, 3) for value in values] for name, values in times.items()}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    import diffusers
    import torch

    median_seconds = {name: round(value, 3) for name, value in medians(times).items()}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version()},
        "settings": {
            "model": args.model,
            "preset": args.preset,
            "steps": args.steps,
            "guidance": args.guidance,
            "size": args.size,
            "frames": args.frames,
            "fps": args.fps,
            "seed": args.seed,
            "dtype": "float32",
        },
        "seconds": times,
        "median_seconds": median_seconds,
        "vidgen_over_diffusers_cli": round(median_seconds["vidgen"] / median_seconds["diffusers-cli"], 3),
        "commands": {name: " ".join(command) for name, command in runs.items()},
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_path:
        Path(args.json_path).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
