"""Where a deformable model's confident detections sample: the share of the last decoder layer's sampling weight
inside each detection's box grown by a quarter of its size (issue 23's figure for ``shapes-deformable``).

The deformable counterpart of attention_metric.py: each image goes through ``detr_core.inspect_family`` (the
app's path); for every detection above the threshold, the weights of its sampling points in the last decoder
layer (every head, level and point; they sum to 1 per head) are summed inside the box scaled by 1.25 about its
centre (an eighth of its width and height added on each side) and divided by their total.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from detr_core.family import inspect_family

GROW = 0.25


@dataclass(frozen=True)
class SamplingShare:
    """Mean share over ``detections`` detections; ``per_head``: the same for each head's own points."""

    mean_fraction: float
    detections: int
    per_head: tuple


def grown_box(box: Sequence[float], grow: float = GROW) -> tuple[float, float, float, float]:
    """xyxy scaled by (1 + grow) about its centre."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * grow / 2, (y1 - y0) * grow / 2
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def share_inside(xy: np.ndarray, weight: np.ndarray, box: Sequence[float]) -> float:
    """Share of ``weight`` [N] whose points ``xy`` [N, 2] lie inside the xyxy ``box`` (edges included)."""
    x0, y0, x1, y1 = box
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    total = float(weight.sum())
    return float(weight[inside].sum()) / total if total > 0 else float("nan")


def sampling_in_boxes(fm, files: Sequence, threshold: float = 0.7, grow: float = GROW) -> SamplingShare:
    """The figure over the images ``files`` for the deformable FamilyModel ``fm``."""
    shares, per_head = [], []
    for path in files:
        ins = inspect_family(fm, path)
        if not hasattr(ins, "sampling_points"):
            raise ValueError(f"{fm.source}: {fm.spec.title}'s decoder is dense; the sampling figure is for "
                             "deformable decoders (use the attention figure)")
        for det in ins.detections(threshold):
            points = ins.sampling_points(det.query, layer=-1)
            box = grown_box(det.box, grow)
            shares.append(share_inside(points.xy, points.weight, box))
            heads = np.unique(points.head)
            per_head.append([share_inside(points.xy[points.head == h], points.weight[points.head == h], box)
                             for h in heads])
    if not shares:
        return SamplingShare(float("nan"), 0, ())
    return SamplingShare(float(np.mean(shares)), len(shares), tuple(float(v) for v in np.mean(per_head, axis=0)))
