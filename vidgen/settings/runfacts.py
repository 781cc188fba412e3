"""What ran, beside what was asked: `RunFacts`.

`GenerationSettings` is the request, frozen once built (settings.build_settings, snapped by
prepare.merge_settings). Loading the pipeline decides the rest: the device and the dtype it
runs in ("auto" resolved), its class (an ad-hoc --model's is known only then), and the
pipeline's own values for what the request left unset (an ad-hoc --model's steps, guidance,
frames and size, Wan 2.2 A14B's boundary ratio, a guider's scale). They are recorded here,
once after loading (generate.VideoGenerator.run_facts), and never written into the request:
the recipe and the JSON records are built from both (runner.build_recipe, `recorded`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Union

from vidgen.settings.table import GenerationSettings


@dataclass(frozen=True)
class RunFacts:
    """What one run of a loaded pipeline was, for the settings it ran."""

    device: str  # where the computation ran (the offload target with offloading)
    dtype: str  # the resolved one: float32, float16 or bfloat16, never "auto"
    pipeline_class: str  # the class that was loaded
    # (setting, value): the pipeline's own value for each setting the request left None.
    defaults: tuple[tuple[str, Union[int, float]], ...] = ()

    def filled_in(self, settings: GenerationSettings) -> GenerationSettings:
        """The settings as they run: the request with the pipeline's own values where it set none."""
        return replace(settings, **dict(self.defaults)) if self.defaults else settings

    def recorded(self, settings: GenerationSettings) -> dict[str, Any]:
        """The settings' fields a record (recipe, manifest) takes from what ran instead of what
        was asked: the dtype that ran, the preset's pipeline class or else the one loaded,
        and the pipeline's defaults filled in."""
        return {"dtype": self.dtype, "pipeline_class": settings.pipeline_class or self.pipeline_class, **dict(self.defaults)}
