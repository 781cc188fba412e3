"""The Shapes domain: procedurally rendered clips of one shape on a plain background, with captions.

This is the training data of vidgen's built-in model and the ground truth of its probe.
Everything is deterministic given a seed:

    >>> clip = render_clip(sample_spec(random.Random(0)))   # uint8 array (frames, height, width, 3)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle")
OBJECT_COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "white": (245, 245, 245),
    "purple": (150, 60, 200),
}
BACKGROUND_COLORS = {
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "white": (245, 245, 245),
}
MOTIONS = ("left", "right", "up", "down", "growing", "shrinking", "still")

# Combinations kept out of training, so the probe can check that the model composes words it has
# only seen apart (issue 3's held-out check).
HELD_OUT = (
    {"color": "purple", "shape": "triangle"},
    {"motion": "growing", "background": "gray"},
)

FRAME_SIZE = 64
NUM_FRAMES = 17
SUPERSAMPLE = 4  # render at 4x and average, so edges are anti-aliased like a real video's


@dataclass(frozen=True)
class ClipSpec:
    shape: str
    color: str
    background: str
    motion: str
    # Object side length (bounding box, pixels) and centre, at the first and last frame.
    start_size: float
    end_size: float
    start_center: tuple[float, float]
    end_center: tuple[float, float]

    def is_held_out(self) -> bool:
        return _in_held_out({"shape": self.shape, "color": self.color, "background": self.background, "motion": self.motion})


def _in_held_out(attributes: dict[str, str]) -> bool:
    return any(all(attributes[k] == v for k, v in combo.items()) for combo in HELD_OUT)


def sample_attributes(rng: random.Random, *, held_out: bool | None = False) -> dict[str, str]:
    """Draw shape, colours and motion. held_out=False excludes HELD_OUT, True draws only from it, None ignores it."""
    while True:
        background = rng.choice(list(BACKGROUND_COLORS))
        attributes = {
            "shape": rng.choice(SHAPES),
            "color": rng.choice([c for c in OBJECT_COLORS if c != background]),
            "background": background,
            "motion": rng.choice(MOTIONS),
        }
        if held_out is None or _in_held_out(attributes) == held_out:
            return attributes


def sample_spec(
    rng: random.Random, *, size: int = FRAME_SIZE, held_out: bool | None = False, canonical: bool = False, **fixed: str
) -> ClipSpec:
    """A random clip. Keyword arguments (shape=, color=, background=, motion=) pin attributes.

    canonical=True draws each motion in one layout with a few pixels of jitter (centred, large, the full
    travel) instead of anywhere in the frame: the built-in model's training set (see CANONICAL_NOTE)."""
    attributes = sample_attributes(rng, held_out=held_out)
    attributes.update(fixed)
    if canonical:
        return _canonical_spec(rng, attributes, size)
    motion = attributes["motion"]
    third = size / 3
    if motion in ("left", "right", "up", "down"):
        side = rng.uniform(0.19, 0.30) * size
        travel = rng.uniform(third + 2, size - side - 2)
        along_start = rng.uniform(side / 2 + 1, size - side / 2 - 1 - travel)
        across = rng.uniform(side / 2 + 1, size - side / 2 - 1)
        start, end = _travel_ends(motion, along_start, along_start + travel, across)
        start_size = end_size = side
    elif motion in ("growing", "shrinking"):
        small = rng.uniform(0.16, 0.24) * size
        large = min(small * rng.uniform(1.7, 2.4), 0.62 * size)  # side ratio >= 1.5 -> area >= 2.25x
        centre = (rng.uniform(large / 2 + 1, size - large / 2 - 1), rng.uniform(large / 2 + 1, size - large / 2 - 1))
        start, end = centre, centre
        start_size, end_size = (small, large) if motion == "growing" else (large, small)
    else:
        side = rng.uniform(0.2, 0.45) * size
        centre = (rng.uniform(side / 2 + 1, size - side / 2 - 1), rng.uniform(side / 2 + 1, size - side / 2 - 1))
        start, end, start_size, end_size = centre, centre, side, side
    return ClipSpec(attributes["shape"], attributes["color"], attributes["background"], motion, start_size, end_size, start, end)


def _travel_ends(motion: str, low: float, high: float, across: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end centres of a straight move between `low` < `high` along its axis, at `across`."""
    along_start, along_end = (high, low) if motion in ("left", "up") else (low, high)
    if motion in ("left", "right"):
        return (along_start, across), (along_end, across)
    return (across, along_start), (across, along_end)


# Why a canonical layout: a denoiser this small, trained for an hour on two CPU cores, learned colour and
# background at once but not to commit to one object among the many places a prompt allows; its samples
# held several blobs at once (shared/TRAINING-NOTES.md, docs/embedded-model.md). With one layout per
# motion the prompt decides the video up to a few pixels, and a larger object keeps its corners through
# the 4x autoencoder. The prompt's every word still decides what is drawn; only where it starts is fixed.
CANONICAL_NOTE = "each motion in one centred layout with a few pixels of jitter"
JITTER = 3.0


def _canonical_spec(rng: random.Random, attributes: dict[str, str], size: int) -> ClipSpec:
    motion, middle = attributes["motion"], size / 2

    def jitter() -> float:
        return rng.uniform(-JITTER, JITTER)

    if motion in ("left", "right", "up", "down"):
        side = rng.uniform(0.28, 0.33) * size
        near, far = side / 2 + 2 + abs(jitter()), size - side / 2 - 2 - abs(jitter())
        start, end = _travel_ends(motion, near, far, middle + jitter())
        start_size = end_size = side
    elif motion in ("growing", "shrinking"):
        small = rng.uniform(0.22, 0.26) * size
        large = rng.uniform(0.54, 0.6) * size  # area ratio above 4: growth the probe cannot miss
        start = end = (middle + jitter(), middle + jitter())
        start_size, end_size = (small, large) if motion == "growing" else (large, small)
    else:
        side = rng.uniform(0.36, 0.44) * size
        start = end = (middle + jitter(), middle + jitter())
        start_size = end_size = side
    return ClipSpec(attributes["shape"], attributes["color"], attributes["background"], motion, start_size, end_size, start, end)


def _coverage(shape: str, side: float, center: tuple[float, float], size: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape, from a supersampled grid."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    x, y = np.meshgrid(coords, coords)
    dx, dy = x - center[0], y - center[1]
    half = side / 2
    if shape == "circle":
        inside = dx * dx + dy * dy <= half * half
    elif shape == "square":
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "triangle":
        # Apex up, base down, filling half of its bounding box.
        rel = (dy + half) / side  # 0 at the apex row, 1 at the base
        inside = (rel >= 0) & (rel <= 1) & (np.abs(dx) <= rel * half)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def render_clip(spec: ClipSpec, *, num_frames: int = NUM_FRAMES, size: int = FRAME_SIZE) -> np.ndarray:
    """Render a clip as uint8 (num_frames, size, size, 3)."""
    object_rgb = np.array(OBJECT_COLORS[spec.color], dtype=np.float32)
    background_rgb = np.array(BACKGROUND_COLORS[spec.background], dtype=np.float32)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        a = t / max(num_frames - 1, 1)
        # Grow and shrink the area linearly, so the change looks steady rather than accelerating.
        area = (1 - a) * spec.start_size**2 + a * spec.end_size**2
        side = float(np.sqrt(area))
        center = (
            (1 - a) * spec.start_center[0] + a * spec.end_center[0],
            (1 - a) * spec.start_center[1] + a * spec.end_center[1],
        )
        cover = _coverage(spec.shape, side, center, size)[..., None]
        frames[t] = np.round(cover * object_rgb + (1 - cover) * background_rgb).astype(np.uint8)
    return frames


_MOTION_PHRASES = {
    "left": ("moving left", "moving to the left", "going left", "sliding left"),
    "right": ("moving right", "moving to the right", "going right", "sliding right"),
    "up": ("moving up", "moving upward", "going up", "rising"),
    "down": ("moving down", "moving downward", "going down", "falling"),
    "growing": ("growing", "getting bigger", "expanding", "growing larger"),
    "shrinking": ("shrinking", "getting smaller", "contracting", "shrinking away"),
    "still": ("standing still", "not moving", "staying still", "resting in place"),
}
_MOTION_VERBS = {
    "left": ("moves left", "slides left", "goes left"),
    "right": ("moves right", "slides right", "goes right"),
    "up": ("moves up", "rises", "goes up"),
    "down": ("moves down", "falls", "goes down"),
    "growing": ("grows", "gets bigger", "expands"),
    "shrinking": ("shrinks", "gets smaller", "contracts"),
    "still": ("stays still", "does not move", "stands still"),
}
_TEMPLATES = (
    "a {color} {shape} {phrase} on a {background} background",
    "{color} {shape} {verb}, {background} background",
    "a {color} {shape} on a {background} background, {phrase}",
    "{background} background with a {color} {shape} {phrase}",
    "the {color} {shape} {verb} on a {background} background",
    "a {color} {shape} {phrase}, {background} background",
)


def caption(spec: ClipSpec, rng: random.Random) -> str:
    """One of several surface forms, so the text encoder learns words rather than a single template."""
    template = rng.choice(_TEMPLATES)
    return template.format(
        color=spec.color,
        shape=spec.shape,
        background=spec.background,
        phrase=rng.choice(_MOTION_PHRASES[spec.motion]),
        verb=rng.choice(_MOTION_VERBS[spec.motion]),
    )


def vocabulary() -> list[str]:
    """Every word the captions can use, in a fixed order (the built-in tokenizer's vocabulary)."""
    words: list[str] = []
    texts = list(_TEMPLATES) + [p for ps in _MOTION_PHRASES.values() for p in ps] + [v for vs in _MOTION_VERBS.values() for v in vs]
    texts += list(SHAPES) + list(OBJECT_COLORS) + list(BACKGROUND_COLORS)
    for text in texts:
        for word in text.replace(",", " , ").split():
            if not word.startswith("{") and word not in words:
                words.append(word)
    return words
