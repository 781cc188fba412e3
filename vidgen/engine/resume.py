"""`--resume-latents FILE`: go on from the step a stopped run saved (`--save-latents` and
Ctrl-C or SIGTERM during denoising), to the frames the run would have made.

What step k+1 needs is the latents after step k and the scheduler's state then. A
flow-matching Euler scheduler keeps none beyond its step index; UniPC (the Wan presets')
keeps its last model outputs, the sample before its last step, and its order counters,
all saved with the latents (`scheduler_state`) and put back before step k+1 runs
(`continuing`). Other schedulers, and stochastic sampling (whose noise generator has
moved on by step k), are refused: vidgen cannot put them back as they were.

The pipeline's own loop runs the steps: `continuing` shortens the timesteps it reads to
those after step k and starts the scheduler's step index at k.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from vidgen.errors import UsageError

# Scheduler class -> the attributes its step reads from the steps before (diffusers 0.42.1:
# FlowMatchEulerDiscreteScheduler.step reads only sigmas and the step index; UniPCMultistepScheduler.step
# also model_outputs, timestep_list, last_sample, lower_order_nums and this_order).
STATE = {
    "FlowMatchEulerDiscreteScheduler": (),
    "UniPCMultistepScheduler": ("model_outputs", "timestep_list", "last_sample", "lower_order_nums", "this_order"),
}


def resumable_problem(scheduler: Any) -> str | None:
    """Why vidgen cannot resume this scheduler, or None."""
    name = type(scheduler).__name__
    if name not in STATE:
        return f"{name} (vidgen resumes {' and '.join(STATE)})"
    if getattr(scheduler.config, "stochastic_sampling", False):
        return f"{name} with stochastic sampling (its noise generator cannot be put back)"
    return None


def scheduler_state(scheduler: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, values) that `continuing` puts back; None for a scheduler it cannot resume."""
    if resumable_problem(scheduler) is not None:
        return None
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, Any] = {}
    for name in STATE[type(scheduler).__name__]:
        value = getattr(scheduler, name)
        if isinstance(value, list):  # None until the warm-up steps fill it
            values[name] = len(value)
            for index, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    tensors[f"{name}.{index}"] = item
        elif isinstance(value, torch.Tensor):
            tensors[name] = value
        else:
            values[name] = value
    return tensors, values


def _put_back(scheduler: Any, tensors: dict[str, torch.Tensor], values: dict[str, Any], device: torch.device) -> None:
    for name in STATE[type(scheduler).__name__]:
        if name in values and isinstance(getattr(scheduler, name, None), list):
            setattr(
                scheduler,
                name,
                [tensors[f"{name}.{index}"].to(device) if f"{name}.{index}" in tensors else None for index in range(values[name])],
            )
        elif name in tensors:
            setattr(scheduler, name, tensors[name].to(device))
        else:
            setattr(scheduler, name, values.get(name))


@contextmanager
def continuing(scheduler: Any, step: int, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> Iterator[None]:
    """While a pipeline call runs: its loop sees the timesteps after `step`, and the scheduler
    starts there with its state as saved. The scheduler is as before afterwards."""
    problem = resumable_problem(scheduler)
    if problem is not None:
        raise UsageError(f"--resume-latents cannot resume {problem}")
    original = {name: getattr(scheduler, name) for name in ("set_timesteps", "set_begin_index", "step")}
    full: dict[str, Any] = {}

    def set_timesteps(*args, **kwargs):
        original["set_timesteps"](*args, **kwargs)
        full["timesteps"] = scheduler.timesteps
        scheduler.timesteps = scheduler.timesteps[step:]  # what the pipeline's loop reads, once, right after

    def set_begin_index(begin_index: int = 0):
        original["set_begin_index"](begin_index + step)

    def step_once(model_output, timestep, sample, *args, **kwargs):
        if "timesteps" in full:  # the first step of this call: the whole schedule (UniPC counts what is left from it) and the state
            scheduler.timesteps = full.pop("timesteps")
            _put_back(scheduler, tensors, values, sample.device)
        return original["step"](model_output, timestep, sample, *args, **kwargs)

    scheduler.set_timesteps, scheduler.set_begin_index, scheduler.step = set_timesteps, set_begin_index, step_once
    try:
        yield
    finally:
        for name in original:
            vars(scheduler).pop(name, None)  # the class's methods again


# The recipe entries that do not change the latents of the steps still to run.
_NOT_COMPARED = {"vidgen_version", "fps", "audio"}


def check_matches(saved: dict[str, Any], now: dict[str, Any], *, known_only: bool = False) -> None:
    """The run must be the one that was stopped: the same recipe (prompt, seed, steps,
    size, model, ...). `known_only`: compare only what is known before loading."""
    different = []
    for name in sorted(set(saved) | set(now)):
        if name in _NOT_COMPARED or (known_only and (now.get(name) is None or name == "dtype")):  # the dtype "auto" resolves at loading
            continue
        if saved.get(name) != now.get(name):
            different.append(f"{name} {saved.get(name)!r} there, {now.get(name)!r} here")
    if different:
        raise UsageError(f"--resume-latents: the file was made by another run ({'; '.join(different[:4])}); give the same command")


def check_before_loading(kept: Any, settings: Any, recipe_now: dict[str, Any]) -> None:
    """What a resumed run must be, known before any weights load."""
    if kept.finished:
        raise UsageError(
            f"{settings.resume_latents} holds a finished run's latents: `vidgen decode {settings.resume_latents} -o clip.mp4` makes its video"
        )
    if not kept.info.get("resumable"):
        raise UsageError(
            f"--resume-latents: {settings.resume_latents} was saved with {kept.info.get('scheduler')}, which vidgen cannot resume"
        )
    if settings.num_videos != 1:
        raise UsageError("--resume-latents goes on with one video; leave out --num-videos")
    if settings.cache not in (None, "none"):
        raise UsageError(f"--resume-latents with --cache {settings.cache}: a step cache's state is not saved; leave it out")
    check_matches(kept.recipe, recipe_now, known_only=True)
