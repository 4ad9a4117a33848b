"""One forward pass with full attention capture; cheap queries on the result (the app only slices it)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image

from .capture import capture_attention
from .compact import QuantizedProbabilities
from .coords import CoordinateMap
from ..model.preprocess import ImageSource, image_to_tensor, load_image
from ..model.twin import inference_twin

Head = Union[None, int, str]  # None or "mean": mean over heads; "max": max over heads; int: one head


@dataclass(frozen=True)
class Detection:
    query: int
    label: int
    name: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def select_heads(maps: np.ndarray, head: Head) -> np.ndarray:
    """maps [heads, ...] -> [...]: mean (None/"mean"), max ("max") or one head (int). Shared by the DETR-family results."""
    if head is None or head == "mean":
        return maps.mean(0)
    if head == "max":
        return maps.max(0)
    if isinstance(head, (int, np.integer)) and -maps.shape[0] <= head < maps.shape[0]:
        return maps[head]
    raise ValueError(f"head={head!r}: use None/'mean', 'max', or an index in 0..{maps.shape[0] - 1}")


@dataclass
class Inspection:
    """Everything one forward pass of DETR computed for one image. All arrays are numpy float32.

    logits [Q, C+1], boxes [Q, 4] (normalised cx, cy, w, h): last decoder layer.
    layer_logits [L_dec, Q, C+1], layer_boxes [L_dec, Q, 4]: every decoder layer.
    encoder_attention [L_enc, heads, fh*fw, fh*fw]; decoder_cross_attention [L_dec, heads, Q, fh*fw];
    decoder_self_attention [L_dec, heads, Q, Q]. Rows sum to 1 (float32 softmax: within ~1e-6).
    encoder_attention, the bulk of it, is kept in 16-bit fixed point (`QuantizedProbabilities`): each value
    within 1.7e-5 of the float32 map, and every row, decoded, sums to 1 within 1e-6 (2e-7 summed in float64).
    Index it like an array to get float32, or np.asarray() it whole.
    """

    image: Image.Image  # the RGB, upright image the model saw (before resizing)
    coords: CoordinateMap
    layer_logits: np.ndarray
    layer_boxes: np.ndarray
    encoder_attention: QuantizedProbabilities
    decoder_cross_attention: np.ndarray
    decoder_self_attention: np.ndarray
    class_names: list[str]
    _probs: Optional[np.ndarray] = field(default=None, repr=False)

    image_size = property(lambda self: self.coords.image_size)
    input_size = property(lambda self: self.coords.input_size)
    feature_size = property(lambda self: self.coords.feature_size)
    logits = property(lambda self: self.layer_logits[-1])
    boxes = property(lambda self: self.layer_boxes[-1])
    num_queries = property(lambda self: self.layer_logits.shape[1])

    @property
    def probabilities(self) -> np.ndarray:
        """[Q, C+1] softmax of the last layer's logits; the last column is "no object"."""
        if self._probs is None:
            self._probs = _softmax(self.logits.astype(np.float64)).astype(np.float32)
        return self._probs

    def class_name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class {label}"

    def detections(self, threshold: float = 0.7, layer: int = -1) -> list[Detection]:
        """Queries whose best real-class probability exceeds threshold, best first."""
        probs = self.probabilities if layer == -1 else _softmax(self.layer_logits[layer].astype(np.float64))
        scores, labels = probs[:, :-1].max(-1), probs[:, :-1].argmax(-1)
        pixel_boxes = self.coords.boxes_to_pixels(self.layer_boxes[layer])
        keep = [q for q in np.argsort(-scores, kind="stable") if scores[q] > threshold]
        return [
            Detection(int(q), int(labels[q]), self.class_name(int(labels[q])), float(scores[q]),
                      tuple(float(v) for v in pixel_boxes[q]))
            for q in keep
        ]

    def decoder_map(self, query: int, layer: int = -1, head: Head = None) -> np.ndarray:
        """[fh, fw]: where `query` looks in the image (decoder cross-attention)."""
        if not -self.num_queries <= query < self.num_queries:
            raise ValueError(f"query={query} out of range 0..{self.num_queries - 1}")
        maps = self.decoder_cross_attention[layer, :, query]  # [heads, fh*fw]
        return select_heads(maps, head).reshape(self.feature_size)

    def attention_in_box(self, query: int, layer: int = -1, grow_cells: float = 1.0) -> np.ndarray:
        """[heads]: the share of each head's cross-attention of ``query`` that falls inside the box the
        query predicts at that layer, grown by ``grow_cells`` feature cells on every side. The mean over
        heads is the share of the head-mean map (the weighting is linear)."""
        if not -self.num_queries <= query < self.num_queries:
            raise ValueError(f"query={query} out of range 0..{self.num_queries - 1}")
        box = self.coords.boxes_to_pixels(self.layer_boxes[layer][query])[0]  # x0, y0, x1, y1
        coverage = self.coords.box_cell_coverage(tuple(box), grow_cells).reshape(-1)  # [fh*fw]
        maps = self.decoder_cross_attention[layer, :, query].astype(np.float64)  # [heads, fh*fw]
        return (maps @ coverage / maps.sum(-1)).astype(np.float32)

    def encoder_map(self, x: float, y: float, layer: int = -1, head: Head = None,
                    incoming: bool = False) -> np.ndarray:
        """[fh, fw]: where the feature cell under original pixel (x, y) attends in the encoder.

        incoming=True gives the other direction: how much every location attends to that cell.
        """
        idx = self.coords.cell_index(*self.coords.pixel_to_cell(x, y))
        att = self.encoder_attention
        maps = att[layer, :, :, idx] if incoming else att[layer, :, idx, :]  # [heads, HW]
        return select_heads(maps, head).reshape(self.feature_size)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Inspect what the model does at inference: a model left in training mode would show maps with
    dropout applied, different on every call. The caller's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _stack(maps: list[torch.Tensor]) -> np.ndarray:
    """L tensors [1, heads, N, S] -> [L, heads, N, S] float32 numpy (batch of one dropped)."""
    return torch.stack(maps)[:, 0].float().numpy()


def inspect_image(model: torch.nn.Module, image: ImageSource, fast: bool = True) -> Inspection:
    """Run `model` once on `image` (PIL image, HxWx3 uint8 array, path or bytes) and keep all it computed.

    fast=True (default): what runs is the model's cached inference twin (`detr_core.inference_twin`: batch
    norms folded, channels-last; the same numbers up to float rounding, built on the first call and rebuilt
    whenever the model's weights change); `model` itself is never modified, nor switched to eval mode.
    fast=False: `model` itself runs, in eval mode (its mode is restored afterwards).
    A DETR-family model (a `FamilyModel` from `load_model`) is inspected as `inspect_family` does.
    """
    from ..family.loading import FamilyModel  # here: the family package builds on this module
    if isinstance(model, FamilyModel):
        from ..family.inspect import inspect_family
        return inspect_family(model, image)
    runner = inference_twin(model) if fast else model
    pil = load_image(image)
    x = image_to_tensor(pil, model.preprocess)[None]  # [1, 3, h, w]
    device = next(runner.parameters()).device
    with torch.inference_mode(), eval_mode(runner), capture_attention(runner) as maps:
        out = runner(x.to(device))
    layer_logits = torch.stack([a["pred_logits"] for a in out["aux_outputs"]] + [out["pred_logits"]])
    layer_boxes = torch.stack([a["pred_boxes"] for a in out["aux_outputs"]] + [out["pred_boxes"]])
    n_cells = maps.encoder[0].shape[-1]
    fh, fw = _feature_grid(x.shape[-2:], model.stride, n_cells)
    coords = CoordinateMap((pil.height, pil.width), tuple(x.shape[-2:]), (fh, fw), model.stride)
    return Inspection(
        image=pil, coords=coords,
        layer_logits=layer_logits[:, 0].float().cpu().numpy(),  # [L, Q, C+1]
        layer_boxes=layer_boxes[:, 0].float().cpu().numpy(),  # [L, Q, 4]
        encoder_attention=QuantizedProbabilities.from_tensors([m.cpu() for m in maps.encoder]),
        decoder_cross_attention=_stack([m.cpu() for m in maps.decoder_cross]),
        decoder_self_attention=_stack([m.cpu() for m in maps.decoder_self]),
        class_names=list(model.class_names),
    )


def _feature_grid(input_size, stride: int, n_cells: int) -> tuple[int, int]:
    """Each stride-2 convolution rounds up, so the grid is ceil(h / stride) x ceil(w / stride)."""
    h, w = input_size
    fh, fw = -(-h // stride), -(-w // stride)
    assert fh * fw == n_cells, (fh, fw, n_cells)
    return fh, fw
