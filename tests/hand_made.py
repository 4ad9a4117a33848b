"""Inspections built from hand-made arrays, for tests whose answer is known cell by cell."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import detr_core
from detr_core import QuantizedProbabilities


def hand_inspection(coords: detr_core.CoordinateMap, cross=None, boxes=None, encoder=None, logits=None,
                    image: Image.Image | None = None) -> detr_core.Inspection:
    """An Inspection on `coords` from the given arrays; what is not given is a valid uniform filler.

    cross [L_dec, heads, Q, cells] decoder cross-attention; boxes [L_dec, Q, 4] normalised cx, cy, w, h;
    encoder [L_enc, heads, cells, cells] encoder self-attention (stored in 16-bit fixed point, as captured);
    logits [L_dec, Q, C+1] with class names "a", "b", ... for the C classes.
    """
    cells = coords.feature_size[0] * coords.feature_size[1]
    cross = np.full((1, 1, 1, cells), 1 / cells) if cross is None else cross
    cross = np.asarray(cross, dtype=np.float32)
    layers, heads, queries = cross.shape[:3]
    boxes = np.full((layers, queries, 4), 0.5) if boxes is None else boxes
    encoder = np.full((1, 1, cells, cells), 1 / cells) if encoder is None else encoder
    logits = np.zeros((layers, queries, 3)) if logits is None else logits
    height, width = coords.image_size
    return detr_core.Inspection(
        image=Image.new("RGB", (width, height)) if image is None else image, coords=coords,
        layer_logits=np.asarray(logits, np.float32), layer_boxes=np.asarray(boxes, np.float32),
        encoder_attention=QuantizedProbabilities.from_tensors(
            [torch.as_tensor(np.asarray(m), dtype=torch.float32)[None] for m in encoder]),
        decoder_cross_attention=cross,
        decoder_self_attention=np.full((layers, heads, queries, queries), 1 / queries, np.float32),
        class_names=[chr(ord("a") + c) for c in range(np.shape(logits)[-1] - 1)])
