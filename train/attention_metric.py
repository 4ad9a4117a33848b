"""Is a model's attention meaningful? The share of decoder attention that lands on the object.

For every confident detection, take the last decoder layer's cross-attention of
its query (mean over heads), and measure how much of it falls inside the
detection's box grown by one feature cell on each side. Each cell's weight is
spread evenly over the cell, so a cell half inside the grown box counts half.
The figure reported is the mean over all confident detections of a data set
(issue 4's bar for the bundled model: at least 0.60). The same share is also kept
per head, because DETR's heads specialise: some look at the object, others at
the whole image, and the mean over heads mixes the two kinds. The geometry is
``CoordinateMap.box_cell_coverage`` and ``Inspection.attention_in_box`` (the app shows
the same per-head shares for the chosen query).

Because some heads spread over the whole image by design, the figure the project judges
the bundled model by is where each detection's head-mean map *peaks*: ``peak_in_box`` is
the share of detections whose map's highest cell overlaps the detection's own box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from detr_core import forget_inference_twin, inference_twin, inspect_image


@dataclass(frozen=True)
class AttentionInBox:
    """Mean attention share inside the grown boxes, over ``detections`` detections in ``images`` images."""

    mean_fraction: float
    detections: int
    images: int
    per_head: tuple[float, ...] = ()  # the same mean, for each head's own map
    peak_in_box: float = 0.0  # share of detections whose head-mean map peaks on a cell overlapping the box


@torch.no_grad()
def attention_in_boxes(model, images: Iterable, threshold: float = 0.7,
                       grow_cells: float = 1.0) -> AttentionInBox:
    """The mean share over every detection scoring above ``threshold`` in ``images``
    (anything ``detr_core.inspect_image`` accepts: paths, PIL images, arrays; it measures in eval mode)."""
    fractions, heads, peaks, n_images = [], [], [], 0
    inference_twin(model, compile_backbone=False)  # the model trains on: compiling its twin would not pay off
    for image in images:
        ins = inspect_image(model, image)  # the model's inference twin: built at the first image, then reused
        n_images += 1
        for det in ins.detections(threshold):
            shares = ins.attention_in_box(det.query, layer=-1, grow_cells=grow_cells)  # [heads]
            fractions.append(float(shares.mean()))
            heads.append(shares)
            peaks.append(_peaks_in_box(ins, det))
    forget_inference_twin(model)  # a model in training changes at its next step: the twin would only take memory
    mean = float(np.mean(fractions)) if fractions else 0.0
    per_head_mean = tuple(float(v) for v in np.mean(heads, 0)) if heads else ()
    peak_share = float(np.mean(peaks)) if peaks else 0.0
    return AttentionInBox(mean, len(fractions), n_images, per_head_mean, peak_share)


def _peaks_in_box(ins, det) -> bool:
    """Whether the last layer's head-mean cross-attention of ``det`` is highest on a cell its box overlaps."""
    attention = ins.decoder_map(det.query, layer=-1)  # [fh, fw], mean over heads
    row, col = np.unravel_index(int(attention.argmax()), attention.shape)
    return bool(ins.coords.box_cell_coverage(det.box, grow_cells=0.0)[row, col] > 0)
