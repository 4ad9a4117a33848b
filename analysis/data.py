"""The images to analyse: what `python -m train --data` takes (a folder with annotations.json and images/, or
an annotation file with --images), or a plain folder of images (analyses that need no annotations)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from detr_core.teaching.ground_truth import CocoSet, image_folder


@dataclass(frozen=True)
class ImageSet:
    """files: every image, in a fixed order (the shards split it by index); coco: the annotations, if any."""

    files: tuple[Path, ...]
    coco: Optional[CocoSet] = None

    @classmethod
    def open(cls, data: str | Path, images: str | Path | None = None) -> "ImageSet":
        data = Path(data)
        if not data.exists():
            raise ValueError(f"--data {data} does not exist: give a COCO folder (annotations.json + images/), "
                             "an annotation file with --images, or a folder of images")
        if data.is_file() or (data / "annotations.json").is_file():
            coco = CocoSet(data, images)
            return cls(tuple(coco.files()), coco)
        files = tuple(image_folder(data))
        if not files:
            raise ValueError(f"{data} holds no images (.jpg, .png, ...) and no annotations.json")
        return cls(files)

    def boxes(self, index: int, class_names: Sequence[str]) -> np.ndarray:
        """[N, 4] ground-truth boxes x0, y0, x1, y1 in pixels ([0, 4] without annotations)."""
        if self.coco is None:
            return np.zeros((0, 4))
        return self.coco.ground_truth(index, class_names, by_position=True).boxes
