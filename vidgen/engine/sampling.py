"""A distilled model's sampler on a diffusers scheduler: a fixed sigma schedule, and
stochastic sampling whose noise follows the seed.

Step-distilled models (LightX2V's Wan LoRAs) are trained for a few fixed noise levels:
LightX2V's configs give `denoising_step_list` [1000, 750, 500, 250], i.e. sigmas 1, 0.75,
0.5, 0.25 before the flow shift. The pipelines call `scheduler.set_timesteps(steps)`
(WanPipeline takes no `sigmas`), so `fix_sigmas` makes the scheduler's `set_timesteps` use
the preset's sigmas whatever the pipeline passes; FlowMatchEulerDiscreteScheduler shifts
them as LightX2V does (shift 5: 1, 0.9375, 0.8333, 0.625).

LightX2V's Wan 2.1 sampler is stochastic: each step predicts the clean sample and noises it
afresh to the next sigma, which is FlowMatchEulerDiscreteScheduler's `stochastic_sampling`.
diffusers' Wan pipelines call `scheduler.step` without their generator, so that noise
would come from torch's global generator: the same seed would give another video each
run. `seed_step_noise` draws it instead from a CPU generator seeded by the run's starting
latents, which the seed decides (and which are drawn on the CPU, the same on every device).

The scheduler keeps its class (and its name in the recipe); both changes are methods
bound to the instance.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from typing import Any

import torch

from vidgen.errors import UsageError


def _set_fixed_timesteps(self, num_inference_steps=None, device=None, sigmas=None, **kwargs):
    """set_timesteps with the preset's sigmas (the step count is theirs: settings checked it)."""
    kwargs.pop("timesteps", None)
    return type(self).set_timesteps(self, None, device, sigmas=list(self.vidgen_sigmas), **kwargs)


def fix_sigmas(scheduler: Any, sigmas: list[float]) -> None:
    """Make `scheduler` run `sigmas` (before its shift) whatever step count it is given."""
    if "sigmas" not in inspect.signature(type(scheduler).set_timesteps).parameters:
        raise UsageError(
            f"a fixed sigma schedule needs a scheduler that takes sigmas (FlowMatchEulerDiscreteScheduler); "
            f"{type(scheduler).__name__} does not"
        )
    scheduler.vidgen_sigmas = tuple(float(sigma) for sigma in sigmas)
    scheduler.set_timesteps = types.MethodType(_set_fixed_timesteps, scheduler)


def _seeded_step(self, model_output, timestep, sample, *args, generator=None, **kwargs):
    """step, drawing its noise from a generator the run's starting latents seed."""
    if generator is None:
        if self.step_index is None:  # the first step after set_timesteps: a new run
            start = sample.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
            seed = int.from_bytes(hashlib.blake2b(start, digest_size=8).digest(), "little") >> 1
            self.vidgen_generator = torch.Generator("cpu").manual_seed(seed)
        generator = self.vidgen_generator
    return type(self).step(self, model_output, timestep, sample, *args, generator=generator, **kwargs)


def seed_step_noise(scheduler: Any) -> None:
    """A stochastic scheduler's step noise from the seed, not from torch's global generator."""
    scheduler.vidgen_generator = None
    scheduler.step = types.MethodType(_seeded_step, scheduler)


def stochastic_overrides(scheduler_class: type, stochastic: bool | None) -> dict[str, Any]:
    """The scheduler config that turns stochastic sampling on or off, or a UsageError."""
    if stochastic is None:
        return {}
    if "stochastic_sampling" not in inspect.signature(scheduler_class.__init__).parameters:
        raise UsageError(
            f"stochastic_sampling needs a scheduler that has it (FlowMatchEulerDiscreteScheduler); {scheduler_class.__name__} does not"
        )
    return {"stochastic_sampling": stochastic}
