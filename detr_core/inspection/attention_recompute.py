"""Recompute an attention module's output from its own per-head weights, so callers can reach those weights.

nn.MultiheadAttention returns its weights as a *view* of the tensor it multiplies with the values, so
gradients never reach the returned view; and it applies `out_proj` inside F.multi_head_attention_forward, so
hooks on `out_proj` never fire. Recomputing

    output = out_proj(concat_h(A_h @ V_h))

from the returned weights A gives both: gradients with respect to A (explain.py) and a place to switch single
heads off (ablation.py). In eval mode (no attention dropout) the recomputed output equals the module's own.

Hooks only act on forward passes run by the thread that opened the context (as in capture.py), so other
sessions sharing the model are untouched, and they are removed on exit, also on error.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .capture import per_head_weights_request

# (module index, per-head weights [B, heads, L, S]) -> head mask [heads] (1 keeps a head, 0 removes it) or None
WeightsCallback = Callable[[int, torch.Tensor], Optional[torch.Tensor]]


def value_heads(module: nn.MultiheadAttention, value: torch.Tensor) -> torch.Tensor:
    """value [B, S, d] (batch-first) -> projected values split by head [B, heads, S, d/heads]."""
    d, heads = module.embed_dim, module.num_heads
    if module.in_proj_weight is not None:
        w_v = module.in_proj_weight[2 * d:]  # [d, d]: rows of q, k, v are stacked in that order
        b_v = None if module.in_proj_bias is None else module.in_proj_bias[2 * d:]
    else:
        w_v, b_v = module.v_proj_weight, None if module.in_proj_bias is None else module.in_proj_bias[2 * d:]
    v = F.linear(value, w_v, b_v)  # [B, S, d]
    b, s, _ = v.shape
    return v.view(b, s, heads, d // heads).transpose(1, 2)  # [B, heads, S, d/heads]


def recompute_output(module: nn.MultiheadAttention, value: torch.Tensor, weights: torch.Tensor,
                     head_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The module's output [B, L, d] from its weights [B, heads, L, S]; head_mask [heads] scales each head."""
    per_head = weights @ value_heads(module, value)  # [B, heads, L, d/heads]
    if head_mask is not None:
        per_head = per_head * head_mask.to(per_head)[None, :, None, None]
    b, heads, length, dh = per_head.shape
    merged = per_head.transpose(1, 2).reshape(b, length, heads * dh)  # [B, L, d]
    return module.out_proj(merged)


def _value_argument(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[2] if len(args) > 2 else kwargs["value"]


@contextmanager
def recomputed_attention(modules: Sequence[nn.MultiheadAttention],
                         on_weights: WeightsCallback) -> Iterator[None]:
    """Within the context, each module's output in this thread is recomputed from its per-head weights.

    on_weights(i, weights) sees the weights of modules[i] (e.g. to keep them for gradients) and may return a
    head mask [heads] to scale each head's contribution before out_proj.
    """
    owner = threading.get_ident()
    ask_for_weights = per_head_weights_request(owner)
    handles = []

    def recompute(index: int):
        def hook(module, args, kwargs, output):
            if threading.get_ident() != owner:
                return None
            assert module.batch_first, "DETR Lens builds every attention module batch-first"
            weights = output[1]  # [B, heads, L, S]
            mask = on_weights(index, weights)
            return recompute_output(module, _value_argument(args, kwargs), weights, mask), weights
        return hook

    try:
        for i, module in enumerate(modules):
            handles.append(module.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(recompute(i), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
