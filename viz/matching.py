"""The Hungarian matching explorer: cost heatmaps with the optimal assignment, matched pairs on the image,
every query's fate ("no object" for the unmatched) and the resulting loss terms."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from detr_core import Inspection
from detr_core.teaching.ground_truth import GroundTruth
from detr_core.teaching.matching_explorer import COST_TERMS, MatchingExplanation

from .detections import Box, draw_boxes
from .palette import box_colour

GROUND_TRUTH = (255, 255, 255)
UNMATCHED = (160, 160, 160)
MATCH_HEADERS = ["query", "matched with", "class cost", "L1 cost", "GIoU cost", "total", "prediction"]
_TITLES = {"cost_class": "class: -p(target class)", "cost_bbox": "L1 of cx, cy, w, h",
           "cost_giou": "-GIoU", "total": "weighted total"}


def _weight(expl: MatchingExplanation, term: str) -> str:
    if term == "total":
        return ""
    return f" (x{getattr(expl.weights, term):g})"


def cost_figure(expl: MatchingExplanation, target_names: Sequence[str]) -> Figure:
    """Four heatmaps, targets (rows) x queries (columns): each cost term and the total; circles mark the optimal
    assignment (lower cost = darker)."""
    n, q = len(target_names), expl.num_queries
    fig = Figure(figsize=(min(14.0, 2.5 + 0.12 * q), 1.2 + 4 * (0.55 + 0.28 * max(n, 1))), layout="constrained")
    axes = fig.subplots(4, 1, squeeze=False)[:, 0]
    labels = [f"{k}: {name}" for k, name in enumerate(target_names)]
    for ax, term in zip(axes, COST_TERMS):
        matrix = expl.costs[term].T  # [N, Q]
        im = ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.scatter(expl.pred_idx, expl.tgt_idx, s=60, facecolors="none", edgecolors="red", linewidths=1.5)
        ax.set_title(_TITLES[term] + _weight(expl, term), fontsize=9)
        ax.set_yticks(range(n), labels, fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
    axes[-1].set_xlabel("query", fontsize=8)
    return fig


def matching_image(ins: Inspection, truth: GroundTruth, expl: MatchingExplanation) -> Image.Image:
    """Ground truth in white; each matched query's box in its pair's colour, joined to its target; unmatched
    queries thin and grey (their training target is "no object")."""
    image = ins.image.convert("RGB")
    draw = ImageDraw.Draw(image)
    preds = ins.coords.boxes_to_pixels(ins.boxes)  # [Q, 4]
    for qi in range(expl.num_queries):
        if expl.target_of(qi) is None:
            draw.rectangle(tuple(preds[qi]), outline=UNMATCHED, width=1)
    boxes = [Box(tuple(truth.boxes[t]), f"GT {t}: {truth.names[t]}", GROUND_TRUTH) for t in range(len(truth.names))]
    image = draw_boxes(image, boxes)
    draw = ImageDraw.Draw(image)
    for k, (qi, t) in enumerate(zip(expl.pred_idx, expl.tgt_idx)):
        colour = box_colour(k)
        p, g = preds[qi], truth.boxes[t]
        draw.line(((p[0] + p[2]) / 2, (p[1] + p[3]) / 2, (g[0] + g[2]) / 2, (g[1] + g[3]) / 2), fill=colour, width=2)
    pairs = [Box(tuple(preds[qi]), f"q{qi} -> GT {t}", box_colour(k)) for k, (qi, t) in
             enumerate(zip(expl.pred_idx, expl.tgt_idx))]
    return draw_boxes(image, pairs)


def match_rows(ins: Inspection, expl: MatchingExplanation) -> list[list]:
    """One row per query: its target (or "no object"), the costs of that pair, and what it predicts."""
    rows = []
    probs = ins.probabilities  # [Q, C+1]
    for qi in range(expl.num_queries):
        best = int(np.argmax(probs[qi, :-1]))
        prediction = f"{ins.class_name(best)} {probs[qi, best]:.2f} / no object {probs[qi, -1]:.2f}"
        t = expl.target_of(qi)
        if t is None:
            rows.append([qi, "no object", "", "", "", "", prediction])
            continue
        costs = [round(float(expl.costs[term][qi, t]), 3) for term in COST_TERMS]
        rows.append([qi, f"GT {t}", *costs, prediction])
    return sorted(rows, key=lambda r: (r[1] == "no object", r[0]))


def describe_losses(expl: MatchingExplanation) -> str:
    """Markdown: the loss terms of this image's last decoder layer and their weighted sum."""
    w = expl.loss_weights
    parts = [f"class (cross-entropy, no-object weight {w.eos_coef:g}) {expl.losses['loss_ce']:.3f} x{w.ce:g}",
             f"L1 {expl.losses['loss_bbox']:.3f} x{w.bbox:g}", f"GIoU {expl.losses['loss_giou']:.3f} x{w.giou:g}"]
    matched, rest = len(expl.pred_idx), expl.num_queries - len(expl.pred_idx)
    return (f"**Loss (last decoder layer):** {'; '.join(parts)} = **{expl.weighted_loss:.3f}**. "
            f"The assignment's total cost {expl.assignment_cost:.3f} is the smallest of all one-to-one assignments; "
            f"{matched} {'query is' if matched == 1 else 'queries are'} matched, the other {rest} "
            f"{'is' if rest == 1 else 'are'} trained to say \"no object\".")

