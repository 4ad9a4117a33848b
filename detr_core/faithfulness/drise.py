"""D-RISE saliency (Petsiuk et al., CVPR 2021): the model-agnostic reference map for one detection.

N random masks, each an s x s grid of cells kept with probability p, upsampled bilinearly to (s + 1) cells
and cropped at a random shift (RISE's smooth masks); every masked image (kept pixels original, the rest the
probe's baseline) is scored by D-RISE similarity with the target; the map is the score-weighted mean of the
masks. One forward per mask, in batches.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .perturb import Probe, Progress

GRID, KEEP = 16, 0.5  # cells per side, probability of keeping a cell (the paper's settings for COCO)
DEFAULT_MASKS = 1000


def random_masks(n: int, size: tuple[int, int], grid: int = GRID, keep: float = KEEP,
                 seed: int = 0) -> torch.Tensor:
    """[n, h, w] smooth masks in [0, 1] (RISE)."""
    if n < 1 or grid < 1 or not 0.0 < keep < 1.0:
        raise ValueError(f"masks={n} and grid={grid} must be positive and keep={keep} between 0 and 1")
    h, w = size
    g = torch.Generator().manual_seed(seed)
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    cells = (torch.rand(n, 1, grid, grid, generator=g) < keep).float()  # [n, 1, s, s]
    up = F.interpolate(cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear",
                       align_corners=False)[:, 0]  # [n, (s+1) cell_h, (s+1) cell_w]
    dy = torch.randint(0, cell_h, (n,), generator=g)
    dx = torch.randint(0, cell_w, (n,), generator=g)
    return torch.stack([up[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])  # [n, h, w]


def drise_map(probe: Probe, masks: int = DEFAULT_MASKS, grid: int = GRID, keep: float = KEEP, seed: int = 0,
              progress: Optional[Progress] = None) -> np.ndarray:
    """[h, w] over the probe's input: sum_i s_i m_i / (N p), built a batch at a time (memory: one batch)."""
    h, w = probe.prepared.input_size
    total = torch.zeros(h, w, dtype=torch.float64)
    chunk = 32  # masks drawn per round: fixed, so the map does not depend on the batch size
    for start in range(0, masks, chunk):
        m = random_masks(min(chunk, masks - start), (h, w), grid, keep, seed + start)  # [b, h, w]
        images = m[:, None] * probe.pixels[None] + (1 - m[:, None]) * probe.baseline[None]  # [b, 3, h, w]
        weights = torch.from_numpy(probe.scores(images))  # [b]
        total += (weights[:, None, None] * m.double()).sum(0)
        if progress is not None:
            progress(start + m.shape[0], masks)
    return (total / (masks * keep)).float().numpy()
