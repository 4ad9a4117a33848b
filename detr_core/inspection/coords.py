"""The one place that maps between original-image pixels, the resized model input and feature-grid cells.

Multi-scale (deformable) models read several feature levels; their sampling locations are normalised to each
level's grid. `FeatureLevel` and the multi-scale methods of `CoordinateMap` map those to pixels too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureLevel:
    """One feature map a multi-scale model reads: size (h_l, w_l) in cells, stride in input pixels per cell.
    Cell (row, col) covers input pixels [col * stride, (col + 1) * stride) x [row * stride, (row + 1) * stride)."""

    size: tuple[int, int]
    stride: int


@dataclass(frozen=True)
class CoordinateMap:
    """Geometry of one inspected image.

    image_size (H, W): original pixels. input_size (h, w): after resizing, before padding.
    feature_size (fh, fw): the encoder's grid, which may extend past the input (convolutions round up)
    or cover padding. stride: input pixels per cell.
    levels: for multi-scale models, every feature level (finest first as the model orders them); the
    (feature_size, stride) grid is then the common display grid: the finest stride, extended to cover
    every level's extent. Empty for single-grid models (DETR).
    """

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    feature_size: tuple[int, int]
    stride: int
    levels: tuple[FeatureLevel, ...] = ()

    @classmethod
    def multi_scale(cls, image_size: tuple[int, int], input_size: tuple[int, int], level_sizes,
                    padded_size: tuple[int, int] | None = None) -> "CoordinateMap":
        """The map for a model reading feature maps of `level_sizes` [(h_l, w_l), ...] computed from an input of
        `padded_size` (input_size plus bottom/right padding; default: no padding); each level's stride is
        inferred (`infer_stride`), the common grid is the finest."""
        padded = padded_size or input_size
        levels = tuple(FeatureLevel((int(h), int(w)), infer_stride(padded, (h, w))) for h, w in level_sizes)
        if not levels:
            raise ValueError("multi_scale needs at least one feature level")
        stride = min(level.stride for level in levels)
        for level in levels:
            if level.stride % stride:
                raise ValueError(f"level stride {level.stride} is not a multiple of the finest stride {stride}:"
                                 " the levels cannot share one display grid")
        rows = max(level.size[0] * level.stride // stride for level in levels)
        cols = max(level.size[1] * level.stride // stride for level in levels)
        return cls(tuple(image_size), tuple(input_size), (rows, cols), stride, levels)

    def level(self, level: int) -> FeatureLevel:
        """The feature level `level` (negative counts from the coarsest end)."""
        if not self.levels:
            return FeatureLevel(self.feature_size, self.stride)
        if not -len(self.levels) <= level < len(self.levels):
            raise ValueError(f"level={level} out of range 0..{len(self.levels) - 1}")
        return self.levels[level]

    def level_scale(self, level: int) -> int:
        """Cells of the common grid per cell of `level`, along each axis."""
        return self.level(level).stride // self.stride

    def normalised_to_level_cells(self, points: np.ndarray, level: int) -> np.ndarray:
        """Sampling locations [..., 2] (x, y), normalised to `level`'s grid as deformable attention reads
        them -> continuous (col, row) cell coordinates [..., 2] with cell centres at integers.

        grid_sample(align_corners=False) puts 0 and 1 on the outer edges of the grid, so location u lies at
        u * w_l cell widths from the left edge, i.e. at u * w_l - 0.5 in centre-integer cell coordinates.
        """
        h, w = self.level(level).size
        p = np.asarray(points, dtype=np.float64)
        return np.stack([p[..., 0] * w - 0.5, p[..., 1] * h - 0.5], axis=-1)

    def normalised_to_pixels(self, points: np.ndarray, level: int) -> np.ndarray:
        """Sampling locations [..., 2] (x, y) normalised to `level`'s grid -> original-image pixels [..., 2].

        Location u is u * w_l cells, i.e. u * w_l * stride_l input pixels, from the left edge. A level's grid
        may extend past the input (convolutions round up), so u = 1 can lie slightly past the image.
        """
        (H, W), (h, w) = self.image_size, self.input_size
        lh, lw = self.level(level).size
        stride = self.level(level).stride
        p = np.asarray(points, dtype=np.float64)
        return np.stack([p[..., 0] * lw * stride * W / w, p[..., 1] * lh * stride * H / h], axis=-1)

    def image_points_to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Points [..., 2] (x, y) normalised to the unpadded input, like boxes -> original pixels [..., 2]."""
        H, W = self.image_size
        return np.asarray(points, dtype=np.float64)[..., :2] * np.array([W, H], dtype=np.float64)

    def pixel_to_level_cell(self, x: float, y: float, level: int) -> tuple[int, int]:
        """Original pixel (x, y) -> (row, col) of the cell of `level` under it (ValueError outside the image)."""
        feature = self.level(level)
        single = CoordinateMap(self.image_size, self.input_size, feature.size, feature.stride)
        return single.pixel_to_cell(x, y)

    def level_cell_index(self, row: int, col: int, level: int) -> int:
        """(row, col) on `level` -> index into that level's flattened (row-major) grid."""
        return row * self.level(level).size[1] + col

    @property
    def valid_cells(self) -> tuple[int, int]:
        """(rows, cols) of cells that see image pixels rather than padding."""
        (h, w), (fh, fw) = self.input_size, self.feature_size
        return min(fh, math.ceil(h / self.stride)), min(fw, math.ceil(w / self.stride))

    def pixel_to_input(self, x: float, y: float) -> tuple[float, float]:
        """Continuous original-pixel coordinates -> input-pixel coordinates."""
        (H, W), (h, w) = self.image_size, self.input_size
        return x * w / W, y * h / H

    def pixel_to_cell(self, x: float, y: float) -> tuple[int, int]:
        """Original pixel (x, y) (integer pixel indices or continuous) -> (row, col) of the cell under it.

        Raises ValueError for points outside the image, so a bad click is never silently clamped far away.
        """
        H, W = self.image_size
        if not (0 <= x < W + 0.5 and 0 <= y < H + 0.5):  # half a pixel of slack for display rounding
            raise ValueError(f"point ({x}, {y}) is outside the {W}x{H} image")
        # Sample the pixel's centre, so that the last pixel lands in the last valid cell.
        xi, yi = self.pixel_to_input(min(x, W - 1) + 0.5, min(y, H - 1) + 0.5)
        rows, cols = self.valid_cells
        return min(int(yi // self.stride), rows - 1), min(int(xi // self.stride), cols - 1)

    def cell_index(self, row: int, col: int) -> int:
        """(row, col) -> index into the flattened grid (row-major, as the transformer flattens it)."""
        return row * self.feature_size[1] + col

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        """Centre of a cell in original-pixel coordinates (x, y)."""
        (H, W), (h, w) = self.image_size, self.input_size
        return (col + 0.5) * self.stride * W / w, (row + 0.5) * self.stride * H / h

    def cell_bounds(self, row: int, col: int) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of a cell in original pixels, clipped to the image."""
        (H, W), (h, w) = self.image_size, self.input_size
        sx, sy = self.stride * W / w, self.stride * H / h
        return col * sx, row * sy, min((col + 1) * sx, W), min((row + 1) * sy, H)

    def grid_extent(self) -> tuple[float, float]:
        """Size (height, width) of the whole feature grid in original pixels; overlays crop it to the image."""
        (H, W), (h, w), (fh, fw) = self.image_size, self.input_size, self.feature_size
        return fh * self.stride * H / h, fw * self.stride * W / w

    def boxes_to_pixels(self, boxes: np.ndarray) -> np.ndarray:
        """Normalised cx, cy, w, h [N, 4] (relative to the unpadded input) -> x0, y0, x1, y1 [N, 4] in original pixels."""
        H, W = self.image_size
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
        return xyxy * np.array([W, H, W, H])

    def box_cell_coverage(self, box_xyxy: tuple, grow_cells: float = 1.0) -> np.ndarray:
        """[fh, fw]: the fraction of each feature cell inside an original-pixel box grown by
        ``grow_cells`` cells on every side (a cell half inside counts half)."""
        x0, y0 = self.pixel_to_input(box_xyxy[0], box_xyxy[1])
        x1, y1 = self.pixel_to_input(box_xyxy[2], box_xyxy[3])
        fh, fw = self.feature_size
        rows = _overlap_1d(fh, y0 / self.stride - grow_cells, y1 / self.stride + grow_cells)  # [fh]
        cols = _overlap_1d(fw, x0 / self.stride - grow_cells, x1 / self.stride + grow_cells)  # [fw]
        return rows[:, None] * cols[None, :]  # [fh, fw]

    def map_to_input(self, saliency: np.ndarray) -> np.ndarray:
        """A 2-D map over the original image (H, W) or the feature grid (fh, fw) -> [h, w] over the unpadded
        model input. Grid cell (row, col) covers input pixels [col * stride, (col + 1) * stride) (and rows
        alike), so the grid is upsampled bilinearly (cell centres at cell centres) to fh * stride x fw * stride
        and cropped to the input; an image map is resized bilinearly. An image-sized map wins a tie."""
        m = np.asarray(saliency, dtype=np.float32)
        if m.ndim != 2:
            raise ValueError(f"a saliency map must be 2-D, (H, W) = {self.image_size} or (fh, fw) = "
                             f"{self.feature_size}; got shape {m.shape}")
        h, w = self.input_size
        if m.shape == tuple(self.image_size):
            return _resize(m, (h, w))
        if m.shape == tuple(self.feature_size):
            fh, fw = self.feature_size
            return _resize(m, (fh * self.stride, fw * self.stride))[:h, :w]
        raise ValueError(f"saliency map of shape {m.shape} fits neither the image (H, W) = {self.image_size} nor"
                         f" the feature grid (fh, fw) = {self.feature_size}")

    def input_map_to_image(self, input_map: np.ndarray) -> np.ndarray:
        """[h, w] over the unpadded model input -> [H, W] over the original image (bilinear)."""
        m = np.asarray(input_map, dtype=np.float32)
        if m.shape != tuple(self.input_size):
            raise ValueError(f"input map of shape {m.shape}; expected the input size {self.input_size}")
        return _resize(m, tuple(self.image_size))

    def box_to_input(self, box_xyxy) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 in original pixels -> the same box in input pixels (not clipped)."""
        x0, y0 = self.pixel_to_input(box_xyxy[0], box_xyxy[1])
        x1, y1 = self.pixel_to_input(box_xyxy[2], box_xyxy[3])
        return x0, y0, x1, y1


def _resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map (align_corners=False: pixel centres map to pixel centres)."""
    if m.shape == tuple(size):
        return m.astype(np.float32, copy=True)
    import torch  # here: the rest of this module is numpy only
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]  # [1, 1, h, w]
    return F.interpolate(t, size=tuple(int(v) for v in size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _overlap_1d(n_cells: int, lo: float, hi: float) -> np.ndarray:
    """[n_cells]: the fraction of each unit cell [k, k+1) inside the interval [lo, hi)."""
    k = np.arange(n_cells, dtype=np.float64)
    return np.clip(np.minimum(k + 1, hi) - np.maximum(k, lo), 0.0, 1.0)


def infer_stride(input_size: tuple[int, int], level_size: tuple[int, int]) -> int:
    """The integer stride s of a feature map of `level_size` (h_l, w_l) computed from an input of `input_size`
    (h, w): strided convolutions and patch embeddings round up, so ceil(h / s) == h_l and ceil(w / s) == w_l.
    Several s may fit (640 / 20 fits 32 and 33): a power of two is preferred (ResNet, HGNet, extra stride-2
    levels), then the one nearest to the size ratio (ViT patches of 14)."""
    (h, w), (lh, lw) = input_size, level_size
    if min(h, w, lh, lw) < 1:
        raise ValueError(f"feature level {level_size} of input {input_size}: sizes must be positive")
    ratio = max(h / lh, w / lw)
    # ceil(n / s) == cells for n / cells <= s < n / (cells - 1): on a coarse level that reaches far past the
    # ratio (a 2x3 level of a 96x160 input: 53.3 <= s < 80, stride 64), so search up to that bound
    top = min(math.ceil(n / (cells - 1)) if cells > 1 else 2 * n for n, cells in ((h, lh), (w, lw)))
    fits = [s for s in range(max(1, math.floor(ratio) - 2), max(math.ceil(ratio) + 3, top + 1))
            if math.ceil(h / s) == lh and math.ceil(w / s) == lw]
    if not fits:
        raise ValueError(f"a feature map of {lh}x{lw} cells cannot come from a {h}x{w} input at an integer"
                         " stride; the model's input was resized or padded in a way this tool does not know")
    powers = [s for s in fits if s & (s - 1) == 0]
    return min(powers or fits, key=lambda s: abs(s - ratio))


def boxes_in_size(boxes_xyxy: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """x0, y0, x1, y1 [N, 4] in pixels of an image of from_size (H, W) -> the same boxes in pixels of that image
    resized to to_size (H, W), clipped to it (a predicted box may reach a little past the border).
    With to_size == from_size this only clips."""
    (H, W), (h, w) = from_size, to_size
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) * np.array([w / W, h / H, w / W, h / H])
    return np.clip(b, 0.0, np.array([w, h, w, h], dtype=np.float64))  # [N, 4]
