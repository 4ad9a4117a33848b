"""Colours: one box colour per detection rank, and colormap look-up tables for heatmaps."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib import colormaps  # the registry only: no pyplot, no global figure state

# Ten well-separated colours (matplotlib's tab10), so neighbouring boxes never look alike.
BOX_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "jet", "turbo", "gray")
MARKER_COLOUR = (0, 255, 255)


def box_colour(rank: int) -> tuple[int, int, int]:
    """Colour of the detection at `rank` (0 = best score). Ranks keep their colour when the threshold moves."""
    if rank < 0:
        raise ValueError(f"rank={rank} must be >= 0")
    return BOX_COLOURS[rank % len(BOX_COLOURS)]


@lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """[256, 3] uint8 table: value index -> RGB. Cached, so drawing a heatmap is one fancy-index."""
    if name not in COLORMAPS:
        raise ValueError(f"colormap={name!r}: choose one of {COLORMAPS}")
    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))  # [256, 4] floats in 0..1
    lut = np.round(rgba[:, :3] * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """(r, g, b) -> '#rrggbb', for matplotlib and HTML."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)

# Feature levels of multi-scale models (finest first), in colours apart from each other and from skin and sky.
LEVEL_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 48, 48), (255, 210, 0), (0, 210, 255), (190, 90, 255), (90, 255, 120),
)
REFERENCE_COLOUR = (0, 255, 0)  # a query's reference point, as the Deformable DETR paper marks it


def level_colour(level: int) -> tuple[int, int, int]:
    """Colour of the sampling points on feature level `level` (0 = finest)."""
    if level < 0:
        raise ValueError(f"level={level} must be >= 0")
    return LEVEL_COLOURS[level % len(LEVEL_COLOURS)]
