"""A run stopped during denoising with --save-latents keeps its last finished step, and
--resume-latents goes on from it to the frames of a run that was never stopped (vidgen.engine.resume)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_reliability import one_error_line
from vidgen.engine.latents import read_file
from vidgen.media.readback import read_frames, read_recipe


@pytest.fixture
def signal_at_step():
    """`arm(signum, step)`: send this process `signum` while the denoiser runs step `step`
    (1-based; two calls a step with guidance), as Ctrl-C or `kill` would."""
    from diffusers import WanTransformer3DModel

    handles = []

    def arm(signum: int, step: int) -> None:
        calls = []

        def hook(module, args, output):
            if isinstance(module, WanTransformer3DModel):
                calls.append(1)
                if len(calls) == 2 * step - 1:
                    os.kill(os.getpid(), signum)

        handles.append(torch.nn.modules.module.register_module_forward_hook(hook))

    yield arm
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize(
    "model, signum, code, scheduler",
    [
        ("builtin", signal.SIGTERM, 143, "FlowMatchEulerDiscreteScheduler"),  # the built-in model's
        ("tiny", signal.SIGINT, 130, "UniPCMultistepScheduler"),  # the Wan presets'
    ],
)
def test_a_stopped_run_resumed_from_its_latents_makes_the_uninterrupted_runs_frames(
    run_cli, tiny_wan_dir, signal_at_step, model, signum, code, scheduler
):
    args = ["a red circle moving right on a black background", "--steps", "8", "--size", "32x32", "--frames", "9"]
    if model == "tiny":
        args += ["--model", str(tiny_wan_dir)]
    args += ["--seed", "7"]  # last: the resumed run leaves it out
    whole = run_cli(*args, "-o", "whole.mp4")
    assert whole.exit_code == 0, whole.stderr

    signal_at_step(signum, 3)
    stopped = run_cli(*args, "-o", "v.mp4", "--save-latents")
    assert stopped.exit_code == code, stopped.stderr
    line = one_error_line(stopped.stderr)
    assert "interrupted during denoising; nothing was written; the latents of step 3/8 are in v.latents.safetensors" in line
    assert "--resume-latents v.latents.safetensors" in line and not Path("v.mp4").exists()
    kept = read_file(Path("v.latents.safetensors"))
    assert (kept.step, kept.steps, kept.info["scheduler"]) == (3, 8, scheduler)

    changed = run_cli(*args[:-2], "--seed", "8", "-o", "v.mp4", "--resume-latents", "v.latents.safetensors")
    assert changed.exit_code == 2 and "the file was made by another run (seed 7 there, 8 here)" in changed.stderr

    resumed = run_cli(*args[:-2], "-o", "v.mp4", "--resume-latents", "v.latents.safetensors")  # the seed comes from the file
    assert resumed.exit_code == 0, resumed.stderr
    assert np.array_equal(read_frames(Path("v.mp4")), read_frames(Path("whole.mp4")))
    assert read_recipe(Path("v.mp4")) == read_recipe(Path("whole.mp4"))
