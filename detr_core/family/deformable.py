"""Deformable attention as sampling points, and as a heatmap: the points' weights splatted onto the image grid.

Conventions (all pixel mapping through `CoordinateMap`):
- A point's location is normalised to its level's grid the way `grid_sample(align_corners=False)` reads it;
  `CoordinateMap.normalised_to_level_cells` turns it into cell coordinates with cell centres at integers.
- Splat: each point's weight goes to the four cells around it with bilinear weights (the transpose of the
  bilinear read the model makes). Neighbours outside the grid are clamped onto its border cells, so no
  weight is lost: the splat of one query and head sums to 1. (The model itself reads zeros outside the
  grid; `sampling_points` reports the true locations.)
- Each level's splat is spread evenly over the cells of the common grid (the finest stride) that its cells
  cover (each level-l cell is r x r common cells, r = stride_l / stride_0), then the levels are summed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..inspection.coords import CoordinateMap
from ..inspection.inspection import Head, select_heads
from .capture import DeformableCall



@dataclass(frozen=True)
class SamplingPoints:
    """Where a query samples, one row per (head, point): xy [N, 2] original-image pixels (may lie outside the
    image), weight [N] (per head they sum to 1 over all its points), level [N], head [N]."""

    xy: np.ndarray
    weight: np.ndarray
    level: np.ndarray
    head: np.ndarray

    def __len__(self) -> int:
        return len(self.weight)



def bilinear_splat(cells: np.ndarray, weights: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cells [K, M, 2] continuous (col, row), centres at integers; weights [K, M] -> [K, h, w] grids, grid k
    holding the bilinear splat of its M points, neighbours outside clamped to the border (sums preserved)."""
    h, w = size
    k_count = cells.shape[0]
    col0, row0 = np.floor(cells[..., 0]), np.floor(cells[..., 1])
    fx, fy = cells[..., 0] - col0, cells[..., 1] - row0
    out = np.zeros((k_count, h, w), dtype=np.float64)
    grid = np.broadcast_to(np.arange(k_count)[:, None], weights.shape)
    for dr, dc, share in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        rows = np.clip(row0 + dr, 0, h - 1).astype(np.intp)
        cols = np.clip(col0 + dc, 0, w - 1).astype(np.intp)
        np.add.at(out, (grid, rows, cols), weights * share)
    return out


@dataclass
class DeformableSampling:
    """Every sampling point of a stack of deformable attention layers for one image (numpy, float32).

    locations [L, N, heads, T, 2] (x, y) normalised to each point's level grid; weights [L, N, heads, T]
    (softmax over T per query and head); point_levels [T]: the level of each point; references [L, N, R, 2 | 4]
    as handed to the attention (normalised to the level grids; R = 1 or one per level).
    """

    locations: np.ndarray
    weights: np.ndarray
    point_levels: np.ndarray
    references: np.ndarray

    @classmethod
    def from_calls(cls, calls: Sequence[DeformableCall], batch_index: int = 0) -> "DeformableSampling":
        if not calls:
            raise ValueError("no deformable attention calls were captured")
        layout = calls[0].points_per_level
        if any(c.points_per_level != layout for c in calls):
            raise ValueError("layers sample different numbers of points per level")
        def stack(tensors):
            return np.stack([t[batch_index].float().cpu().numpy() for t in tensors])
        return cls(stack([c.sampling_locations for c in calls]), stack([c.attention_weights for c in calls]),
                   np.repeat(np.arange(len(layout)), layout), stack([c.reference_points for c in calls]))

    layers = property(lambda self: self.weights.shape[0])
    queries = property(lambda self: self.weights.shape[1])
    heads = property(lambda self: self.weights.shape[2])
    levels = property(lambda self: int(self.point_levels.max()) + 1)

    def _index(self, query: int, layer: int) -> tuple[int, int]:
        if not -self.layers <= layer < self.layers:
            raise ValueError(f"layer={layer} out of range 0..{self.layers - 1}")
        if not -self.queries <= query < self.queries:
            raise ValueError(f"query={query} out of range 0..{self.queries - 1}")
        return query, layer

    def _level_mask(self, level: int | None) -> np.ndarray:
        if level is None:
            return np.ones(len(self.point_levels), dtype=bool)
        if not -self.levels <= level < self.levels:
            raise ValueError(f"level={level} out of range 0..{self.levels - 1}")
        return self.point_levels == (level % self.levels)

    def points(self, coords: CoordinateMap, query: int, layer: int = -1, head: int | None = None,
               level: int | None = None) -> SamplingPoints:
        """The sampling points of `query` in `layer`, for one head (or all) and one level (or all)."""
        query, layer = self._index(query, layer)
        if head is not None and not -self.heads <= head < self.heads:
            raise ValueError(f"head={head!r}: use None (all heads) or an index in 0..{self.heads - 1}")
        heads = np.arange(self.heads) if head is None else np.array([head % self.heads])
        keep = self._level_mask(level)
        locations = self.locations[layer, query][heads][:, keep]  # [h, t, 2]
        levels = np.broadcast_to(self.point_levels[keep], locations.shape[:2])
        xy = np.empty(locations.shape, dtype=np.float64)
        for lvl in np.unique(levels):
            at = levels == lvl
            xy[at] = coords.normalised_to_pixels(locations[at], int(lvl))
        return SamplingPoints(xy.reshape(-1, 2).astype(np.float32),
                              self.weights[layer, query][heads][:, keep].reshape(-1),
                              levels.reshape(-1).copy(), np.repeat(heads, keep.sum()))

    def head_splats(self, coords: CoordinateMap, query: int, layer: int = -1, level: int | None = None) -> np.ndarray:
        """[heads, fh, fw] on the common grid: each head's weights splatted (each sums to 1 over all levels,
        or to the share of the level when `level` is given)."""
        query, layer = self._index(query, layer)
        keep = self._level_mask(level)
        out = np.zeros((self.heads, *coords.feature_size), dtype=np.float64)
        for lvl in np.unique(self.point_levels[keep]):
            at = keep & (self.point_levels == lvl)
            cells = coords.normalised_to_level_cells(self.locations[layer, query][:, at], int(lvl))  # [heads, t, 2]
            splat = bilinear_splat(cells, self.weights[layer, query][:, at].astype(np.float64),
                                   coords.level(int(lvl)).size)  # [heads, h_l, w_l]
            r = coords.level_scale(int(lvl))
            spread = np.repeat(np.repeat(splat, r, axis=1), r, axis=2) / (r * r)  # [heads, h_l*r, w_l*r]
            out[:, :spread.shape[1], :spread.shape[2]] += spread
        return out.astype(np.float32)

    def splat(self, coords: CoordinateMap, query: int, layer: int = -1, head: Head = None,
              level: int | None = None) -> np.ndarray:
        """[fh, fw] on the common grid: the heads' splats reduced by `head` (mean/max/one)."""
        return select_heads(self.head_splats(coords, query, layer, level), head)
