"""Is a model's attention meaningful? The share of decoder attention that lands on the object.

For every confident detection, take the last decoder layer's cross-attention of
its query (mean over heads), and measure how much of it falls inside the
detection's box grown by one feature cell on each side. Each cell's weight is
spread evenly over the cell, so a cell half inside the grown box counts half.
The figure reported is the mean over all confident detections of a data set
(issue 4's bar for the bundled model: at least 0.60). The same share is also kept
per head, because DETR's heads specialise: some look at the object, others at
the whole image, and the mean over heads mixes the two kinds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from detr_core import inspect_image
from detr_core.coords import CoordinateMap


@dataclass(frozen=True)
class AttentionInBox:
    """Mean attention share inside the grown boxes, over ``detections`` detections in ``images`` images."""

    mean_fraction: float
    detections: int
    images: int
    per_head: tuple[float, ...] = ()  # the same mean, for each head's own map


def _overlap_1d(n_cells: int, lo: float, hi: float) -> np.ndarray:
    """[n_cells]: the fraction of each unit cell [k, k+1) inside the interval [lo, hi)."""
    k = np.arange(n_cells, dtype=np.float64)
    return np.clip(np.minimum(k + 1, hi) - np.maximum(k, lo), 0.0, 1.0)


def cell_coverage(box_xyxy: tuple, coords: CoordinateMap, grow_cells: float = 1.0) -> np.ndarray:
    """[fh, fw]: the fraction of each feature cell inside an original-pixel box grown by
    ``grow_cells`` cells on every side."""
    x0, y0 = coords.pixel_to_input(box_xyxy[0], box_xyxy[1])
    x1, y1 = coords.pixel_to_input(box_xyxy[2], box_xyxy[3])
    s = coords.stride
    fh, fw = coords.feature_size
    rows = _overlap_1d(fh, y0 / s - grow_cells, y1 / s + grow_cells)  # [fh]
    cols = _overlap_1d(fw, x0 / s - grow_cells, x1 / s + grow_cells)  # [fw]
    return rows[:, None] * cols[None, :]  # [fh, fw]


def mass_in_box(attention: np.ndarray, box_xyxy: tuple, coords: CoordinateMap,
                grow_cells: float = 1.0) -> float:
    """Share of ``attention`` ([fh, fw], non-negative) inside the grown box."""
    total = float(attention.sum())
    if total <= 0:
        raise ValueError("attention map sums to 0; expected softmax weights")
    return float((attention * cell_coverage(box_xyxy, coords, grow_cells)).sum()) / total


@torch.no_grad()
def attention_in_boxes(model, images: Iterable, threshold: float = 0.7,
                       grow_cells: float = 1.0) -> AttentionInBox:
    """The mean share over every detection scoring above ``threshold`` in ``images``
    (anything ``detr_core.inspect_image`` accepts: paths, PIL images, arrays)."""
    was_training = model.training
    model.eval()  # no dropout or DropHead in the maps measured
    try:
        return _attention_in_boxes(model, images, threshold, grow_cells)
    finally:
        model.train(was_training)


def _attention_in_boxes(model, images: Iterable, threshold: float, grow_cells: float) -> AttentionInBox:
    fractions, heads, n_images = [], [], 0
    for image in images:
        ins = inspect_image(model, image)
        n_images += 1
        for det in ins.detections(threshold):
            attention = ins.decoder_map(det.query, layer=-1, head="mean")  # [fh, fw]
            fractions.append(mass_in_box(attention, det.box, ins.coords, grow_cells))
            per_head = ins.decoder_cross_attention[-1, :, det.query]  # [heads, fh*fw]
            heads.append([mass_in_box(h.reshape(ins.feature_size), det.box, ins.coords, grow_cells)
                          for h in per_head])
    mean = float(np.mean(fractions)) if fractions else 0.0
    per_head_mean = tuple(float(v) for v in np.mean(heads, 0)) if heads else ()
    return AttentionInBox(mean, len(fractions), n_images, per_head_mean)
