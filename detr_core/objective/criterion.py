"""DETR's set criterion: match predictions to targets, then score the matched pairs.

Losses (official DETR): cross-entropy over all queries, with the "no object"
class down-weighted (``eos_coef``) because most queries are unmatched; L1 and
GIoU on the matched boxes, summed and divided by the number of target boxes in
the whole (possibly distributed) batch. Every earlier decoder layer gets the
same losses (auxiliary decoding losses), keyed with a ``_<layer>`` suffix.
``class_error`` and ``cardinality_error`` are logged, never back-propagated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou

from .matcher import HungarianMatcher

LOSS_NAMES = ("loss_ce", "loss_bbox", "loss_giou")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three loss terms and of the no-object class (official: 1 / 5 / 2, 0.1)."""

    ce: float = 1.0
    bbox: float = 5.0
    giou: float = 2.0
    eos_coef: float = 0.1

    def __post_init__(self):
        if not 0 < self.eos_coef <= 1:
            raise ValueError(f"eos_coef={self.eos_coef}: expected 0 < eos_coef <= 1")

    def for_loss(self, name: str) -> float:
        """Weight of a loss key such as "loss_bbox" or "loss_bbox_3"; 0 for logged-only keys."""
        base = re.sub(r"_\d+$", "", name)
        return {"loss_ce": self.ce, "loss_bbox": self.bbox, "loss_giou": self.giou}.get(base, 0.0)


def weighted_total(losses: dict[str, Tensor], weights: LossWeights) -> Tensor:
    """The scalar that training back-propagates: the weighted sum of all loss terms."""
    terms = [losses[k] * weights.for_loss(k) for k in losses if weights.for_loss(k) != 0]
    if not terms:
        raise ValueError(f"no weighted loss among keys {sorted(losses)}")
    return torch.stack(terms).sum()


def num_boxes_across_processes(targets: list[dict], device: torch.device) -> float:
    """Target boxes per process, averaged over processes, at least 1 (the loss normaliser)."""
    n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        world = dist.get_world_size()
    return max(n.item() / world, 1.0)


class SetCriterion(nn.Module):
    """Computes the DETR losses for a batch; see the module docstring."""

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None,
                 weights: LossWeights = LossWeights()):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be at least 1")
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher()
        self.weights = weights
        class_weight = torch.ones(num_classes + 1)  # [C+1]
        class_weight[-1] = weights.eos_coef
        self.register_buffer("class_weight", class_weight)

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        """Losses for ``outputs`` ("pred_logits" [B,Q,C+1], "pred_boxes" [B,Q,4],
        optional "aux_outputs") against B target dicts ("labels" [N], "boxes" [N,4])."""
        if outputs["pred_logits"].shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"model predicts {outputs['pred_logits'].shape[-1]} logits per query; the criterion "
                f"expects num_classes + 1 = {self.num_classes + 1}"
            )
        num_boxes = num_boxes_across_processes(targets, outputs["pred_logits"].device)
        losses = self.layer_losses(outputs, targets, num_boxes, logged=True)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses = self.layer_losses(aux, targets, num_boxes, logged=False)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses

    def layer_losses(self, outputs: dict, targets: list[dict], num_boxes: float,
                     logged: bool) -> dict[str, Tensor]:
        """The losses of one decoder layer's predictions (matched independently)."""
        indices = self.matcher(outputs, targets)
        losses = self.loss_labels(outputs["pred_logits"], targets, indices, logged)
        losses.update(self.loss_boxes(outputs["pred_boxes"], targets, indices, num_boxes))
        if logged:
            losses["cardinality_error"] = self.cardinality_error(outputs["pred_logits"], targets)
        return losses

    def loss_labels(self, logits: Tensor, targets: list[dict], indices, logged: bool) -> dict:
        """Weighted cross-entropy over all B*Q queries; unmatched queries target "no object"."""
        batch_idx, query_idx = _flat_indices(indices, logits.device)
        matched_labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(
            logits.device)  # [M]
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long,
                                    device=logits.device)  # [B, Q]
        target_classes[batch_idx, query_idx] = matched_labels
        # cross_entropy wants the class dimension second
        loss_ce = F.cross_entropy(logits.transpose(1, 2),  # [B, C+1, Q]
                                  target_classes, self.class_weight)
        losses = {"loss_ce": loss_ce}
        if logged:
            losses["class_error"] = _class_error(logits[batch_idx, query_idx], matched_labels)
        return losses

    def loss_boxes(self, pred_boxes: Tensor, targets: list[dict], indices,
                   num_boxes: float) -> dict:
        """L1 and (1 - GIoU) of the matched boxes, summed and divided by ``num_boxes``."""
        batch_idx, query_idx = _flat_indices(indices, pred_boxes.device)
        src = pred_boxes[batch_idx, query_idx]  # [M, 4] normalized cxcywh
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src)  # [M, 4]
        loss_bbox = F.l1_loss(src, tgt, reduction="sum") / num_boxes
        giou = torch.diag(generalized_box_iou(box_convert(src, "cxcywh", "xyxy"),
                                              box_convert(tgt, "cxcywh", "xyxy")))  # [M]
        loss_giou = (1 - giou).sum() / num_boxes
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    @torch.no_grad()
    def cardinality_error(self, logits: Tensor, targets: list[dict]) -> Tensor:
        """Mean |#queries not predicting "no object" - #targets| per image (logged only)."""
        predicted = (logits.argmax(-1) != self.num_classes).sum(1).float()  # [B]
        actual = torch.tensor([float(len(t["labels"])) for t in targets], device=logits.device)
        return F.l1_loss(predicted, actual)


def _flat_indices(indices, device) -> tuple[Tensor, Tensor]:
    """(batch index, query index) of every matched prediction, each [M]."""
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
    query_idx = torch.cat([src for src, _ in indices])
    return batch_idx.to(device), query_idx.to(device)


@torch.no_grad()
def _class_error(matched_logits: Tensor, matched_labels: Tensor) -> Tensor:
    """100 - top-1 accuracy (in %) of the matched queries; 100 when nothing is matched,
    as in the official code, so that an empty batch never looks perfect."""
    if matched_labels.numel() == 0:
        return torch.tensor(100.0, device=matched_logits.device)
    correct = (matched_logits.argmax(-1) == matched_labels).float().mean()
    return 100.0 * (1 - correct)
