"""Two models on one image, drawn side by side (plain numpy/PIL, fast enough for interaction):

    result = detr_core.compare(ins_a, ins_b)
    pair = result.pairs[0]
    view = viz.pair_view(viz.Side(ins_a, pair.a.query), viz.Side(ins_b, pair.b.query))
    view.boxes, view.a, view.b, view.difference      # PIL images; difference is None unless both share a grid

The two maps share one colour scale by default. Models read the image on different grids (DETR's 32-px cells,
a deformable model's splat on its finest 8-px level), so a map's values are first made weights per image pixel
(each cell's weight over its area in original pixels): a dense map spread over the whole image then looks as
faint beside a handful of sampling points as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from matplotlib import colormaps  # the registry only: no pyplot
from PIL import Image, ImageDraw

from detr_core import Detection
from detr_core.family import capabilities

from .decoder import card_for
from .detections import Box, draw_boxes, font
from .heatmap import overlay, upsample
from .sampling import sampling_image

A_COLOUR, B_COLOUR = (0, 200, 255), (255, 60, 200)  # cyan and magenta: apart from each other and the colormaps
DIFFERENCE_CMAP = "RdBu_r"  # red: A attends more; blue: B attends more; white: alike


@dataclass(frozen=True)
class Side:
    """One model's half of a comparison: its inspection, the query shown, the decoder layer and head (None or
    'mean', 'max', or an index), and its name in labels."""

    ins: Any
    query: int
    layer: int = -1
    head: Any = None
    name: str = "A"


@dataclass(frozen=True)
class PairView:
    """boxes: the image with both boxes; a, b: each model's map with its query's box; difference: A - B where
    both models share an architecture and grid, else None; top: the shared scale (weight per pixel), or None."""

    boxes: Image.Image
    a: Image.Image
    b: Image.Image
    difference: Image.Image | None
    top: float | None


def pixel_density(ins, query: int, layer: int = -1, head=None) -> np.ndarray:
    """[fh, fw]: the query's decoder map as weight per original-image pixel (each cell's weight divided by the
    cell's area in original pixels), comparable across models with different grids."""
    (H, W), (h, w), stride = ins.image_size, ins.input_size, ins.coords.stride
    return ins.decoder_map(query, layer, head) / ((stride * W / w) * (stride * H / h))


def same_grid(ins_a, ins_b) -> bool:
    """True when the two results can be subtracted cell by cell: one model type, one input size and grid
    (e.g. a model before and after fine-tuning)."""
    return (capabilities(ins_a).model_type == capabilities(ins_b).model_type
            and ins_a.coords == ins_b.coords)


def query_box(ins, query: int) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 in original pixels of the query's final box (detected or not)."""
    return tuple(float(v) for v in ins.coords.boxes_to_pixels(ins.boxes[query])[0])


def query_caption(ins, query: int, name: str) -> str:
    """"A: query 7 cat 0.91": the query's best class and score whether or not it passed the threshold."""
    probs = ins.probabilities[query, :-1]  # [C]
    label = int(np.argmax(probs))
    return f"{name}: query {query} {ins.class_name(label)} {probs[label]:.2f}"


def draw_pair(image: Image.Image, a: Detection | None, b: Detection | None, image_size: tuple[int, int],
              names: tuple[str, str] = ("A", "B")) -> Image.Image:
    """The image with A's box (cyan) and B's (magenta), each labelled "A: cat 0.91"; either may be None.
    image_size: (H, W) of the image the boxes are in (the drawn image may be a scaled copy)."""
    scale = image.width / image_size[1]
    out = image.convert("RGB")
    for d, name, colour, below in ((a, names[0], A_COLOUR, False), (b, names[1], B_COLOUR, True)):
        if d is not None:
            box = tuple(v * scale for v in d.box)
            out = draw_boxes(out, [Box(box, "" if below else f"{name}: {d.name} {d.score:.2f}", colour)])
            if below:  # B's tab under its box: a pair's boxes often coincide, and A's tab sits above
                _tab_below(out, box, f"{name}: {d.name} {d.score:.2f}", colour)
    return out


def _tab_below(image: Image.Image, box, text: str, colour) -> None:
    """A filled label tab under the box's bottom edge (inside it if there is no room). Draws in place."""
    draw = ImageDraw.Draw(image)
    text_font = font(max(11, round(max(image.size) / 55)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
    tw, th = right - left + 6, bottom - top + 4
    x0, y1 = box[0], box[3]
    y = y1 if y1 + th <= image.height else y1 - th
    draw.rectangle((x0, y, x0 + tw, y + th), fill=colour)
    draw.text((x0 + 3, y + 2 - top), text, fill=(255, 255, 255), font=text_font)


def side_image(side: Side, base: Image.Image, colour, top: float | None = None, alpha: float = 0.6,
               cmap: str = "inferno", points: bool = False) -> Image.Image:
    """One model's panel: the query's heatmap (scaled by `top`, weight per pixel, or by its own maximum) or, for
    a deformable model with points=True, its sampling points; with the query's box in the side's colour."""
    ins, scale = side.ins, base.width / side.ins.image_size[1]
    if points and capabilities(ins).is_deformable:
        head = side.head if isinstance(side.head, (int, np.integer)) else None
        drawn = sampling_image(ins, card_for(ins, side.query), side.layer, head, base=base, label=False)
    else:
        drawn = overlay(base, pixel_density(ins, side.query, side.layer, side.head), ins.coords, alpha, cmap, top)
    box = tuple(v * scale for v in query_box(ins, side.query))
    return draw_boxes(drawn, [Box(box, query_caption(ins, side.query, side.name), colour)])


@lru_cache(maxsize=1)
def _diverging_lut() -> np.ndarray:
    rgba = colormaps[DIFFERENCE_CMAP](np.linspace(0.0, 1.0, 256))  # [256, 4]
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def difference_image(a: Side, b: Side, base: Image.Image, alpha: float = 0.6) -> Image.Image:
    """A's map minus B's (same grid), scaled by the largest difference: red where A attends more, blue where B
    does, white where they agree; blended over the image."""
    if not same_grid(a.ins, b.ins):
        raise ValueError("a difference needs two results of one model type on one grid; these differ")
    diff = pixel_density(a.ins, a.query, a.layer, a.head) - pixel_density(b.ins, b.query, b.layer, b.head)
    top = float(np.abs(diff).max())
    values = upsample(diff / top if top > 0 else diff, a.ins.coords, base.size)  # [H, W] in about -1..1
    index = np.clip((values + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    heat = Image.fromarray(_diverging_lut()[index])
    return Image.blend(base.convert("RGB"), heat, alpha)


def shared_top(a: Side, b: Side) -> float:
    """The larger of the two maps' peaks in weight per pixel: one colour scale for both."""
    return max(float(pixel_density(s.ins, s.query, s.layer, s.head).max()) for s in (a, b))


def pair_view(a: Side, b: Side, detection_a: Detection | None = None, detection_b: Detection | None = None,
              base: Image.Image | None = None, shared: bool = True, alpha: float = 0.6, cmap: str = "inferno",
              points: bool = False) -> PairView:
    """Both models' maps for one pair (or one unpaired detection and the other model's nearest query), on one
    colour scale when `shared`, with the boxes panel and, where both share a grid, the difference.
    detection_a / detection_b: the detections drawn on the boxes panel (None: that side has none)."""
    base = a.ins.image if base is None else base
    top = shared_top(a, b) if shared else None
    difference = difference_image(a, b, base, alpha) if same_grid(a.ins, b.ins) else None
    return PairView(draw_pair(base, detection_a, detection_b, a.ins.image_size, (a.name, b.name)),
                    side_image(a, base, A_COLOUR, top, alpha, cmap, points),
                    side_image(b, base, B_COLOUR, top, alpha, cmap, points), difference, top)
