"""DETR's encoder-decoder transformer: positional encodings added to queries and keys, never to values.

Layout is batch-first throughout: memory [B, HW, d], tgt [B, Q, d]. The parameter names match the official
checkpoints (`self_attn`, `multihead_attn`, `linear1/2`, `norm1/2/3`); nn.MultiheadAttention's weights do not
depend on batch_first, so the official weights load unchanged.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, src, pos, key_padding_mask):
        """src, pos [B, HW, d]; key_padding_mask [B, HW] (True on padding) -> [B, HW, d]."""
        if self.pre_norm:
            x = self.norm1(src)
            q = k = _with_pos(x, pos)
            src = src + self.dropout1(self.self_attn(q, k, x, key_padding_mask=key_padding_mask)[0])
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, key_padding_mask=key_padding_mask)[0]))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def _cross(self, tgt, memory, pos, query_pos, memory_key_padding_mask):
        return self.multihead_attn(
            _with_pos(tgt, query_pos), _with_pos(memory, pos), memory,
            key_padding_mask=memory_key_padding_mask,
        )[0]

    def forward(self, tgt, memory, pos, query_pos, memory_key_padding_mask):
        """tgt, query_pos [B, Q, d]; memory, pos [B, HW, d]; mask [B, HW] -> [B, Q, d]."""
        if self.pre_norm:
            x = self.norm1(tgt)
            q = k = _with_pos(x, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, x)[0])
            x = self.norm2(tgt)
            tgt = tgt + self.dropout2(self._cross(x, memory, pos, query_pos, memory_key_padding_mask))
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        q = k = _with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt)[0]))
        tgt = self.norm2(tgt + self.dropout2(self._cross(tgt, memory, pos, query_pos, memory_key_padding_mask)))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int, norm: nn.LayerNorm | None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm  # only pre-norm has a final encoder norm (official keys)

    def forward(self, src, pos, key_padding_mask):
        for layer in self.layers:
            src = layer(src, pos, key_padding_mask)
        return src if self.norm is None else self.norm(src)


class Decoder(nn.Module):
    def __init__(self, layer: DecoderLayer, num_layers: int, norm: nn.LayerNorm, renorm: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm
        self.renorm = renorm  # DETRConfig.decoder_renorm: the wiring of transformers' auxiliary_loss=True

    def forward(self, tgt, memory, pos, query_pos, memory_key_padding_mask) -> torch.Tensor:
        """-> hs [L, B, Q, d]: every layer's output through the shared final norm (for aux losses)."""
        hs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos, memory_key_padding_mask)
            if self.renorm:
                tgt = self.norm(tgt)  # the next layer starts from the normed output
            hs.append(tgt if self.renorm else self.norm(tgt))
        if self.renorm:
            hs[-1] = self.norm(hs[-1])  # transformers norms the last output once more after the loop
        return torch.stack(hs)


class Transformer(nn.Module):
    def __init__(self, d_model=256, nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=2048,
                 dropout=0.1, pre_norm=False, decoder_renorm=False):
        super().__init__()
        enc = EncoderLayer(d_model, nheads, dim_feedforward, dropout, pre_norm)
        dec = DecoderLayer(d_model, nheads, dim_feedforward, dropout, pre_norm)
        self.encoder = Encoder(enc, enc_layers, nn.LayerNorm(d_model) if pre_norm else None)
        self.decoder = Decoder(dec, dec_layers, nn.LayerNorm(d_model), decoder_renorm)
        self.d_model = d_model
        # optimize_for_inference sets this: with nothing padded the mask only adds zeros, at the cost of
        # building a [B*heads, L, S] float mask in every attention layer
        self.drop_empty_padding_mask = False
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src, mask, query_embed, pos):
        """src, pos [B, d, h, w]; mask [B, h, w]; query_embed [Q, d] -> (hs [L, B, Q, d], memory [B, HW, d])."""
        b = src.shape[0]
        src = src.flatten(2).transpose(1, 2)  # [B, HW, d]
        pos = pos.flatten(2).transpose(1, 2)  # [B, HW, d]
        mask = mask.flatten(1)  # [B, HW]
        if self.drop_empty_padding_mask and not mask.any():
            mask = None
        query_pos = query_embed[None].expand(b, -1, -1)  # [B, Q, d]
        tgt = torch.zeros_like(query_pos)  # queries start empty; query_pos carries their identity
        memory = self.encoder(src, pos, mask)
        hs = self.decoder(tgt, memory, pos, query_pos, mask)
        return hs, memory
