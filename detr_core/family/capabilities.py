"""What each inspection can show: the one place views ask before they draw, for DETR and the family alike.

`capabilities(ins)` answers for any inspection result (DETR's `Inspection`, `DenseFamilyInspection`,
`DeformableInspection`): layer and head counts for the selectors, and for every view either "available" or a
one-line reason to show instead of the view (never an error).
"""
from __future__ import annotations

from dataclasses import dataclass

# The views an app may offer. A view missing from `unavailable` is available.
DECODER_HEATMAP = "decoder_heatmap"  # decoder_map(query, layer, head)
SAMPLING_POINTS = "sampling_points"  # sampling_points(query, layer, head, level)
REFERENCE = "reference"  # reference_point / reference_box of each query
ENCODER = "encoder"  # encoder_map(x, y, layer, head)
ENCODER_INCOMING = "encoder_incoming"  # encoder_map(..., incoming=True)
ENCODER_SAMPLING_POINTS = "encoder_sampling_points"  # encoder_sampling_points(x, y, ...)
LAYER_BY_LAYER = "layer_by_layer"  # layer_logits / layer_boxes, detections(layer=...)
DECODER_SELF_ATTENTION = "decoder_self_attention"
DETR_ONLY_TEACHING = "detr_only_teaching"  # ablation and explanation views that re-run DETR's own modules
VIEWS = (DECODER_HEATMAP, SAMPLING_POINTS, REFERENCE, ENCODER, ENCODER_INCOMING, ENCODER_SAMPLING_POINTS,
         LAYER_BY_LAYER, DECODER_SELF_ATTENTION, DETR_ONLY_TEACHING)


@dataclass(frozen=True)
class Capabilities:
    """Sizes for the selectors and the views' availability.

    decoder_layers / heads: the decoder's cross-attention; levels: feature levels it reads (1 for dense
    decoders); encoder_layers / encoder_heads: 0 when there is no encoder view. score_kind: "softmax" (DETR,
    a "no object" class) or "sigmoid" (the family's focal-loss classifiers).
    """

    model_type: str
    title: str
    decoder_layers: int
    heads: int
    levels: int
    encoder_layers: int
    encoder_heads: int
    is_deformable: bool
    has_dense_encoder: bool
    has_deformable_encoder: bool
    score_kind: str
    unavailable: tuple[tuple[str, str], ...] = ()  # (view, one-line reason)

    def __post_init__(self):
        unknown = [view for view, _ in self.unavailable if view not in VIEWS]
        if unknown:
            raise ValueError(f"unknown views {unknown}; known: {VIEWS}")

    def supports(self, view: str) -> bool:
        return self.reason(view) is None

    def reason(self, view: str) -> str | None:
        """None if `view` is available, else the one line to show in its place."""
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; known: {VIEWS}")
        return dict(self.unavailable).get(view)


def capabilities(ins) -> Capabilities:
    """The capabilities of any inspection result (family results carry their own; DETR's are read here)."""
    own = getattr(ins, "capabilities", None)
    if isinstance(own, Capabilities):
        return own
    layers, heads = ins.decoder_cross_attention.shape[:2]
    enc_layers, enc_heads = ins.encoder_attention.shape[:2]
    dense = "DETR's attention is dense: every cell gets a weight, shown as the heatmap"
    return Capabilities(
        "detr", "DETR", int(layers), int(heads), 1, int(enc_layers), int(enc_heads), False, True, False, "softmax",
        ((SAMPLING_POINTS, dense), (ENCODER_SAMPLING_POINTS, dense),
         (REFERENCE, "DETR's queries have no reference point: they are learned embeddings")))
