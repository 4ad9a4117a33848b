"""Query slots over a data set (the DETR paper's Fig. 7), for DETR and the family: where each slot puts its
box centre, how large its boxes are, and how often it detects something."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SLOTS_SHOWN = 20


def record(ins) -> dict:
    """Every query's box centre and size (fractions of the image) and detection score (1 - "no object")."""
    boxes = np.asarray(ins.boxes, dtype=np.float64)  # [Q, 4] cx, cy, w, h
    scores = 1.0 - np.asarray(ins.probabilities, dtype=np.float64)[:, -1]
    return {"boxes": np.round(boxes, 5).tolist(), "scores": np.round(scores, 5).tolist()}


def summarise(records: list[dict], threshold: float) -> dict:
    """Per slot: detections above threshold, the mean centre and size of all its boxes."""
    boxes = np.asarray([r["boxes"] for r in records], dtype=np.float64)  # [I, Q, 4]
    scores = np.asarray([r["scores"] for r in records], dtype=np.float64)  # [I, Q]
    return {"images": int(boxes.shape[0]), "threshold": threshold,
            "detections_per_slot": (scores > threshold).sum(0).tolist(),
            "mean_centre": boxes[..., :2].mean(0).round(5).tolist(),
            "mean_size": boxes[..., 2:].mean(0).round(5).tolist()}


def figure(records: list[dict], path: Path) -> Path:
    """One panel per slot (the first 20): every image's box centre, green for small boxes, red for wide and
    blue for tall ones (Fig. 7's colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boxes = np.asarray([r["boxes"] for r in records], dtype=np.float64)  # [I, Q, 4]
    slots = min(SLOTS_SHOWN, boxes.shape[1])
    cols = min(10, slots)
    rows = -(-slots // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for q, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if q >= slots:
            ax.axis("off")
            continue
        b = boxes[:, q]
        colour = np.where((b[:, 2] * b[:, 3]) < 0.1, "#2ca02c", np.where(b[:, 2] >= b[:, 3], "#d62728", "#1f77b4"))
        ax.scatter(b[:, 0], b[:, 1], s=4, c=colour, alpha=0.6)
        ax.set_xlim(0, 1), ax.set_ylim(1, 0)
        ax.set_title(f"slot {q}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
