"""Files shipped inside the package with the app, so an installed copy finds them from any folder:
example images, a small COCO-format set (shapes_val) and precomputed query-slot statistics."""
from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
SHAPES_VAL = EXAMPLES_DIR / "shapes_val"  # 24 generated shapes images with annotations.json
QUERY_SLOTS_DIR = EXAMPLES_DIR / "query_slots"  # <model>.npz from `python -m detr_core.teaching.query_slots`
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def example_images() -> list[Path]:
    """The example images offered under the upload box, by name."""
    return sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
