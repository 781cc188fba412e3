"""What every training stage shares: its folder and resumable state file, the random state it resumes with,
the EMA of its weights, the learning-rate schedule, bf16 autocast and the log.

    stage = Stage(work, "vae")                     # work/vae/: state.pt (atomic) and scores.jsonl
    state = stage.load()                           # None on a first run; else resume from it
    stage.save({... "step": step, "seconds": spent, "random": random_state(rng, generator)})
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import torch

CHECKPOINT_SECONDS = 180  # a stage writes its state.pt this often, and once more when it ends


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def format_scores(scores: dict) -> str:
    return " ".join(f"{k} {v:.0%}" for k, v in scores.items())


class Stage:
    """A stage's folder: a resumable state file (written atomically) and a log of its probe scores."""

    def __init__(self, work: Path, name: str) -> None:
        self.folder = work / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_path = self.folder / "state.pt"

    def load(self) -> dict | None:
        if not self.state_path.exists():
            return None
        # On the CPU whatever device wrote it: a stage trained on a GPU resumes or exports anywhere.
        return torch.load(self.state_path, weights_only=False, map_location="cpu")

    def save(self, state: dict) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.state_path)

    def record(self, entry: dict) -> None:
        with open(self.folder / "scores.jsonl", "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def random_state(rng: random.Random, generator: torch.Generator) -> dict:
    return {"python": rng.getstate(), "torch": generator.get_state()}


def restore_random_state(state: dict, rng: random.Random, generator: torch.Generator) -> None:
    rng.setstate(state["python"])
    generator.set_state(state["torch"])


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():  # one fused call: a loop over the parameters costs a GPU launch each
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def autocast(device: str, enabled: bool = True):
    """bfloat16 autocast where bfloat16 is native: a GPU's tensor cores, a CPU with AMX or AVX-512
    (convolutions 1.4-2x faster on the Xeon the recipe was found on). An AVX2-only CPU (the AMD
    EPYC VMs of 2026-12) emulates it, minutes a decoder step instead of seconds: float32 there."""
    kind = torch.device(device).type
    if kind == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        enabled = False
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled)


def learning_rate_factor(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up over steps, then cosine to 10% over the share of the stage's time budget spent
    (stages are budgeted in minutes, so the schedule cannot assume a step count)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
