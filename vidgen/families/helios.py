"""Helios' pyramid sampling (helios-mid, helios-distilled and their -i2v presets): its steps given per
resolution stage (`PYRAMID_STEPS`), and its noise mended where diffusers 0.42.1 fails on strict CPU
LAPACK builds and some accelerators.

Between resolution stages HeliosPyramidPipeline.sample_block_noise draws each 2x2 patch's noise
with covariance (1 + gamma) I - gamma J (J: all ones). At the schedulers' shipped gamma = 1/3 the
all-ones direction has eigenvalue 1 - 3 gamma = 0: the matrix is singular. diffusers adds a 1e-8
jitter to the diagonal, but in float32 1 + 1e-8 rounds back to 1, so torch.linalg.cholesky is
handed an exactly singular matrix and refuses it ("not positive-definite") wherever LAPACK is strict
(vllm-project/vllm-omni #7224, #7643). The same matrix in float64 keeps the jitter (eps 2.2e-16)
and factors; its Cholesky factor, back in float32, is what diffusers meant to use: the noise along
the singular direction is 1e-4 instead of 0, everything else is unchanged, and the random draws
are the same ones in the same order.

`mend(pipe)` puts the float64 version on this one pipeline object (not on the class), until diffusers
mends its own. pipeline.py calls it on every pipeline it loads; it touches only Helios' pyramid class.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import torch

# Helios' pyramid pipeline (Helios-Mid, Helios-Distilled) denoises each chunk in resolution
# stages and takes its steps per stage as a list, with no num_inference_steps: --steps N is
# N steps in every stage, as the model's own examples give them ([20, 20, 20], [2, 2, 2]).
PYRAMID_STEPS = "pyramid_num_inference_steps_list"


def pyramid_stages(pipe: Any) -> int:
    """How many resolution stages a pyramid pipeline runs: its scheduler's `stages` (the
    list's length must equal it), else the length of the pipeline's own default list."""
    stages = getattr(getattr(pipe, "scheduler", None), "config", {}).get("stages")
    if isinstance(stages, int) and stages > 0:
        return stages
    default = inspect.signature(type(pipe).__call__).parameters[PYRAMID_STEPS].default
    return len(default) if isinstance(default, (list, tuple)) and default else 1


def takes_pyramid_steps(parameters: set[str]) -> bool:
    return "num_inference_steps" not in parameters and PYRAMID_STEPS in parameters


JITTER = 1e-8  # diffusers' own jitter, which float64 can hold next to 1 + gamma


def block_noise_factor(gamma: float, block_size: int, device: Any = None) -> torch.Tensor:
    """The Cholesky factor of one block's noise covariance, computed in float64, as float32."""
    cov = torch.eye(block_size, dtype=torch.float64, device=device) * (1 + gamma)
    cov -= torch.ones(block_size, block_size, dtype=torch.float64, device=device) * gamma
    cov += torch.eye(block_size, dtype=torch.float64, device=device) * JITTER
    return torch.linalg.cholesky(cov).float()


def _sample_block_noise(self, batch_size, channel, num_frames, height, width, patch_size=(1, 2, 2), device=None, generator=None):
    """diffusers 0.42.1's HeliosPyramidPipeline.sample_block_noise, line for line, but for the
    factor (block_noise_factor instead of a float32 Cholesky)."""
    if generator is None:
        generator = torch.Generator(device=device)
    elif isinstance(generator, list):
        generator = generator[0]
    _, ph, pw = patch_size
    block_size = ph * pw
    factor = block_noise_factor(self.scheduler.config.gamma, block_size, device)
    block_number = batch_size * channel * num_frames * (height // ph) * (width // pw)
    z = torch.randn(block_number, block_size, generator=generator, device=generator.device).to(device=device)
    noise = z @ factor.T
    noise = noise.view(batch_size, channel, num_frames, height // ph, width // pw, ph, pw)
    return noise.permute(0, 1, 2, 3, 5, 4, 6).reshape(batch_size, channel, num_frames, height, width)


def mend(pipe: Any) -> bool:
    """Give a Helios pyramid pipeline the float64 factor; True when `pipe` is one."""
    if type(pipe).__name__ != "HeliosPyramidPipeline" or not hasattr(pipe, "sample_block_noise"):
        return False
    pipe.sample_block_noise = types.MethodType(_sample_block_noise, pipe)
    return True
