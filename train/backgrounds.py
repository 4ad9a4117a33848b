"""Backgrounds for the synthetic shapes: the original plain textures, procedural textures, and photo crops.

A model that only ever saw shapes on smooth synthetic noise treats any edge, leaf or face as a shape. These
backgrounds give it everything that is *not* one of its classes: fractal (Perlin-like) noise, stripes and
checks, gradients, small clutter, blur, and crops of natural photos (``train/photos.py``).
All functions return float [H, W, 3] arrays in 0..255 and draw only from the ``rng`` they are given, so an
image depends on its seed alone.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """The original (``plain``) background: a colour gradient, blotchy low-frequency noise and grain."""
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    t = np.linspace(0, 1, size)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(direction) * t[None, :] + np.sin(direction) * t[:, None])  # [H, W]
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]  # [H, W, 3]
    cells = int(rng.integers(4, 12))
    coarse = rng.normal(0, 1, (cells, cells, 3)).astype(np.float32)
    blotches = np.stack([np.asarray(Image.fromarray(coarse[..., k]).resize(
        (size, size), Image.BILINEAR)) for k in range(3)], axis=-1)  # [H, W, 3]
    img = img + blotches * rng.uniform(10, 35)
    if rng.random() < 0.5:  # stripes give the background edges the backbone must ignore
        period = rng.uniform(6, 24)
        img = img + 15 * np.sin(2 * math.pi * ramp * size / period)[..., None]
    return img


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """[g, g] float grid -> [size, size], bicubic (smooth, like Perlin noise's interpolation)."""
    return np.asarray(Image.fromarray(grid.astype(np.float32)).resize((size, size), Image.BICUBIC))


def fractal_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """[H, W] in about [-1, 1]: octaves of smooth noise, each twice as fine and ``persistence`` as strong."""
    persistence, base = rng.uniform(0.4, 0.7), int(rng.integers(2, 6))
    total, amplitude, weight = np.zeros((size, size), np.float32), 1.0, 0.0
    for octave in range(int(rng.integers(3, 6))):
        cells = min(base * 2 ** octave, size)
        total += amplitude * _upsample(rng.uniform(-1, 1, (cells, cells)), size)
        weight += amplitude
        amplitude *= persistence
    return total / weight


def _palette(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Map [H, W] values in [-1, 1] through a random 2-3 colour ramp -> [H, W, 3]."""
    stops = rng.uniform(0, 255, (int(rng.integers(2, 4)), 3))  # [K, 3]
    t = np.clip((values + 1) / 2, 0, 1) * (len(stops) - 1)  # [H, W] in [0, K-1]
    lo = np.minimum(t.astype(int), len(stops) - 2)
    frac = (t - lo)[..., None]
    return stops[lo] * (1 - frac) + stops[lo + 1] * frac


def noise_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Fractal noise through a colour ramp (clouds, marble, terrain-like)."""
    values = fractal_noise(rng, size)
    if rng.random() < 0.3:  # marble veins: a sine of the noise
        values = np.sin(values * rng.uniform(4, 12))
    return _palette(rng, values)


def pattern_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stripes, checks or a grid at a random angle and period, sharp or soft."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(5, 40)
    u = (x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period  # [H, W]
    v = (-x * math.sin(angle) + y * math.cos(angle)) * 2 * math.pi / period
    kind = rng.integers(3)
    values = np.sin(u) if kind == 0 else np.sin(u) * np.sin(v) if kind == 1 else np.maximum(np.sin(u), np.sin(v))
    if rng.random() < 0.5:
        values = np.sign(values)  # hard edges
    return _palette(rng, values * rng.uniform(0.3, 1.0))


def gradient_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear or radial colour gradient."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        values = x * math.cos(angle) + y * math.sin(angle)
    else:
        cx, cy = rng.uniform(0, 1, 2)
        values = np.hypot(x - cx, y - cy)
    values = (values - values.min()) / max(np.ptp(values), 1e-6) * 2 - 1
    return _palette(rng, values)


def add_clutter(rng: np.random.Generator, image: np.ndarray, max_extent: float) -> np.ndarray:
    """Draw 20-150 small strokes, dots and specks, each at most ``max_extent`` pixels across: detail that is
    too small to be a shape but full of edges."""
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    size = image.shape[0]
    for _ in range(int(rng.integers(20, 150))):
        x, y = rng.uniform(0, size, 2)
        dx, dy = rng.uniform(-max_extent, max_extent, 2)
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        if rng.random() < 0.6:
            draw.line([(x, y), (x + dx, y + dy)], fill=colour, width=int(rng.integers(1, 4)))
        else:
            r = rng.uniform(1, max_extent / 3)
            draw.ellipse([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r], fill=colour)
    return np.asarray(canvas, dtype=np.float64)


def blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of an [H, W, 3] float image."""
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float64)


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """One of the procedural textures, sometimes with clutter, sometimes blurred."""
    make = (noise_texture, pattern_texture, gradient_texture)[int(rng.integers(3))]
    image = make(rng, size)
    if rng.random() < 0.4:
        image = add_clutter(rng, image, max_extent=0.06 * size)
    if rng.random() < 0.3:
        image = blur(image, rng.uniform(0.5, 3))
    return image


@lru_cache(maxsize=64)
def _photo(path: str) -> Image.Image:
    """Decoded once per process: the generator draws many crops from a few dozen photos."""
    with Image.open(path) as im:
        return im.convert("RGB")


def photo_background(rng: np.random.Generator, size: int, photos: tuple[Path, ...]) -> np.ndarray:
    """A random square crop of a random photo (10-100% of its shorter side), resized, maybe mirrored,
    grey or colour-shifted, and maybe blurred."""
    photo = _photo(str(photos[int(rng.integers(len(photos)))]))
    short = min(photo.size)
    side = max(8, int(short * rng.uniform(0.1, 1.0)))
    left = int(rng.integers(photo.width - side + 1))
    top = int(rng.integers(photo.height - side + 1))
    crop = photo.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
    image = np.asarray(crop, dtype=np.float64)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.1:
        image = np.repeat(image.mean(-1, keepdims=True), 3, axis=-1)
    gain, shift = rng.uniform(0.7, 1.3, 3), rng.uniform(-25, 25, 3)
    image = (image - 128) * rng.uniform(0.7, 1.2) + 128  # contrast
    image = image * gain + shift  # colour balance and brightness
    if rng.random() < 0.2:
        image = blur(image, rng.uniform(0.5, 2.5))
    return image
