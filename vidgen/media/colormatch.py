"""Colour matching at a window's join: the new frames of a window brought back to the
colours of the frames they continue.

A window that continues a video re-renders the frames it was given (the overlap) before it
makes new ones, and its colours drift: brighter, warmer, more saturated (Wan2GP #2132, #268,
ali-vilab/VACE #44). The drift shows twice, in the window's own rendering of the overlap and
in its new frames, so it can be measured where the content is known to be the same:

    per channel c of CIELAB, over the overlap's pixels,
    gain_c = spread(kept)_c / spread(rendered)_c,  offset_c = mean(kept)_c - gain_c * mean(rendered)_c

and undone in the new frames by x -> gain * x + offset (Reinhard et al. 2001's mean-and-spread
transfer, with the statistics taken over the overlap rather than over whole images). One
transform for the whole window keeps the window's own changes of colour (a light switched
on stays on), which matching every frame to one reference frame would flatten (the
benchmark in docs/benchmarks.md compares the two). `strength` blends the corrected and the
original colours in LAB (0: off, 1: the full transform).

numpy only; frames are uint8 (T, H, W, 3) sRGB. Also `delta_e_2000` (CIEDE2000, Sharma,
Wu and Dalal 2005) for measuring the difference.
"""

from __future__ import annotations

import numpy as np

# sRGB (D65) -> CIE XYZ, IEC 61966-2-1
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27
# A spread ratio outside this range is not drift but a flat overlap (a black frame): the
# gain is held inside it so that noise in a flat region is not blown up.
GAIN_LIMITS = (0.25, 4.0)
_CHUNK = 8  # frames converted at a time: LAB of a whole 81-frame 480p window is 390 MB of float32


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


# uint8 in and out through tables: the power laws of sRGB are most of the work on whole frames
# (a window of 76 frames at 832x480 is 30 million pixels). The way back looks linear light up
# on a grid of 2^16 steps: at most 0.03 of a uint8 level from the exact curve.
_LINEAR_OF_UINT8 = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)
_BACK_STEPS = 65535
_UINT8_OF_LINEAR = np.clip(np.round(_linear_to_srgb(np.arange(_BACK_STEPS + 1) / _BACK_STEPS) * 255.0), 0, 255).astype(np.uint8)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (or float 0..1) sRGB (..., 3) -> CIELAB float32 (..., 3), D65."""
    if rgb.dtype == np.uint8:
        linear = _LINEAR_OF_UINT8[rgb]
    else:
        linear = _srgb_to_linear(rgb.astype(np.float32)).astype(np.float32)
    matrix = (_RGB_TO_XYZ / _WHITE[:, None]).astype(np.float32)
    xyz = linear @ matrix.T
    f = np.power(xyz, np.float32(1 / 3))  # twice as fast as np.cbrt; xyz is never negative here
    low = xyz <= _EPSILON
    f[low] = (_KAPPA * xyz[low] + 16) / 116
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> uint8 sRGB (..., 3), out-of-gamut values clipped."""
    lab = lab.astype(np.float32, copy=False)
    f = np.empty_like(lab)
    f[..., 1] = (lab[..., 0] + 16) / 116
    f[..., 0] = f[..., 1] + lab[..., 1] / 500
    f[..., 2] = f[..., 1] - lab[..., 2] / 200
    xyz = f * f * f
    low = xyz <= _EPSILON
    xyz[low] = (116 * f[low] - 16) / _KAPPA
    matrix = (_XYZ_TO_RGB * _WHITE[None, :]).astype(np.float32)
    linear = xyz @ matrix.T
    np.clip(linear, 0.0, 1.0, out=linear)
    return _UINT8_OF_LINEAR[(linear * _BACK_STEPS + 0.5).astype(np.int32)]


def _statistics(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation in LAB over every pixel of `frames`."""
    total, squares, count = np.zeros(3), np.zeros(3), 0
    for start in range(0, len(frames), _CHUNK):
        lab = rgb_to_lab(frames[start : start + _CHUNK]).reshape(-1, 3).astype(np.float64)
        total += lab.sum(axis=0)
        squares += (lab**2).sum(axis=0)
        count += len(lab)
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - mean**2, 0.0))


def transform(rendered: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) per LAB channel taking the window's rendering of the overlap
    (`rendered`) to the frames it was given (`kept`); both uint8 (K, H, W, 3)."""
    mean_rendered, spread_rendered = _statistics(rendered)
    mean_kept, spread_kept = _statistics(kept)
    gain = np.clip(spread_kept / np.maximum(spread_rendered, 1e-6), *GAIN_LIMITS)
    gain[spread_rendered < 1e-6] = 1.0  # a flat channel: move its mean only
    return gain, mean_kept - gain * mean_rendered


def apply(frames: np.ndarray, gain: np.ndarray, offset: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """`frames` (uint8 (T, H, W, 3)) with x -> gain * x + offset in LAB, blended by `strength`."""
    if strength <= 0 or not len(frames):
        return frames
    out = np.empty_like(frames)
    gain, offset = gain.astype(np.float32), offset.astype(np.float32)
    for start in range(0, len(frames), _CHUNK):
        lab = rgb_to_lab(frames[start : start + _CHUNK])
        corrected = lab * gain + offset
        out[start : start + _CHUNK] = lab_to_rgb(lab + strength * (corrected - lab))
    return out


def match_window(new: np.ndarray, rendered: np.ndarray, kept: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """A window's `new` frames with the colour drift its rendering of the overlap shows
    undone: the transform from `rendered` to `kept` (same frames, same size), applied to
    `new`. strength 0 returns `new` itself."""
    if strength <= 0:
        return new
    if rendered.shape != kept.shape:
        raise ValueError(f"the overlap as rendered {rendered.shape} and as kept {kept.shape} differ")
    gain, offset = transform(rendered, kept)
    return apply(new, gain, offset, strength)


def match_to_reference(new: np.ndarray, reference: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Each of `new`'s frames moved to the LAB mean and spread of one `reference` frame
    (H, W, 3): what Wan2GP's match_and_blend_colors does; kept for the benchmark's comparison."""
    out = np.empty_like(new)
    for index, frame in enumerate(new):
        gain, offset = transform(frame[None], reference[None])
        out[index] = apply(frame[None], gain, offset, strength)[0]
    return out


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference per pixel between two LAB arrays (..., 3) (kL = kC = kH = 1)."""
    lab1, lab2 = lab1.astype(np.float64), lab2.astype(np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dl, dc = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dH = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_bar, cp_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum) / 2
    h_bar = np.where(c1p * c2p == 0, h_sum, h_bar)
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -2 * np.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7)) * np.sin(np.radians(60 * np.exp(-(((h_bar - 275) / 25) ** 2))))
    return np.sqrt((dl / s_l) ** 2 + (dc / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dc / s_c) * (dH / s_h))
