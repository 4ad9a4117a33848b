"""`inspect_family(fm, image)`: one forward pass of a DETR-family model, everything it computed kept."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from ..inspection.compact import QuantizedProbabilities
from ..inspection.coords import CoordinateMap
from ..inspection.inspection import Inspection, eval_mode, inspect_image
from ..model.preprocess import ImageSource, load_image
from .capture import FamilyCapture, capture_family
from .deformable import DeformableSampling
from .inspection import DeformableInspection, DenseFamilyInspection
from .layers import LayerPredictions, layer_predictions
from .loading import FamilyModel
from .registry import DEFORMABLE, DENSE, DENSE_COARSEST
from .scoring import SIGMOID, SOFTMAX

FamilyInspection = Union[DenseFamilyInspection, DeformableInspection]
DENSE_STRIDES = (32, 16, 64, 8)  # DETR-style single feature maps: C5, DC5, ...



@dataclass
class CapturedForward:
    """One forward pass of a family model with everything captured, before it is packed into a result.
    sizes: (H, W) original, (h, w) input before padding, (h_pad, w_pad) the input the model ran on."""

    image: Image.Image
    sizes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    out: Any
    capture: FamilyCapture
    predictions: LayerPredictions


def run_captured(fm: FamilyModel, image: ImageSource) -> CapturedForward:
    """Preprocess `image` with the model's own processor and run it once, in eval mode, capturing the
    deformable attention and asking for the dense maps; read every layer's predictions."""
    pil = load_image(image)
    inputs, input_size = fm.prepare(pil)
    extra = {"output_hidden_states": True} if fm.spec.layer_heads == "conditional" else {}
    with torch.inference_mode(), eval_mode(fm.model):
        with capture_family(fm.model) as capture:
            out = fm.model(**inputs, output_attentions=True, **extra)
        predictions = layer_predictions(fm.spec.layer_heads, fm.model, out, capture)
    sizes = (pil.height, pil.width), input_size, tuple(inputs["pixel_values"].shape[-2:])
    return CapturedForward(pil, sizes, out, capture, predictions)


def assemble(fm: FamilyModel, run: CapturedForward) -> FamilyInspection:
    """Pack a captured forward pass into the result the views slice (numpy, on the CPU)."""
    common = dict(image=run.image, class_names=list(fm.class_names), spec=fm.spec,
                  score_kind=_score_kind(fm.model.config), layer_logits=_numpy(run.predictions.logits[:, 0]),
                  layer_boxes=_numpy(run.predictions.boxes[:, 0]))
    if fm.spec.decoder == DENSE:
        return _dense(run.out, run.predictions, run.sizes, common)
    return _deformable(fm, run.out, run.capture, run.sizes, common)


def inspect_family(fm: FamilyModel, image: ImageSource) -> FamilyInspection:
    """Run `fm` once on `image` (PIL image, HxWx3 uint8 array, path or bytes) with its own preprocessing and
    keep every layer's predictions, attention and sampling points (see family/inspection.py)."""
    return assemble(fm, run_captured(fm, image))


def inspect_any(model, image: ImageSource) -> Union[Inspection, FamilyInspection]:
    """DETR (`detr_core.DETR`) or a DETR-family model (`FamilyModel`): the matching inspection of `image`.
    Views ask `capabilities(result)` what it can show."""
    if isinstance(model, FamilyModel):
        return inspect_family(model, image)
    return inspect_image(model, image)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _stack(maps) -> np.ndarray:
    """L tensors [1, heads, N, S] -> [L, heads, N, S] float32 numpy."""
    return torch.stack([m[0] for m in maps]).float().cpu().numpy()


def _score_kind(config) -> str:
    return SIGMOID if getattr(config, "use_focal_loss", True) else SOFTMAX


def _dense_grid(padded_size: tuple[int, int], n_cells: int) -> tuple[tuple[int, int], int]:
    """The (fh, fw) grid and stride of a single feature map of n_cells cells computed from an input of
    `padded_size` (convolutions round up)."""
    h, w = padded_size
    for stride in DENSE_STRIDES:
        if math.ceil(h / stride) * math.ceil(w / stride) == n_cells:
            return (math.ceil(h / stride), math.ceil(w / stride)), stride
    raise RuntimeError(f"{n_cells} attention keys fit no feature grid of the {h}x{w} input at strides {DENSE_STRIDES}")


def _dense(out, predictions, sizes, common) -> DenseFamilyInspection:
    image_size, input_size, padded_size = sizes
    grid, stride = _dense_grid(padded_size, out.cross_attentions[0].shape[-1])
    return DenseFamilyInspection(
        coords=CoordinateMap(image_size, input_size, grid, stride),
        encoder_attention=QuantizedProbabilities.from_tensors([m.float().cpu() for m in out.encoder_attentions]),
        decoder_cross_attention=_stack(out.cross_attentions),  # [L, heads, Q, fh*fw]
        decoder_self_attention=_stack(out.decoder_attentions),  # [L, heads, Q, Q]
        references=_numpy(predictions.references[:, 0]), **common)


def _deformable(fm: FamilyModel, out, capture, sizes, common) -> DeformableInspection:
    image_size, input_size, padded_size = sizes
    coords = CoordinateMap.multi_scale(image_size, input_size, capture.decoder[0].level_sizes, padded_size)
    self_attention = getattr(out, "decoder_attentions", None) or getattr(out, "attentions", None)
    encoder = {}
    if fm.spec.encoder == DEFORMABLE and capture.encoder:
        encoder["encoder_sampling"] = DeformableSampling.from_calls(capture.encoder)
    elif fm.spec.encoder == DENSE_COARSEST and getattr(out, "encoder_attentions", None):
        encoder = _aifi(out.encoder_attentions, coords, fm.model.config)
    return DeformableInspection(
        coords=coords, decoder=DeformableSampling.from_calls(capture.decoder),
        decoder_self_attention=_stack(self_attention) if self_attention else None, **encoder, **common)


def _aifi(maps, coords: CoordinateMap, config) -> dict:
    """RT-DETR-style AIFI self-attention [1, heads, N, N] per layer, on the level whose grid has N cells
    (config.encode_proj_layers names it; the sizes must agree)."""
    levels = list(getattr(config, "encode_proj_layers", None) or [])
    n_cells = maps[0].shape[-1]
    if len(levels) != 1:
        return {}  # several AIFI levels interleave in encoder_attentions; not shown (capabilities says why)
    level = int(levels[0])
    h, w = coords.level(level).size
    if h * w != n_cells:
        raise RuntimeError(f"AIFI attention over {n_cells} cells does not match level {level} ({h}x{w})")
    return {"encoder_attention": QuantizedProbabilities.from_tensors([m.float().cpu() for m in maps]),
            "encoder_level": level}
