"""Hungarian matching between DETR's predictions and the ground-truth set.

DETR predicts a fixed-size set of Q boxes; training needs a one-to-one pairing
of predictions with the N <= Q ground-truth objects. The pairing minimises a
weighted sum of three costs (class, L1 on boxes, generalised IoU), solved
exactly with ``scipy.optimize.linear_sum_assignment``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torch.profiler import record_function
from torchvision.ops import box_convert, generalized_box_iou


@dataclass(frozen=True)
class MatchWeights:
    """Weights of the three matching costs (official DETR: 1 / 5 / 2)."""

    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0

    def __post_init__(self):
        if self.cost_class == 0 and self.cost_bbox == 0 and self.cost_giou == 0:
            raise ValueError("all matching cost weights are 0; at least one must be non-zero")


@dataclass(frozen=True)
class MatchCosts:
    """The cost matrices for one image, each [Q, N] (Q predictions, N targets).

    ``cost_*`` are unweighted; ``total`` is their weighted sum, the matrix the
    Hungarian algorithm minimises.
    """

    cost_class: Tensor  # [Q, N] -softmax probability of the target's class
    cost_bbox: Tensor  # [Q, N] L1 distance between normalized cxcywh boxes
    cost_giou: Tensor  # [Q, N] -GIoU between the boxes as xyxy
    total: Tensor  # [Q, N]


def match_costs(
    pred_logits: Tensor,
    pred_boxes: Tensor,
    tgt_labels: Tensor,
    tgt_boxes: Tensor,
    weights: MatchWeights = MatchWeights(),
) -> MatchCosts:
    """Matching costs between one image's predictions and its targets.

    Args:
        pred_logits: [Q, C+1] class logits (last column is "no object").
        pred_boxes: [Q, 4] normalized cxcywh.
        tgt_labels: [N] class indices in [0, C).
        tgt_boxes: [N, 4] normalized cxcywh.
    """
    prob = pred_logits.float().softmax(-1)  # [Q, C+1]
    # The class cost approximates -log p with -p: it keeps the scale comparable
    # with the box costs, and the constant 1 is irrelevant to the assignment.
    cost_class = -prob[:, tgt_labels]  # [Q, N]
    cost_bbox = torch.cdist(pred_boxes.float(), tgt_boxes.float(), p=1)  # [Q, N]
    cost_giou = -generalized_box_iou(
        box_convert(pred_boxes.float(), "cxcywh", "xyxy"),
        box_convert(tgt_boxes.float(), "cxcywh", "xyxy"),
    )  # [Q, N]
    total = (
        weights.cost_class * cost_class
        + weights.cost_bbox * cost_bbox
        + weights.cost_giou * cost_giou
    )
    return MatchCosts(cost_class, cost_bbox, cost_giou, total)


def _empty_match() -> tuple[Tensor, Tensor]:
    return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)


class HungarianMatcher:
    """Optimal one-to-one assignment of predictions to targets, per image.

    Not an ``nn.Module``: it has no parameters and runs without gradients. The costs of
    every image (and, with ``match_layers``, of every decoder layer) are computed in one
    batched pass on the predictions' device and copied to the host once: per image, the
    copy's synchronisation cost far more than the small assignment problems themselves.
    """

    def __init__(self, weights: MatchWeights = MatchWeights()):
        self.weights = weights

    def __call__(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """Match each image's predictions with its targets.

        Args:
            outputs: "pred_logits" [B, Q, C+1] and "pred_boxes" [B, Q, 4].
            targets: B dicts with "labels" [N_b] and "boxes" [N_b, 4] (normalized cxcywh).

        Returns:
            B pairs (pred_idx, tgt_idx), LongTensors of length min(Q, N_b) on the
            CPU, ``pred_idx`` sorted; prediction ``pred_idx[k]`` is matched with
            target ``tgt_idx[k]``.
        """
        return self.match_layers([outputs], targets)[0]

    @torch.no_grad()
    def match_layers(self, layers: list[dict], targets: list[dict]) -> list[list[tuple[Tensor, Tensor]]]:
        """``__call__`` for L output dicts of the same shape (e.g. the decoder layers) at once:
        one cost computation and one host transfer for all of them. -> L lists of B pairs."""
        with record_function("matcher"):  # a profiler's label; free without one
            return self._match_layers(layers, targets)

    def _match_layers(self, layers: list[dict], targets: list[dict]) -> list[list[tuple[Tensor, Tensor]]]:
        logits = torch.stack([o["pred_logits"] for o in layers])  # [L, B, Q, C+1]
        boxes = torch.stack([o["pred_boxes"] for o in layers])  # [L, B, Q, 4]
        n_layers, batch, queries = logits.shape[:3]
        if len(targets) != batch:
            raise ValueError(f"{len(targets)} target dicts for a batch of {batch} predictions")
        sizes = [len(t["labels"]) for t in targets]
        if sum(sizes) == 0:
            return [[_empty_match() for _ in targets] for _ in layers]
        labels = torch.cat([t["labels"] for t in targets]).to(logits.device)  # [T]
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(boxes.device)  # [T, 4]
        # every prediction against every target of the batch; each image keeps its own block
        total = match_costs(logits.flatten(0, 2), boxes.flatten(0, 2), labels, tgt_boxes,
                            self.weights).total  # [L*B*Q, T]
        total = total.view(n_layers, batch, queries, -1).cpu().numpy()  # [L, B, Q, T], one transfer
        ends = np.cumsum(sizes)
        return [[_assign(total[layer, b, :, end - n:end]) for b, (n, end) in enumerate(zip(sizes, ends))]
                for layer in range(n_layers)]


def _assign(cost: np.ndarray) -> tuple[Tensor, Tensor]:
    """Hungarian assignment on one image's [Q, N] cost block."""
    if cost.shape[1] == 0:
        return _empty_match()
    if not np.isfinite(cost).all():
        raise RuntimeError(
            "non-finite matching cost (NaN/inf in predicted boxes or logits); "
            "the model has diverged, lower the learning rate or resume from an earlier checkpoint"
        )
    pred_idx, tgt_idx = linear_sum_assignment(cost)
    return torch.as_tensor(pred_idx, dtype=torch.long), torch.as_tensor(tgt_idx, dtype=torch.long)
