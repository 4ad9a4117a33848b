"""The DETR family through `transformers`: Conditional DETR, DAB-DETR, Deformable DETR, RT-DETR(v2), D-FINE,
DEIMv2, LW-DETR, RF-DETR. Registry, loading, capture of the deformable attention, per-layer predictions, and
the inspection results the app slices.

    fm = load_family_model("path/to/folder")     # or a Hub id; preprocessing from its preprocessor_config.json
    ins = inspect_family(fm, "photo.jpg")        # one forward pass, everything kept
    ins.sampling_points(query=5, layer=-1)        # deformable models: points in pixels, weights, levels
    capabilities(ins).reason("encoder")           # None, or the one line to show instead of the view
"""
from .capabilities import VIEWS, Capabilities, capabilities
from .capture import DeformableCall, FamilyCapture, capture_family
from .deformable import DeformableSampling, SamplingPoints
from .inspect import FamilyInspection, inspect_any, inspect_family
from .inspection import DeformableInspection, DenseFamilyInspection
from .loading import FamilyModel, is_family_source, load_family_model, load_model, open_any
from .registry import FAMILY, FamilySpec, spec_for, views_table
from .scoring import layer_probabilities

__all__ = [
    "VIEWS", "Capabilities", "capabilities", "DeformableCall", "FamilyCapture", "capture_family",
    "DeformableSampling", "SamplingPoints", "FamilyInspection", "inspect_any", "inspect_family", "DeformableInspection",
    "DenseFamilyInspection", "FamilyModel", "is_family_source", "load_family_model", "open_any", "FAMILY",
    "FamilySpec",
    "spec_for", "views_table", "layer_probabilities",
]
