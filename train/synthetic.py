"""A synthetic COCO-format data set of coloured shapes, on plain textures or mixed scenes.

``python -m train.synthetic --out DIR --images N --seed S [--size 256]`` writes ``DIR/annotations.json`` and
``DIR/images/000001.png`` ... The data set exists so that the project can train its own small DETR with no
download. The default is the original data: shapes on smooth textured backgrounds. ``--backgrounds mixed
--photos DIR --empty-fraction F --distractors P`` adds what a model needs to learn "no object": photo and
procedural backgrounds, images with nothing to find, and things that are not shapes (``scenes.py``).

Image ``i`` depends only on the spec and ``i``, so the same seed gives byte-identical files and a larger N
extends a smaller set (``--workers`` changes nothing but the speed).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .backgrounds import textured_background
from .scenes import BACKGROUND_KINDS, SceneMix, render_scene
from .shapes import (CLASS_NAMES, MIN_VISIBLE_FRACTION, ShapeObject, add_shape, colour_far_from, paint_shape,
                     place_shape)

__all__ = ["CLASS_NAMES", "MIN_VISIBLE_FRACTION", "SyntheticSpec", "render_image", "write_dataset", "main"]


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate."""

    images: int
    seed: int = 0
    size: int = 256  # square images, pixels per side
    max_objects: int = 4
    min_scale: float = 0.12  # shape diameter as a fraction of the image side
    max_scale: float = 0.45
    mix: SceneMix = field(default_factory=SceneMix)

    def __post_init__(self):
        if self.images < 1 or self.size < 32 or self.max_objects < 1:
            raise ValueError(f"need images >= 1, size >= 32, max_objects >= 1; got {self}")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1; got {self}")


def _render_plain(spec: SyntheticSpec, index: int) -> tuple[np.ndarray, list[ShapeObject]]:
    """The original data, unchanged draw for draw: earlier data sets regenerate byte for byte."""
    rng = np.random.default_rng([spec.seed, index])
    img = textured_background(rng, spec.size)
    objects: list[ShapeObject] = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        label = int(rng.integers(len(CLASS_NAMES)))
        mask = place_shape(rng, spec.size, spec.min_scale, spec.max_scale, label, objects)
        if mask is None:
            continue
        paint_shape(img, mask, colour_far_from(rng, img[mask]), rng)
        objects = add_shape(objects, label, mask)
    img = img + rng.normal(0, rng.uniform(3, 12), img.shape)  # sensor-like grain over everything
    return np.clip(img, 0, 255).round().astype(np.uint8), objects


def render_image(spec: SyntheticSpec, index: int) -> tuple[np.ndarray, list[ShapeObject]]:
    """Image ``index`` ([H, W, 3] uint8) and its labelled shapes with their visible masks."""
    if spec.mix.is_plain:
        return _render_plain(spec, index)
    rng = np.random.default_rng([spec.seed, index, 1])  # its own stream: never a plain image's draws
    return render_scene(rng, spec.mix, spec.size, spec.max_objects, spec.min_scale, spec.max_scale)


def coco_box(obj: ShapeObject) -> tuple[list[int], int]:
    """[x, y, w, h] box of a shape's visible pixels and their count."""
    ys, xs = np.nonzero(obj.mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return [x0, y0, x1 - x0, y1 - y0], int(obj.mask.sum())


def _write_one(job: tuple[SyntheticSpec, Path, int]) -> list[tuple[int, list[int], int]]:
    """Render and save image ``index``; -> (category id, box, area) of each shape."""
    spec, folder, index = job
    pixels, objects = render_image(spec, index)
    Image.fromarray(pixels).save(folder / f"{index + 1:06d}.png")
    return [(obj.label + 1, *coco_box(obj)) for obj in objects]


def write_dataset(spec: SyntheticSpec, out: Path, workers: int = 1) -> Path:
    """Render ``spec.images`` images into ``out`` (``workers`` processes); returns the annotation file."""
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, folder, index) for index in range(spec.images)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            shapes = pool.map(_write_one, jobs, chunksize=16)
    else:
        shapes = [_write_one(job) for job in jobs]
    images, annotations = [], []
    for index, found in enumerate(shapes):
        image_id = index + 1
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "width": spec.size,
                       "height": spec.size})
        for category, box, area in found:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": box, "area": area, "iscrowd": 0})
    coco = {
        "info": {"description": "DETR Lens synthetic shapes", "seed": spec.seed,
                 "backgrounds": spec.mix.backgrounds, "empty_fraction": spec.mix.empty_fraction,
                 "distractor_rate": spec.mix.distractor_rate},
        "images": images, "annotations": annotations,
        "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASS_NAMES)],
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
    parser.add_argument("--backgrounds", choices=BACKGROUND_KINDS, default="plain",
                        help="plain (the original data), mixed (plain, procedural and photo backgrounds), "
                             "or photos")
    parser.add_argument("--photos", type=Path, help="photo folder for mixed/photos backgrounds "
                        "(e.g. data/photos/train from python -m train.photos)")
    parser.add_argument("--empty-fraction", type=float, default=0.0, help="share of images with no shape")
    parser.add_argument("--distractors", type=float, default=0.0,
                        help="share of images with things that are not shapes")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel")
    args = parser.parse_args(argv)
    mix = SceneMix(args.backgrounds, str(args.photos) if args.photos else None, args.empty_fraction,
                   args.distractors)
    spec = SyntheticSpec(images=args.images, seed=args.seed, size=args.size, max_objects=args.max_objects,
                         mix=mix)
    path = write_dataset(spec, args.out, args.workers)
    print(f"wrote {spec.images} images and {path}")


if __name__ == "__main__":
    main()
