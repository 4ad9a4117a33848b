"""The paper's Fig. 7: for each query slot, a unit square with a dot at every predicted box centre over a data
set, green for small boxes, red for large wide boxes, blue for large tall ones."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from detr_core.teaching.query_slots import QuerySlotStats

from .grid import tile_grid

TILE_SIDE = 150
LARGE = 0.5  # sqrt(w * h) at which a box counts as fully "large"


def size_colours(sizes: np.ndarray) -> np.ndarray:
    """sizes [..., 2] (w, h as image fractions) -> [..., 3] uint8: green small, red large wide, blue large tall."""
    w, h = sizes[..., 0], sizes[..., 1]
    large = np.clip(np.sqrt(np.clip(w * h, 0, None)) / LARGE, 0, 1)  # [...]
    wide = np.clip(0.5 + 2.0 * (w - h) / np.maximum(w + h, 1e-6), 0, 1)  # 1: wide, 0: tall
    rgb = np.stack([large * wide, 1 - large, large * (1 - wide)], -1)  # [..., 3]
    return (rgb / np.maximum(rgb.max(-1, keepdims=True), 1e-6) * 220).astype(np.uint8)


def slot_tile(centres: np.ndarray, sizes: np.ndarray, side: int = TILE_SIDE) -> Image.Image:
    """One slot: centres [I, 2] and sizes [I, 2] over the images, as dots in a unit square."""
    tile = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, 0, side - 1, side - 1), outline=(180, 180, 180))
    r = max(1.5, side / 100)
    for (cx, cy), colour in zip(centres * (side - 1), size_colours(sizes)):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(c) for c in colour))
    return tile


def default_slots(stats: QuerySlotStats, count: int = 20) -> list[int]:
    """The `count` slots that detect most often (highest mean score), in slot order."""
    best = np.argsort(-stats.scores.mean(0), kind="stable")[:count]  # [count]
    return sorted(int(s) for s in best)


def slots_image(stats: QuerySlotStats, slots: Sequence[int] | None = None, min_score: float = 0.0,
                columns: int = 5, tile_side: int = TILE_SIDE) -> Image.Image:
    """A tile per slot; only predictions scoring above min_score are drawn (0 draws all, as the paper does)."""
    slots = default_slots(stats) if slots is None else list(slots)
    bad = [s for s in slots if not 0 <= s < stats.num_queries]
    if bad or not slots:
        raise ValueError(f"slots {bad or slots}: choose slots in 0..{stats.num_queries - 1}")
    tiles, captions = [], []
    for s in slots:
        keep = stats.scores[:, s] > min_score  # [I]
        tiles.append(slot_tile(stats.centres[keep, s], stats.sizes[keep, s], tile_side))
        captions.append(f"slot {s} ({int(keep.sum())})")
    return tile_grid(tiles, captions, columns)


def describe_slots(stats: QuerySlotStats, min_score: float) -> str:
    kept = int((stats.scores > min_score).sum())
    return (f"`{stats.model}` over {stats.num_images} images: {kept} of {stats.scores.size} predictions drawn "
            f"(score > {min_score:.2f}). Each slot specialises in some areas and box sizes "
            "(green small, red large and wide, blue large and tall); a slot is a learned way of asking, not an anchor.")
