"""Group DETR (Chen et al. 2022) as a training-only wrapper: the saved model stays a plain DETR.

Training decodes G groups of queries: group 0 is the model's own ``query_embed``,
groups 1..G-1 are extra embeddings that exist only during training. Each group is
matched one-to-one with the targets on its own, so every target supervises G
queries per image, which speeds up DETR's slow start. The paper masks decoder
self-attention between groups; decoding each group as a separate batch element
is exactly equivalent (groups then only share the encoder memory), and needs no
change to the model. Evaluation and checkpoints use the model alone (group 0).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from detr_core import DETR


class GroupDETR(nn.Module):
    """``model`` plus ``groups - 1`` extra query groups; forward returns all G*Q queries,
    group-major: queries [g*Q, (g+1)*Q) belong to group g."""

    def __init__(self, model: DETR, groups: int):
        super().__init__()
        if groups < 1:
            raise ValueError(f"query groups={groups}: must be at least 1")
        self.model, self.groups = model, groups
        q, d = model.query_embed.weight.shape
        self.extra_queries = nn.Parameter(torch.randn(groups - 1, q, d))  # [G-1, Q, d]

    def forward(self, pixel_values: Tensor, pixel_mask: Tensor) -> dict:
        """Same inputs and output keys as DETR; outputs have G*Q queries."""
        m = self.model
        features, mask, pos = m.backbone(pixel_values, pixel_mask)
        src = m.input_proj(features)  # [B, d, h, w]
        src = src.flatten(2).transpose(1, 2)  # [B, HW, d]
        pos = pos.flatten(2).transpose(1, 2)  # [B, HW, d]
        mask = mask.flatten(1)  # [B, HW]
        memory = m.transformer.encoder(src, pos, mask)  # [B, HW, d]
        hs = self._decode_groups(memory, pos, mask)  # [L, B, G*Q, d]
        logits = m.class_embed(hs)  # [L, B, G*Q, C+1]
        boxes = m.bbox_embed(hs).sigmoid()  # [L, B, G*Q, 4]
        aux = [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1])]
        return {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "aux_outputs": aux}

    def _decode_groups(self, memory: Tensor, pos: Tensor, mask: Tensor) -> Tensor:
        """Decode every group against the shared memory, with groups folded into the batch."""
        g, b = self.groups, memory.shape[0]
        queries = torch.cat([self.model.query_embed.weight[None], self.extra_queries])  # [G, Q, d]
        q, d = queries.shape[1:]
        query_pos = queries[:, None].expand(g, b, q, d).reshape(g * b, q, d)  # [G*B, Q, d]
        repeat = (g,) + (1,) * (memory.dim() - 1)
        hs = self.model.transformer.decoder(
            torch.zeros_like(query_pos), memory.repeat(repeat), pos.repeat(repeat),
            query_pos, mask.repeat(g, 1))  # [L, G*B, Q, d]
        layers = hs.shape[0]
        hs = hs.view(layers, g, b, q, d).permute(0, 2, 1, 3, 4)  # [L, B, G, Q, d]
        return hs.reshape(layers, b, g * q, d)  # [L, B, G*Q, d], group-major queries


def split_groups(outputs: dict, groups: int) -> list[dict]:
    """G output dicts of Q queries each (aux outputs split alike)."""
    def chunk(layer: dict, g: int) -> dict:
        q = layer["pred_logits"].shape[1] // groups
        return {k: layer[k][:, g * q:(g + 1) * q] for k in ("pred_logits", "pred_boxes")}

    return [{**chunk(outputs, g), "aux_outputs": [chunk(a, g) for a in outputs.get("aux_outputs", [])]}
            for g in range(groups)]


class GroupCriterion(nn.Module):
    """Sum of the set criterion over groups, each matched on its own; logged-only
    errors (class/cardinality) are averaged so they keep their per-group meaning."""

    def __init__(self, criterion: nn.Module, groups: int):
        super().__init__()
        self.criterion, self.groups = criterion, groups

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        groups = split_groups(outputs, self.groups)
        # one batched matching (and one host transfer) for every group and layer, where the criterion has it
        many = getattr(self.criterion, "forward_many", None)
        per_group = many(groups, targets) if many else [self.criterion(o, targets) for o in groups]
        total = {}
        for key in per_group[0]:
            values = torch.stack([losses[key] for losses in per_group])
            total[key] = values.sum() if key.startswith("loss_") else values.mean()
        return total
