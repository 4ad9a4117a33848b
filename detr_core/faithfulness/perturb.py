"""Deletion and insertion curves (RISE, Petsiuk, Das & Saenko, BMVC 2018) for one DETR detection.

Deletion replaces the input's pixels with a baseline in order of decreasing saliency, K steps of equal pixel
counts, and records the detection's D-RISE score (similarity.py) on each perturbed image: a map that found
what the model uses makes the score fall fast (low AUC). Insertion starts from the baseline and puts the
original pixels back in the same order (high AUC is good). The two endpoints, the original and the baseline,
are shared by every map, so they run once per image (`Probe`); each map costs 2 (K - 1) forwards, in batches.

Default baseline: a Gaussian blur of the image (sigma 4% of its longer side). A constant colour makes
sharp-edged holes, and a detector trained on shapes (or on anything with edges) may see objects in them; the
blur removes the detail a detector needs while keeping colours and layout, which is what RISE's insertion
starts from. Perturbed images are still off the training distribution: the test says what the model reacts
to, not what it would see in natural images. "mean" (the image's mean colour) is the other choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from ..inspection.coords import CoordinateMap
from .detector import Detector, PreparedImage
from .similarity import Target, drise_similarity

Progress = Callable[[int, int], None]  # (forwards done, forwards in all)
BASELINES = ("blur", "mean")
BLUR_SIGMA = 0.04  # of the input's longer side


@dataclass(frozen=True)
class FaithfulnessResult:
    """fractions [K + 1] of the input's pixels perturbed; deletion / insertion [K + 1]: the detection's D-RISE
    score at each step; the AUCs are the trapezoid areas over fractions in [0, 1] of scores in [0, 1]."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    baseline: str
    forwards: int


def make_baseline(pixels: torch.Tensor, baseline: str | torch.Tensor) -> torch.Tensor:
    """[3, h, w] normalised input -> the baseline image of the same shape. Blurring commutes with the
    per-channel normalisation (both linear, the blur keeps constants), so blurring the normalised input is
    blurring the image."""
    if isinstance(baseline, torch.Tensor):
        if baseline.shape != pixels.shape:
            raise ValueError(f"baseline tensor of shape {tuple(baseline.shape)}; expected {tuple(pixels.shape)}")
        return baseline.to(pixels)
    if baseline == "mean":
        return pixels.mean((1, 2), keepdim=True).expand_as(pixels).clone()
    if baseline == "blur":
        sigma = max(1.0, BLUR_SIGMA * max(pixels.shape[-2:]))
        kernel = 2 * int(2 * sigma) + 1
        kernel = min(kernel, 2 * ((min(pixels.shape[-2:]) - 1) // 2) + 1)  # reflect padding needs kernel < size
        return gaussian_blur(pixels[None], [kernel, kernel], [sigma, sigma])[0]
    raise ValueError(f"baseline={baseline!r}: use one of {BASELINES} or a [3, h, w] tensor")


def pixel_ranks(saliency: np.ndarray, seed: int = 0) -> torch.Tensor:
    """[h, w] map -> [h, w] rank of every pixel, 0 for the most salient. Ties (flat maps, a box) are broken
    by a fixed random order, not by raster order, which would delete the top rows first."""
    flat = np.asarray(saliency, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(flat)):
        raise ValueError("the saliency map has NaN or infinite values")
    tiebreak = np.random.default_rng(seed).random(flat.size)
    order = np.lexsort((tiebreak, -flat))  # most salient first
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return torch.from_numpy(ranks.reshape(saliency.shape))


def area_under(fractions: np.ndarray, scores: np.ndarray) -> float:
    return float(np.trapezoid(scores, fractions) if hasattr(np, "trapezoid") else np.trapz(scores, fractions))


class Probe:
    """One detection of one image, ready to test maps: the target (from the unperturbed forward), the
    baseline, and the score of both endpoints. `curves(input_map)` tests one map over the model input."""

    def __init__(self, detector: Detector, prepared: PreparedImage, query: int, baseline="blur",
                 batch_size: int = 8, coords: CoordinateMap | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.detector, self.prepared, self.batch_size = detector, prepared, int(batch_size)
        self.coords = coords or detector.coords(prepared)
        self.baseline_name = baseline if isinstance(baseline, str) else "custom"
        self.pixels = prepared.pixels  # [3, h, w]
        self.baseline = make_baseline(self.pixels, baseline)
        ends = detector(torch.stack([self.pixels, self.baseline]))  # [2, 3, h, w]: one forward for both
        self.target = Target.from_query(ends, query)
        self.original_score, self.baseline_score = (float(v) for v in drise_similarity(self.target, ends))
        self.forwards = 2

    def input_map(self, saliency: np.ndarray) -> np.ndarray:
        """A map over the image (H, W) or the feature grid -> [h, w] over the input (coords.py)."""
        s = np.asarray(saliency)
        if s.shape == self.prepared.input_size and self.coords is None:
            return s.astype(np.float32)
        if self.coords is None:
            raise ValueError("a family model's grid maps need the inspection's coordinates: pass coords=ins.coords")
        return self.coords.map_to_input(s)

    def scores(self, images: torch.Tensor, progress: Optional[Progress] = None, done: int = 0,
               total: int = 0) -> np.ndarray:
        """[N, 3, h, w] -> [N] D-RISE scores, in batches of batch_size (one forward each)."""
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start:start + self.batch_size]
            out.append(drise_similarity(self.target, self.detector(batch)))
            self.forwards += batch.shape[0]
            if progress is not None:
                progress(done + start + batch.shape[0], total or images.shape[0])
        return torch.cat(out).numpy() if out else np.zeros(0)

    def curves(self, input_map: np.ndarray, steps: int = 20, progress: Optional[Progress] = None,
               seed: int = 0) -> FaithfulnessResult:
        """Deletion and insertion of one map [h, w] over the input, K = steps."""
        if steps < 2:
            raise ValueError(f"steps={steps} must be at least 2")
        if tuple(input_map.shape) != self.prepared.input_size:
            raise ValueError(f"map of shape {input_map.shape}; expected the input size {self.prepared.input_size}")
        ranks = pixel_ranks(input_map, seed)  # [h, w]
        counts = torch.round(torch.arange(1, steps) * ranks.numel() / steps).long()  # [K - 1] interior steps
        first = ranks[None] < counts[:, None, None]  # [K - 1, h, w]: the most salient pixels
        x, base = self.pixels[None], self.baseline[None]
        deleted = torch.where(first[:, None], base, x)  # [K - 1, 3, h, w]
        inserted = torch.where(first[:, None], x, base)
        before = self.forwards
        scores = self.scores(torch.cat([deleted, inserted]), progress)
        k = steps - 1
        deletion = np.concatenate([[self.original_score], scores[:k], [self.baseline_score]])
        insertion = np.concatenate([[self.baseline_score], scores[k:], [self.original_score]])
        fractions = np.concatenate([[0.0], counts.numpy() / ranks.numel(), [1.0]])
        return FaithfulnessResult(fractions, deletion, insertion, area_under(fractions, deletion),
                                  area_under(fractions, insertion), self.baseline_name, self.forwards - before)


def faithfulness(model, image, query: int, saliency: np.ndarray, steps: int = 20, baseline="blur",
                 batch_size: int = 8, coords: CoordinateMap | None = None,
                 progress: Optional[Progress] = None) -> FaithfulnessResult:
    """Deletion and insertion curves of `saliency` for detection `query` of `model` (a DETR or a
    FamilyModel) on `image` (any image source, or an Inspection, whose coords then place grid maps).

    saliency: [H, W] over the image's pixels or [fh, fw] over the model's feature grid (DETR's grid is
    known; a family model's needs coords= or an inspection as `image`). baseline: "blur" (default, see the
    module docstring), "mean", or a [3, h, w] normalised tensor. One forward per batch of batch_size images;
    2 (steps - 1) + 2 forwards in all.
    """
    if hasattr(image, "coords") and hasattr(image, "image"):
        coords, image = coords or image.coords, image.image
    detector = Detector(model)
    probe = Probe(detector, detector.prepare(image), query, baseline, batch_size, coords)
    result = probe.curves(probe.input_map(saliency), steps, progress)
    return FaithfulnessResult(result.fractions, result.deletion, result.insertion, result.deletion_auc,
                              result.insertion_auc, result.baseline, probe.forwards)
