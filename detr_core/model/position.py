"""Positional encodings of the feature grid: fixed sine (the paper's default) or learned."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinePositionEncoding(nn.Module):
    """2-D sine encoding: half the channels encode y, half x; coordinates normalised to (0, 2π]."""

    def __init__(self, num_feats: int, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        self.num_feats = num_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask [B, h, w] (True on padding) -> pos [B, 2*num_feats, h, w]."""
        not_mask = ~mask
        y = not_mask.cumsum(1, dtype=torch.float32)  # [B, h, w], 1..h_valid
        x = not_mask.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        # Normalising by the valid extent makes padded and unpadded images see the same encoding.
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale
        i = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.num_feats)
        pos_x = x[..., None] / dim_t  # [B, h, w, F]
        pos_y = y[..., None] / dim_t
        # Interleave sin on even and cos on odd channels.
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # [B, 2F, h, w]


class LearnedPositionEncoding(nn.Module):
    """Learned absolute encoding: one embedding per row and per column (grids up to 50x50)."""

    def __init__(self, num_feats: int, max_cells: int = 50):
        super().__init__()
        self.row_embed = nn.Embedding(max_cells, num_feats)
        self.col_embed = nn.Embedding(max_cells, num_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask [B, h, w] -> pos [B, 2*num_feats, h, w] (x channels first, then y)."""
        b, h, w = mask.shape
        if h > self.row_embed.num_embeddings or w > self.col_embed.num_embeddings:
            raise ValueError(
                f"feature grid {h}x{w} exceeds the learned encoding's {self.row_embed.num_embeddings} cells;"
                " use a smaller input size"
            )
        x_emb = self.col_embed(torch.arange(w, device=mask.device))  # [w, F]
        y_emb = self.row_embed(torch.arange(h, device=mask.device))  # [h, F]
        pos = torch.cat([x_emb[None].expand(h, w, -1), y_emb[:, None].expand(h, w, -1)], dim=-1)
        return pos.permute(2, 0, 1)[None].expand(b, -1, -1, -1)  # [B, 2F, h, w]


class BackboneWithPosition(nn.ModuleList):
    """[backbone, position encoding]: the official checkpoints index them as `backbone.0`, `backbone.1`."""

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor):
        """-> features [B, C, h, w], mask [B, h, w], pos [B, d, h, w]."""
        features, mask = self[0](pixel_values, pixel_mask)
        return features, mask, self[1](mask).to(features.dtype)
