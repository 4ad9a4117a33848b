"""Faithfulness over a data set: every explanation of every confident detection, deletion and insertion AUC
(detr_core.faithfulness.compare_explanations), and the pointing game where a ground-truth box matches."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision.ops import box_iou
import torch

from detr_core.faithfulness import compare_explanations, pointing_game
from detr_core.faithfulness.methods import BASELINE_METHODS

from .stats import mean_interval

MATCH_IOU = 0.5  # a detection's ground truth: the box it overlaps most, if at least this much


@dataclass(frozen=True)
class FaithfulnessSettings:
    steps: int = 10
    baseline: str = "blur"
    batch_size: int = 8
    random_seeds: int = 3
    drise_masks: int = 0
    max_detections: int = 3


def record(model, ins, gt_boxes: np.ndarray, threshold: float, settings: FaithfulnessSettings) -> list[dict]:
    """One entry per detection above `threshold` (best first, at most max_detections)."""
    entries = []
    for det in ins.detections(threshold)[:settings.max_detections]:
        c = compare_explanations(model, ins, det.query, settings.steps, settings.baseline, settings.batch_size,
                                 settings.random_seeds, settings.drise_masks)
        entry = {"query": det.query, "label": det.label, "score": det.score,
                 "auc": {name: [r.deletion_auc, r.insertion_auc] for name, r in c.results.items()}}
        gt = _matched_box(det.box, gt_boxes)
        if gt is not None:
            entry["pointing"] = {name: pointing_game(ins.coords.input_map_to_image(m), gt).hit
                                 for name, m in c.maps.items()}
        entries.append(entry)
    return entries


def _matched_box(box, gt_boxes: np.ndarray):
    if len(gt_boxes) == 0:
        return None
    iou = box_iou(torch.tensor([box], dtype=torch.float64), torch.as_tensor(gt_boxes, dtype=torch.float64))[0]
    best = int(iou.argmax())
    return tuple(float(v) for v in gt_boxes[best]) if float(iou[best]) >= MATCH_IOU else None


def method_order(name: str) -> tuple:
    """Explanations first (attention, layers by number, then the rest by name), the baselines last, in the
    order compare_explanations tests them."""
    if name in BASELINE_METHODS:
        return (2, BASELINE_METHODS.index(name), "")
    if name in ("attention", "splat"):
        return (0, 0, "")
    if name.startswith("layer ") and name[6:].isdigit():
        return (0, int(name[6:]), "")
    return (1, 0, name)


def summarise(per_image: list[list[dict]]) -> dict:
    """{method: {"deletion_auc", "deletion_auc_ci95", "insertion_auc", "insertion_auc_ci95", "n",
    "pointing" (hit rate), "pointing_n"}}, methods in method_order."""
    values: dict[str, list] = {}
    hits: dict[str, list] = {}
    for entries in per_image:
        for entry in entries:
            for name, pair in entry["auc"].items():
                values.setdefault(name, []).append(pair)
            for name, hit in entry.get("pointing", {}).items():
                hits.setdefault(name, []).append(bool(hit))
    summary = {}
    for name in sorted(values, key=method_order):
        pairs = values[name]
        pairs = np.asarray(pairs, dtype=np.float64)  # [n, 2]
        deletion, deletion_ci = mean_interval(pairs[:, 0])
        insertion, insertion_ci = mean_interval(pairs[:, 1])
        summary[name] = {"deletion_auc": deletion, "deletion_auc_ci95": deletion_ci, "insertion_auc": insertion,
                         "insertion_auc_ci95": insertion_ci, "n": int(len(pairs))}
        if name in hits:
            summary[name].update(pointing=float(np.mean(hits[name])), pointing_n=len(hits[name]))
    return summary


def figure(summary: dict, path: Path) -> Path:
    """Deletion (lower is better) and insertion (higher is better) AUC per method, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(names) + 1.5), sharey=True)
    for ax, key, title in zip(axes, ("deletion_auc", "insertion_auc"),
                              ("deletion AUC (lower = more faithful)", "insertion AUC (higher = more faithful)")):
        means = np.array([summary[n][key] for n in names])
        ci = np.array([summary[n][key + "_ci95"] for n in names])
        ax.barh(range(len(names)), means, xerr=[means - ci[:, 0], ci[:, 1] - means], color="#4c72b0")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 1)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
