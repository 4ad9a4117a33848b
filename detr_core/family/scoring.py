"""Class scores of the DETR family, in the shape DETR Lens' views read: [Q, C+1], the last column "no object".

DETR's classifier is a softmax over C classes plus "no object". Its descendants (Conditional, DAB,
Deformable DETR, RT-DETR, D-FINE, RF-DETR, ...) train a sigmoid (focal-loss) classifier: C independent
class probabilities and no "no object" class. For those, columns 0..C-1 are the sigmoids and the last
column is 1 - (best class probability): the chance the query's best guess is wrong, the closest thing to
DETR's "no object" (so `1 - probabilities[:, -1]` is each query's detection score in both kinds).
"""
from __future__ import annotations

import numpy as np

from ..inspection.inspection import Detection

SIGMOID, SOFTMAX = "sigmoid", "softmax"


def class_probabilities(logits: np.ndarray, score_kind: str) -> np.ndarray:
    """logits [..., C] (sigmoid) or [..., C+1] (softmax, last = no object) -> probabilities [..., C+1]."""
    x = np.asarray(logits, dtype=np.float64)
    if score_kind == SOFTMAX:
        e = np.exp(x - x.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)
    if score_kind != SIGMOID:
        raise ValueError(f"score_kind={score_kind!r}: use {SIGMOID!r} or {SOFTMAX!r}")
    scores = 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function without overflow warnings
    return np.concatenate([scores, 1.0 - scores.max(-1, keepdims=True)], axis=-1).astype(np.float32)


class FamilyScoring:
    """Scores and detections for a result with layer_logits [L, Q, C(+1)], layer_boxes [L, Q, 4], coords,
    class_name() and a `score_kind` ("sigmoid" or "softmax")."""

    score_kind: str

    def layer_probabilities(self, layer: int = -1) -> np.ndarray:
        """[Q, C+1] at decoder `layer`; the last column is "no object" (see the module docstring)."""
        if layer == -1:
            return self.probabilities
        return class_probabilities(self.layer_logits[layer], self.score_kind)

    @property
    def probabilities(self) -> np.ndarray:
        """[Q, C+1] of the last layer; the last column is "no object" (see the module docstring)."""
        cached = self.__dict__.get("_family_probs")
        if cached is None:
            cached = self.__dict__["_family_probs"] = class_probabilities(self.layer_logits[-1], self.score_kind)
        return cached

    def detections(self, threshold: float = 0.5, layer: int = -1) -> list[Detection]:
        """Queries whose best class probability exceeds `threshold`, best first; one detection per query
        (transformers' post-processing may list a query twice, with two classes: not here)."""
        probs = self.layer_probabilities(layer)[:, :-1]  # [Q, C]
        scores, labels = probs.max(-1), probs.argmax(-1)
        pixel_boxes = self.coords.boxes_to_pixels(self.layer_boxes[layer])
        keep = [q for q in np.argsort(-scores, kind="stable") if scores[q] > threshold]
        return [Detection(int(q), int(labels[q]), self.class_name(int(labels[q])), float(scores[q]),
                          tuple(float(v) for v in pixel_boxes[q])) for q in keep]


def layer_probabilities(ins, layer: int = -1) -> np.ndarray:
    """[Q, C+1] at decoder `layer` for any inspection: DETR's softmax (its own "no object" class) or the
    family's scores (see the module docstring). Views that read per-layer classes should use this rather than
    a softmax of `layer_logits`, which is wrong for the family's sigmoid classifiers."""
    if isinstance(ins, FamilyScoring):
        return ins.layer_probabilities(layer)
    return class_probabilities(ins.layer_logits[layer], SOFTMAX)
