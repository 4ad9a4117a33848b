"""DETR Lens core: the DETR model, its weights, attention capture, matcher and set loss.

    model = detr_core.load_model("detr-r50")      # or "shapes", a checkpoint path, a Hugging Face folder or Hub id,
                                                  # a DETR-family model (RT-DETR, Deformable DETR, D-FINE, ...)
    ins = detr_core.inspect_image(model, image)   # one forward pass, every map kept
"""
from .inspection.capture import AttentionMaps, capture_attention
from .weights.checkpoint_io import atomic_save, model_checkpoint, read_checkpoint
from .weights.saving import save_model
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
from .model.preprocess import MAX_IMAGE_PIXELS, image_to_tensor, load_image, pad_batch, postprocess, resized_size
from .weights.loading import BUNDLED, infer_config, load_detr, untrained_model

__all__ = [
    "AttentionMaps", "capture_attention", "atomic_save", "model_checkpoint", "read_checkpoint", "save_model",
    "COCO_CLASS_NAMES", "DETRConfig", "PreprocessConfig", "tiny_config", "CoordinateMap", "DETR",
    "build_model", "MODEL_ZOO", "fetch_checkpoint", "Detection", "Inspection", "inspect_image",
    "MAX_IMAGE_PIXELS", "image_to_tensor", "load_image", "pad_batch", "postprocess", "resized_size", "infer_config",
    "load_detr",
    "untrained_model", "BUNDLED", "bfloat16_is_fast", "compile_backbone_now", "optimize_for_inference", "QuantizedProbabilities",
    "inference_twin", "forget_inference_twin", "Comparison", "Pair", "compare", "nearest_query",
]

# The DETR family through transformers (Conditional/DAB/Deformable DETR, RT-DETR(v2), D-FINE, DEIMv2, LW-DETR,
# RF-DETR): load_model opens them as it opens DETRs (open_any is its earlier name), inspect_image inspects them
# (as inspect_any, inspect_family), capabilities(result) says what a result can show.
from .family import (Capabilities, DeformableInspection, DenseFamilyInspection, FamilyModel, SamplingPoints,
                     capabilities, inspect_any, inspect_family, load_family_model, load_model, open_any)

__all__ += [
    "Capabilities", "DeformableInspection", "DenseFamilyInspection", "FamilyModel", "SamplingPoints",
    "capabilities", "inspect_any", "inspect_family", "load_family_model", "load_model", "open_any",
]

# Faithfulness of saliency maps: deletion/insertion tracked by D-RISE similarity, pointing game, D-RISE maps.
from .faithfulness import FaithfulnessResult, MethodComparison, compare_explanations, faithfulness, pointing_game

__all__ += ["FaithfulnessResult", "MethodComparison", "compare_explanations", "faithfulness", "pointing_game"]
