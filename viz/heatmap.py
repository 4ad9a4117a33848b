"""Attention heatmaps over the image: smooth upsampling aligned with the feature grid, colormap, blending.

Everything here is numpy/PIL so it is fast enough for interactive use (a few ms at 1333x1000).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from detr_core import CoordinateMap

from .palette import MARKER_COLOUR, colormap_lut


def _grid_pixels(coords: CoordinateMap, size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) in display pixels of the whole feature grid, for an image shown at `size`."""
    width, height = size
    (H, W), (gh, gw) = coords.image_size, coords.grid_extent()
    return max(width, round(gw * width / W)), max(height, round(gh * height / H))


def _check_shape(attention: np.ndarray, coords: CoordinateMap) -> np.ndarray:
    attention = np.asarray(attention, dtype=np.float32)
    if attention.shape != tuple(coords.feature_size):
        raise ValueError(f"attention map shape {attention.shape} != feature grid {coords.feature_size}")
    return attention


def upsample(attention: np.ndarray, coords: CoordinateMap, size: tuple[int, int]) -> np.ndarray:
    """[fh, fw] map -> [height, width] float32 for an image of `size` (width, height) showing the whole image.

    The grid may reach past the image (convolutions round up), so it is resized to the grid's own extent
    and cropped, top-left aligned; resizing the grid to the image would shift every cell.
    """
    attention = _check_shape(attention, coords)
    width, height = size
    # PIL's "F" mode resizes float32 maps directly; bicubic is smooth but may overshoot slightly below 0.
    big = Image.fromarray(attention, mode="F").resize(_grid_pixels(coords, size), Image.BICUBIC)
    return np.asarray(big)[:height, :width]  # [height, width]


def normalise(values: np.ndarray) -> np.ndarray:
    """Scale to 0..1 by the maximum (zero stays zero, so weak maps look weak only relative to themselves)."""
    values = np.clip(values, 0.0, None)
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def colorize(values: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """[H, W] values in 0..1 -> [H, W, 3] uint8 through the colormap."""
    index = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colormap_lut(cmap)[index]


def blend(image: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """[H, W, 3] uint8 image and heat -> uint8 mix; alpha 0 shows only the image, 1 only the heatmap."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be between 0 and 1")
    img = image.astype(np.float32)
    return (img + alpha * (heat.astype(np.float32) - img) + 0.5).astype(np.uint8)


def heat_image(attention: np.ndarray, coords: CoordinateMap, size: tuple[int, int],
               cmap: str = "inferno", top: float | None = None) -> Image.Image:
    """The [fh, fw] map as an RGB heatmap image of `size`, scaled by its maximum (like normalise(upsample())),
    or by `top` (e.g. the larger maximum of two maps shown on one colour scale; values above it saturate).

    Fast path for interaction: the small map is quantised to 8 bits first, so resizing, colouring and
    blending all run in PIL's C code on bytes (a few ms at 1333x1000 instead of tens).
    """
    attention = _check_shape(attention, coords)
    top = float(attention.max()) if top is None else float(top)
    scale = 255.0 / top if top > 0 else 0.0
    levels = np.clip(attention * scale + 0.5, 0, 255).astype(np.uint8)  # [fh, fw]
    big = Image.fromarray(levels, mode="L").resize(_grid_pixels(coords, size), Image.BICUBIC)
    big = big.crop((0, 0, *size))
    big.putpalette(colormap_lut(cmap).tobytes())  # L -> P with the colormap as its palette
    return big.convert("RGB")


def overlay(image: Image.Image, attention: np.ndarray, coords: CoordinateMap,
            alpha: float = 0.6, cmap: str = "inferno", top: float | None = None) -> Image.Image:
    """The image (at any display size, e.g. a thumbnail) with the [fh, fw] attention map over it (scaled by its
    maximum, or by `top`: see heat_image)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be between 0 and 1")
    return Image.blend(image.convert("RGB"), heat_image(attention, coords, image.size, cmap, top), alpha)


def fit(image: Image.Image, max_side: int) -> Image.Image:
    """A copy no larger than max_side on its longer side (never enlarged), for thumbnails."""
    if max_side < 1:
        raise ValueError(f"max_side={max_side} must be positive")
    scale = min(1.0, max_side / max(image.size))
    if scale == 1.0:
        return image.copy()
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR, reducing_gap=2.0)


def enlarge(image: Image.Image, min_side: int) -> Image.Image:
    """The image itself if its longer side is at least min_side, else a copy enlarged (bicubic) to min_side,
    for views of small images: drawn at their own size, the page scales them up and their labels blur."""
    if min_side < 1:
        raise ValueError(f"min_side={min_side} must be positive")
    scale = min_side / max(image.size)
    if scale <= 1.0:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)


def draw_marker(image: Image.Image, x: float, y: float, colour=MARKER_COLOUR) -> Image.Image:
    """A ring with a dark outline at (x, y) in this image's pixels, visible on any background. Draws in place."""
    draw = ImageDraw.Draw(image)
    r = max(5, round(max(image.size) / 80))
    for radius, fill, width in ((r + 2, (0, 0, 0), 5), (r, colour, 3)):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=fill, width=width)
    draw.point((x, y), fill=colour)
    return image
