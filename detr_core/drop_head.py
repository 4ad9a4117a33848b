"""DropHead for the decoder's cross-attention: a training-only regulariser that drops whole heads.

Dropout on attention weights drops single weights; DropHead (Zhou et al. 2020, "Scheduled DropHead")
drops a head's whole output, so no head can rely on the others to do the looking. Without it a small
DETR settles into a few heads that attend to the object and several that spread their weight over the
whole image and contribute little. With it, every head has to be useful on its own some of the time.
Inference is untouched: the model stays a plain DETR with the same keys and the same forward.

The heads kept are drawn once per forward call (for the whole batch): ``nn.MultiheadAttention`` mixes
the heads inside one fused call, and scaling columns of the output projection is the one place a head's
output can be switched off without re-implementing attention. Kept heads are scaled up by
``heads / kept`` so the expected output is unchanged, as dropout does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def head_keep_scale(num_heads: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """[num_heads]: 0 for a dropped head, ``num_heads / kept`` for a kept one; at least one is kept."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop_head={p}: expected a probability in [0, 1)")
    keep = torch.rand(num_heads, generator=generator) >= p
    if not keep.any():
        keep[torch.randint(num_heads, (1,), generator=generator)] = True
    return keep.float() * (num_heads / keep.sum())


def attention_with_drop_head(attn: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, key_padding_mask: torch.Tensor | None,
                             p: float) -> torch.Tensor:
    """``attn(query, key, value)[0]`` with each head dropped with probability ``p``.

    query [B, Q, d]; key, value [B, HW, d]; key_padding_mask [B, HW] (True on padding) -> [B, Q, d].
    """
    assert attn.batch_first and attn._qkv_same_embed_dim, "DETR's attention layout"
    scale = head_keep_scale(attn.num_heads, p).to(query.device, query.dtype)  # [heads]
    columns = scale.repeat_interleave(attn.head_dim)  # [d]: out_proj input j belongs to head j // head_dim
    out, _ = F.multi_head_attention_forward(
        query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1),  # [L, B, d]
        attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias, attn.bias_k,
        attn.bias_v, attn.add_zero_attn, attn.dropout, attn.out_proj.weight * columns,
        attn.out_proj.bias, training=True, key_padding_mask=key_padding_mask, need_weights=False)
    return out.transpose(0, 1)  # [B, Q, d]
