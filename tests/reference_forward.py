"""An independent DETR transformer forward written from the paper with functional ops, in the official
sequence-first layout ([S, B, d]), reading the parameters of a detr_core model. Tests compare against it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _attn(mha, query, key, value, key_padding_mask=None):
    """query [L, B, d], key/value [S, B, d] -> ([L, B, d], weights [B, heads, L, S])."""
    return F.multi_head_attention_forward(
        query, key, value, mha.embed_dim, mha.num_heads, mha.in_proj_weight, mha.in_proj_bias,
        None, None, False, 0.0, mha.out_proj.weight, mha.out_proj.bias, training=False,
        key_padding_mask=key_padding_mask, need_weights=True, average_attn_weights=False,
    )


def _ln(norm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _ffn(layer, x):
    return F.linear(F.relu(F.linear(x, layer.linear1.weight, layer.linear1.bias)),
                    layer.linear2.weight, layer.linear2.bias)


def reference_transformer(model, src, mask, pos):
    """Post-norm only. src, pos [B, d, h, w]; mask [B, h, w] -> (hs [L, B, Q, d], weights by kind)."""
    t = model.transformer
    b = src.shape[0]
    src = src.flatten(2).permute(2, 0, 1)  # [HW, B, d]
    pos = pos.flatten(2).permute(2, 0, 1)
    mask = mask.flatten(1)
    query_pos = model.query_embed.weight[:, None].repeat(1, b, 1)  # [Q, B, d]
    weights = {"encoder": [], "decoder_self": [], "decoder_cross": []}
    x = src
    for layer in t.encoder.layers:
        a, w = _attn(layer.self_attn, x + pos, x + pos, x, mask)
        weights["encoder"].append(w)
        x = _ln(layer.norm1, x + a)
        x = _ln(layer.norm2, x + _ffn(layer, x))
    memory, tgt, hs = x, torch.zeros_like(query_pos), []
    for layer in t.decoder.layers:
        a, w = _attn(layer.self_attn, tgt + query_pos, tgt + query_pos, tgt)
        weights["decoder_self"].append(w)
        tgt = _ln(layer.norm1, tgt + a)
        a, w = _attn(layer.multihead_attn, tgt + query_pos, memory + pos, memory, mask)
        weights["decoder_cross"].append(w)
        tgt = _ln(layer.norm2, tgt + a)
        tgt = _ln(layer.norm3, tgt + _ffn(layer, tgt))
        hs.append(_ln(t.decoder.norm, tgt).transpose(0, 1))  # [B, Q, d]
    return torch.stack(hs), weights
