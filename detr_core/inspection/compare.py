"""Two inspections of one image side by side: their detections paired one to one.

    result = detr_core.compare(ins_a, ins_b, threshold=0.5, min_iou=0.5)
    for pair in result.pairs: pair.a, pair.b, pair.iou      # the two Detections and their boxes' IoU
    result.only_a, result.only_b                            # what only one model found

The inspections may come from any two models (DETR, or the DETR family through `detr_core.inspect_any`, in any
mix): their queries are numbered independently, so detections are paired by where and what they are, never by
query number. The pairing is the Hungarian algorithm (scipy) on a cost of box disagreement, 1 - GIoU, plus class
disagreement by class *name*, so that two models with different label sets (COCO ids against a fine-tuned head)
still pair what they call the same thing. A pair whose boxes overlap less than `min_iou` is no pair: both sides
stay unpaired.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou, generalized_box_iou

from .inspection import Detection

# Cost of a pair the IoU floor forbids: larger than any allowed cost (at most 2 for 1 - GIoU plus the class
# weight), so the assignment takes as many allowed pairs as exist before it minimises their cost.
FORBIDDEN = 1e6


@dataclass(frozen=True)
class Pair:
    """One detection of each model on the same object. iou / giou: of their boxes (original pixels)."""

    a: Detection
    b: Detection
    iou: float
    giou: float

    @property
    def same_class(self) -> bool:
        return same_name(self.a.name, self.b.name)


@dataclass(frozen=True)
class Comparison:
    """pairs (best score of A first), and the detections of each model left unpaired (best first)."""

    pairs: tuple[Pair, ...]
    only_a: tuple[Detection, ...]
    only_b: tuple[Detection, ...]
    threshold: float
    min_iou: float


def _key(name: str) -> str:
    return name.strip().casefold()


def same_name(a: str, b: str) -> bool:
    """Class names agree when they read the same, whatever the case and surrounding spaces ("Cat" = "cat ")."""
    return _key(a) == _key(b)


def box_overlaps(boxes_a: np.ndarray, boxes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x0, y0, x1, y1 boxes [N, 4] and [M, 4] -> (IoU [N, M], GIoU [N, M]), float64 (torchvision's).
    A box of zero area has IoU 0 with anything (torchvision gives 0/0 there)."""
    a = torch.as_tensor(np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4))
    a, b = _ordered(a), _ordered(b)  # a predicted box is never inverted, but a hand-made one may be
    iou = torch.nan_to_num(box_iou(a, b), nan=0.0)
    giou = torch.nan_to_num(generalized_box_iou(a, b), nan=-1.0)
    return iou.numpy(), giou.numpy()


def _ordered(boxes: torch.Tensor) -> torch.Tensor:
    """Corners sorted so that x0 <= x1 and y0 <= y1 (torchvision asserts it)."""
    x = torch.sort(boxes[:, 0::2], dim=1).values  # [N, 2]
    y = torch.sort(boxes[:, 1::2], dim=1).values
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def pair_detections(dets_a: Sequence[Detection], dets_b: Sequence[Detection], min_iou: float = 0.5,
                    class_weight: float = 1.0) -> tuple[tuple[Pair, ...], tuple[Detection, ...], tuple[Detection, ...]]:
    """-> (pairs, only_a, only_b): the one-to-one pairing of minimum total cost (1 - GIoU) + class_weight x
    (names differ) among pairs whose boxes overlap by at least `min_iou`."""
    if not 0.0 < min_iou <= 1.0:
        raise ValueError(f"min_iou={min_iou}: give an IoU floor in (0, 1]")
    if class_weight < 0:
        raise ValueError(f"class_weight={class_weight} must be >= 0")
    if not dets_a or not dets_b:
        return (), tuple(dets_a), tuple(dets_b)
    iou, giou = box_overlaps(np.array([d.box for d in dets_a]), np.array([d.box for d in dets_b]))
    names_a, names_b = (np.array([_key(d.name) for d in dets]) for dets in (dets_a, dets_b))
    names = (names_a[:, None] != names_b[None, :]).astype(np.float64)  # [N, M] 1 where the names differ
    cost = (1.0 - giou) + class_weight * names  # [N, M]
    allowed = iou >= min_iou
    rows, cols = linear_sum_assignment(np.where(allowed, cost, FORBIDDEN))
    kept = [(r, c) for r, c in zip(rows, cols) if allowed[r, c]]
    pairs = tuple(Pair(dets_a[r], dets_b[c], float(iou[r, c]), float(giou[r, c])) for r, c in sorted(kept))
    paired_a, paired_b = {r for r, _ in kept}, {c for _, c in kept}
    return (pairs, tuple(d for i, d in enumerate(dets_a) if i not in paired_a),
            tuple(d for j, d in enumerate(dets_b) if j not in paired_b))


def image_digest(image) -> str:
    """SHA-256 of an image's size, mode and pixels: two inspections of one image have the same digest."""
    digest = hashlib.sha256(f"{image.size} {image.mode}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def check_same_image(ins_a, ins_b) -> None:
    """ValueError unless both inspections saw the same image (same size, same pixels)."""
    if tuple(ins_a.image_size) != tuple(ins_b.image_size):
        (ha, wa), (hb, wb) = ins_a.image_size, ins_b.image_size
        raise ValueError(f"the inspections are of two different images ({wa}x{ha} and {wb}x{hb} pixels): compare "
                         "two models on the same image (run both on one image with detr_core.inspect_any)")
    if ins_a.image is not ins_b.image and image_digest(ins_a.image) != image_digest(ins_b.image):
        raise ValueError(f"the inspections are of two different images (both {ins_a.image_size[1]}x"
                         f"{ins_a.image_size[0]} pixels, but their pixels differ): compare two models on the same "
                         "image (run both on one image with detr_core.inspect_any)")


def compare(ins_a, ins_b, threshold: float = 0.5, min_iou: float = 0.5, class_weight: float = 1.0) -> Comparison:
    """Pair the detections above `threshold` of two inspections of the same image (DETR `Inspection`s or
    DETR-family results, any mix): Hungarian on (1 - GIoU) + class_weight x (class names differ); a pair needs
    IoU >= `min_iou`. ValueError for two different images."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be between 0 and 1")
    check_same_image(ins_a, ins_b)
    pairs, only_a, only_b = pair_detections(ins_a.detections(threshold), ins_b.detections(threshold), min_iou,
                                            class_weight)  # detections come best first, and so do the pairs
    return Comparison(pairs, only_a, only_b, threshold, min_iou)


def nearest_query(ins, box: Sequence[float]) -> tuple[int, float]:
    """(query, IoU): the query of `ins` whose final box (original pixels) overlaps `box` best, by GIoU (so
    that a query is found even when no box overlaps): where the other model looked for an unpaired detection."""
    boxes = ins.coords.boxes_to_pixels(ins.boxes)  # [Q, 4]
    iou, giou = box_overlaps(np.asarray(box, dtype=np.float64)[None], boxes)  # [1, Q]
    query = int(np.argmax(giou[0]))
    return query, float(iou[0, query])
