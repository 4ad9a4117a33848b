"""Encoder self-attention at a clicked point: where that location looks, or which locations look at it."""
from __future__ import annotations

from PIL import Image

from detr_core import Inspection
from detr_core.family import capabilities

from .grid import grid_columns, tile_grid
from .heatmap import draw_marker, fit, overlay

HEAD_TILE_SIDE = 360


def encoder_image(ins: Inspection, x: float, y: float, layer: int = -1, head=None, incoming: bool = False,
                  alpha: float = 0.6, cmap: str = "inferno", base: Image.Image | None = None) -> Image.Image:
    """Attention of the feature cell under original pixel (x, y), over the image, with a marker at (x, y).

    base: the image at the size to draw (e.g. a thumbnail); the original by default.
    """
    base = ins.image if base is None else base
    attention = ins.encoder_map(x, y, layer, head, incoming)  # [fh, fw]; ValueError outside the image
    scale = base.width / ins.image_size[1]
    return draw_marker(overlay(base, attention, ins.coords, alpha, cmap), x * scale, y * scale)


def encoder_head_grid(ins: Inspection, x: float, y: float, layer: int = -1, incoming: bool = False,
                      alpha: float = 0.6, cmap: str = "inferno", tile_side: int = HEAD_TILE_SIDE) -> Image.Image:
    """Every head of one encoder layer at the point, side by side."""
    base = fit(ins.image, tile_side)
    heads = capabilities(ins).encoder_heads  # DETR's and the family's encoders alike
    tiles = [encoder_image(ins, x, y, layer, h, incoming, alpha, cmap, base=base) for h in range(heads)]
    return tile_grid(tiles, [f"head {h + 1}" for h in range(heads)], grid_columns(heads, base.width / base.height))


def describe_point(ins: Inspection, x: float, y: float) -> str:
    """One line naming the clicked pixel and the feature cell under it."""
    row, col = ins.coords.pixel_to_cell(x, y)
    fh, fw = ins.feature_size
    return f"pixel ({x:.0f}, {y:.0f}) -> feature cell row {row + 1}/{fh}, column {col + 1}/{fw}"
