"""Print-quality figures for slides, in the style of the DETR paper, and their command line:

    detr-lens-figures IMAGE --model NAME --out FILE.pdf|png [--figure encoder|decoder|both|sampling] [--points X,Y ...]
    detr-lens-figures IMAGE --model A --compare B --out FILE.pdf     (two models: one row per paired detection)
    (from a clone also: python -m viz.figures ...)

encoder: the image with reference points, and each point's encoder self-attention (paper Fig. 3).
decoder: every detection's decoder cross-attention with its box (paper Fig. 6).
sampling: deformable models (Deformable DETR, RT-DETR, D-FINE, RF-DETR, ...): every detection's sampling points
with its box and reference point, above their splatted heatmap (the Deformable DETR paper's figure).
compare (--compare B): the detections of both models paired (detr_core.compare), one row per pair: the image with
both boxes, A's decoder map, B's (viz/compare_figure.py).
--model takes DETR names and checkpoints, or a DETR-family folder (config.json) or Hub id.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from detr_core import Inspection
from detr_core.family import capabilities

from .decoder import query_cards
from .print_figures import PANEL_INCHES, decoder_figure
from .heatmap import normalise, upsample
from .sampling_figure import sampling_figure
from .compare_figure import compare_figure

FIGURES = ("encoder", "decoder", "both", "sampling")
POINT_COLOURS = ("#00ffff", "#ff00ff", "#ffff00", "#00ff00", "#ff8800", "#ffffff")


def default_points(ins: Inspection, threshold: float, count: int = 4) -> list[tuple[float, float]]:
    """Centres of the best detections, one per feature cell; the centres of the image's quarters when fewer
    than two distinct cells are detected."""
    points, cells = [], set()
    for d in ins.detections(threshold):
        x, y = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
        h, w = ins.image_size
        x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)  # a box may reach past the image
        if ins.coords.pixel_to_cell(x, y) not in cells and len(points) < count:
            cells.add(ins.coords.pixel_to_cell(x, y))
            points.append((x, y))
    if len(points) >= 2:
        return points
    h, w = ins.image_size
    return [(w * fx, h * fy) for fx, fy in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))][:count]


def encoder_points_figure(ins: Inspection, points: Sequence[tuple[float, float]], layer: int = -1,
                          cmap: str = "inferno", title: str = "") -> Figure:
    """The image with numbered points, then each point's encoder self-attention (mean over heads) at full size."""
    if not points or len(points) > len(POINT_COLOURS):
        raise ValueError(f"{len(points)} points: give 1..{len(POINT_COLOURS)}")
    h, w = ins.image_size
    fig = Figure(figsize=(PANEL_INCHES * (len(points) + 1), PANEL_INCHES * h / w + 0.5), layout="constrained")
    axes = fig.subplots(1, len(points) + 1, squeeze=False)[0]
    axes[0].imshow(ins.image)
    axes[0].set_title("reference points", fontsize=9)
    for i, (x, y) in enumerate(points):
        colour = POINT_COLOURS[i]
        attention = upsample(ins.encoder_map(x, y, layer), ins.coords, (w, h))  # [H, W]
        axes[i + 1].imshow(normalise(attention), cmap=cmap, vmin=0, vmax=1)
        axes[i + 1].set_title(f"point {i + 1} ({x:.0f}, {y:.0f})", fontsize=9, color="black")
        for ax in (axes[0], axes[i + 1]):
            ax.plot([x], [y], marker="o", markersize=7, markerfacecolor=colour, markeredgecolor="black")
        axes[0].annotate(str(i + 1), (x, y), xytext=(6, 6), textcoords="offset points", color=colour, fontsize=9,
                         fontweight="bold")
    for ax in axes:
        ax.set_axis_off()
    layer_name = capabilities(ins).encoder_layers if layer == -1 else layer + 1
    fig.suptitle(title or f"encoder self-attention, layer {layer_name}, mean over heads", fontsize=10)
    return fig


def decoder_detections_figure(ins: Inspection, threshold: float, layer: int = -1, cmap: str = "inferno",
                              count: int = 6, title: str = "") -> Figure:
    """Each detection's decoder cross-attention above the image with its box (at most `count`, best first)."""
    cards = query_cards(ins, threshold)[:count]
    if not cards:
        raise ValueError(f"no detection scores above threshold={threshold}; lower --threshold")
    return decoder_figure(ins, cards, layer, None, cmap, title or f"decoder cross-attention, score > {threshold}")


def sampling_detections_figure(ins, threshold: float, layer: int = -1, head: int | None = None,
                               cmap: str = "inferno", count: int = 4, title: str = "") -> Figure:
    """Each detection's sampling points with its box and reference point, above their splat (at most `count`)."""
    reason = capabilities(ins).reason("sampling_points")
    if reason:
        raise ValueError(f"no sampling-point figure for this model: {reason}")
    cards = query_cards(ins, threshold)[:count]
    if not cards:
        raise ValueError(f"no detection scores above threshold={threshold}; lower --threshold")
    return sampling_figure(ins, cards, layer, head, cmap, title)


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"point {text!r}: write x,y in pixels, e.g. 120,80") from None
    return x, y


def save_figures(figures: dict[str, Figure], out: Path, dpi: int) -> list[Path]:
    """One PDF with a page per figure, or one PNG per figure (FILE-encoder.png, ... when there are several)."""
    if out.suffix.lower() == ".pdf":
        with PdfPages(out) as pdf:
            for fig in figures.values():
                pdf.savefig(fig)
        return [out]
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: use a .pdf or .png file name")
    paths = [out] if len(figures) == 1 else [out.with_name(f"{out.stem}-{name}.png") for name in figures]
    for path, fig in zip(paths, figures.values()):
        fig.savefig(path, dpi=dpi)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    import detr_core  # here: drawing functions never need a model

    installed = Path(sys.argv[0]).name == "detr-lens-figures"  # the console script, else python -m viz.figures
    parser = argparse.ArgumentParser(prog="detr-lens-figures" if installed else "python -m viz.figures",
                                     description="Paper-style DETR figures for slides.")
    parser.add_argument("image")
    parser.add_argument("--model", required=True,
                        help="detr-r50, shapes, untrained, ..., a checkpoint path, or a DETR-family folder / Hub id")
    parser.add_argument("--out", required=True, type=Path, help="FILE.pdf (a page per figure) or FILE.png")
    parser.add_argument("--figure", choices=FIGURES, default="both")
    parser.add_argument("--compare", metavar="MODEL_B",
                        help="a second model: the figure pairs both models' detections (replaces --figure)")
    parser.add_argument("--min-iou", type=float, default=0.5, help="with --compare: the IoU a pair needs")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--layer", type=int, default=0, help="1-based layer; 0 (default) is the last")
    parser.add_argument("--head", type=int, default=0, help="1-based head for --figure sampling; 0 (default): all")
    parser.add_argument("--count", type=int, default=4, help="detections drawn by --figure sampling")
    parser.add_argument("--points", type=_parse_point, nargs="+", help="encoder reference points x,y in pixels")
    parser.add_argument("--cmap", default="inferno")
    parser.add_argument("--title", default="", help="a title for every figure (default: what it shows)")
    parser.add_argument("--dpi", type=int, default=300)
    args = parser.parse_args(argv)
    try:
        ins = detr_core.inspect_image(detr_core.load_model(args.model), args.image)
        layer = args.layer - 1 if args.layer > 0 else -1
        figures = {}
        if args.compare:
            figures["compare"] = _compare(ins, args, layer, detr_core.inspect_image(detr_core.load_model(args.compare), ins.image))
        if args.figure in ("encoder", "both") and not args.compare:
            points = args.points or default_points(ins, args.threshold)
            figures["encoder"] = encoder_points_figure(ins, points, layer, args.cmap, args.title)
        if args.figure in ("decoder", "both") and not args.compare:
            figures["decoder"] = decoder_detections_figure(ins, args.threshold, layer, args.cmap, title=args.title)
        if args.figure == "sampling" and not args.compare:
            head = args.head - 1 if args.head > 0 else None
            figures["sampling"] = sampling_detections_figure(ins, args.threshold, layer, head, args.cmap, args.count,
                                                             args.title)
        paths = save_figures(figures, args.out, args.dpi)
    except (ValueError, RuntimeError, IndexError) as err:  # the arguments parsed: no usage block, one line
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print("wrote " + ", ".join(str(p) for p in paths))


def _compare(ins_a, args, layer: int, ins_b) -> Figure:
    """The --compare figure: both models' detections above --threshold paired with an IoU of --min-iou."""
    from detr_core import compare

    comparison = compare(ins_a, ins_b, args.threshold, args.min_iou)
    title = args.title or (f"A = {args.model} (cyan), B = {args.compare} (magenta): {len(comparison.pairs)} pairs"
                           f" above score {args.threshold} with IoU >= {args.min_iou}; unpaired: "
                           f"{len(comparison.only_a)} in A, {len(comparison.only_b)} in B")
    return compare_figure(ins_a, ins_b, comparison, layer, args.cmap, title=title)
