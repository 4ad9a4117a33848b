"""Print-quality matplotlib figures for export (paper-style): never used on interactive paths.

Built on `matplotlib.figure.Figure` directly, so no pyplot global state and any backend works (Agg here).
"""
from __future__ import annotations

import io
import textwrap
from typing import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from detr_core import Detection, Inspection
from detr_core.inspection.coords import boxes_in_size

from .decoder import QueryCard
from .heatmap import normalise, upsample
from .palette import box_colour, hex_colour

PANEL_INCHES = 3.2
TITLE_POINTS = 9
CHAR_WIDTH = 0.55  # a proportional font's mean character width, in font sizes (measured for DejaVu Sans)


def wrap_title(title: str, width_inches: float, points: float = TITLE_POINTS) -> str:
    """The title broken into lines that fit `width_inches` at `points` size: matplotlib never wraps a title,
    and a long one (a model path, a point and a layer) is cut at both edges of the figure."""
    chars = max(20, int(width_inches * 72 / (points * CHAR_WIDTH)))
    return textwrap.fill(title, chars, break_long_words=True, break_on_hyphens=False)


def _show(ax, image, title: str = "", width_inches: float = 2 * PANEL_INCHES) -> None:
    ax.imshow(np.asarray(image))
    ax.set_title(wrap_title(title, width_inches), fontsize=TITLE_POINTS)
    ax.set_axis_off()


def _clipped(ins: Inspection, box) -> tuple[float, float, float, float]:
    """A box in the image's pixels, clipped to the image (a predicted box may reach past the border)."""
    return tuple(boxes_in_size(np.asarray(box), ins.image_size, ins.image_size)[0])


def _box(ax, box, colour, text: str = "") -> None:
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2))
    if text:
        ax.text(x0, y0, text, fontsize=7, color="white", va="bottom", bbox=dict(facecolor=colour, pad=1, lw=0))


def detections_figure(ins: Inspection, detections: Sequence[Detection], title: str = "") -> Figure:
    """The image with every detection's box, class and score."""
    h, w = ins.image_size
    fig = Figure(figsize=(2 * PANEL_INCHES, 2 * PANEL_INCHES * h / w), layout="constrained")
    ax = fig.add_subplot()
    _show(ax, ins.image, title)
    for rank, d in enumerate(detections):
        _box(ax, _clipped(ins, d.box), hex_colour(box_colour(rank)), f"{d.name} {d.score:.2f}")
    return fig


def decoder_figure(ins: Inspection, cards: Sequence[QueryCard], layer: int = -1, head=None,
                   cmap: str = "inferno", title: str = "") -> Figure:
    """Like the paper's decoder figure: per query, its attention map above the image with its box."""
    if not cards:
        raise ValueError("decoder_figure needs at least one query")
    h, w = ins.image_size
    fig = Figure(figsize=(PANEL_INCHES * len(cards), 2 * PANEL_INCHES * h / w + 0.6), layout="constrained")
    axes = fig.subplots(2, len(cards), squeeze=False)
    for i, card in enumerate(cards):
        attention = upsample(ins.decoder_map(card.query, layer, head), ins.coords, (w, h))
        axes[0, i].imshow(normalise(attention), cmap=cmap, vmin=0, vmax=1)
        axes[0, i].set_title(f"query {card.query}", fontsize=9)
        axes[0, i].set_axis_off()
        _show(axes[1, i], ins.image)
        d = card.detection
        _box(axes[1, i], _clipped(ins, d.box), hex_colour(card.colour), f"{d.name} {d.score:.2f}")
    if title:
        fig.suptitle(wrap_title(title, PANEL_INCHES * len(cards), 10), fontsize=10)
    return fig


def view_figure(image: Image.Image, title: str, cmap: str | None = None) -> Figure:
    """Any rendered view with a title and, for heatmaps, a colour bar of the relative attention."""
    fig = Figure(figsize=(2 * PANEL_INCHES, 2 * PANEL_INCHES * image.height / image.width + 0.5),
                 layout="constrained")
    ax = fig.add_subplot()
    _show(ax, image, title, 2 * PANEL_INCHES * (0.8 if cmap else 1.0))  # the colour bar takes a fifth
    if cmap:
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=ax, shrink=0.7)
        bar.set_label("attention / its maximum", fontsize=8)
    return fig


def figure_png(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()

