"""Every decoder layer's class logits and boxes, read the way each model's own detection head reads them.

The family refines boxes layer by layer, but only RT-DETR(v2) returns every layer's logits and boxes at
inference; the others compute them only for the auxiliary loss. Here each model's own head modules (and the
helper functions of its transformers module: `inverse_sigmoid`, `refine_bboxes`) are applied to the per-layer
hidden states and references the model returned, in the arrangement its `*ForObjectDetection.forward` uses.
The last layer must reproduce the model's own `logits` and `pred_boxes`: `layer_predictions` checks that on
every call, so a transformers release that changes a head fails loudly instead of showing wrong boxes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from .capture import FamilyCapture

TOLERANCE = 1e-4  # last layer vs the model's own outputs (the same operations, maybe in another order)


@dataclass
class LayerPredictions:
    """logits [L, B, Q, C]; boxes [L, B, Q, 4] normalised cx, cy, w, h; references [L, B, Q, 2 | 4] or None:
    each layer's reference point or anchor box (dense models; deformable ones keep theirs in the capture)."""

    logits: torch.Tensor
    boxes: torch.Tensor
    references: torch.Tensor | None = None


def _helpers(model):
    return sys.modules[type(model).__module__]


def _conditional(model, out, capture: FamilyCapture) -> LayerPredictions:
    base = capture.base_output
    layernorm = model.model.decoder.layernorm
    if getattr(base, "intermediate_hidden_states", None) is not None:  # auxiliary_loss models keep them
        hidden = base.intermediate_hidden_states  # [L, B, Q, d], already normalised
    else:  # decoder_hidden_states: the decoder input, then every layer's output
        hidden = torch.stack([layernorm(h) for h in out.decoder_hidden_states[1:]])  # [L, B, Q, d]
    reference = base.reference_points.transpose(0, 1)  # [Q, B, 2] -> [B, Q, 2]
    boxes = model.bbox_predictor(hidden)  # [L, B, Q, 4]
    boxes[..., :2] += _helpers(model).inverse_sigmoid(reference)
    references = reference.expand(hidden.shape[0], *reference.shape)
    return LayerPredictions(model.class_labels_classifier(hidden), boxes.sigmoid(), references)


def _dab(model, out, capture: FamilyCapture) -> LayerPredictions:
    base = capture.base_output
    hidden, anchors = base.intermediate_hidden_states, base.reference_points  # [L, B, Q, d], [L, B, Q, 4]
    query_dim = model.config.query_dim
    boxes = model.bbox_predictor(hidden)
    boxes[..., :query_dim] += _helpers(model).inverse_sigmoid(anchors)
    return LayerPredictions(model.class_embed(hidden), boxes.sigmoid(), anchors)


def _deformable(model, out, capture: FamilyCapture) -> LayerPredictions:
    hidden = out.intermediate_hidden_states  # [B, L, Q, d]
    inverse_sigmoid = _helpers(model).inverse_sigmoid
    logits, boxes = [], []
    for layer in range(hidden.shape[1]):
        reference = out.init_reference_points if layer == 0 else out.intermediate_reference_points[:, layer - 1]
        delta = model.bbox_embed[layer](hidden[:, layer])  # [B, Q, 4]
        if reference.shape[-1] == 4:
            delta = delta + inverse_sigmoid(reference)
        else:
            delta[..., :2] += inverse_sigmoid(reference)
        logits.append(model.class_embed[layer](hidden[:, layer]))
        boxes.append(delta.sigmoid())
    return LayerPredictions(torch.stack(logits), torch.stack(boxes))


def _intermediate(model, out, capture: FamilyCapture) -> LayerPredictions:
    # RT-DETR(v2) return them: intermediate_logits [B, L, Q, C], intermediate_reference_points [B, L, Q, 4]
    return LayerPredictions(out.intermediate_logits.transpose(0, 1), out.intermediate_reference_points.transpose(0, 1))


def _fdr(model, out, capture: FamilyCapture) -> LayerPredictions:
    """D-FINE / DEIMv2 score only their last layer at inference (with the quality estimator LQE). Each earlier
    layer's box is the reference box it hands to the next layer's attention; its logits come from its own
    class head (before LQE, as in training)."""
    decoder = model.model.decoder
    layers = model.config.decoder_layers
    if decoder.eval_idx != layers - 1:
        raise NotImplementedError(f"{type(model).__name__} with eval_idx={decoder.eval_idx} (not the last layer)")
    hidden = out.intermediate_hidden_states  # [L, B, Q, d]
    logits = [decoder.class_embed[i](hidden[i]) for i in range(layers - 1)] + [out.logits]
    boxes = [capture.decoder[i + 1].reference_points[:, :, 0, :4] for i in range(layers - 1)] + [out.pred_boxes]
    return LayerPredictions(torch.stack(logits), torch.stack(boxes))


def _lw(model, out, capture: FamilyCapture) -> LayerPredictions:
    hidden = out.intermediate_hidden_states  # [L, B, Q, d]
    references = out.intermediate_reference_points  # [1, B, Q, 4]: the same boxes for every layer
    boxes = _helpers(model).refine_bboxes(references, model.bbox_embed(hidden))
    return LayerPredictions(model.class_embed(hidden), boxes)


_READERS = {"conditional": _conditional, "dab": _dab, "deformable": _deformable, "intermediate": _intermediate,
            "fdr": _fdr, "lw": _lw}


def layer_predictions(layer_heads: str, model, out, capture: FamilyCapture) -> LayerPredictions:
    """Per-layer logits and boxes for a model whose spec says `layer_heads`; the last layer is checked
    against the model's own `out.logits` / `out.pred_boxes`."""
    predictions = _READERS[layer_heads](model, out, capture)
    for name, mine, theirs in (("logits", predictions.logits[-1], out.logits),
                               ("boxes", predictions.boxes[-1], out.pred_boxes)):
        error = (mine.float() - theirs.float()).abs().max().item()
        if not error <= TOLERANCE:
            raise RuntimeError(f"{type(model).__name__}: last-layer {name} read from the per-layer heads differ from"
                               f" the model's own by {error:.2e}; this transformers version is not supported")
    return predictions
