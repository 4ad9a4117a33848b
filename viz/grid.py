"""Several images in one captioned grid (all heads of one layer, several queries)."""
from __future__ import annotations

import math
from typing import Sequence

from PIL import Image, ImageDraw

from .detections import font

GAP = 4  # pixels between tiles
BACKGROUND = (255, 255, 255)


def tile_grid(tiles: Sequence[Image.Image], captions: Sequence[str], columns: int = 4) -> Image.Image:
    """Tiles (same size) laid out row by row, each with its caption in a strip above it."""
    if not tiles:
        raise ValueError("tile_grid needs at least one tile")
    if len(captions) != len(tiles):
        raise ValueError(f"{len(captions)} captions for {len(tiles)} tiles")
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    w, h = tiles[0].size
    text_font = font(max(11, round(w / 16)))
    strip = round(text_font.size * 1.4)
    sheet = Image.new("RGB", (columns * (w + GAP) - GAP, rows * (h + strip + GAP) - GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        if tile.size != (w, h):
            raise ValueError(f"tile {i} is {tile.size}, expected {(w, h)} like the first")
        x, y = (i % columns) * (w + GAP), (i // columns) * (h + strip + GAP)
        draw.text((x + 2, y + 1), caption, fill=(0, 0, 0), font=text_font)
        sheet.paste(tile, (x, y + strip))
    return sheet


def grid_columns(count: int, aspect: float) -> int:
    """A column count that keeps a grid of `count` tiles of width/height `aspect` roughly landscape."""
    best = max(1, round(math.sqrt(count * 1.5 / max(aspect, 1e-6))))
    return min(count, best)
