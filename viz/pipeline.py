"""The pipeline walk-through: one panel per stage of DETR, each with two or three sentences.

Grids are drawn with nearest-neighbour blocks, so the feature map is seen at its real (coarse) resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from detr_core import Inspection
from detr_core.teaching.pipeline import PipelineStages, principal_components

from .detections import draw_detections
from .grid import tile_grid
from .heatmap import colorize, fit

PANEL_SIDE = 480


@dataclass(frozen=True)
class Panel:
    title: str
    text: str  # Markdown, two or three sentences
    image: Image.Image


def _to_unit(values: np.ndarray) -> np.ndarray:
    """Any array -> 0..1 by its own min and max."""
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def _blocks(rgb: np.ndarray, side: int) -> Image.Image:
    """[h, w, 3] uint8 grid -> an image about `side` px on its longer side, one solid block per cell."""
    h, w = rgb.shape[:2]
    cell = max(1, side // max(h, w))
    return Image.fromarray(rgb).resize((w * cell, h * cell), Image.NEAREST)


def components_image(features: np.ndarray, side: int = PANEL_SIDE) -> tuple[Image.Image, np.ndarray]:
    """features [C, h, w] -> (first three principal components as red, green, blue; their variance shares)."""
    comps, share = principal_components(features, 3)  # [k, h, w]
    if len(comps) < 3:
        comps = np.concatenate([comps, np.zeros((3 - len(comps), *comps.shape[1:]), comps.dtype)])
    rgb = np.stack([_to_unit(c) for c in comps], -1)  # [h, w, 3]
    return _blocks((rgb * 255 + 0.5).astype(np.uint8), side), share


def position_image(position: np.ndarray, side: int = PANEL_SIDE // 2) -> Image.Image:
    """position [d, h, w] -> four channels side by side: slow and fast y channels, slow and fast x channels."""
    d = position.shape[0]
    picks = [(0, "y, slow"), (d // 2 - 2, "y, fast"), (d // 2, "x, slow"), (d - 2, "x, fast")]
    tiles = [_blocks(colorize(_to_unit(position[c]), "viridis"), side) for c, _ in picks]
    return tile_grid(tiles, [f"ch {c}: {name}" for c, name in picks], columns=2)


def input_image(stages: PipelineStages, stride: int, side: int = PANEL_SIDE) -> Image.Image:
    """The resized input with the feature-cell grid drawn over it (one cell = stride x stride input pixels)."""
    image = Image.fromarray(stages.input_pixels())
    draw = ImageDraw.Draw(image)
    h, w = stages.input.shape[-2:]
    for x in range(stride, w, stride):
        draw.line((x, 0, x, h), fill=(255, 255, 0), width=1)
    for y in range(stride, h, stride):
        draw.line((0, y, w, y), fill=(255, 255, 0), width=1)
    return fit(image, side)


def queries_image(query_embed: np.ndarray, side: int = PANEL_SIDE) -> Image.Image:
    """query_embed [Q, d] as a heatmap: one row per learned query vector."""
    q, d = query_embed.shape
    rgb = colorize(_to_unit(query_embed), "viridis")  # [Q, d, 3]
    cell_w, cell_h = max(1, side // d), max(1, side // (2 * q))
    return Image.fromarray(rgb).resize((d * cell_w, q * cell_h), Image.NEAREST)


def pipeline_panels(ins: Inspection, stages: PipelineStages, threshold: float = 0.7) -> list[Panel]:
    """Six panels from input to the final set. All from one forward pass (detr_core.teaching.pipeline)."""
    (h, w), (fh, fw), stride = ins.input_size, ins.feature_size, ins.coords.stride
    c, d = stages.backbone.shape[0], stages.memory.shape[0]
    backbone, b_share = components_image(stages.backbone)
    memory, m_share = components_image(stages.memory)
    layers, q = stages.decoder.shape[:2]
    detections = ins.detections(threshold)
    return [
        Panel("1. Input", f"The image is resized to {w}x{h} pixels (shorter side to the model's setting) and "
              f"normalised. The yellow grid shows the {stride}x{stride}-pixel patches that become one feature cell "
              "each; batches are padded at the bottom and right, and a mask tells the model which cells are padding.",
              input_image(stages, stride)),
        Panel("2. Backbone (CNN)", f"A ResNet turns the image into a {fh}x{fw} grid of {c}-channel feature vectors. "
              f"Shown: the first three principal components of the channels as red, green and blue "
              f"({100 * b_share.sum():.0f}% of the variance); cells with similar colours hold similar features.",
              backbone),
        Panel("3. Positional encoding", f"Attention ignores order, so every cell gets a {d}-channel code of its "
              "(x, y) position, added to the keys and queries of every attention layer. Half the channels encode y, "
              "half x, at frequencies from slow to fast.", position_image(stages.position)),
        Panel("4. Encoder output", f"A 1x1 convolution projects the features to {d} channels; "
              f"{len(ins.encoder_attention)} self-attention layers then let every cell exchange information with every other one. Shown: the "
              f"first three principal components of the encoder output ({100 * m_share.sum():.0f}% of the variance): "
              "objects tend to separate from the background.", memory),
        Panel("5. Decoder queries", f"{q} learned query vectors (rows, {d} values each), the same for every image. "
              f"Each one goes through {layers} decoder layers that attend to the encoder output and to the other "
              "queries, and ends as one prediction slot.", queries_image(stages.query_embed)),
        Panel("6. The set of predictions", f"Each of the {q} slots predicts a class (or \"no object\") and a box. "
              f"{len(detections)} slot(s) score above {threshold:.2f}; there is no NMS: training matched one slot to "
              "each object, so duplicates learned to say \"no object\".",
              fit(draw_detections(ins.image, detections), PANEL_SIDE)),
    ]
