"""COCO-format detection data for training: labels, targets and batches.

Category ids are mapped to the model's label indices through ``LabelMap``; the
model's class names decide the mapping when given (so a COCO-91 model whose
label equals the category id trains on COCO unchanged), otherwise the data
set's categories become labels 0..C-1 in id order.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from detr_core.preprocess import pad_batch

from .coco_file import DataSource, load_coco

log = logging.getLogger(__name__)
UNUSED_CLASS = "N/A"  # placeholder name in the COCO-91 layout for ids without a category


@dataclass(frozen=True)
class LabelMap:
    """Model label index <-> data set category id, with the model's class names."""

    class_names: tuple[str, ...]
    category_to_label: dict

    @property
    def label_to_category(self) -> dict:
        return {label: cat for cat, label in self.category_to_label.items()}

    @classmethod
    def from_categories(cls, categories: Sequence[dict]) -> "LabelMap":
        """Labels 0..C-1 for the categories in id order; names from the data set."""
        cats = sorted(categories, key=lambda c: c["id"])
        return cls(tuple(c["name"] for c in cats), {c["id"]: k for k, c in enumerate(cats)})

    @classmethod
    def by_name(cls, categories: Sequence[dict], class_names: Sequence[str]) -> "LabelMap":
        """Map each category to the model label with the same name; ValueError if one is missing."""
        index = {}
        for k, name in enumerate(class_names):
            if name != UNUSED_CLASS:
                index.setdefault(name, k)
        missing = [c["name"] for c in categories if c["name"] not in index]
        if missing:
            raise ValueError(f"categories {missing} are not among the model's class names; "
                             "fine-tune onto this data set's classes instead")
        return cls(tuple(class_names), {c["id"]: index[c["name"]] for c in categories})

    @staticmethod
    def covers(categories: Sequence[dict], class_names: Sequence[str]) -> bool:
        """True if every category name is one of ``class_names``."""
        return {c["name"] for c in categories} <= set(class_names) - {UNUSED_CLASS}


@dataclass(frozen=True)
class ImageRecord:
    """One image's file and its usable boxes (xyxy pixels, clipped to the image)."""

    image_id: int
    file: str
    boxes: np.ndarray  # [N, 4] float32 xyxy
    labels: np.ndarray  # [N] int64


@dataclass(frozen=True)
class DataSummary:
    images: int
    boxes: int
    crowd_skipped: int
    degenerate_removed: int
    empty_images: int


def _image_record(coco, image: dict, source: DataSource, label_map: LabelMap, counts: dict) -> ImageRecord:
    width, height = image.get("width", np.inf), image.get("height", np.inf)
    boxes, cats = [], []
    for ann in coco.imgToAnns.get(image["id"], []):
        if ann.get("iscrowd", 0):  # crowd regions are not instances DETR can be matched to
            counts["crowd"] += 1
            continue
        x, y, w, h = ann["bbox"]
        x0, y0 = min(max(x, 0), width), min(max(y, 0), height)
        x1, y1 = min(max(x + w, 0), width), min(max(y + h, 0), height)
        if x1 <= x0 or y1 <= y0:
            counts["degenerate"] += 1
            continue
        boxes.append([x0, y0, x1, y1])
        cats.append(label_map.category_to_label[ann["category_id"]])
    return ImageRecord(image["id"], str(source.images / image["file_name"]),
                       np.asarray(boxes, dtype=np.float32).reshape(-1, 4),  # [N, 4]
                       np.asarray(cats, dtype=np.int64))


class CocoDetection(Dataset):
    """(image tensor [3, H, W], target dict) pairs from a checked COCO-format data set.

    target: "labels" LongTensor[N], "boxes" FloatTensor[N, 4] normalized cxcywh,
    "image_id", "orig_size" (h, w) and "size" (h, w) after the transforms.
    """

    def __init__(self, source: DataSource, transforms: Callable, label_map: LabelMap | None = None,
                 open_headers: bool = True):
        self.coco = load_coco(source, open_headers)
        self.source = source
        self.transforms = transforms
        categories = self.coco.dataset["categories"]
        self.label_map = label_map or LabelMap.from_categories(categories)
        unknown = set(c["id"] for c in categories) - set(self.label_map.category_to_label)
        if unknown:
            raise ValueError(f"{source.annotations}: category ids {sorted(unknown)} have no model label")
        counts = {"crowd": 0, "degenerate": 0}
        self.records = [_image_record(self.coco, img, source, self.label_map, counts)
                        for img in sorted(self.coco.dataset["images"], key=lambda i: i["id"])]
        self.summary = DataSummary(
            len(self.records), sum(len(r.labels) for r in self.records), counts["crowd"],
            counts["degenerate"], sum(len(r.labels) == 0 for r in self.records))
        log.info("%s: %d images (%d without boxes), %d boxes; skipped %d crowd boxes, removed %d "
                 "degenerate boxes", source.annotations, self.summary.images,
                 self.summary.empty_images, self.summary.boxes, self.summary.crowd_skipped,
                 self.summary.degenerate_removed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        record = self.records[index]
        image = _open_rgb(record)
        w, h = image.size
        boxes = torch.from_numpy(record.boxes.copy())  # [N, 4] xyxy
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)  # for entries without width/height
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target = {"boxes": boxes[keep], "labels": torch.from_numpy(record.labels)[keep],
                  "image_id": record.image_id, "orig_size": torch.tensor([h, w])}
        return self.transforms(image, target)


def _open_rgb(record: ImageRecord) -> Image.Image:
    try:
        with Image.open(record.file) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"image {record.image_id}: {record.file} could not be read ({err})") from None


class Batch(NamedTuple):
    """A padded batch: images padded bottom/right with zeros, mask True on padding."""

    pixel_values: Tensor  # [B, 3, H, W]
    pixel_mask: Tensor  # [B, H, W] bool
    targets: list  # B dicts; boxes normalized to each unpadded image


def collate(samples: Sequence[tuple[Tensor, dict]]) -> Batch:
    """DataLoader collate_fn for ``CocoDetection``."""
    images, targets = zip(*samples)
    pixel_values, pixel_mask = pad_batch(list(images))
    return Batch(pixel_values, pixel_mask, list(targets))
