"""Inspection results for the DETR family, with the interface of DETR's `Inspection` (the app and viz slice
them the same way) plus the family's own: reference points, sampling points, capabilities.

Every [fh, fw] map a result returns lies on `ins.coords`' grid (for multi-scale models, the common grid at
the finest stride), so `viz.overlay(image, map, ins.coords)` draws any of them.

- `DenseFamilyInspection` (Conditional DETR, DAB-DETR): DETR's `Inspection` with sigmoid scores and each
  query's reference point (Conditional DETR) or anchor box per layer (DAB-DETR).
- `DeformableInspection` (Deformable DETR, RT-DETR(v2), D-FINE, DEIMv2, LW-DETR, RF-DETR): sampling points per
  layer, query, head, level and point; `decoder_map` splats their weights (see family/deformable.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image

from ..inspection.compact import QuantizedProbabilities
from ..inspection.coords import CoordinateMap
from ..inspection.inspection import Head, Inspection, select_heads
from .capabilities import (DECODER_SELF_ATTENTION, DETR_ONLY_TEACHING, ENCODER, ENCODER_INCOMING,
                           ENCODER_SAMPLING_POINTS, SAMPLING_POINTS, Capabilities)
from .deformable import DeformableSampling, SamplingPoints
from .registry import DEFORMABLE, DENSE_COARSEST, FamilySpec
from .scoring import FamilyScoring

DETR_ONLY = "ablation and explanation re-run DETR's own modules: DETR checkpoints only for now"


def _box_corners(box: np.ndarray) -> np.ndarray:
    """cx, cy, w, h [..., 4] -> corners x0, y0, x1, y1 [..., 4] in the same (normalised) units."""
    return np.concatenate([box[..., :2] - box[..., 2:4] / 2, box[..., :2] + box[..., 2:4] / 2], axis=-1)


@dataclass
class DenseFamilyInspection(FamilyScoring, Inspection):
    """DETR's `Inspection` for Conditional DETR and DAB-DETR: the same dense maps, sigmoid scores.

    references [L, Q, 2 | 4]: normalised to the input like boxes; Conditional DETR's reference point (the
    same in every layer) or DAB-DETR's anchor box (cx, cy, w, h) that layer L started from.
    """

    spec: Optional[FamilySpec] = None
    references: Optional[np.ndarray] = None
    score_kind: str = "sigmoid"

    def reference_point(self, query: int, layer: int = -1) -> tuple[float, float]:
        """(x, y) in original pixels: the query's reference point (or anchor centre) at `layer`."""
        x, y = self.coords.image_points_to_pixels(self.references[layer, query, :2])
        return float(x), float(y)

    def reference_box(self, query: int, layer: int = -1) -> tuple[float, float, float, float] | None:
        """x0, y0, x1, y1 in original pixels of the anchor box at `layer` (DAB-DETR), else None."""
        if self.references.shape[-1] < 4:
            return None
        return tuple(float(v) for v in self.coords.boxes_to_pixels(self.references[layer, query])[0])

    @property
    def capabilities(self) -> Capabilities:
        layers, heads = self.decoder_cross_attention.shape[:2]
        enc_layers, enc_heads = self.encoder_attention.shape[:2]
        return Capabilities(
            self.spec.model_type, self.spec.title, int(layers), int(heads), 1, int(enc_layers), int(enc_heads),
            False, True, False, self.score_kind,
            ((SAMPLING_POINTS, f"{self.spec.title} attends densely: every cell gets a weight, shown as the heatmap"),
             (ENCODER_SAMPLING_POINTS, f"{self.spec.title}'s encoder attends densely"),
             (DETR_ONLY_TEACHING, DETR_ONLY)))


@dataclass
class DeformableInspection(FamilyScoring):
    """Everything one forward pass of a deformable DETR-family model computed for one image (numpy float32).

    layer_logits [L, Q, C], layer_boxes [L, Q, 4] (normalised cx, cy, w, h); decoder: the decoder's sampling
    (`DeformableSampling`); decoder_self_attention [L, heads, Q, Q] or None. Encoder, where it has an answer:
    encoder_sampling (Deformable DETR's deformable encoder; its queries are the cells of every level, level
    by level) or encoder_attention [L_enc, heads, N, N] (RT-DETR-style AIFI: dense on level encoder_level).
    """

    image: Image.Image
    coords: CoordinateMap
    layer_logits: np.ndarray
    layer_boxes: np.ndarray
    class_names: list[str]
    spec: FamilySpec
    decoder: DeformableSampling
    decoder_self_attention: Optional[np.ndarray] = None
    encoder_sampling: Optional[DeformableSampling] = None
    encoder_attention: Optional[QuantizedProbabilities] = None
    encoder_level: Optional[int] = None
    score_kind: str = "sigmoid"
    _cache: dict = field(default_factory=dict, repr=False)

    image_size = property(lambda self: self.coords.image_size)
    input_size = property(lambda self: self.coords.input_size)
    feature_size = property(lambda self: self.coords.feature_size)
    logits = property(lambda self: self.layer_logits[-1])
    boxes = property(lambda self: self.layer_boxes[-1])
    num_queries = property(lambda self: self.layer_logits.shape[1])

    def class_name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class {label}"

    # --- decoder -------------------------------------------------------------------------------------
    def decoder_map(self, query: int, layer: int = -1, head: Head = None, level: int | None = None) -> np.ndarray:
        """[fh, fw]: the query's sampling weights splatted bilinearly onto the common grid (each head's map sums
        to 1, or to that level's share with `level`); head None/'mean', 'max' or an index."""
        return self.decoder.splat(self.coords, query, layer, head, level)

    def sampling_points(self, query: int, layer: int = -1, head: int | None = None,
                        level: int | None = None) -> SamplingPoints:
        """The query's sampling points in original pixels, with weights, levels and heads."""
        return self.decoder.points(self.coords, query, layer, head, level)

    def reference_point(self, query: int, layer: int = -1) -> tuple[float, float]:
        """(x, y) in original pixels where the query's points start from at `layer` (its reference point or
        the centre of its reference box), as handed to the attention (on the finest level's grid)."""
        x, y = self.coords.normalised_to_pixels(self.decoder.references[layer, query, 0, :2], 0)
        return float(x), float(y)

    def reference_box(self, query: int, layer: int = -1) -> tuple[float, float, float, float] | None:
        """x0, y0, x1, y1 in original pixels of the reference box the query's points scale with at `layer`,
        or None for models with reference points only (Deformable DETR without box refinement)."""
        reference = self.decoder.references[layer, query, 0]
        if reference.shape[-1] < 4:
            return None
        corners = self.coords.normalised_to_pixels(_box_corners(reference).reshape(2, 2), 0)  # [2, 2]
        return tuple(float(v) for v in corners.reshape(-1))

    def attention_in_box(self, query: int, layer: int = -1, grow_cells: float = 1.0) -> np.ndarray:
        """[heads]: each head's share of sampling weight (splatted) inside the query's box at `layer`, grown
        by `grow_cells` cells of the common grid."""
        box = self.coords.boxes_to_pixels(self.layer_boxes[layer][query])[0]
        coverage = self.coords.box_cell_coverage(tuple(box), grow_cells)  # [fh, fw]
        splats = self.decoder.head_splats(self.coords, query, layer).astype(np.float64)  # [heads, fh, fw]
        return ((splats * coverage).sum((1, 2)) / splats.sum((1, 2))).astype(np.float32)

    # --- encoder -------------------------------------------------------------------------------------
    def encoder_map(self, x: float, y: float, layer: int = -1, head: Head = None, incoming: bool = False,
                    query_level: int = 0) -> np.ndarray:
        """[fh, fw] on the common grid: where the location under original pixel (x, y) attends (AIFI: the map
        of its cell on the coarsest level, spread evenly over the common cells it covers) or samples
        (deformable encoder: the splat of its points; `query_level` picks which level's query at (x, y))."""
        reason = self.capabilities.reason(ENCODER_INCOMING if incoming else ENCODER)
        if reason:
            raise ValueError(reason)
        if self.encoder_sampling is not None:
            return self.encoder_sampling.splat(self.coords, self._encoder_query(x, y, query_level), layer, head)
        level = self.encoder_level
        index = self.coords.level_cell_index(*self.coords.pixel_to_level_cell(x, y, level), level)
        att = self.encoder_attention
        maps = att[layer, :, :, index] if incoming else att[layer, :, index, :]  # [heads, N]
        return self._spread(select_heads(maps, head), level)

    def encoder_sampling_points(self, x: float, y: float, layer: int = -1, head: int | None = None,
                                level: int | None = None, query_level: int = 0) -> SamplingPoints:
        """The sampling points of the deformable encoder's query at original pixel (x, y) on `query_level`."""
        reason = self.capabilities.reason(ENCODER_SAMPLING_POINTS)
        if reason:
            raise ValueError(reason)
        return self.encoder_sampling.points(self.coords, self._encoder_query(x, y, query_level), layer, head, level)

    def _encoder_query(self, x: float, y: float, query_level: int) -> int:
        """Index of the encoder query at pixel (x, y) on `query_level` (queries are levels' cells, in order)."""
        level = query_level % len(self.coords.levels)
        start = sum(lv.size[0] * lv.size[1] for lv in self.coords.levels[:level])
        return start + self.coords.level_cell_index(*self.coords.pixel_to_level_cell(x, y, level), level)

    def _spread(self, level_map: np.ndarray, level: int) -> np.ndarray:
        """[h_l * w_l] on `level` -> [fh, fw] on the common grid, each cell's value spread over r x r cells."""
        h, w = self.coords.level(level).size
        r = self.coords.level_scale(level)
        out = np.zeros(self.coords.feature_size, dtype=np.float32)
        spread = np.repeat(np.repeat(level_map.reshape(h, w), r, 0), r, 1) / (r * r)
        out[:spread.shape[0], :spread.shape[1]] = spread
        return out

    # --- what this result can show ---------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        spec, unavailable = self.spec, [(DETR_ONLY_TEACHING, DETR_ONLY)]
        if self.encoder_sampling is not None:
            enc_layers, enc_heads = self.encoder_sampling.layers, self.encoder_sampling.heads
            unavailable.append((ENCODER_INCOMING, "a deformable encoder has no dense map to read backwards"))
        elif self.encoder_attention is not None:
            enc_layers, enc_heads = self.encoder_attention.shape[:2]
            unavailable.append((ENCODER_SAMPLING_POINTS, f"{spec.title}'s encoder (AIFI) attends densely"))
        else:
            enc_layers = enc_heads = 0
            why = (f"{spec.title} has no transformer encoder: its backbone feeds the decoder directly"
                   if spec.encoder not in (DEFORMABLE, DENSE_COARSEST) else "the encoder's attention was not captured")
            unavailable += [(ENCODER, why), (ENCODER_INCOMING, why), (ENCODER_SAMPLING_POINTS, why)]
        if self.decoder_self_attention is None:
            unavailable.append((DECODER_SELF_ATTENTION, "the decoder's self-attention was not returned"))
        return Capabilities(
            spec.model_type, spec.title, self.decoder.layers, self.decoder.heads, self.decoder.levels,
            int(enc_layers), int(enc_heads), True, self.encoder_attention is not None,
            self.encoder_sampling is not None, self.score_kind, tuple(unavailable))

