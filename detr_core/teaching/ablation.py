"""Head ablation: switch off attention heads of one layer for a forward pass, without touching the model.

A head's contribution is its slice of concat_h(A_h @ V_h) before out_proj; ablation multiplies that slice by 0
(attention_recompute.py). The model's parameters are never written, and only forward passes of the calling
thread are affected, so other sessions sharing the loaded model keep seeing the intact model.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..inspection.attention_recompute import recomputed_attention
from ..inspection.inspection import Inspection, inspect_image
from ..model.preprocess import ImageSource
from ..model.twin import inference_twin

KINDS = ("cross", "self", "encoder")  # decoder cross-attention, decoder self-attention, encoder self-attention


@dataclass(frozen=True)
class HeadAblation:
    """Which heads to switch off: 0-based `heads` of 0-based `layer` of the attention `kind`."""

    layer: int
    heads: tuple[int, ...]
    kind: str = "cross"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: expected one of {KINDS}")
        object.__setattr__(self, "heads", tuple(sorted({int(h) for h in self.heads})))


def target_module(model: nn.Module, ablation: HeadAblation) -> nn.MultiheadAttention:
    """The attention module the ablation acts on; ValueError for a layer or head the model does not have."""
    t = model.transformer
    layers = t.encoder.layers if ablation.kind == "encoder" else t.decoder.layers
    if not 0 <= ablation.layer < len(layers):
        raise ValueError(f"layer={ablation.layer}: this model has {ablation.kind} layers 0..{len(layers) - 1}")
    layer = layers[ablation.layer]
    module = layer.multihead_attn if ablation.kind == "cross" else layer.self_attn
    bad = [h for h in ablation.heads if not 0 <= h < module.num_heads]
    if bad:
        raise ValueError(f"heads={bad}: this model has heads 0..{module.num_heads - 1}")
    return module


@contextmanager
def ablated_heads(model: nn.Module, ablation: HeadAblation) -> Iterator[None]:
    """Within the context, this thread's forward passes of `model` run with `ablation.heads` switched off.

    With no heads listed the layer is still recomputed (an identity), which keeps the path under test.
    """
    module = target_module(model, ablation)
    mask = torch.ones(module.num_heads)  # [heads]
    mask[list(ablation.heads)] = 0.0
    with recomputed_attention([module], lambda index, weights: mask):
        yield


def inspect_ablated(model: nn.Module, image: ImageSource, ablation: HeadAblation) -> Inspection:
    """inspect_image with the heads switched off: one forward pass (of the model's inference twin), every
    attention map kept."""
    runner = inference_twin(model)  # the heads are switched off in what actually runs
    with ablated_heads(runner, ablation):
        return inspect_image(runner, image)


@dataclass(frozen=True)
class QueryChange:
    """How one query's prediction moved when the heads were switched off."""

    query: int
    before: str  # "name score" or "no object (p)"
    after: str
    score_change: float  # best real-class probability, after minus before
    box_shift: float  # mean absolute change of normalised cx, cy, w, h
    answer_before: str = ""  # the class it reports above the threshold, or NO_OBJECT
    answer_after: str = ""

    @property
    def changed(self) -> bool:
        """Whether the query's answer changed (its class, or object vs no object), not merely its score."""
        return self.answer_before != self.answer_after


NO_OBJECT = "no object"


def _answer(ins: Inspection, query: int, threshold: float) -> tuple[str, str]:
    """(what the query answers at `threshold`: a class name or NO_OBJECT, the same with its probability)."""
    probs = ins.probabilities[query]  # [C+1]
    best = int(np.argmax(probs[:-1]))
    if probs[best] <= threshold:
        return NO_OBJECT, f"{NO_OBJECT} ({probs[-1]:.2f})"
    return ins.class_name(best), f"{ins.class_name(best)} {probs[best]:.2f}"


def compare(before: Inspection, after: Inspection, threshold: float) -> list[QueryChange]:
    """Per query, the change from `before` to `after`: queries whose answer changed first, then the other queries
    detected in either one, each group largest score change first."""
    if before.num_queries != after.num_queries:
        raise ValueError(f"{before.num_queries} vs {after.num_queries} queries: not the same model")
    score_before = before.probabilities[:, :-1].max(-1)  # [Q]
    score_after = after.probabilities[:, :-1].max(-1)  # [Q]
    shift = np.abs(after.boxes - before.boxes).mean(-1)  # [Q]
    changes = []
    for q in range(before.num_queries):
        (answer_b, label_b), (answer_a, label_a) = _answer(before, q, threshold), _answer(after, q, threshold)
        changes.append(QueryChange(q, label_b, label_a, float(score_after[q] - score_before[q]), float(shift[q]),
                                   answer_b, answer_a))
    detected = (score_before > threshold) | (score_after > threshold)  # [Q]
    return sorted(changes, key=lambda c: (not c.changed, not detected[c.query], -abs(c.score_change)))
