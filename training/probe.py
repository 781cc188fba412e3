"""Judge a Shapes video the way a person would: find the object by colour, then name its colour,
the background, the shape and the motion.

The judge knows nothing about the model; it reads only pixels, so it scores rendered ground truth
and generated videos alike (tests/test_embedded_probe.py checks it on rendered clips).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training import shapes

MIN_OBJECT_PIXELS = 12  # a frame with fewer object pixels than this has no visible object
OBJECT_DISTANCE = 60.0  # RGB distance from the background colour that counts as object
# Fill of the bounding box: square 1.0, circle pi/4 = 0.785, triangle 0.5; cut halfway between.
TRIANGLE_BELOW, SQUARE_ABOVE = 0.64, 0.89
# Ground truth moves at least a third of the frame and changes area at least 2.25x; cut at half of that.
TRAVEL_SHARE, AREA_RATIO = 1 / 6, 1.5


@dataclass
class Judgement:
    color: str | None
    background: str
    shape: str | None
    motion: str | None
    visible_share: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    distances = [np.linalg.norm(rgb - np.array(palette[n], dtype=np.float32)) for n in names]
    return names[int(np.argmin(distances))]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The biggest 4-connected region of a 2D mask (stray pixels from decoding noise are dropped)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best_label, best_size, label = 0, 0, 0
    height, width = mask.shape
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        label += 1
        stack, size = [start], 0
        labels[start] = label
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    stack.append((ny, nx))
        if size > best_size:
            best_label, best_size = label, size
    return labels == best_label if best_size else np.zeros_like(mask)


def judge(frames: np.ndarray) -> Judgement:
    """frames: uint8 (T, H, W, 3)."""
    pixels = frames.astype(np.float32)
    num_frames, height, width, _ = pixels.shape
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], axis=1)
    background_rgb = np.median(border.reshape(-1, 3), axis=0)
    background = _nearest(background_rgb, shapes.BACKGROUND_COLORS)

    object_pixels, centres, areas, fills = [], [], [], []
    for frame in pixels:
        mask = np.linalg.norm(frame - background_rgb, axis=-1) > OBJECT_DISTANCE
        mask = _largest_component(mask)
        area = int(mask.sum())
        if area < MIN_OBJECT_PIXELS:
            continue
        ys, xs = np.nonzero(mask)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        object_pixels.append(frame[mask])
        centres.append((xs.mean(), ys.mean()))
        areas.append(area)
        fills.append(area / box)
    visible_share = len(areas) / num_frames
    if len(areas) < 2:
        return Judgement(None, background, None, None, visible_share)

    candidates = {k: v for k, v in shapes.OBJECT_COLORS.items() if k != background}
    color = _nearest(np.median(np.concatenate(object_pixels), axis=0), candidates)
    fill = float(np.median(fills))
    shape = "triangle" if fill < TRIANGLE_BELOW else "square" if fill > SQUARE_ABOVE else "circle"

    centres_array, areas_array = np.array(centres), np.array(areas, dtype=np.float32)
    ends = max(1, len(areas) // 4)  # average the first and last quarter: robust to a wobbly frame
    dx, dy = centres_array[-ends:].mean(axis=0) - centres_array[:ends].mean(axis=0)
    area_ratio = areas_array[-ends:].mean() / areas_array[:ends].mean()
    if max(abs(dx), abs(dy)) >= TRAVEL_SHARE * width:
        if abs(dx) >= abs(dy):
            motion = "right" if dx > 0 else "left"
        else:
            motion = "down" if dy > 0 else "up"
    elif area_ratio >= AREA_RATIO:
        motion = "growing"
    elif area_ratio <= 1 / AREA_RATIO:
        motion = "shrinking"
    else:
        motion = "still"
    return Judgement(color, background, shape, motion, visible_share)


ATTRIBUTES = ("color", "background", "shape", "motion")


def score(results: list[tuple[shapes.ClipSpec, Judgement]]) -> dict[str, float]:
    """Accuracy per attribute and the share of frames with a visible object."""
    report = {}
    for attribute in ATTRIBUTES:
        report[attribute] = float(np.mean([getattr(spec, attribute) == getattr(j, attribute) for spec, j in results]))
    report["visible"] = float(np.mean([j.visible_share for _, j in results]))
    return report
