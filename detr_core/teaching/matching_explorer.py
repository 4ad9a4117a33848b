"""The Hungarian matching of one image, laid open: each cost term, the optimal assignment, the loss it yields.

Reuses the training code (matcher.py, criterion.py), so what the view shows is what training computes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..objective.criterion import LossWeights, SetCriterion
from .ground_truth import GroundTruth
from ..inspection.inspection import Inspection
from ..objective.matcher import HungarianMatcher, MatchWeights, match_costs

COST_TERMS = ("cost_class", "cost_bbox", "cost_giou", "total")


@dataclass(frozen=True)
class MatchingExplanation:
    """Cost matrices [Q, N] (unweighted terms and the weighted total), the assignment and the last layer's losses.

    pred_idx, tgt_idx [M]: query pred_idx[k] is matched with target tgt_idx[k] (M = min(Q, N)).
    losses: loss_ce, loss_bbox, loss_giou (unweighted, as the criterion returns them), cardinality_error,
    class_error.
    """

    costs: dict[str, np.ndarray]
    weights: MatchWeights
    pred_idx: np.ndarray
    tgt_idx: np.ndarray
    losses: dict[str, float]
    loss_weights: LossWeights

    @property
    def num_queries(self) -> int:
        return self.costs["total"].shape[0]

    def target_of(self, query: int) -> int | None:
        """The target matched with `query`, or None: the query is trained to say "no object"."""
        hits = np.nonzero(self.pred_idx == query)[0]
        return int(self.tgt_idx[hits[0]]) if len(hits) else None

    @property
    def assignment_cost(self) -> float:
        """Sum of the total cost over the matched pairs: the minimum over all one-to-one assignments."""
        return float(self.costs["total"][self.pred_idx, self.tgt_idx].sum())

    @property
    def weighted_loss(self) -> float:
        """The scalar training back-propagates for this layer: sum of weight x loss term."""
        return sum(self.losses[k] * self.loss_weights.for_loss(k) for k in ("loss_ce", "loss_bbox", "loss_giou"))


def explain_matching_arrays(logits: np.ndarray, boxes: np.ndarray, labels: np.ndarray, target_boxes: np.ndarray,
                            weights: MatchWeights = MatchWeights(),
                            loss_weights: LossWeights = LossWeights()) -> MatchingExplanation:
    """logits [Q, C+1], boxes [Q, 4] and target_boxes [N, 4] normalised cx, cy, w, h; labels [N] class ids."""
    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    boxes_t = torch.as_tensor(np.asarray(boxes), dtype=torch.float32)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    target_t = torch.as_tensor(np.asarray(target_boxes), dtype=torch.float32).reshape(-1, 4)
    num_classes = logits_t.shape[-1] - 1
    if len(labels_t) != len(target_t):
        raise ValueError(f"{len(labels_t)} labels for {len(target_t)} target boxes")
    if len(labels_t) and not (0 <= int(labels_t.min()) and int(labels_t.max()) < num_classes):
        raise ValueError(f"target labels {labels_t.tolist()} outside the model's classes 0..{num_classes - 1}")
    costs = match_costs(logits_t, boxes_t, labels_t, target_t, weights)
    outputs = {"pred_logits": logits_t[None], "pred_boxes": boxes_t[None]}  # batch of one
    targets = [{"labels": labels_t, "boxes": target_t}]
    criterion = SetCriterion(num_classes, HungarianMatcher(weights), loss_weights)
    with torch.no_grad():
        (pred_idx, tgt_idx), = criterion.matcher(outputs, targets)
        losses = criterion.layer_losses(outputs, targets, max(float(len(labels_t)), 1.0), logged=True)
    return MatchingExplanation(
        {name: getattr(costs, name).numpy() for name in COST_TERMS}, weights,
        pred_idx.numpy(), tgt_idx.numpy(), {k: float(v) for k, v in losses.items()}, loss_weights)


def explain_matching(ins: Inspection, truth: GroundTruth, weights: MatchWeights = MatchWeights(),
                     loss_weights: LossWeights = LossWeights()) -> MatchingExplanation:
    """The matching of the inspection's last decoder layer with `truth` (boxes in ins.image's pixels)."""
    targets = truth.normalised_cxcywh(ins.image_size)  # [N, 4]
    return explain_matching_arrays(ins.logits, ins.boxes, truth.labels, targets, weights, loss_weights)
