"""A synthetic COCO-format data set of coloured shapes on textured backgrounds.

``python -m train.synthetic --out DIR --images N --seed S [--size 256]`` writes
``DIR/annotations.json`` and ``DIR/images/000001.png`` ... The data set exists so
that the project can train its own small DETR with no download; textured
backgrounds and overlapping objects make its attention maps worth looking at.

Image ``i`` depends only on (seed, i, size, max_objects), so the same seed gives
byte-identical files and a larger N extends a smaller set.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross")
MIN_VISIBLE_FRACTION = 0.6  # an occluded shape must keep this much of its area visible
MIN_BOX_PIXELS = 6
PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate."""

    images: int
    seed: int = 0
    size: int = 256  # square images, pixels per side
    max_objects: int = 4
    min_scale: float = 0.12  # shape diameter as a fraction of the image side
    max_scale: float = 0.45

    def __post_init__(self):
        if self.images < 1 or self.size < 32 or self.max_objects < 1:
            raise ValueError(f"need images >= 1, size >= 32, max_objects >= 1; got {self}")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1; got {self}")


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


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size, 3] float image: a colour gradient, blotchy low-frequency noise and grain."""
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


def _colour_far_from(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour at least 90 (RGB Euclidean) away from ``background``'s mean colour."""
    mean = background.reshape(-1, 3).mean(0)  # [3]
    colour = rng.uniform(0, 255, 3)
    for _ in range(50):
        if np.linalg.norm(colour - mean) >= 90:
            break
        colour = rng.uniform(0, 255, 3)
    return colour


def _place(rng, spec: SyntheticSpec, label: int, objects) -> np.ndarray | None:
    """A mask for a new shape that leaves every earlier shape mostly visible, or None."""
    for _ in range(PLACEMENT_TRIES):
        radius = rng.uniform(spec.min_scale, spec.max_scale) * spec.size / 2
        centre = rng.uniform(radius * 0.6, spec.size - radius * 0.6, 2)
        mask = shape_mask(CLASS_NAMES[label], centre, radius, rng.uniform(0, 2 * math.pi), spec.size)
        if mask.sum() < MIN_BOX_PIXELS ** 2:
            continue
        if all((o.mask & ~mask).sum() >= MIN_VISIBLE_FRACTION * o.full_area for o in objects):
            return mask
    return None


def render_image(spec: SyntheticSpec, index: int) -> tuple[np.ndarray, list[ShapeObject]]:
    """Image ``index`` ([H, W, 3] uint8) and its shapes with their visible masks."""
    rng = np.random.default_rng([spec.seed, index])
    img = textured_background(rng, spec.size)
    objects: list[ShapeObject] = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        label = int(rng.integers(len(CLASS_NAMES)))
        mask = _place(rng, spec, label, objects)
        if mask is None:
            continue
        colour = _colour_far_from(rng, img[mask])
        shading = 1 + 0.15 * (rng.random(mask.shape) - 0.5)  # mild texture inside the shape
        img[mask] = colour * shading[mask][:, None]  # [M, 3] for the M pixels of the shape
        objects = [ShapeObject(o.label, o.mask & ~mask, o.full_area) for o in objects]
        objects.append(ShapeObject(label, mask, int(mask.sum())))
    img = img + rng.normal(0, rng.uniform(3, 12), img.shape)  # sensor-like grain over everything
    return np.clip(img, 0, 255).round().astype(np.uint8), objects


def coco_annotation(obj: ShapeObject, image_id: int, ann_id: int) -> dict:
    """COCO annotation of a shape's visible pixels ([x, y, w, h] box in pixels)."""
    ys, xs = np.nonzero(obj.mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return {"id": ann_id, "image_id": image_id, "category_id": obj.label + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(obj.mask.sum()), "iscrowd": 0}


def write_dataset(spec: SyntheticSpec, out: Path) -> Path:
    """Render ``spec.images`` images into ``out``; returns the annotation file's path."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(spec.images):
        pixels, objects = render_image(spec, index)
        image_id, name = index + 1, f"{index + 1:06d}.png"
        Image.fromarray(pixels).save(out / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": spec.size, "height": spec.size})
        for obj in objects:
            annotations.append(coco_annotation(obj, image_id, len(annotations) + 1))
    coco = {
        "info": {"description": "DETR Lens synthetic shapes", "seed": spec.seed},
        "images": images, "annotations": annotations,
        "categories": [{"id": k + 1, "name": n, "supercategory": "shape"}
                       for k, n in enumerate(CLASS_NAMES)],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(coco, indent=1, sort_keys=True))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--max-objects", type=int, default=4)
    args = parser.parse_args(argv)
    spec = SyntheticSpec(images=args.images, seed=args.seed, size=args.size,
                         max_objects=args.max_objects)
    path = write_dataset(spec, args.out)
    print(f"wrote {spec.images} images and {path}")


if __name__ == "__main__":
    main()
