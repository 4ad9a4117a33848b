"""The prediction as a set: every query answers, most say "no object", and duplicates silence themselves.

DETR has no non-maximum suppression. A second query that found the same object learns (through the one-to-one
matching loss) to predict "no object" instead; this module finds such queries so the all-queries view can
point at them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inspection.inspection import Inspection


@dataclass(frozen=True)
class SuppressedDuplicate:
    """A query below the threshold whose box overlaps a detection's box: the model suppressed it itself."""

    query: int
    detection_query: int  # the detected query it duplicates
    iou: float
    no_object: float  # its "no object" probability


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1) -> [N, M]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2]
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # [N, M, 2]
    inter = np.clip(rb - lt, 0, None).prod(-1)  # [N, M]
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)  # [N]
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)  # [M]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def suppressed_duplicates(ins: Inspection, threshold: float = 0.7, min_iou: float = 0.5) -> list[SuppressedDuplicate]:
    """Undetected queries whose box overlaps some detection by at least min_iou, most overlapping first."""
    if not 0.0 <= min_iou <= 1.0:
        raise ValueError(f"min_iou={min_iou} must be between 0 and 1")
    detections = ins.detections(threshold)
    if not detections:
        return []
    detected = {d.query for d in detections}
    boxes = ins.coords.boxes_to_pixels(ins.boxes)  # [Q, 4]
    iou = box_iou(boxes, np.array([d.box for d in detections]))  # [Q, D]
    found = []
    for q in range(ins.num_queries):
        best = int(np.argmax(iou[q]))
        if q not in detected and iou[q, best] >= min_iou:
            found.append(SuppressedDuplicate(q, detections[best].query, float(iou[q, best]),
                                             float(ins.probabilities[q, -1])))
    return sorted(found, key=lambda s: -s.iou)


def object_probability(ins: Inspection) -> np.ndarray:
    """[Q] 1 - P(no object): how much each query claims there is something."""
    return 1.0 - ins.probabilities[:, -1]
