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
    """Target boxes per process, averaged over processes, at least 1 (the loss normaliser).

    Alone, the count is a host number: a device tensor read back would synchronise the step."""
    count = float(sum(len(t["labels"]) for t in targets))
    if not (dist.is_available() and dist.is_initialized()):
        return max(count, 1.0)
    n = torch.tensor(count, device=device)
    dist.all_reduce(n)
    return max(n.item() / dist.get_world_size(), 1.0)


@dataclass(frozen=True)
class Matched:
    """One layer's matched pairs as flat device index tensors, each [M]: prediction
    ``(batch_idx[k], query_idx[k])`` is paired with target ``target_idx[k]`` of the batch's
    concatenated targets."""

    batch_idx: Tensor
    query_idx: Tensor
    target_idx: Tensor


def matched_on_device(layer_indices: list[list[tuple[Tensor, Tensor]]], sizes: list[int],
                      device: torch.device) -> list[Matched]:
    """The matcher's per-image host indices for L layers -> L ``Matched``, with one copy to the device."""
    offsets = torch.tensor([0] + sizes[:-1]).cumsum(0).tolist()
    rows, counts = [], []
    for indices in layer_indices:
        batch = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])  # [M]
        query = torch.cat([src for src, _ in indices])  # [M]
        target = torch.cat([tgt + off for (_, tgt), off in zip(indices, offsets)])  # [M]
        rows.append(torch.stack([batch, query, target]))  # [3, M]
        counts.append(len(query))
    flat = torch.cat(rows, dim=1).to(device, non_blocking=True)  # [3, sum M], one transfer
    return [Matched(*part) for part in flat.split(counts, dim=1)]


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
        return self.forward_many([outputs], targets)[0]

    def forward_many(self, many: list[dict], targets: list[dict]) -> list[dict[str, Tensor]]:
        """``forward`` for several output dicts against the same targets (e.g. query groups), with
        every decoder layer of every dict matched in one batched matcher call."""
        for outputs in many:
            if outputs["pred_logits"].shape[-1] != self.num_classes + 1:
                raise ValueError(
                    f"model predicts {outputs['pred_logits'].shape[-1]} logits per query; the criterion "
                    f"expects num_classes + 1 = {self.num_classes + 1}"
                )
        device = many[0]["pred_logits"].device
        num_boxes = num_boxes_across_processes(targets, device)
        layers = [layer for o in many for layer in [o, *o.get("aux_outputs", [])]]
        sizes = [len(t["labels"]) for t in targets]
        matched = iter(matched_on_device(self.matcher.match_layers(layers, targets), sizes, device))
        flat = _flat_targets(targets, device)
        results = []
        for outputs in many:
            losses = self._layer(outputs, targets, flat, next(matched), num_boxes, logged=True)
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                aux_losses = self._layer(aux, targets, flat, next(matched), num_boxes, logged=False)
                losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
            results.append(losses)
        return results

    def layer_losses(self, outputs: dict, targets: list[dict], num_boxes: float,
                     logged: bool) -> dict[str, Tensor]:
        """The losses of one decoder layer's predictions (matched on their own)."""
        device = outputs["pred_logits"].device
        sizes = [len(t["labels"]) for t in targets]
        matched, = matched_on_device([self.matcher(outputs, targets)], sizes, device)
        return self._layer(outputs, targets, _flat_targets(targets, device), matched, num_boxes, logged)

    def _layer(self, outputs: dict, targets: list[dict], flat: tuple[Tensor, Tensor], matched: Matched,
               num_boxes: float, logged: bool) -> dict[str, Tensor]:
        # the losses in float32 whatever precision the model ran in (autocast outputs bfloat16/float16)
        logits, boxes = outputs["pred_logits"].float(), outputs["pred_boxes"].float()
        losses = self.loss_labels(logits, flat[0], matched, logged)
        losses.update(self.loss_boxes(boxes, flat[1], matched, num_boxes))
        if logged:
            losses["cardinality_error"] = self.cardinality_error(logits, targets)
        return losses

    def loss_labels(self, logits: Tensor, labels: Tensor, matched: Matched, logged: bool) -> dict:
        """Weighted cross-entropy over all B*Q queries; unmatched queries target "no object".
        ``labels``: the batch's concatenated target labels [T]."""
        matched_labels = labels[matched.target_idx]  # [M]
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long,
                                    device=logits.device)  # [B, Q]
        target_classes[matched.batch_idx, matched.query_idx] = matched_labels
        # cross_entropy wants the class dimension second
        loss_ce = F.cross_entropy(logits.transpose(1, 2),  # [B, C+1, Q]
                                  target_classes, self.class_weight)
        losses = {"loss_ce": loss_ce}
        if logged:
            losses["class_error"] = _class_error(logits[matched.batch_idx, matched.query_idx],
                                                 matched_labels)
        return losses

    def loss_boxes(self, pred_boxes: Tensor, boxes: Tensor, matched: Matched, num_boxes: float) -> dict:
        """L1 and (1 - GIoU) of the matched boxes, summed and divided by ``num_boxes``.
        ``boxes``: the batch's concatenated target boxes [T, 4]."""
        src = pred_boxes[matched.batch_idx, matched.query_idx]  # [M, 4] normalized cxcywh
        tgt = boxes[matched.target_idx].to(src)  # [M, 4]
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


def _flat_targets(targets: list[dict], device) -> tuple[Tensor, Tensor]:
    """The batch's target labels [T] and boxes [T, 4], concatenated on ``device``."""
    labels = torch.cat([t["labels"] for t in targets]).to(device, non_blocking=True)
    boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(device, non_blocking=True)
    return labels, boxes


@torch.no_grad()
def _class_error(matched_logits: Tensor, matched_labels: Tensor) -> Tensor:
    """100 - top-1 accuracy (in %) of the matched queries; 100 when nothing is matched,
    as in the official code, so that an empty batch never looks perfect."""
    if matched_labels.numel() == 0:
        return torch.tensor(100.0, device=matched_logits.device)
    correct = (matched_logits.argmax(-1) == matched_labels).float().mean()
    return 100.0 * (1 - correct)
