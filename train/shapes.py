"""The five shape classes of the synthetic data: how each is drawn, placed and coloured.

A shape is labelled when at least ``MIN_VISIBLE_FRACTION`` of it is visible (the rest hidden by later shapes);
``distractors.py`` draws the class shapes that show less than that, unlabelled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross")
MIN_VISIBLE_FRACTION = 0.6  # an occluded shape must keep this much of its area visible
MIN_BOX_PIXELS = 6
PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class ShapeObject:
    """One drawn shape: its class index, visible-pixel mask [H, W] and unoccluded area."""

    label: int
    mask: np.ndarray
    full_area: int


def _polygon(centre, radius, angle, kind: str) -> list[tuple[float, float]]:
    """Vertices of a regular polygon-like outline around ``centre``."""
    if kind == "square":
        radii, n = [radius], 4
    elif kind == "triangle":
        radii, n = [radius], 3
    elif kind == "star":
        radii, n = [radius, 0.45 * radius], 10
    else:  # cross: a plus sign with arms a third as wide as the shape
        half, arm = radius / math.sqrt(2), radius / (3 * math.sqrt(2))
        pts = [(arm, half), (arm, arm), (half, arm), (half, -arm), (arm, -arm), (arm, -half),
               (-arm, -half), (-arm, -arm), (-half, -arm), (-half, arm), (-arm, arm), (-arm, half)]
        c, s = math.cos(angle), math.sin(angle)
        return [(centre[0] + x * c - y * s, centre[1] + x * s + y * c) for x, y in pts]
    return [(centre[0] + radii[k % len(radii)] * math.cos(angle + 2 * math.pi * k / n),
             centre[1] + radii[k % len(radii)] * math.sin(angle + 2 * math.pi * k / n))
            for k in range(n)]


def shape_mask(kind: str, centre, radius: float, angle: float, size: int) -> np.ndarray:
    """Boolean [size, size] mask of one shape."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    if kind == "circle":
        x, y = centre
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    else:
        draw.polygon(_polygon(centre, radius, angle, kind), fill=255)
    return np.asarray(img) > 127


def colour_far_from(rng: np.random.Generator, background: np.ndarray, distance: float = 90) -> np.ndarray:
    """A random colour at least ``distance`` (RGB Euclidean) away from ``background``'s mean colour."""
    mean = background.reshape(-1, 3).mean(0)  # [3]
    colour = rng.uniform(0, 255, 3)
    for _ in range(50):
        if np.linalg.norm(colour - mean) >= distance:
            break
        colour = rng.uniform(0, 255, 3)
    return colour


def place_shape(rng, size: int, min_scale: float, max_scale: float, label: int,
                objects: list[ShapeObject]) -> np.ndarray | None:
    """A mask for a new shape that leaves every earlier shape mostly visible, or None."""
    for _ in range(PLACEMENT_TRIES):
        radius = rng.uniform(min_scale, max_scale) * size / 2
        centre = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
        mask = shape_mask(CLASS_NAMES[label], centre, radius, rng.uniform(0, 2 * math.pi), size)
        if mask.sum() < MIN_BOX_PIXELS ** 2:
            continue
        if all((o.mask & ~mask).sum() >= MIN_VISIBLE_FRACTION * o.full_area for o in objects):
            return mask
    return None


def paint_shape(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, rng) -> None:
    """Fill ``mask`` of [H, W, 3] ``img`` with ``colour`` and a mild texture (in place)."""
    shading = 1 + 0.15 * (rng.random(mask.shape) - 0.5)
    img[mask] = colour * shading[mask][:, None]  # [M, 3] for the M pixels of the shape


def add_shape(objects: list[ShapeObject], label: int, mask: np.ndarray) -> list[ShapeObject]:
    """``objects`` with the new shape on top: the earlier ones lose the pixels it covers."""
    covered = [ShapeObject(o.label, o.mask & ~mask, o.full_area) for o in objects]
    return covered + [ShapeObject(label, mask, int(mask.sum()))]
