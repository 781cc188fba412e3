"""LTX-2 (LTX2ConditionPipeline): a video that conditions the start of the output."""

from __future__ import annotations

import sys
from typing import Any

from vidgen.errors import UsageError


def start_condition(pipe: Any, frames: list) -> Any:
    """LTX-2's conditioning item for a video at the start of the output (latent index 0,
    full strength, as the example in LTX2ConditionPipeline's docstring places a first frame);
    its class lives in the pipeline's own module."""
    condition_class = getattr(sys.modules[type(pipe).__module__], "LTX2VideoCondition", None)
    if condition_class is None:
        raise UsageError(f"{type(pipe).__name__} takes no input video; --video needs a video-to-video preset or model")
    return condition_class(frames=frames, index=0, strength=1.0)


def callback_tensor_inputs(parameters: Any) -> list[str] | None:
    """The `callback_on_step_end_tensor_inputs` to ask for, or None for the pipeline's default.
    LTXI2VLongMultiPromptPipeline (ltx-video-story; diffusers 0.42.1) hands the step callback its
    unpacked `latents` and takes them back as the packed ones, which breaks the next step: ask it
    for no tensors (vidgen then reads none, so no preview or resume latents for it)."""
    return [] if "prompt_segments" in parameters else None
