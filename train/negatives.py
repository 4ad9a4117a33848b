"""False detections on images with nothing to find: how often does a model see what is not there?

``python -m train.evaluate --model shapes --data DIR --negatives data/photos/heldout`` reports, for a folder of
images that hold none of the model's classes, every detection above the threshold. Each image goes through
``detr_core.inspect_any``, the path the app takes (DETR or DETR family), so the figure is what a user would see on those photos.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from detr_core import inspect_any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class NegativeResult:
    """Detections above ``threshold`` on ``images`` images that should have none."""

    images: int
    threshold: float
    found: dict = field(default_factory=dict)  # file name -> [(class name, score)], only images with some

    @property
    def detections(self) -> int:
        return sum(len(v) for v in self.found.values())

    @property
    def per_10_images(self) -> float:
        return 10 * self.detections / self.images

    def summary(self) -> str:
        lines = [f"{self.detections} detections above {self.threshold} on {self.images} images with nothing "
                 f"to find ({self.per_10_images:.2f} per 10 images)"]
        lines += [f"  {name}: " + ", ".join(f"{label} {score:.2f}" for label, score in dets)
                  for name, dets in sorted(self.found.items())]
        return "\n".join(lines)


def image_files(folder: str | Path) -> list[Path]:
    """Every image file directly in ``folder``, sorted; ValueError if there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--negatives {folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--negatives {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    return files


def false_positives(model, folder: str | Path, threshold: float = 0.7) -> NegativeResult:
    """Run ``model`` once on every image in ``folder`` and keep each detection above ``threshold``."""
    files = image_files(folder)
    found = {}
    for path in files:
        dets = inspect_any(model, path).detections(threshold)
        if dets:
            found[path.name] = [(d.name, round(d.score, 3)) for d in dets]
    return NegativeResult(len(files), threshold, found)
