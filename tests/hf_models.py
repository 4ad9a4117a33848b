"""Tiny Hugging Face DETRs with random weights for the parity tests (transformers and timm are test dependencies).

Every tensor is drawn again from a seeded generator (transformers initialises biases to 0 and norms to 1, which
would hide a swapped bias or norm), and q/k projections are scaled up so attention maps are peaked, not uniform:
a test that compares near-uniform maps could not tell two heads apart.
"""
from __future__ import annotations

import math

import torch

TINY = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10, use_pretrained_backbone=False, dropout=0.0)
# transformers' own ResNet-18 (use_timm_backbone false), as a backbone_config dict
HF_RESNET18 = {"model_type": "resnet", "layer_type": "basic", "depths": [2, 2, 2, 2],
               "hidden_sizes": [64, 128, 256, 512], "out_features": ["stage4"]}


def random_value(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """A value of a sensible scale for a parameter or buffer called `name`."""
    noise = torch.randn(shape, generator=gen)
    if name.endswith("running_var"):
        return 1.0 + 0.2 * noise.abs()
    if name.endswith(("running_mean", "bias")):
        return 0.1 * noise
    if len(shape) == 1:  # batch and layer norm weights
        return 1.0 + 0.2 * noise
    if "embeddings" in name:  # query and learned position embeddings
        return noise
    fan_in = math.prod(shape[1:])
    scale = 2.0 if name.endswith(("q_proj.weight", "k_proj.weight", "in_proj_weight")) else 1.0  # peaked maps
    return noise * scale * math.sqrt(1.0 / fan_in)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every floating-point parameter and buffer of `model` drawn again (in place); returns `model` in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                tensor.copy_(random_value(name, tensor.shape, gen))
    return model.eval()


def build(kind: str = "detr", seed: int = 0, **config):
    """A randomised tiny transformers model: kind "detr", "segmentation" or "table"."""
    import transformers

    classes = {"detr": ("DetrConfig", "DetrForObjectDetection"),
               "segmentation": ("DetrConfig", "DetrForSegmentation"),
               "table": ("TableTransformerConfig", "TableTransformerForObjectDetection")}[kind]
    cfg = getattr(transformers, classes[0])(**{**TINY, **config})
    cfg._attn_implementation = "eager"  # output_attentions needs the eager path
    torch.manual_seed(seed)
    return randomise(getattr(transformers, classes[1])(cfg), seed)


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images in one batch, the second padded bottom and right: pixel_values [2, 3, 96, 128] and the padding
    mask [2, 96, 128] (True on padding)."""
    gen = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(2, 3, 96, 128, generator=gen)
    mask = torch.zeros(2, 96, 128, dtype=torch.bool)
    mask[1, 64:, :] = True
    mask[1, :, 96:] = True
    pixel_values[1][:, mask[1]] = 0.0
    return pixel_values, mask


def reference_outputs(hf_model, pixel_values: torch.Tensor, mask: torch.Tensor):
    """transformers' own forward with every attention map (its pixel_mask is 1 on real pixels)."""
    with torch.no_grad():
        return hf_model(pixel_values=pixel_values, pixel_mask=(~mask).long(), output_attentions=True)


def detection_part(output):
    """(logits, boxes) of a transformers detection or segmentation output."""
    return output.logits, output.pred_boxes
