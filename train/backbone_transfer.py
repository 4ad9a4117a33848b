"""Start a transformers ResNet backbone from a detr_core DETR's torchvision ResNet (the same network, other names).

``shapes-deformable`` begins with the ResNet-18 of the bundled ``shapes`` DETR: trained on the same generator
and photos, with real batch-norm statistics, which transformers' frozen batch norms then keep. torchvision's
BasicBlock and transformers' ``ResNetBasicLayer`` compute the same function (3x3 conv-BN-ReLU, 3x3 conv-BN,
a 1x1 conv-BN shortcut where the shape changes, the stride on the first conv), so only the names change:

    conv1 / bn1                       -> embedder.embedder.convolution / .normalization
    layer{i}.{j}.conv1 / bn1          -> encoder.stages.{i-1}.layers.{j}.layer.0.convolution / .normalization
    layer{i}.{j}.conv2 / bn2          -> encoder.stages.{i-1}.layers.{j}.layer.1.convolution / .normalization
    layer{i}.{j}.downsample.0 / .1    -> encoder.stages.{i-1}.layers.{j}.shortcut.convolution / .normalization
"""
from __future__ import annotations

import logging
import re

import torch

log = logging.getLogger(__name__)
DETR_BODY = "backbone.0.body."
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
_IN_BLOCK = {"conv1": "layer.0.convolution", "bn1": "layer.0.normalization", "conv2": "layer.1.convolution",
             "bn2": "layer.1.normalization", "downsample.0": "shortcut.convolution",
             "downsample.1": "shortcut.normalization"}
_BLOCK = re.compile(r"layer(\d+)\.(\d+)\.(conv1|bn1|conv2|bn2|downsample\.0|downsample\.1)\.(\w+)$")


def hf_resnet_name(torchvision_name: str) -> str | None:
    """The transformers ResNet name of a torchvision ResNet tensor; None for num_batches_tracked and fc."""
    field = torchvision_name.rsplit(".", 1)[-1]
    if field == "num_batches_tracked" or torchvision_name.startswith("fc."):
        return None
    if torchvision_name.startswith(("conv1.", "bn1.")):
        part = "convolution" if torchvision_name.startswith("conv1.") else "normalization"
        return f"embedder.embedder.{part}.{field}"
    match = _BLOCK.match(torchvision_name)
    if match is None:
        raise ValueError(f"{torchvision_name!r} is not a tensor of a torchvision ResNet")
    stage, block, module, field = match.groups()
    return f"encoder.stages.{int(stage) - 1}.layers.{block}.{_IN_BLOCK[module]}.{field}"


def resnet_state_from_detr(detr_state: dict) -> dict:
    """A DETR's backbone tensors under transformers' ResNet names."""
    out = {}
    for name, value in detr_state.items():
        if name.startswith(DETR_BODY):
            target = hf_resnet_name(name[len(DETR_BODY):])
            if target is not None:
                out[target] = value
    if not out:
        raise ValueError(f"no tensor named {DETR_BODY}...: not a detr_core DETR state dict")
    return out


def load_backbone_from_detr(resnet: torch.nn.Module, source: str) -> int:
    """Copy the ResNet of the detr_core model ``source`` (e.g. "shapes") into the transformers ResNet
    ``resnet``; every tensor of ``resnet`` must be filled with the right shape. Returns how many were."""
    from detr_core import load_model

    state = resnet_state_from_detr(load_model(source).state_dict())
    own = resnet.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or wrong:
        raise ValueError(f"the ResNet of {source!r} does not fit this backbone: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, other shapes {wrong[:5]}")
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(state[name])
    log.info("backbone: %d tensors from the ResNet of %r", len(own), source)
    return len(own)
