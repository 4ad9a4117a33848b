"""COCO-format detection data for training: labels, targets and batches.

Category ids are mapped to the model's label indices through ``LabelMap``; the
model's class names decide the mapping when given (so a COCO-91 model whose
label equals the category id trains on COCO unchanged), otherwise the data
set's categories become labels 0..C-1 in id order.

The order of a training epoch depends only on (seed, epoch, world size), like
``DistributedSampler.set_epoch``; batches are cut from it explicitly so that a
run resumed in the middle of an epoch skips exactly the batches already done.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from detr_core.model.preprocess import pad_batch

from .coco_file import DataSource, load_coco
from .distributed import DistInfo

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
    category_ids: np.ndarray  # [N] int64; mapped to labels when loaded, so the map can change


@dataclass(frozen=True)
class DataSummary:
    images: int
    boxes: int
    crowd_skipped: int
    degenerate_removed: int
    empty_images: int


def _image_record(coco, image: dict, source: DataSource, counts: dict) -> ImageRecord:
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
        cats.append(ann["category_id"])
    return ImageRecord(image["id"], str(source.images / image["file_name"]),
                       np.asarray(boxes, dtype=np.float32).reshape(-1, 4),  # [N, 4]
                       np.asarray(cats, dtype=np.int64))


class CocoDetection(Dataset):
    """(image tensor [3, H, W], target dict) pairs from a checked COCO-format data set.

    target: "labels" LongTensor[N], "boxes" FloatTensor[N, 4] normalized cxcywh,
    "image_id", "orig_size" (h, w) and "size" (h, w) after the transforms.
    """

    def __init__(self, source: DataSource, transforms: Callable, label_map: LabelMap | None = None,
                 open_headers: bool = True, augment_seed: int | None = None):
        self.coco = load_coco(source, open_headers)
        # Seeding each sample's augmentation by (seed, epoch, index) makes it independent of
        # worker processes, batch order and resumption.
        self.augment_seed, self.epoch = augment_seed, 0
        self.source = source
        self.transforms = transforms
        self.categories = list(self.coco.dataset["categories"])
        self.set_label_map(label_map or LabelMap.from_categories(self.categories))
        counts = {"crowd": 0, "degenerate": 0}
        self.records = [_image_record(self.coco, img, source, counts)
                        for img in sorted(self.coco.dataset["images"], key=lambda i: i["id"])]
        self.summary = DataSummary(
            len(self.records), sum(len(r.category_ids) for r in self.records), counts["crowd"],
            counts["degenerate"], sum(len(r.category_ids) == 0 for r in self.records))
        log.info("%s: %d images (%d without boxes), %d boxes; skipped %d crowd boxes, removed %d "
                 "degenerate boxes", source.annotations, self.summary.images,
                 self.summary.empty_images, self.summary.boxes, self.summary.crowd_skipped,
                 self.summary.degenerate_removed)

    def set_label_map(self, label_map: LabelMap) -> None:
        """Use ``label_map`` (e.g. a fine-tuned model's) from now on; it must cover every category."""
        unknown = {c["id"] for c in self.categories} - set(label_map.category_to_label)
        if unknown:
            raise ValueError(f"{self.source.annotations}: category ids {sorted(unknown)} have no "
                             "model label")
        self.label_map = label_map
        self._to_label = label_map.category_to_label

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
        labels = torch.tensor([self._to_label[int(c)] for c in record.category_ids], dtype=torch.long)
        target = {"boxes": boxes[keep], "labels": labels[keep],
                  "image_id": record.image_id, "orig_size": torch.tensor([h, w])}
        if self.augment_seed is None:
            return self.transforms(image, target)
        seed = np.random.SeedSequence([self.augment_seed, self.epoch, index]).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return self.transforms(image, target)

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of augmentations (set before the epoch's DataLoader is iterated)."""
        self.epoch = epoch


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


def epoch_batches(dataset: CocoDetection, batch_size: int, info: DistInfo, seed: int,
                  epoch: int) -> list[list[int]]:
    """This process's batches of dataset indices for ``epoch`` (incomplete last batch dropped)."""
    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    full = len(indices) // batch_size
    return [indices[k * batch_size:(k + 1) * batch_size] for k in range(full)]


def steps_per_epoch(dataset: CocoDetection, batch_size: int, info: DistInfo) -> int:
    """Optimiser steps in one epoch; a ValueError if the data cannot fill one batch."""
    per_process = -(-len(dataset) // info.world_size)  # DistributedSampler pads up to this
    steps = per_process // batch_size
    if steps < 1:
        raise ValueError(
            f"{dataset.source.annotations}: {len(dataset)} images give {per_process} per process, "
            f"fewer than --batch-size {batch_size}; lower the batch size or add images"
        )
    return steps


def train_loader(dataset: CocoDetection, batches: list[list[int]], num_workers: int,
                 pin_memory: bool = False) -> DataLoader:
    """A loader over precomputed batches; its own generator keeps torch's global RNG untouched
    (creating an iterator would otherwise draw from it and shift dropout after a resume).

    ``pin_memory`` (for CUDA) puts each batch in page-locked memory, so that its copy to the device
    can overlap the step. Workers prefetch 4 batches each: a GPU step of the small recipes is
    shorter than one image's decoding and augmentation, so they must run ahead."""
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
                      pin_memory=pin_memory, prefetch_factor=4 if num_workers else None,
                      generator=torch.Generator().manual_seed(0))
