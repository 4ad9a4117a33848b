"""Mixed scenes: shapes on photos and procedural textures, among distractors, and images with no shape at all.

The original data (``backgrounds="plain"``) only ever showed shapes on smooth synthetic noise, and a model
trained on it invents shapes in every photo. A mixed scene draws, in order:
1. a background: the plain texture, a procedural texture, or a crop of a natural photo;
2. with probability ``distractor_rate``, 1-3 things that are not shapes (``distractors.py``), painted as boldly
   as the shapes, so that colour and contrast never give a shape away;
3. unless the image is one of the ``empty_fraction`` with nothing to find, 1..max_objects shapes at varied
   contrast, with the same visibility rule as the plain data;
4. sometimes a blur, always sensor grain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import backgrounds, distractors
from .photos import photo_files
from .shapes import CLASS_NAMES, ShapeObject, add_shape, colour_far_from, paint_shape, place_shape, shape_mask

BACKGROUND_KINDS = ("plain", "mixed", "photos")
# share of each background in "mixed" scenes: the plain texture keeps the original domain in view
MIXED_WEIGHTS = {"plain": 0.25, "procedural": 0.35, "photo": 0.4}


@dataclass(frozen=True)
class SceneMix:
    """What a scene may contain beyond shapes on the plain texture."""

    backgrounds: str = "plain"  # "plain", "mixed" (plain / procedural / photo) or "photos" (photos only)
    photo_dir: str | None = None  # folder of photos, needed unless backgrounds == "plain"
    empty_fraction: float = 0.0  # share of images with no shape at all
    distractor_rate: float = 0.0  # share of images with distractors

    def __post_init__(self):
        if self.backgrounds not in BACKGROUND_KINDS:
            raise ValueError(f"backgrounds={self.backgrounds!r}: expected one of {BACKGROUND_KINDS}")
        if self.backgrounds != "plain" and not self.photo_dir:
            raise ValueError(f"backgrounds={self.backgrounds!r} needs a photo folder (--photos DIR)")
        for name in ("empty_fraction", "distractor_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a share in [0, 1]")

    @property
    def is_plain(self) -> bool:
        """True for the original data: shapes on the plain texture, nothing else."""
        return self.backgrounds == "plain" and self.empty_fraction == 0 and self.distractor_rate == 0


@lru_cache(maxsize=8)
def _photos(folder: str) -> tuple[Path, ...]:
    return tuple(photo_files(Path(folder)))


def scene_background(rng, mix: SceneMix, size: int) -> np.ndarray:
    """[size, size, 3] float background of the kind the mix asks for."""
    kind = "photo" if mix.backgrounds == "photos" else "plain"
    if mix.backgrounds == "mixed":
        kinds = list(MIXED_WEIGHTS)
        kind = kinds[int(rng.choice(len(kinds), p=list(MIXED_WEIGHTS.values())))]
    if kind == "plain":
        return backgrounds.textured_background(rng, size)
    if kind == "procedural":
        return backgrounds.procedural_background(rng, size)
    return backgrounds.photo_background(rng, size, _photos(mix.photo_dir))


def _paint_bold(rng, img: np.ndarray, mask: np.ndarray) -> None:
    """Paint ``mask`` in a colour that stands out as much as a shape's would."""
    if mask.any():
        paint_shape(img, mask, colour_far_from(rng, img[mask], rng.uniform(50, 120)), rng)


def add_distractors(rng, img: np.ndarray, min_radius: float, max_radius: float) -> None:
    """1-3 unlabelled things: a quarter of them class shapes that show too little of themselves."""
    size = img.shape[0]
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.25:
            for mask in _partial_shape(rng, size, min_radius, max_radius):
                _paint_bold(rng, img, mask)
        else:
            _paint_bold(rng, img, distractors.distractor_mask(rng, size, min_radius, max_radius))


def _partial_shape(rng, size: int, min_radius: float, max_radius: float) -> list[np.ndarray]:
    """Masks to paint, in order, for a class shape that shows too little to count: cut by the image border,
    or hidden behind a distractor (the shape's visible part, then the occluder). [] if none was placed."""
    label, angle = int(rng.integers(len(CLASS_NAMES))), rng.uniform(0, 2 * math.pi)
    if rng.random() < 0.5:
        mask = distractors.partial_shape(
            rng, size, lambda c, r, s: shape_mask(CLASS_NAMES[label], c, r, angle, s), min_radius, max_radius)
        return [] if mask is None else [mask]
    pair = distractors.occluded_shape(
        rng, size, lambda c, r: shape_mask(CLASS_NAMES[label], c, r, angle, size), min_radius, max_radius)
    return [] if pair is None else list(pair)


def add_shapes(rng, img: np.ndarray, max_objects: int, min_scale: float, max_scale: float) -> list[ShapeObject]:
    """1..max_objects labelled shapes at varied contrast (in place); -> the shapes with their visible masks."""
    size, objects = img.shape[0], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(CLASS_NAMES)))
        mask = place_shape(rng, size, min_scale, max_scale, label, objects)
        if mask is None:
            continue
        paint_shape(img, mask, colour_far_from(rng, img[mask], rng.uniform(50, 120)), rng)
        objects = add_shape(objects, label, mask)
    return objects


def render_scene(rng, mix: SceneMix, size: int, max_objects: int, min_scale: float,
                 max_scale: float) -> tuple[np.ndarray, list[ShapeObject]]:
    """One mixed scene: [size, size, 3] uint8 pixels and its labelled shapes."""
    img = scene_background(rng, mix, size)
    if rng.random() < mix.distractor_rate:
        add_distractors(rng, img, min_scale * size / 2, max_scale * size / 2)
    objects = [] if rng.random() < mix.empty_fraction else add_shapes(rng, img, max_objects, min_scale, max_scale)
    if rng.random() < 0.25:  # soft focus: a shape need not have crisp edges to be one
        img = backgrounds.blur(img, rng.uniform(0.3, 1.2))
    img = img + rng.normal(0, rng.uniform(2, 10), img.shape)  # sensor-like grain over everything
    return np.clip(img, 0, 255).round().astype(np.uint8), objects
