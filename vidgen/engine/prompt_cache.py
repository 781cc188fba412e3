"""The text encoder's output reused: a batch's videos of one prompt (and `vidgen serve`'s
jobs on a pipeline it keeps loaded) encode that prompt once.

Kept with the loaded pipeline (a weak reference: unloading it drops them), one entry per
text: the prompt's and, where guidance uses it, the negative prompt's (a batch's lines
share theirs), keyed by the text, the sequence length and the device. The call then gets
`prompt_embeds` and `negative_prompt_embeds` instead of the texts. Each is what the
pipeline's own `encode_prompt` makes of that text (its negative prompt goes through the same
`_get_t5_prompt_embeds` as its prompt, `""` for none), with the sequence length its
`__call__` would have used, so the frames are the same. With model offloading, the text
encoder also stays off the card for every video after the first.

For the pipelines whose `encode_prompt` takes the Wan family's arguments (`ENCODERS`).
"""

from __future__ import annotations

import inspect
import weakref
from collections import OrderedDict
from typing import Any

# diffusers 0.42.1: these encode_prompt(prompt, negative_prompt, do_classifier_free_guidance,
# num_videos_per_prompt, prompt_embeds, negative_prompt_embeds, max_sequence_length, device)
# return (prompt_embeds, negative_prompt_embeds), and their __call__ takes both and uses guidance > 1.
ENCODERS = ("WanPipeline", "WanImageToVideoPipeline", "WanVideoToVideoPipeline", "SkyReelsV2Pipeline")
LIMIT = 16  # texts kept per pipeline (Wan's UMT5: 4 MB each at 512 tokens in bf16)

_caches: weakref.WeakKeyDictionary[Any, OrderedDict] = weakref.WeakKeyDictionary()


def _call_default(pipe: Any, name: str) -> Any:
    parameter = inspect.signature(type(pipe).__call__).parameters.get(name)
    return None if parameter is None else parameter.default


def _embeddings(pipe: Any, text: str, length: int, device: Any) -> Any:
    cache = _caches.setdefault(pipe, OrderedDict())
    key = (text, length, str(device))
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    cache[key] = pipe.encode_prompt(
        prompt=text, do_classifier_free_guidance=False, num_videos_per_prompt=1, max_sequence_length=length, device=device
    )[0]
    while len(cache) > LIMIT:
        cache.popitem(last=False)
    return cache[key]


def use_cached_embeddings(pipe: Any, arguments: dict[str, Any]) -> bool:
    """Replace the call's prompt and negative prompt by their embeddings, encoded now or
    earlier; False (the arguments unchanged) where the pipeline is not covered."""
    prompt = arguments.get("prompt")
    if type(pipe).__name__ not in ENCODERS or not isinstance(prompt, str) or "prompt_embeds" in arguments:
        return False
    guidance = arguments.get("guidance_scale", _call_default(pipe, "guidance_scale"))
    guided = guidance is not None and guidance > 1.0  # the pipeline's do_classifier_free_guidance
    length = arguments.get("max_sequence_length", _call_default(pipe, "max_sequence_length"))
    device = pipe._execution_device
    negative = arguments.pop("negative_prompt", None)
    arguments.pop("prompt")
    arguments["prompt_embeds"] = _embeddings(pipe, prompt, length, device)
    arguments["negative_prompt_embeds"] = _embeddings(pipe, negative or "", length, device) if guided else None
    return True
