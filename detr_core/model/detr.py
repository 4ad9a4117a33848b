"""The DETR detector and its one builder: config -> modules."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbone import ResNetBackbone
from .config import DETRConfig, PreprocessConfig
from .position import BackboneWithPosition, LearnedPositionEncoding, SinePositionEncoding
from .transformer import Transformer


class MLP(nn.Module):
    """Linear layers with ReLU between them (none after the last)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


class DETR(nn.Module):
    """DETR: backbone -> input_proj -> transformer -> class and box heads per decoder layer.

    Attributes beyond the modules: `config` (DETRConfig), `preprocess` (PreprocessConfig),
    `class_names` (list indexed by class id; the extra last logit is "no object"), `hf_origin` (where a model
    opened from the Hugging Face format came from, e.g. whether a mask head was set aside; None otherwise),
    `use_inference_twin` (see below).
    """

    # inspect_image and the teaching views run this model's cached inference twin (model/twin.py: same numbers,
    # faster); False makes them run the model itself (the plain path, e.g. the app's --no-optimize)
    use_inference_twin = True

    def __init__(self, config: DETRConfig, preprocess: PreprocessConfig | None = None,
                 class_names: Sequence[str] | None = None):
        super().__init__()
        d = config.hidden_dim
        body = ResNetBackbone(config)
        position = (SinePositionEncoding(d // 2) if config.position_embedding == "sine"
                    else LearnedPositionEncoding(d // 2))
        self.backbone = BackboneWithPosition([body, position])
        self.input_proj = nn.Conv2d(body.num_channels, d, kernel_size=1)
        self.transformer = Transformer(d, config.nheads, config.enc_layers, config.dec_layers,
                                       config.dim_feedforward, config.dropout, config.pre_norm,
                                       config.decoder_renorm)
        self.query_embed = nn.Embedding(config.num_queries, d)
        self.class_embed = nn.Linear(d, config.num_classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.config = config
        self.preprocess = preprocess or PreprocessConfig()
        self.class_names = list(class_names) if class_names else default_class_names(config.num_classes)
        self.hf_origin = None  # detr_core.weights.hf_model.HFOrigin, set by load_model

    @property
    def stride(self) -> int:
        return self.config.stride

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> dict:
        """pixel_values [B, 3, H, W] normalised; pixel_mask [B, H, W] bool, True on padding.

        Returns {"pred_logits": [B, Q, C+1], "pred_boxes": [B, Q, 4] (cx, cy, w, h in [0, 1] of the unpadded
        image), "aux_outputs": [{"pred_logits", "pred_boxes"} for each earlier decoder layer]}.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be [B, 3, H, W], got {tuple(pixel_values.shape)}")
        if pixel_mask is None:
            b, _, h, w = pixel_values.shape
            pixel_mask = torch.zeros((b, h, w), dtype=torch.bool, device=pixel_values.device)
        features, mask, pos = self.backbone(pixel_values, pixel_mask)
        hs, _ = self.transformer(self.input_proj(features), mask, self.query_embed.weight, pos)
        logits = self.class_embed(hs)  # [L, B, Q, C+1]
        boxes = self.bbox_embed(hs).sigmoid()  # [L, B, Q, 4]
        aux = [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1])]
        return {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "aux_outputs": aux}


def default_class_names(num_classes: int) -> list[str]:
    """COCO names for the 91-id COCO layout, otherwise "class 0", "class 1", ..."""
    from .coco import COCO_CLASS_NAMES

    if num_classes == len(COCO_CLASS_NAMES):
        return list(COCO_CLASS_NAMES)
    return [f"class {i}" for i in range(num_classes)]


def build_model(config: DETRConfig, preprocess: PreprocessConfig | None = None,
                class_names: Sequence[str] | None = None) -> DETR:
    """The one place a DETR is built from its configuration."""
    if class_names is not None and len(class_names) != config.num_classes:
        raise ValueError(
            f"{len(class_names)} class names for num_classes={config.num_classes}; give one name per class id"
        )
    return DETR(config, preprocess, class_names)
