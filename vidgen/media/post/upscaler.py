"""The learned upscaler: a `.pth`/`.safetensors` file whose architecture spandrel detects
(Real-ESRGAN and ESRGAN, SwinIR, SPAN, HAT, DAT, ...: the loader ComfyUI and chaiNNer use),
run frame by frame in tiles, on the GPU when there is one (`pip install 'vidgen[post]'`).

The file is read as tensors only (vidgen.media.post.weights), then spandrel builds the network from
the state dict; a file it does not recognise, or one that is not an RGB upscaler (a face
restorer, an inpainter, a 1x denoiser), is refused with one line before any frame is made.

Tiles: TILE x TILE pixels of the input, each run with OVERLAP pixels of its neighbours
around it as context and cropped back, so that 4x of a 720p frame fits a small card.

spandrel imports torchvision at its top for two architectures that are no upscalers (LaMa,
an inpainter; RestoreFormer, a face restorer). Where torchvision is missing, or cannot load
(a CUDA build beside a CPU torch), `_spandrel()` stands in a module whose functions raise,
for the import only, and takes it away again.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidgen.errors import UsageError
from vidgen.media.post import weights

TILE = 256  # input pixels a side: 4x of it is 1024x1024 of features at the output's end
OVERLAP = 16  # context each side of a tile, cropped away (Real-ESRGAN's own tile_pad is 10)


def _spandrel():
    """The spandrel module (see the module's docstring for torchvision)."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        import spandrel  # noqa: F401  (imported for the check below)

        return spandrel
    except ModuleNotFoundError as error:
        if error.name == "spandrel":
            raise UsageError("--upscale-model needs spandrel: pip install 'vidgen[post]'") from None
        if not (error.name or "").startswith("torchvision"):
            raise
    except RuntimeError:  # torchvision's own operators do not load (a CUDA build beside a CPU torch)
        pass
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith(("torchvision.", "spandrel"))]:
        del sys.modules[name]  # what the failed import left half made
    stand_in = {name: types.ModuleType(name) for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")}

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("this architecture needs torchvision, which is not installed")

    functional = stand_in["torchvision.transforms.functional"]
    functional.normalize = functional.rotate = missing
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest", BICUBIC="bicubic")
    stand_in["torchvision"].transforms = stand_in["torchvision.transforms"]
    stand_in["torchvision.transforms"].functional = functional
    sys.modules.update(stand_in)
    try:
        import spandrel
    finally:
        for name in stand_in:
            sys.modules.pop(name, None)
    return spandrel


def _descriptor(path: Path):
    """spandrel's descriptor of the file's network, on the CPU; not an RGB upscaler: UsageError."""
    spandrel = _spandrel()
    state = weights.read(path)
    if not isinstance(state, dict):
        raise UsageError(f"{path} holds no state dict")
    state = spandrel.canonicalize_state_dict(state)  # unwraps params_ema, state_dict, module.
    if not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise UsageError(f"{path} holds no state dict of tensors")
    try:
        model = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise UsageError(f"{path}: spandrel does not recognise its architecture (not an upscaler it knows)") from None
    except Exception as error:  # an architecture recognised whose tensors do not fit it
        raise UsageError(
            f"{path}: spandrel cannot build it ({type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''})"
        ) from None
    name = model.architecture.name
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose != "SR" or model.scale < 2:
        raise UsageError(f"{path} is a {name} {model.purpose} model of scale {model.scale}, not an upscaler")
    if model.input_channels != 3 or model.output_channels != 3:
        raise UsageError(f"{path} is a {name} upscaler of {model.input_channels}-channel images, not RGB")
    return model


def model_problem(path: Path) -> str | None:
    """Why `path` cannot be used as an upscaler, or None (read and built, not run)."""
    try:
        _descriptor(path)
    except UsageError as error:
        return error.message.replace(f"{path}: ", "").replace(f"{path} ", "")
    return None


class Upscaler:
    """A loaded upscaler: its network on the device, and what the recipe says of it."""

    def __init__(self, path: Path):
        self.path = path
        model = _descriptor(path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.type == "cuda" and model.supports_half else torch.float32
        self.model = model.to(self.device).to(self.dtype).eval()
        self.scale = model.scale
        self.architecture = model.architecture.name

    def upscale(self, frames: np.ndarray, report: Callable[[int, int], None]) -> np.ndarray:
        count, height, width = frames.shape[:3]
        scale = self.scale
        out = np.empty((count, height * scale, width * scale, 3), dtype=np.uint8)
        with torch.inference_mode():
            for index, frame in enumerate(frames):
                image = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)[None].to(self.dtype) / 255.0
                result = torch.empty((1, 3, height * scale, width * scale), dtype=self.dtype, device=self.device)
                for top in range(0, height, TILE):
                    for left in range(0, width, TILE):
                        bottom, right = min(top + TILE, height), min(left + TILE, width)
                        y0, x0 = max(top - OVERLAP, 0), max(left - OVERLAP, 0)
                        y1, x1 = min(bottom + OVERLAP, height), min(right + OVERLAP, width)
                        tile = self.model(image[..., y0:y1, x0:x1])
                        result[..., top * scale : bottom * scale, left * scale : right * scale] = tile[
                            ..., (top - y0) * scale : (bottom - y0) * scale, (left - x0) * scale : (right - x0) * scale
                        ]
                out[index] = (result[0].float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
                report(index + 1, count)
        return out
