"""One row of the table of settings (settings/table.py): `Setting`, what each of its fields
decides (the table's docstring), and the limits the rows use. No torch: `vidgen --help` reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit value
MAX_CRF = 51  # libx264's range; libvpx-vp9 takes up to 63 but 51 is plenty
# Upper limits far above any model's, so a typo (or 1e999) is refused before the
# arithmetic of snapping overflows or a run is planned that could never finish.
MAX_STEPS = 10_000
MAX_FRAMES = 100_000
MAX_SIDE = 16_384  # libx264's and libvpx's largest frame side
MAX_NUM_VIDEOS = 100_000
MAX_FPS = 1_000
MAX_TOKENS = 8192  # --max-sequence-length: above every video pipeline's text encoder (LTX-2: 1024)
MAX_GUIDANCE = 100  # classifier-free guidance beyond this only saturates the frames

DTYPE_ALIASES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
OFFLOAD_MODES = ("none", "model", "group", "sequential", "auto")

NUMBER = (int, float)  # a type that keeps 16 as 16 and takes 7.5 too (fps)


@dataclass(frozen=True)
class Setting:
    """One setting: see the module's docstring for what each field decides."""

    name: str
    type: Any  # str, int, float, bool, NUMBER, list or dict
    help: str = ""
    default: Any = None  # None: not set (a preset, or the pipeline, decides); list or dict: starts empty
    flag: tuple[str, ...] | None = ()  # () -> ("--name",); None: no command-line option
    commands: tuple[str, ...] = ("generate", "batch")
    batch_help: str | None = None  # where `batch` says it differently
    read: Callable[[Any], Any] | None = None  # turns the option's text into the setting's (JSON-ready: a server's client sends it)
    field: bool = True  # False: a value a layer gives that becomes other fields (size, seconds)
    preset: bool = False
    line: bool = False
    loads: bool = False
    recipe: bool = False
    call: str | None = None
    pipeline_default: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None  # the problem with a value, or None
    path: bool = False  # names a local file: the server's client makes it absolute
    item: Any = None  # a list's items' type, a dict's values' (GenerationSettings' field types)

    @property
    def label(self) -> str:
        """How messages name it: its option, else its preset key."""
        return self.flags[0] if self.flags else self.name

    @property
    def flags(self) -> tuple[str, ...]:
        if self.flag is None:
            return ()
        return self.flag or (f"--{self.name.replace('_', '-')}",)

    def on(self, command: str) -> bool:
        return bool(self.flags) and command in self.commands

    def option_type(self) -> Any:
        """The type Typer parses the option as (every option may be absent: None)."""
        if self.type in (list, dict):
            return Optional[list[str]]
        return Optional[self.type[-1] if isinstance(self.type, tuple) else self.type]
