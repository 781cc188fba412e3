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
