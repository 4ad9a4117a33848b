"""Detections drawn on the image (coloured boxes, class names, scores) and as table rows."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from detr_core import Detection

from .palette import box_colour

TABLE_HEADERS = ["rank", "query", "class", "score", "x0", "y0", "x1", "y1"]


@dataclass(frozen=True)
class Box:
    """One box to draw: x0, y0, x1, y1 in the drawn image's pixels."""

    xyxy: tuple[float, float, float, float]
    text: str
    colour: tuple[int, int, int]


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_boxes(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """A copy of `image` with each box outlined and labelled on a filled tab above it (inside if no room)."""
    out = image.convert("RGB")  # convert() copies, so the caller's image is untouched
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    width, text_font = max(2, round(side / 300)), font(max(11, round(side / 55)))
    for box in boxes:
        x0, y0, x1, y1 = box.xyxy
        draw.rectangle((x0, y0, x1, y1), outline=box.colour, width=width)
        if not box.text:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), box.text, font=text_font)
        tw, th = right - left + 6, bottom - top + 4
        ty = y0 - th if y0 - th >= 0 else y0
        draw.rectangle((x0, ty, x0 + tw, ty + th), fill=box.colour)
        draw.text((x0 + 3, ty + 2 - top), box.text, fill=(255, 255, 255), font=text_font)
    return out


def detection_boxes(detections: Sequence[Detection], scale: float = 1.0) -> list[Box]:
    """Detections (best first) -> boxes coloured by rank, scaled from original pixels by `scale`."""
    return [Box(tuple(v * scale for v in d.box), f"{d.name} {d.score:.2f}", box_colour(rank))
            for rank, d in enumerate(detections)]


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """The image (at its original size) with every detection's box, class name and score."""
    return draw_boxes(image, detection_boxes(detections))


def detection_rows(detections: Sequence[Detection], boxes: np.ndarray | None = None) -> list[list]:
    """One table row per detection, in TABLE_HEADERS order, box corners rounded to whole pixels.

    boxes: [N, 4] x0, y0, x1, y1 to report instead of each detection's own box (e.g. in the uploaded image's
    pixels and clipped to it, as the app's table shows them).
    """
    corners = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4) if boxes is None else boxes
    if len(corners) != len(detections):
        raise ValueError(f"{len(corners)} boxes for {len(detections)} detections")
    return [[rank, d.query, d.name, round(d.score, 3), *(round(float(v)) for v in box)]
            for rank, (d, box) in enumerate(zip(detections, corners))]
