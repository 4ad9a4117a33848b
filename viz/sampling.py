"""Deformable attention drawn as the papers draw it: a query's sampling points as dots whose area and opacity
show their weight and whose colour shows their feature level, with the query's box and reference point.

Plain PIL, fast enough for interaction; `viz.sampling_figure` draws the same for slides with matplotlib.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .decoder import QueryCard
from .detections import Box, draw_boxes
from .grid import grid_columns, tile_grid
from .heatmap import draw_marker, fit
from .palette import REFERENCE_COLOUR, level_colour

HEAD_TILE_SIDE = 360
MIN_OPACITY, MIN_RADIUS = 70, 1.5


def level_names(ins) -> list[str]:
    """One label per feature level, e.g. "level 1 (stride 8)", finest first."""
    return [f"level {i + 1} (stride {lv.stride})" for i, lv in enumerate(ins.coords.levels)]


def draw_points(image: Image.Image, xy: np.ndarray, weight: np.ndarray, level: np.ndarray,
                max_radius: float | None = None) -> Image.Image:
    """A copy of `image` with dots at xy [N, 2] (this image's pixels): area and opacity grow with weight [N]
    relative to the heaviest dot, colour by level [N]. Heavier dots are drawn last, on top (among equals, the
    finer levels, which cluster near the reference point)."""
    out = image.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    top = float(weight.max()) if len(weight) else 0.0
    max_radius = max_radius or max(4.0, max(out.size) / 55)
    for i in np.lexsort((-np.asarray(level), weight)):
        share = float(weight[i]) / top if top > 0 else 0.0
        radius = max(MIN_RADIUS, max_radius * math.sqrt(share))  # area proportional to weight
        opacity = round(MIN_OPACITY + (255 - MIN_OPACITY) * share)
        x, y = xy[i]
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(*level_colour(int(level[i])), opacity),
                     outline=(0, 0, 0, opacity))
    return Image.alpha_composite(out, layer).convert("RGB")


def draw_reference(image: Image.Image, x: float, y: float) -> Image.Image:
    """A green cross with a dark outline at (x, y): the query's reference point. Draws in place."""
    draw = ImageDraw.Draw(image)
    r = max(5, round(max(image.size) / 70))
    for colour, width in (((0, 0, 0), 5), (REFERENCE_COLOUR, 2)):
        draw.line((x - r, y - r, x + r, y + r), fill=colour, width=width)
        draw.line((x - r, y + r, x + r, y - r), fill=colour, width=width)
    return image


def sampling_image(ins, card: QueryCard, layer: int = -1, head: int | None = None, level: int | None = None,
                   max_side: int | None = None, base: Image.Image | None = None, label: bool = True) -> Image.Image:
    """The query's sampling points at `layer` (one head or all, one level or all) over the image, with the box
    the query predicts at that layer in its colour, its reference box (white, where it has one) and its
    reference point (green cross). base: the image already fitted to max_side (saves a resize)."""
    if base is None:
        base = ins.image if max_side is None else fit(ins.image, max_side)
    scale = base.width / ins.image_size[1]
    points = ins.sampling_points(card.query, layer, head, level)
    out = draw_points(base, points.xy * scale, points.weight, points.level)
    box = tuple(float(v) * scale for v in ins.coords.boxes_to_pixels(ins.layer_boxes[layer][card.query])[0])
    boxes = [Box(box, card.caption() if label else "", card.colour)]
    reference_box = ins.reference_box(card.query, layer)
    if reference_box is not None:
        boxes.insert(0, Box(tuple(v * scale for v in reference_box), "", (255, 255, 255)))
    out = draw_boxes(out, boxes)
    x, y = ins.reference_point(card.query, layer)
    return draw_reference(out, x * scale, y * scale)


def sampling_head_grid(ins, card: QueryCard, layer: int = -1, level: int | None = None,
                       tile_side: int = HEAD_TILE_SIDE) -> Image.Image:
    """Every head's sampling points for one query, side by side, each labelled with its weight inside the box."""
    base = fit(ins.image, tile_side)
    shares = ins.attention_in_box(card.query, layer)  # [heads]
    tiles = [sampling_image(ins, card, layer, h, level, base=base, label=False) for h in range(len(shares))]
    return tile_grid(tiles, [f"head {h + 1}: {s:.0%} in box" for h, s in enumerate(shares)],
                     grid_columns(len(shares), base.width / base.height))


def encoder_sampling_image(ins, x: float, y: float, layer: int = -1, head: int | None = None,
                           level: int | None = None, base: Image.Image | None = None) -> Image.Image:
    """Where the deformable encoder's query at original pixel (x, y) (its finest-level cell) samples at `layer`:
    dots as in sampling_image, and a marker at (x, y). ValueError (with the reason) for models whose encoder
    is not deformable."""
    base = ins.image if base is None else base
    scale = base.width / ins.image_size[1]
    points = ins.encoder_sampling_points(x, y, layer, head, level)
    return draw_marker(draw_points(base, points.xy * scale, points.weight, points.level), x * scale, y * scale)


def encoder_sampling_head_grid(ins, x: float, y: float, layer: int = -1, level: int | None = None,
                               tile_side: int = HEAD_TILE_SIDE) -> Image.Image:
    """Every head's encoder sampling points for the location at original pixel (x, y), side by side."""
    base = fit(ins.image, tile_side)
    heads = ins.encoder_sampling.heads
    tiles = [encoder_sampling_image(ins, x, y, layer, h, level, base=base) for h in range(heads)]
    return tile_grid(tiles, [f"head {h + 1}" for h in range(heads)], grid_columns(heads, base.width / base.height))
