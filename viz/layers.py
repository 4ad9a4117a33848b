"""One query through the decoder, layer by layer: the box and class that the shared heads read from each layer's
output, on that layer's cross-attention map. Shows the prediction being refined step by step.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from detr_core import Inspection
from detr_core.family.scoring import layer_probabilities

from .detections import Box, draw_boxes
from .grid import grid_columns, tile_grid
from .heatmap import fit, overlay
from .palette import box_colour

TILE_SIDE = 320


def layer_predictions(ins: Inspection, query: int) -> list[tuple[str, float, float, tuple]]:
    """Per decoder layer: (best real class, its probability, no-object probability, box x0, y0, x1, y1 pixels)."""
    if not 0 <= query < ins.num_queries:
        raise ValueError(f"query={query} out of range 0..{ins.num_queries - 1}")
    # [L, C+1]: DETR's softmax with its "no object" class, or the family's sigmoid scores (last: 1 - best)
    probs = np.stack([layer_probabilities(ins, layer)[query] for layer in range(len(ins.layer_logits))])
    boxes = ins.coords.boxes_to_pixels(ins.layer_boxes[:, query])  # [L, 4]
    best = probs[:, :-1].argmax(-1)  # [L]
    return [(ins.class_name(int(best[l])), float(probs[l, best[l]]), float(probs[l, -1]),
             tuple(float(v) for v in boxes[l])) for l in range(len(probs))]


def layer_strip(ins: Inspection, query: int, alpha: float = 0.6, cmap: str = "inferno",
                tile_side: int = TILE_SIDE, base: Image.Image | None = None) -> Image.Image:
    """A tile per decoder layer: that layer's cross-attention (mean over heads) with that layer's box."""
    base = fit(ins.image, tile_side) if base is None else base
    scale = base.width / ins.image_size[1]
    tiles, captions = [], []
    for layer, (name, p, no_object, box) in enumerate(layer_predictions(ins, query)):
        heat = overlay(base, ins.decoder_map(query, layer, None), ins.coords, alpha, cmap)
        tiles.append(draw_boxes(heat, [Box(tuple(v * scale for v in box), "", box_colour(0))]))
        captions.append(f"layer {layer + 1}: {name} {p:.2f}")  # no-object probability: in layer_rows
    columns = min(len(tiles), max(3, grid_columns(len(tiles), base.width / base.height)))
    return tile_grid(tiles, captions, columns)


def layer_rows(ins: Inspection, query: int) -> list[list]:
    """Table rows: layer (1-based), class, probability, no object, box corners (pixels, rounded)."""
    return [[layer + 1, name, round(p, 3), round(no_object, 3), *(round(v) for v in box)]
            for layer, (name, p, no_object, box) in enumerate(layer_predictions(ins, query))]


LAYER_HEADERS = ["layer", "class", "probability", "no object", "x0", "y0", "x1", "y1"]
