"""Beyond raw attention: attention rollout through the encoder, and Chefer et al.'s gradient-weighted relevance.

Rollout (Abnar & Zuidema 2020) treats each encoder layer as mixing tokens with its head-averaged attention plus
the residual connection, Â = (1 - r)·A + r·I, and multiplies the layers. A detection's rollout map is its
last-layer cross-attention pushed through that product: which *input* cells the query's memory cells came from.
It needs only the stored Inspection.

Relevance (Chefer, Gur, Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers", ICCV 2021) weights every attention map by the gradient of the detection's class
logit, keeps the positive part, and propagates relevance through self-attention (R += Ā R) and cross-attention
(R_qi += R̄_qqᵀ Ā R̄_ii, rule 10). It needs one forward and one backward pass, on CPU.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..inspection.attention_recompute import recomputed_attention
from ..inspection.capture import attention_modules
from ..inspection.inspection import Inspection
from ..model.preprocess import image_to_tensor
from ..model.twin import inference_twin


def attention_rollout(attention: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """attention [L, heads, N, N] (rows sum to 1) -> rollout [N, N], rows sum to 1.

    Each layer's head mean A becomes Â = (1 - residual)·A + residual·I (the skip connection keeps a token's own
    value), rows renormalised; the rollout is Â_L ··· Â_1 (row i: how much input token j reaches token i).
    """
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual={residual} must be between 0 and 1")
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be [L, heads, N, N], got shape {attention.shape}")
    n = attention.shape[-1]
    eye = np.eye(n)
    rollout = eye
    for layer in attention:
        mixed = (1.0 - residual) * layer.mean(0) + residual * eye  # [N, N]
        mixed /= np.maximum(mixed.sum(-1, keepdims=True), 1e-12)
        rollout = mixed @ rollout
    return rollout


def detection_rollout(ins: Inspection, query: int, residual: float = 0.5) -> np.ndarray:
    """[fh, fw]: the query's last-layer cross-attention (mean over heads) through the encoder rollout; sums to 1."""
    cross = ins.decoder_map(query, layer=-1, head=None).reshape(-1)  # [HW]
    return (cross @ attention_rollout(ins.encoder_attention, residual)).reshape(ins.feature_size)


def _gradcam(attention: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Ā = mean over heads of (∇A ⊙ A)⁺: [heads, N, S] -> [N, S]."""
    return (grad * attention).clamp(min=0).mean(0)


def _normalise_residual(r: torch.Tensor) -> torch.Tensor:
    """R̄ = (R - I) with rows scaled to sum to 1, plus I (paper eq. 8-9). Rows with nothing added stay I."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype)
    extra = r - eye  # [N, N]
    sums = extra.sum(-1, keepdim=True)  # [N, 1]
    extra = torch.where(sums > 0, extra / sums.clamp_min(1e-12), torch.zeros_like(extra))
    return extra + eye


def chefer_relevance(encoder: list, decoder_self: list, decoder_cross: list) -> torch.Tensor:
    """Relevance of every image cell for every query, R_qi [Q, HW], from (attention, gradient) pairs per layer.

    encoder: L_enc pairs [heads, HW, HW]; decoder_self: L_dec pairs [heads, Q, Q];
    decoder_cross: L_dec pairs [heads, Q, HW]. All entries are non-negative.
    """
    hw = encoder[0][0].shape[-1] if encoder else decoder_cross[0][0].shape[-1]
    q = decoder_cross[0][0].shape[-2]
    r_ii = torch.eye(hw, dtype=torch.float64)
    for att, grad in encoder:
        r_ii = r_ii + _gradcam(att, grad).double() @ r_ii  # [HW, HW]
    r_qq, r_qi = torch.eye(q, dtype=torch.float64), torch.zeros(q, hw, dtype=torch.float64)
    r_ii_bar = _normalise_residual(r_ii)
    for (s_att, s_grad), (c_att, c_grad) in zip(decoder_self, decoder_cross):
        cam = _gradcam(s_att, s_grad).double()  # [Q, Q]
        r_qq, r_qi = r_qq + cam @ r_qq, r_qi + cam @ r_qi
        cross = _gradcam(c_att, c_grad).double()  # [Q, HW]
        r_qi = r_qi + _normalise_residual(r_qq).T @ cross @ r_ii_bar
    return r_qi


@dataclass(frozen=True)
class Explanation:
    """Three answers to "what did this detection use?", each [fh, fw] over the feature grid."""

    query: int
    label: int
    name: str
    raw: np.ndarray  # last decoder layer's cross-attention, mean over heads
    rollout: np.ndarray  # raw pushed through the encoder's attention rollout
    relevance: np.ndarray  # Chefer et al. 2021, gradient of the class logit


@contextmanager
def backbone_without_grad(model: nn.Module) -> Iterator[None]:
    """This thread's backbone runs without building a graph: relevance needs no gradient below the encoder,
    and a ResNet-50's saved activations would cost gigabytes. Grad mode is thread-local; the caller's
    enable_grad() restores it even if the backbone raises between the two hooks."""
    owner = threading.get_ident()

    def before(module, args):
        if threading.get_ident() == owner:
            torch.set_grad_enabled(False)

    def after(module, args, output):
        if threading.get_ident() == owner:
            torch.set_grad_enabled(True)

    handles = [model.backbone.register_forward_pre_hook(before), model.backbone.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _attention_with_gradients(model: nn.Module, x: torch.Tensor, query: int, label: int) -> dict:
    """One forward and backward pass: every attention map [heads, L, S] and d logit[query, label] / d map."""
    kinds = attention_modules(model)
    order = [(kind, i) for kind, mods in kinds.items() for i in range(len(mods))]
    kept: list = []
    modules = [m for mods in kinds.values() for m in mods]
    with torch.enable_grad(), backbone_without_grad(model), \
            recomputed_attention(modules, lambda index, weights: kept.append((index, weights))):
        out = model(x)
        weights = [w for _, w in sorted(kept, key=lambda item: item[0])]
        grads = torch.autograd.grad(out["pred_logits"][0, query, label], weights, allow_unused=True)
    result: dict = {kind: [] for kind in kinds}
    for (kind, _), att, grad in zip(order, weights, grads):
        grad = torch.zeros_like(att) if grad is None else grad
        result[kind].append((att[0].detach(), grad[0].detach()))  # batch of one dropped: [heads, L, S]
    return result


def explain_detection(model: nn.Module, ins: Inspection, query: int, label: int | None = None,
                      residual: float = 0.5) -> Explanation:
    """Raw attention, rollout and relevance for one query of `ins` (label: its best real class by default).

    Re-runs `model` on ins.image with gradients (one forward, one backward pass), as its inference twin: the
    twin's backbone then runs eager and without a graph (backbone_without_grad); a compiled graph serves
    inference mode only.
    """
    if not 0 <= query < ins.num_queries:
        raise ValueError(f"query={query} out of range 0..{ins.num_queries - 1}")
    if model.config.num_queries != ins.num_queries:
        raise ValueError(f"the model has {model.config.num_queries} queries, the inspection {ins.num_queries}")
    num_classes = ins.logits.shape[-1] - 1
    label = int(np.argmax(ins.probabilities[query, :-1])) if label is None else int(label)
    if not 0 <= label < num_classes:
        raise ValueError(f"label={label} out of range 0..{num_classes - 1}")
    x = image_to_tensor(ins.image, model.preprocess)[None]  # [1, 3, h, w]
    pairs = _attention_with_gradients(inference_twin(model), x, query, label)
    relevance = chefer_relevance(pairs["encoder"], pairs["decoder_self"], pairs["decoder_cross"])  # [Q, HW]
    return Explanation(
        query, label, ins.class_name(label),
        raw=ins.decoder_map(query, layer=-1, head=None),
        rollout=detection_rollout(ins, query, residual),
        relevance=relevance[query].float().numpy().reshape(ins.feature_size),  # [fh, fw]
    )
