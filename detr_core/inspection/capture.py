"""Record every attention map of a forward pass with hooks on the model's own nn.MultiheadAttention modules.

Hooks live only inside `capture_attention`, and only record forward passes run by the thread that opened the
context, so two threads sharing one model each get their own maps.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn


@dataclass
class AttentionMaps:
    """Per-head attention weights of one forward pass, filled layer by layer.

    encoder: L_enc tensors [B, heads, HW, HW]; decoder_self: L_dec tensors [B, heads, Q, Q];
    decoder_cross: L_dec tensors [B, heads, Q, HW]. Rows sum to 1; padded keys get 0.
    """

    encoder: list[torch.Tensor] = field(default_factory=list)
    decoder_self: list[torch.Tensor] = field(default_factory=list)
    decoder_cross: list[torch.Tensor] = field(default_factory=list)


def attention_modules(model: nn.Module) -> dict[str, list[nn.MultiheadAttention]]:
    """The model's attention modules by kind, in layer order."""
    t = model.transformer
    return {
        "encoder": [layer.self_attn for layer in t.encoder.layers],
        "decoder_self": [layer.self_attn for layer in t.decoder.layers],
        "decoder_cross": [layer.multihead_attn for layer in t.decoder.layers],
    }


def per_head_weights_request(owner: int):
    """A forward pre-hook (with_kwargs=True) that makes nn.MultiheadAttention return its per-head weights,
    for calls from thread `owner` only. The module computes the weights itself; we only ask for them."""
    def ask_for_weights(module, args, kwargs):
        if threading.get_ident() != owner:
            return None
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}
    return ask_for_weights


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[AttentionMaps]:
    """Within the context, forward passes of `model` in this thread record per-head attention weights."""
    maps = AttentionMaps()
    owner = threading.get_ident()
    ask_for_weights = per_head_weights_request(owner)
    handles = []

    def recorder(store: list):
        def record(module, args, kwargs, output):
            if threading.get_ident() == owner:
                store.append(output[1].detach())  # [B, heads, L, S]
        return record

    try:
        for kind, modules in attention_modules(model).items():
            for module in modules:
                handles.append(module.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
                handles.append(module.register_forward_hook(recorder(getattr(maps, kind)), with_kwargs=True))
        yield maps
    finally:
        for handle in handles:
            handle.remove()
