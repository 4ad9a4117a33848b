"""The slide figure of deformable attention, after the Deformable DETR paper's figure of sampling points: per
detected query, its sampling points over the image (all heads and levels; area and opacity by weight, colour
by level) with its box and reference point, above the same weights splatted into a heatmap."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .decoder import QueryCard
from .print_figures import PANEL_INCHES, _box, _show
from .heatmap import normalise, upsample
from .palette import REFERENCE_COLOUR, hex_colour, level_colour
from .sampling import level_names

MAX_DOT_AREA = 60.0  # points^2, the heaviest dot of a panel
MIN_ALPHA = 0.3


def _dots(ax, points, max_area: float = MAX_DOT_AREA) -> None:
    """Scatter the points, heaviest on top (among equals, finer levels on top: they cluster near the
    reference point): area and opacity proportional to the weight."""
    order = np.lexsort((-points.level, points.weight))
    share = points.weight[order] / max(float(points.weight.max()), 1e-12)
    colours = np.array([[c / 255 for c in level_colour(int(lv))] + [1.0] for lv in points.level[order]])
    colours[:, 3] = MIN_ALPHA + (1 - MIN_ALPHA) * share
    ax.scatter(points.xy[order, 0], points.xy[order, 1], s=np.maximum(max_area * share, 2.0), c=colours,
               edgecolors=(0, 0, 0, 0.6), linewidths=0.4)


def _reference(ax, ins, query: int, layer: int) -> None:
    x, y = ins.reference_point(query, layer)
    ax.plot([x], [y], marker="x", markersize=8, markeredgewidth=2.5, color=hex_colour(REFERENCE_COLOUR))
    box = ins.reference_box(query, layer)
    if box is not None:
        ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, edgecolor="white",
                               linestyle="--", linewidth=1))


def sampling_figure(ins, cards: Sequence[QueryCard], layer: int = -1, head: int | None = None,
                    cmap: str = "inferno", title: str = "") -> Figure:
    """Per query (one column each): sampling points with box and reference point, then the splatted heatmap."""
    if not cards:
        raise ValueError("sampling_figure needs at least one query")
    h, w = ins.image_size
    fig = Figure(figsize=(PANEL_INCHES * len(cards), 2 * PANEL_INCHES * h / w + 0.9), layout="constrained")
    axes = fig.subplots(2, len(cards), squeeze=False)
    for i, card in enumerate(cards):
        d = card.detection
        _show(axes[0, i], ins.image, f"query {card.query}: {d.name} {d.score:.2f}")
        _dots(axes[0, i], ins.sampling_points(card.query, layer, head))
        _reference(axes[0, i], ins, card.query, layer)
        box = ins.coords.boxes_to_pixels(ins.layer_boxes[layer][card.query])[0]
        _box(axes[0, i], box, hex_colour(card.colour))
        axes[0, i].set_xlim(0, w)
        axes[0, i].set_ylim(h, 0)  # points outside the image stay outside the panel
        heat = upsample(ins.decoder_map(card.query, layer, head), ins.coords, (w, h))
        axes[1, i].imshow(normalise(heat), cmap=cmap, vmin=0, vmax=1)
        axes[1, i].set_axis_off()
    handles = [Line2D([], [], linestyle="", marker="o", markersize=7, markerfacecolor=hex_colour(level_colour(i)),
                      markeredgecolor="black", label=name) for i, name in enumerate(level_names(ins))]
    handles.append(Line2D([], [], linestyle="", marker="x", markersize=7, markeredgewidth=2,
                          color=hex_colour(REFERENCE_COLOUR), label="reference point"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    layers = ins.layer_logits.shape[0]
    heads = "all heads" if head is None else f"head {head + 1}"
    fig.suptitle(title or f"deformable attention, decoder layer {layer % layers + 1} of {layers}, {heads}:"
                 " dot area and opacity = weight; below, the weights splatted", fontsize=10)
    return fig
