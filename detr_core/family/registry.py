"""The DETR family models DETR Lens opens through `transformers`, and what each view shows for each of them.

One `FamilySpec` per `model_type` (the field of a Hugging Face `config.json`). Only these types load: a folder
whose config names another type is refused, so nothing but `transformers`' own, named classes is ever built
(never `trust_remote_code`).
"""
from __future__ import annotations

from dataclasses import dataclass

# How the decoder reads the image, and what the encoder view can answer.
DENSE = "dense"  # per-head softmax attention over every cell of one feature map, as in DETR
DEFORMABLE = "deformable"  # per head, a few sampling points on each feature level (Deformable DETR)
DENSE_COARSEST = "dense-coarsest"  # RT-DETR's AIFI: dense self-attention on the coarsest level only
NONE = "none"  # no transformer encoder between backbone and decoder

# Each model's head arrangement for the per-layer predictions (see family/layers.py).
LAYER_HEADS = ("conditional", "dab", "deformable", "intermediate", "fdr", "lw")


@dataclass(frozen=True)
class FamilySpec:
    model_type: str
    title: str
    model_class: str  # a transformers class name
    processor_class: str  # used when the folder has no preprocessor_config.json
    decoder: str  # DENSE or DEFORMABLE
    encoder: str  # DENSE, DEFORMABLE, DENSE_COARSEST or NONE
    layer_heads: str  # one of LAYER_HEADS
    examples: tuple[str, ...] = ()  # well-known Hub ids
    note: str = ""  # one line for the README table

    def __post_init__(self):
        if self.decoder not in (DENSE, DEFORMABLE) or self.encoder not in (DENSE, DEFORMABLE, DENSE_COARSEST, NONE):
            raise ValueError(f"{self.model_type}: unknown decoder/encoder kind {self.decoder}/{self.encoder}")
        if self.layer_heads not in LAYER_HEADS:
            raise ValueError(f"{self.model_type}: unknown layer_heads {self.layer_heads!r}")

    @property
    def decoder_view(self) -> str:
        """What the decoder view shows for this model, in one line."""
        if self.decoder == DENSE:
            return "per-head cross-attention heatmap over the stride-32 grid"
        return "sampling points (per head, level, point; size = weight) and their bilinear splat as a heatmap"

    @property
    def encoder_view(self) -> str:
        """What the encoder view shows for this model, in one line (or why there is none)."""
        return {
            DENSE: "per-head self-attention of the clicked cell (both directions)",
            DEFORMABLE: "the sampling points of the clicked location (deformable encoder) and their splat",
            DENSE_COARSEST: "per-head AIFI self-attention of the clicked cell on the coarsest level (stride 32)",
            NONE: "none: no transformer encoder (the backbone's own attention is not shown)",
        }[self.encoder]


_SPECS = (
    FamilySpec("conditional_detr", "Conditional DETR", "ConditionalDetrForObjectDetection",
               "ConditionalDetrImageProcessor", DENSE, DENSE, "conditional",
               ("microsoft/conditional-detr-resnet-50",),
               "reference point per query (the same in every layer)"),
    FamilySpec("dab-detr", "DAB-DETR", "DabDetrForObjectDetection", "DetrImageProcessor", DENSE, DENSE, "dab",
               ("IDEA-Research/dab-detr-resnet-50",), "anchor box per query, refined layer by layer"),
    FamilySpec("deformable_detr", "Deformable DETR", "DeformableDetrForObjectDetection",
               "DeformableDetrImageProcessor", DEFORMABLE, DEFORMABLE, "deformable",
               ("SenseTime/deformable-detr",), "4 levels (strides 8-64); box refinement / two-stage variants too"),
    FamilySpec("rt_detr", "RT-DETR", "RTDetrForObjectDetection", "RTDetrImageProcessor", DEFORMABLE,
               DENSE_COARSEST, "intermediate", ("PekingU/rtdetr_r50vd",), "640x640 input, no normalisation"),
    FamilySpec("rt_detr_v2", "RT-DETRv2", "RTDetrV2ForObjectDetection", "RTDetrImageProcessor", DEFORMABLE,
               DENSE_COARSEST, "intermediate", ("PekingU/rtdetr_v2_r50vd",),
               "attention read through multi_scale_deformable_attention_v2"),
    FamilySpec("d_fine", "D-FINE", "DFineForObjectDetection", "RTDetrImageProcessor", DEFORMABLE, DENSE_COARSEST,
               "fdr", ("ustc-community/dfine-small-coco",),
               "earlier layers' classes from their own class head (the quality estimator runs on the last only)"),
    FamilySpec("deimv2", "DEIMv2", "Deimv2ForObjectDetection", "RTDetrImageProcessor", DEFORMABLE, DENSE_COARSEST,
               "fdr", (), "HGNetV2 variants with the hybrid encoder; as D-FINE"),
    FamilySpec("lw_detr", "LW-DETR", "LwDetrForObjectDetection", "DeformableDetrImageProcessor", DEFORMABLE, NONE,
               "lw", (), "ViT backbone + projector; reference boxes fixed across layers"),
    FamilySpec("rf_detr", "RF-DETR", "RfDetrForObjectDetection", "RfDetrImageProcessor", DEFORMABLE, NONE, "lw",
               ("Roboflow/rf-detr-base",), "DINOv2 backbone + projector; reference boxes fixed across layers"),
)
FAMILY: dict[str, FamilySpec] = {spec.model_type: spec for spec in _SPECS}

# Image processors a preprocessor_config.json may name (others fall back to the spec's default).
PROCESSOR_CLASSES = frozenset({
    "DetrImageProcessor", "DetrImageProcessorPil", "DetrImageProcessorFast",
    "ConditionalDetrImageProcessor", "ConditionalDetrImageProcessorPil", "ConditionalDetrImageProcessorFast",
    "DeformableDetrImageProcessor", "DeformableDetrImageProcessorPil", "DeformableDetrImageProcessorFast",
    "RTDetrImageProcessor", "RTDetrImageProcessorPil", "RTDetrImageProcessorFast",
    "RfDetrImageProcessor", "RfDetrImageProcessorFast",
})


def spec_for(model_type: str) -> FamilySpec:
    """The spec of `model_type`, or a ValueError listing the supported ones."""
    if model_type not in FAMILY:
        hint = " (plain DETR checkpoints open through detr_core.load_model)" if model_type == "detr" else ""
        raise ValueError(f"model_type {model_type!r} is not a supported DETR-family model{hint};"
                         f" supported: {', '.join(sorted(FAMILY))}")
    return FAMILY[model_type]


def views_table() -> str:
    """The README's table of supported models and what each view shows (Markdown)."""
    rows = ["| Model (`model_type`) | Decoder view | Encoder view | Notes |", "|---|---|---|---|"]
    for spec in _SPECS:
        rows.append(f"| {spec.title} (`{spec.model_type}`) | {spec.decoder_view} | {spec.encoder_view} | {spec.note} |")
    return "\n".join(rows)
