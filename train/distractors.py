"""Things in the synthetic images that are NOT one of the five classes, drawn but never labelled.

DETR must answer "no object" for every query that has nothing to match; it learns that only from images that
hold things worth refusing. These are the refusals: other polygons (pentagons, hexagons), long rectangles
and ellipses, rings, crescents, irregular blobs, lines and arcs, text, and class shapes of which too little is
visible to count (``PARTIAL_MAX_VISIBLE``: the labelling rule keeps a shape only when at least
``MIN_VISIBLE_FRACTION`` of it shows, and the gap between the two keeps the rule unambiguous).
Each drawer returns a boolean [size, size] mask; the caller paints it.
"""
from __future__ import annotations

import math
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PARTIAL_MAX_VISIBLE = 0.4  # a class shape showing at most this fraction of itself is a distractor
# letters that could pass for a class (O is a ring, X and + a cross) are left out of the text
_LETTERS = "".join(c for c in string.ascii_letters + string.digits if c not in "OoQ0XxtT+")


def _canvas(size: int):
    img = Image.new("L", (size, size), 0)
    return img, ImageDraw.Draw(img)


def _mask(img: Image.Image) -> np.ndarray:
    return np.asarray(img) > 127


def _rotated(points, centre, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(centre[0] + x * c - y * s, centre[1] + x * s + y * c) for x, y in points]


def polygon(rng, size, centre, radius) -> np.ndarray:
    """A regular pentagon or hexagon."""
    n, angle = int(rng.choice([5, 6])), rng.uniform(0, 2 * math.pi)
    pts = [(radius * math.cos(2 * math.pi * k / n), radius * math.sin(2 * math.pi * k / n)) for k in range(n)]
    img, draw = _canvas(size)
    draw.polygon(_rotated(pts, centre, angle), fill=255)
    return _mask(img)


def elongated(rng, size, centre, radius) -> np.ndarray:
    """A rectangle or ellipse 2-4 times longer than wide: not a square, not a circle."""
    aspect, angle = rng.uniform(2, 4), rng.uniform(0, math.pi)
    half_w, half_h = radius, radius / aspect
    img, draw = _canvas(size)
    if rng.random() < 0.5:
        pts = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
        draw.polygon(_rotated(pts, centre, angle), fill=255)
    else:
        steps = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = [(half_w * math.cos(t), half_h * math.sin(t)) for t in steps]
        draw.polygon(_rotated(pts, centre, angle), fill=255)
    return _mask(img)


def ring_or_crescent(rng, size, centre, radius) -> np.ndarray:
    """A ring (a disc with a hole) or a crescent (a disc minus an offset disc)."""
    img, draw = _canvas(size)
    x, y = centre
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    if rng.random() < 0.5:
        inner = radius * rng.uniform(0.5, 0.75)
        draw.ellipse([x - inner, y - inner, x + inner, y + inner], fill=0)
    else:
        angle, shift = rng.uniform(0, 2 * math.pi), radius * rng.uniform(0.35, 0.7)
        ox, oy = x + shift * math.cos(angle), y + shift * math.sin(angle)
        draw.ellipse([ox - radius, oy - radius, ox + radius, oy + radius], fill=0)
    return _mask(img)


def blob(rng, size, centre, radius) -> np.ndarray:
    """An irregular closed curve: r(t) = radius * (1 + a2 sin(2t + p2) + a3 sin(3t + p3)), clearly not round."""
    a2, a3 = rng.uniform(0.2, 0.35, 2)
    p2, p3 = rng.uniform(0, 2 * math.pi, 2)
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    r = radius * (1 + a2 * np.sin(2 * t + p2) + a3 * np.sin(3 * t + p3))
    img, draw = _canvas(size)
    draw.polygon([(centre[0] + ri * math.cos(ti), centre[1] + ri * math.sin(ti)) for ri, ti in zip(r, t)],
                 fill=255)
    return _mask(img)


def strokes(rng, size, centre, radius) -> np.ndarray:
    """A thick line, polyline or arc."""
    img, draw = _canvas(size)
    width = int(max(2, radius * rng.uniform(0.08, 0.25)))
    x, y = centre
    if rng.random() < 0.5:
        pts = [(x + rng.uniform(-radius, radius), y + rng.uniform(-radius, radius))
               for _ in range(int(rng.integers(2, 5)))]
        draw.line(pts, fill=255, width=width, joint="curve")
    else:
        start = rng.uniform(0, 360)
        draw.arc([x - radius, y - radius, x + radius, y + radius], start, start + rng.uniform(60, 220),
                 fill=255, width=width)
    return _mask(img)


def text(rng, size, centre, radius) -> np.ndarray:
    """A short word in the default font, about ``radius`` tall."""
    word = "".join(rng.choice(list(_LETTERS)) for _ in range(int(rng.integers(1, 6))))
    font = ImageFont.load_default(size=max(8, int(radius * rng.uniform(0.6, 1.2))))
    img, draw = _canvas(size)
    draw.text(centre, word, font=font, fill=255, anchor="mm")
    return _mask(img)


DRAWERS = (polygon, elongated, ring_or_crescent, blob, strokes, text)


def distractor_mask(rng, size: int, min_radius: float, max_radius: float) -> np.ndarray:
    """A random distractor somewhere in the image."""
    radius = rng.uniform(min_radius, max_radius)
    centre = tuple(rng.uniform(0, size, 2))
    return DRAWERS[int(rng.integers(len(DRAWERS)))](rng, size, centre, radius)


def partial_shape(rng, size: int, full_mask_of, min_radius: float, max_radius: float) -> np.ndarray | None:
    """A class shape of which only 10%..PARTIAL_MAX_VISIBLE shows, cut by the image border.

    ``full_mask_of(centre, radius, canvas)`` draws the whole shape on a canvas of side ``canvas`` with the
    image at offset (radius*2, radius*2); the visible part is what falls inside the image. None if no
    placement in 20 tries leaves a fraction in range."""
    for _ in range(20):
        radius = rng.uniform(min_radius, max_radius)
        pad = int(2 * radius) + 1
        side = rng.integers(4)  # which border the shape sticks out of
        along, depth = rng.uniform(0, size), rng.uniform(-0.9, 0.3) * radius
        x, y = [(along, depth), (along, size - depth), (depth, along), (size - depth, along)][side]
        full = full_mask_of((x + pad, y + pad), radius, size + 2 * pad)  # [size + 2 pad] squared
        visible = full[pad:pad + size, pad:pad + size]
        total = full.sum()
        if total and 0.1 <= visible.sum() / total <= PARTIAL_MAX_VISIBLE:
            return visible
    return None


def occluded_shape(rng, size: int, full_mask_of, min_radius: float,
                   max_radius: float) -> tuple[np.ndarray, np.ndarray] | None:
    """A class shape mostly hidden behind a distractor: (shape's visible mask, occluder mask), with 10% to
    PARTIAL_MAX_VISIBLE of the shape showing; None if 20 tries find no such pair.

    ``full_mask_of(centre, radius)`` draws the whole class shape on the [size, size] canvas."""
    for _ in range(20):
        radius = rng.uniform(min_radius, max_radius)
        centre = tuple(rng.uniform(radius, size - radius, 2))
        shape = full_mask_of(centre, radius)
        offset = rng.uniform(-0.4, 0.4, 2) * radius
        cover = (elongated, blob, polygon)[int(rng.integers(3))]
        occluder = cover(rng, size, (centre[0] + offset[0], centre[1] + offset[1]), radius * rng.uniform(1.0, 1.4))
        visible = shape & ~occluder
        if shape.sum() and 0.1 <= visible.sum() / shape.sum() <= PARTIAL_MAX_VISIBLE:
            return visible, occluder
    return None
