"""A faster CPU copy of a DETR for inspection, with the same outputs up to float rounding.

Two exact rewrites of the backbone, measured in benchmarks/inference.py:
- every batch norm (frozen, or BatchNorm2d in eval) is folded into the convolution before it, so 53 passes
  over large activation maps disappear (y = (W x) * s + t  ==  (W * s) x + t);
- the backbone runs channels-last (NHWC), the layout oneDNN's convolutions use natively, which removes a
  layout conversion around every convolution.
The transformer is untouched, so attention capture hooks the same modules. The copy is for inference only:
its state dict no longer has the official layout, and save_model refuses it.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .detr import DETR

_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Absorb `norm` (per output channel: (x - mean) / sqrt(var + eps) * weight + bias) into `conv`."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # [C_out]
    shift = norm.bias - norm.running_mean * scale
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = shift if conv.bias is None else conv.bias.data * scale + shift
    conv.bias = nn.Parameter(bias.detach().clone())


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every (conv, norm) pair that follows each other in `module`'s children, recursively.

    Pairs are found by name, as torchvision's ResNet names them (convN/bnN, downsample.0/1). -> pairs folded.
    """
    folded = 0
    children = dict(module.named_children())
    for name, child in children.items():
        partner = None
        if isinstance(child, _NORMS):
            partner = children.get(name.replace("bn", "conv")) if name.startswith("bn") else \
                children.get(str(int(name) - 1)) if name.isdigit() else None
        if isinstance(partner, nn.Conv2d):
            _fold(partner, child)
            setattr(module, name, nn.Identity())
            folded += 1
        elif not isinstance(child, _NORMS):
            folded += fold_batch_norms(child)
    return folded


class _ChannelsLast(nn.Module):
    """Wraps the backbone body so its input is NHWC; outputs stay valid tensors in any layout."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body.to(memory_format=torch.channels_last)

    def forward(self, x):
        return self.body(x.contiguous(memory_format=torch.channels_last))


def optimize_for_inference(model: DETR) -> DETR:
    """A copy of `model` in eval mode with batch norms folded and a channels-last backbone."""
    fast = copy.deepcopy(model).eval()
    body = fast.backbone[0]
    count = fold_batch_norms(body.body)
    expected = sum(isinstance(m, _NORMS) for m in model.backbone[0].body.modules())
    assert count == expected, f"folded {count} of {expected} batch norms"
    body.body = _ChannelsLast(body.body)
    fast.inference_only = True  # parameters keep requires_grad: relevance views differentiate through them
    return fast
