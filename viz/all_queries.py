"""Every query at once: all Q boxes faded by how sure each query is that it holds an object, and a bar per query
with its class and "no object" probabilities. Shows that DETR needs no NMS: the extra queries say "no object".
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from detr_core import Inspection
from detr_core.teaching.set_prediction import object_probability

from .detections import font
from .palette import BOX_COLOURS, box_colour

FADED = (255, 255, 255)  # colour of the boxes of queries below the threshold
NO_OBJECT = (200, 200, 200)
OTHER_CLASSES = (90, 90, 90)


def class_colour(label: int) -> tuple[int, int, int]:
    """A fixed colour per class id (bars), so the same class looks the same in every column."""
    return BOX_COLOURS[label % len(BOX_COLOURS)]


def all_queries_image(ins: Inspection, threshold: float, base: Image.Image | None = None) -> Image.Image:
    """Every query's box; opacity = 1 - P(no object). Detections (score > threshold) in their rank colour and
    labelled with their query number, the rest white and thin."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be between 0 and 1")
    base = (ins.image if base is None else base).convert("RGBA")
    scale = base.width / ins.image_size[1]
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    boxes = ins.coords.boxes_to_pixels(ins.boxes) * scale  # [Q, 4] in this image's pixels
    opacity = object_probability(ins)  # [Q]
    rank = {d.query: r for r, d in enumerate(ins.detections(threshold))}
    width, text_font = max(1, round(max(base.size) / 400)), font(max(10, round(max(base.size) / 60)))
    for q in np.argsort(opacity, kind="stable"):  # faintest first, so the detections end on top
        alpha = int(40 + 215 * opacity[q])
        colour = box_colour(rank[q]) if q in rank else FADED
        draw.rectangle(tuple(boxes[q]), outline=(*colour, alpha), width=width * (2 if q in rank else 1))
        if q in rank:
            draw.text((boxes[q][0] + 3, boxes[q][1] + 2), f"q{q}", fill=(*colour, 255), font=text_font,
                      stroke_width=2, stroke_fill=(0, 0, 0, 255))
    return Image.alpha_composite(base, layer).convert("RGB")


def _stack(probs: np.ndarray) -> list[tuple[float, tuple[int, int, int]]]:
    """One query's bar from the bottom: best class, other classes, no object. probs [C+1]. For the DETR family's
    sigmoid scores "no object" is 1 - best (detr_core.family.scoring), so the other-classes part is empty; it is
    clipped at 0, where float rounding can leave it a hair below (a drawn height must not be negative)."""
    best = int(np.argmax(probs[:-1]))
    other = max(0.0, float(1.0 - probs[best] - probs[-1]))
    return [(float(probs[best]), class_colour(best)), (other, OTHER_CLASSES),
            (float(probs[-1]), NO_OBJECT)]


LEGEND = ("columns: queries {first} to {last}, numbered below",
          "bottom: best class, dark: other classes, light: no object",
          "red dashes: threshold; black ticks: detected")
TICK_STEPS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)


def tick_step(num_queries: int, column: int, label_width) -> int:
    """The smallest step between numbered queries whose labels (`label_width(text)` pixels wide) leave at least
    8 px between neighbours: every query for a few, every 5th for DETR's 100 at 9 px a column."""
    widest = label_width(str(num_queries - 1))
    return next((s for s in TICK_STEPS if s * column >= widest + 8), TICK_STEPS[-1])


def query_bars(ins: Inspection, threshold: float, height: int = 220, column: int | None = None) -> Image.Image:
    """A column per query (in query order): best class (its colour), other classes (dark), no object (light).
    A dashed line marks the threshold; detected queries get a tick below their column; query numbers under the
    ticks (as many as fit apart) and a legend below, inside the image whatever the query count.
    `height`: the plot's rows (the legend adds its own); `column`: pixels per query (default: 9 to 24, wider for
    fewer queries)."""
    q = ins.num_queries
    column = column or max(9, min(24, 480 // q))
    left, bottom, top = 34, 34, 10
    small = font(11)
    legend = [line.format(first=0, last=q - 1) for line in LEGEND]
    width = left + max(q * column, *(int(small.getlength(line)) for line in legend)) + 10
    chart = Image.new("RGB", (width, height + 16 * len(legend) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(chart)
    plot_h = height - bottom - top
    for i, probs in enumerate(ins.probabilities):  # probs [C+1]
        x0, y = left + i * column, height - bottom
        for share, colour in _stack(probs):
            h = share * plot_h
            draw.rectangle((x0, y - h, x0 + column - 2, y), fill=colour)
            y -= h
        if probs[:-1].max() > threshold:
            draw.polygon([(x0 + column / 2 - 1, height - bottom + 3), (x0, height - bottom + 10),
                          (x0 + column - 2, height - bottom + 10)], fill=(0, 0, 0))
    y_thr = height - bottom - threshold * plot_h
    for x in range(left, left + q * column, 8):
        draw.line((x, y_thr, x + 4, y_thr), fill=(220, 0, 0), width=1)
    draw.text((2, top - 4), "1.0", fill=(0, 0, 0), font=small)
    draw.text((2, height - bottom - 8), "0.0", fill=(0, 0, 0), font=small)
    _query_numbers(draw, q, left, column, height - bottom + 12, small)
    for i, line in enumerate(legend):
        draw.text((left, height + 2 + 16 * i), line, fill=(0, 0, 0), font=small)
    return chart


def _query_numbers(draw: ImageDraw.ImageDraw, q: int, left: int, column: int, y: int, text_font) -> None:
    """The numbers of every tick_step-th query, each centred under its column."""
    for i in range(0, q, tick_step(q, column, text_font.getlength)):
        label = str(i)
        x = left + i * column + (column - 2) / 2 - text_font.getlength(label) / 2
        draw.text((x, y), label, fill=(0, 0, 0), font=text_font)


def describe_queries(ins: Inspection, threshold: float, duplicates: list) -> str:
    """Markdown: how many queries detect something, how many say "no object", which ones are silenced duplicates."""
    detected = len(ins.detections(threshold))
    text = (f"{ins.num_queries} queries, {detected} above {threshold:.2f}; the other {ins.num_queries - detected}"
            " mostly predict **no object**. DETR runs no non-maximum suppression.")
    if duplicates:
        pairs = ", ".join(f"query {d.query} (overlaps query {d.detection_query}, IoU {d.iou:.2f},"
                          f" no object {d.no_object:.2f})" for d in duplicates[:6])
        text += f" Duplicates the model silenced itself: {pairs}."
    return text
