"""The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016) and its
energy variant (Wang et al., Score-CAM, 2020), for one map and one ground-truth box."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inspection.coords import CoordinateMap

TOLERANCE_PX = 15.0  # the usual tolerance, in original-image pixels


@dataclass(frozen=True)
class PointingResult:
    """hit: the map's maximum lies within `tolerance` pixels of the box; energy: the share of the map's
    (non-negative) mass inside the box; peak (x, y): the maximum, in original pixels."""

    hit: bool
    energy: float
    peak: tuple[float, float]


def pointing_game(saliency: np.ndarray, box_xyxy, coords: CoordinateMap | None = None,
                  tolerance: float = TOLERANCE_PX) -> PointingResult:
    """`saliency` [H, W] over the original image, or [fh, fw] over the feature grid with `coords` (which
    places it on the image: coords.map_to_input, then input_map_to_image); box x0, y0, x1, y1 in pixels."""
    m = np.asarray(saliency, dtype=np.float64)
    if coords is not None and m.shape != tuple(coords.image_size):
        m = coords.input_map_to_image(coords.map_to_input(m)).astype(np.float64)
    if m.ndim != 2:
        raise ValueError(f"saliency must be 2-D, got shape {m.shape}")
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {box_xyxy} is empty: give x0 < x1 and y0 < y1 in pixels")
    row, col = np.unravel_index(int(np.argmax(m)), m.shape)
    px, py = col + 0.5, row + 0.5  # the pixel's centre
    dx, dy = max(x0 - px, 0.0, px - x1), max(y0 - py, 0.0, py - y1)
    ys, xs = np.arange(m.shape[0]) + 0.5, np.arange(m.shape[1]) + 0.5
    inside = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]  # [H, W]
    mass = np.clip(m, 0.0, None)
    energy = float(mass[inside].sum() / mass.sum()) if mass.sum() > 0 else 0.0
    return PointingResult(bool(np.hypot(dx, dy) <= tolerance), energy, (float(px), float(py)))
