"""The one place that maps between original-image pixels, the resized model input and feature-grid cells."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CoordinateMap:
    """Geometry of one inspected image.

    image_size (H, W): original pixels. input_size (h, w): after resizing, before padding.
    feature_size (fh, fw): the encoder's grid, which may extend past the input (convolutions round up)
    or cover padding. stride: input pixels per cell.
    """

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    feature_size: tuple[int, int]
    stride: int

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


def _overlap_1d(n_cells: int, lo: float, hi: float) -> np.ndarray:
    """[n_cells]: the fraction of each unit cell [k, k+1) inside the interval [lo, hi)."""
    k = np.arange(n_cells, dtype=np.float64)
    return np.clip(np.minimum(k + 1, hi) - np.maximum(k, lo), 0.0, 1.0)


def boxes_in_size(boxes_xyxy: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """x0, y0, x1, y1 [N, 4] in pixels of an image of from_size (H, W) -> the same boxes in pixels of that image
    resized to to_size (H, W), clipped to it (a predicted box may reach a little past the border).
    With to_size == from_size this only clips."""
    (H, W), (h, w) = from_size, to_size
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) * np.array([w / W, h / H, w / W, h / H])
    return np.clip(b, 0.0, np.array([w, h, w, h], dtype=np.float64))  # [N, 4]
