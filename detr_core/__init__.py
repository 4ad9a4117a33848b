"""DETR Lens core: the DETR model, its weights, attention capture, matcher and set loss.

    model = detr_core.load_model("detr-r50")      # or "shapes", or a checkpoint path
    ins = detr_core.inspect_image(model, image)   # one forward pass (of its cached inference twin), every map kept
"""
from .inspection.capture import AttentionMaps, capture_attention
from .weights.checkpoint_io import atomic_save, model_checkpoint, read_checkpoint, save_model
from .model.coco import COCO_CLASS_NAMES
from .model.config import DETRConfig, PreprocessConfig, tiny_config
from .inspection.coords import CoordinateMap
from .model.detr import DETR, build_model
from .weights.zoo import MODEL_ZOO, fetch_checkpoint
from .inspection.inspection import Detection, Inspection, inspect_image
from .inspection.compare import Comparison, Pair, compare, nearest_query
from .inspection.compact import QuantizedProbabilities
from .model.optimize import bfloat16_is_fast, compile_backbone_now, optimize_for_inference
from .model.twin import forget_inference_twin, inference_twin
from .model.preprocess import image_to_tensor, load_image, pad_batch, postprocess, resized_size
from .weights.loading import BUNDLED, infer_config, load_model, untrained_model

__all__ = [
    "AttentionMaps", "capture_attention", "atomic_save", "model_checkpoint", "read_checkpoint", "save_model",
    "COCO_CLASS_NAMES", "DETRConfig", "PreprocessConfig", "tiny_config", "CoordinateMap", "DETR",
    "build_model", "MODEL_ZOO", "fetch_checkpoint", "Detection", "Inspection", "inspect_image",
    "image_to_tensor", "load_image", "pad_batch", "postprocess", "resized_size", "infer_config", "load_model",
    "untrained_model", "BUNDLED", "bfloat16_is_fast", "compile_backbone_now", "optimize_for_inference", "QuantizedProbabilities",
    "inference_twin", "forget_inference_twin", "Comparison", "Pair", "compare", "nearest_query",
]

# The DETR family through transformers (Conditional/DAB/Deformable DETR, RT-DETR(v2), D-FINE, DEIMv2, LW-DETR,
# RF-DETR): open with open_any (or load_family_model), inspect with inspect_any, ask capabilities(result) what it
# can show.
from .family import (Capabilities, DeformableInspection, DenseFamilyInspection, FamilyModel, SamplingPoints,
                     capabilities, inspect_any, inspect_family, load_family_model, open_any)

__all__ += [
    "Capabilities", "DeformableInspection", "DenseFamilyInspection", "FamilyModel", "SamplingPoints",
    "capabilities", "inspect_any", "inspect_family", "load_family_model", "open_any",
]
