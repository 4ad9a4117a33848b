"""D-RISE's detection similarity (Petsiuk et al., "Black-box Explanation of Object Detectors via Saliency
Maps", CVPR 2021): a detection is d = (L, O, P), box corners, objectness, class probabilities, and

    s(d_t, d_j) = IoU(L_t, L_j) · cos(P_t, P_j) · O_j,

the target's score on a perturbed image being the maximum over that image's proposals. Following the object
rather than a query index matters for DETR: a perturbed image may hand the object to another query.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from .detector import Proposals


@dataclass(frozen=True)
class Target:
    """The detection followed: box [4] x0, y0, x1, y1 (normalised input), probs [C], its objectness and
    the query that produced it on the unperturbed image."""

    box: torch.Tensor
    probs: torch.Tensor
    objectness: float
    query: int

    @classmethod
    def from_query(cls, proposals: Proposals, query: int) -> "Target":
        """Query `query` of the first image of `proposals` (the unperturbed forward)."""
        n = proposals.boxes.shape[1]
        if not 0 <= query < n:
            raise ValueError(f"query={query} out of range 0..{n - 1}")
        return cls(proposals.boxes[0, query].clone(), proposals.probs[0, query].clone(),
                   float(proposals.objectness[0, query]), int(query))


def pairwise_similarity(target: Target, proposals: Proposals) -> torch.Tensor:
    """[B, Q]: s(d_t, d_j) for every proposal j of every image."""
    b, q, _ = proposals.boxes.shape
    iou = box_iou(target.box[None].double(), proposals.boxes.reshape(-1, 4).double()).reshape(b, q)
    cos = F.cosine_similarity(proposals.probs.double(), target.probs.double()[None, None], dim=-1)  # [B, Q]
    return iou * cos.clamp(min=0.0) * proposals.objectness.double()


def drise_similarity(target: Target, proposals: Proposals) -> torch.Tensor:
    """[B]: the target's score on each image, max_j s(d_t, d_j), in [0, 1]."""
    return pairwise_similarity(target, proposals).max(-1).values
