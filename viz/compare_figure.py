"""The slide figure of two models on one image: one row per paired detection (the image with both boxes, A's
decoder map, B's), the two maps of a row on one colour scale of weight per image pixel (viz/compare.py says why),
in the style of the other export figures (print_figures.py)."""
from __future__ import annotations

from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from detr_core.inspection.compare import Comparison

from .compare import A_COLOUR, B_COLOUR, pixel_density
from .heatmap import upsample
from .palette import hex_colour
from .print_figures import PANEL_INCHES, _box, _clipped, _show, wrap_title

MAX_ROWS = 8  # pairs drawn, best score of A first: a slide holds no more


def _row(axes, ins_a, ins_b, pair, layer: int, cmap: str, names: tuple[str, str]) -> None:
    h, w = ins_a.image_size
    _show(axes[0], ins_a.image, f"IoU {pair.iou:.2f}")
    for d, name, colour in ((pair.a, names[0], A_COLOUR), (pair.b, names[1], B_COLOUR)):
        _box(axes[0], _clipped(ins_a, d.box), hex_colour(colour), f"{name}: {d.name} {d.score:.2f}")
    maps = [upsample(pixel_density(ins, d.query, layer), ins.coords, (w, h))
            for ins, d in ((ins_a, pair.a), (ins_b, pair.b))]  # [H, W] each
    top = max(float(m.max()) for m in maps)
    for ax, ins, d, name, colour, heat in ((axes[1], ins_a, pair.a, names[0], A_COLOUR, maps[0]),
                                           (axes[2], ins_b, pair.b, names[1], B_COLOUR, maps[1])):
        ax.imshow(heat.clip(0, None), cmap=cmap, vmin=0, vmax=top if top > 0 else 1)
        _box(ax, _clipped(ins, d.box), hex_colour(colour))
        ax.set_title(f"{name}: query {d.query}", fontsize=9)
        ax.set_axis_off()


def compare_figure(ins_a, ins_b, comparison: Comparison, layer: int = -1, cmap: str = "inferno",
                   names: tuple[str, str] = ("A", "B"), title: str = "") -> Figure:
    """One row per pair (at most MAX_ROWS): the image with both boxes, A's map, B's map (mean over heads at
    `layer` of each model; the splat of the sampling points for deformable models), a row's two maps on one
    scale. ValueError when nothing was paired."""
    pairs = comparison.pairs[:MAX_ROWS]
    if not pairs:
        raise ValueError(f"no detections of the two models pair at threshold {comparison.threshold} and IoU "
                         f"{comparison.min_iou} ({len(comparison.only_a)} only in {names[0]}, "
                         f"{len(comparison.only_b)} only in {names[1]}); lower --threshold or --min-iou")
    h, w = ins_a.image_size
    fig = Figure(figsize=(3 * PANEL_INCHES, len(pairs) * PANEL_INCHES * h / w + 1.0), layout="constrained")
    axes = fig.subplots(len(pairs), 3, squeeze=False)
    for row, pair in zip(axes, pairs):
        _row(row, ins_a, ins_b, pair, layer, cmap, names)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=axes[:, 1:], shrink=0.6, location="right")
    bar.set_label("weight per pixel / the row's larger peak", fontsize=8)
    unpaired = f"; unpaired: {len(comparison.only_a)} in {names[0]}, {len(comparison.only_b)} in {names[1]}"
    text = title or (f"{names[0]} (cyan) vs {names[1]} (magenta): {len(comparison.pairs)} pairs above score "
                     f"{comparison.threshold}, IoU >= {comparison.min_iou}{unpaired}")
    fig.suptitle(wrap_title(text, 3 * PANEL_INCHES, 10), fontsize=10)
    return fig
