"""Raw cross-attention, attention rollout and gradient-weighted relevance of one detection, side by side."""
from __future__ import annotations

from PIL import Image

from detr_core import Inspection
from detr_core.teaching.explain import Explanation

from .detections import Box, draw_boxes
from .grid import tile_grid
from .heatmap import fit, overlay
from .palette import box_colour

TILE_SIDE = 420
METHODS = (
    ("raw", "raw attention"),
    ("rollout", "rollout"),
    ("relevance", "relevance (Chefer)"),
)


def explanation_image(ins: Inspection, explanation: Explanation, alpha: float = 0.6, cmap: str = "inferno",
                      tile_side: int = TILE_SIDE) -> Image.Image:
    """Three tiles, each map over the image with the detection's box."""
    base = fit(ins.image, tile_side)
    scale = base.width / ins.image_size[1]
    box = ins.coords.boxes_to_pixels(ins.boxes[explanation.query])[0] * scale  # [4]
    tiles = [draw_boxes(overlay(base, getattr(explanation, key), ins.coords, alpha, cmap),
                        [Box(tuple(box), "", box_colour(0))]) for key, _ in METHODS]
    return tile_grid(tiles, [title for _, title in METHODS], columns=3)


def describe_explanation(explanation: Explanation) -> str:
    """Markdown: what each map answers."""
    return (f"**Query {explanation.query}, explained for class {explanation.name}.** "
            "*Raw*: where the query's last decoder layer looked, averaged over heads. "
            "*Rollout*: the same attention traced back through every encoder layer (with the residual connection), "
            "so it points at input cells, not at already-mixed encoder features. "
            "*Relevance*: each attention map weighted by the gradient of this class score, positive part only, "
            "propagated through encoder and decoder; it shows what raised the score, and is class-specific.")
