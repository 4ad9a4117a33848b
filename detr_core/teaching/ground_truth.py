"""Ground truth for the teaching views: the images of a COCO-format set and each one's boxes, in a model's labels.

Training has its own, stricter reader (train/coco_file.py); this one only needs an image list and one image's
boxes at a time, and maps categories to the model's classes by name, so any model can be compared with any set
whose category names it knows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class GroundTruth:
    """One image's objects. boxes [N, 4] x0, y0, x1, y1 in the image's pixels; labels [N] model class ids."""

    file: Path
    boxes: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    by_position: bool = False  # True: the model does not know these names; category k became class k

    def normalised_cxcywh(self, image_size: tuple[int, int]) -> np.ndarray:
        """[N, 4] boxes as DETR predicts them: cx, cy, w, h as fractions of the image (H, W)."""
        h, w = image_size
        b = self.boxes / np.array([w, h, w, h], dtype=np.float64)  # [N, 4]
        return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1).astype(np.float32)


class CocoSet:
    """A COCO-format set: `data` is a folder with annotations.json and images/, or an annotation file whose
    images are in `images` (or next to it)."""

    def __init__(self, data: str | Path, images: str | Path | None = None):
        data = Path(data)
        annotations = data / "annotations.json" if data.is_dir() else data
        if not annotations.is_file():
            raise ValueError(f"no COCO annotation file at {annotations}")
        try:
            coco = json.loads(annotations.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{annotations} is not a readable JSON file ({err})") from None
        if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
            raise ValueError(f"{annotations}: expected a COCO object with an 'images' list")
        default = data / "images" if data.is_dir() else annotations.parent
        self.root = Path(images) if images is not None else default
        self.annotations = annotations
        self.images: list[dict] = coco["images"]
        for entry in self.images:
            self._check_entry(entry)
        self.categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
        self._by_image: dict = {}
        for ann in coco.get("annotations", []):
            self._by_image.setdefault(ann.get("image_id"), []).append(ann)

    def _check_entry(self, entry) -> None:
        """Every image must be a file inside the set's image folder (symlinks followed): a `file_name` such as
        `../../etc/x` or `/etc/x` would open, and draw, a file from anywhere on the machine."""
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.annotations}: every entry of 'images' needs a file_name, found {entry!r:.80}")
        root = self.root.resolve()
        if not (root / name).resolve().is_relative_to(root):
            raise ValueError(f"{self.annotations}: image file_name {name!r:.80} leads outside the set's image folder"
                             f" {self.root}; file names are relative to it (e.g. 'img_001.jpg')")

    def files(self) -> list[Path]:
        return [self.root / entry["file_name"] for entry in self.images]

    def index_of(self, name: str) -> int:
        """Index of the image whose file name (or its last part) is `name`."""
        for i, entry in enumerate(self.images):
            if name in (entry["file_name"], Path(entry["file_name"]).name):
                return i
        raise ValueError(f"no image named {name!r} in {self.annotations}")

    def ground_truth(self, index: int, class_names: Sequence[str], by_position: bool = False) -> GroundTruth:
        """Image `index`'s non-crowd boxes, labelled with the model class of the same name.

        by_position=True: when some category name is not a model class, use the k-th category (in id order) as
        class k instead, so the matching can still be shown for a model trained on other names (e.g. untrained).
        """
        if not 0 <= index < len(self.images):
            raise ValueError(f"image index {index} out of range 0..{len(self.images) - 1}")
        entry = self.images[index]
        anns = [a for a in self._by_image.get(entry["id"], []) if not a.get("iscrowd", 0)]
        names = tuple(self.categories.get(a.get("category_id"), "?") for a in anns)
        label_of = {name: k for k, name in reversed(list(enumerate(class_names)))}
        missing = sorted(set(names) - set(label_of))
        positional = bool(missing) and by_position
        if positional:
            label_of = {self.categories[c]: k for k, c in enumerate(sorted(self.categories))}
            missing = [n for n in names if label_of.get(n, len(class_names)) >= len(class_names)]
        if missing:
            raise ValueError(f"categories {missing} of {entry['file_name']} are not classes of this model"
                             f" ({', '.join(list(class_names)[:8])}...)")
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        return GroundTruth(self.root / entry["file_name"], np.asarray(boxes, np.float64).reshape(-1, 4),
                           np.asarray([label_of[n] for n in names], np.int64), names, positional)


def image_folder(folder: str | Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
