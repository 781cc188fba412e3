"""What one model family needs that the generic call does not know: one module a family, keyed by
its pipeline class or the parameters only its pipelines take (Helios' pyramid steps, FramePack's
sections, LTX-2's conditions)."""

from __future__ import annotations

from collections.abc import Container

# Other names some pipelines give a standard call argument, and why: where a pipeline lacks the
# standard name and has the other, the value goes in under the other (generate.VideoGenerator), and
# the pipeline counts as taking it (model_check: whether a class takes an image).
ARGUMENT_ALIASES = {
    "num_frames": "frames",  # SANA-Video (SanaVideoPipeline, SanaImageToVideoPipeline)
    # Stable Video Diffusion: the guidance goes in as its ramp's top value, so it is not one
    # the pipeline "takes no" of (the warning in generate's call_arguments).
    "guidance_scale": "max_guidance_scale",
    "image": "cond_image",  # LTXI2VLongMultiPromptPipeline (ltx-video-story): a storyboard's start image
}


def argument_name(name: str, parameters: Container[str]) -> str:
    """`name`, or its alias where the pipeline's __call__ (`parameters`: its names) takes only the alias."""
    alias = ARGUMENT_ALIASES.get(name)
    return alias if name not in parameters and alias in parameters else name
