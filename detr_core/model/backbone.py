"""ResNet backbone (torchvision) with frozen batch norm, optional DC5 dilation, and the padding mask on its grid."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .config import DETRConfig

_STAGE_CHANNELS = {"resnet18": 64, "resnet34": 64, "resnet50": 256, "resnet101": 256}


def backbone_channels(config: DETRConfig) -> int:
    """Channels of the last kept ResNet stage (2048 for R50 layer4, 1024 for R50 layer3)."""
    return _STAGE_CHANNELS[config.backbone] * 2 ** (config.backbone_stages - 1)


def downsample_mask(pixel_mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a padding mask [B, H, W] (True on padding) to [B, h, w]."""
    return F.interpolate(pixel_mask[:, None].float(), size=size).to(torch.bool)[:, 0]


class ResNetBackbone(nn.Module):
    """ResNet trunk; parameters live under `body` as in the official checkpoints (`backbone.0.body.*`)."""

    def __init__(self, config: DETRConfig):
        super().__init__()
        norm = FrozenBatchNorm2d if config.frozen_bn else nn.BatchNorm2d
        # weights=None: building a model to load a checkpoint into must never download ImageNet weights.
        resnet = getattr(torchvision.models, config.backbone)(
            weights=None, norm_layer=norm,
            replace_stride_with_dilation=[False, False, config.dilation],
        )
        stages = ["layer1", "layer2", "layer3", "layer4"][: config.backbone_stages]
        names = ["conv1", "bn1", "relu", "maxpool", *stages]
        self.body = nn.Sequential(OrderedDict((n, getattr(resnet, n)) for n in names))
        self.num_channels = backbone_channels(config)
        self.stride = config.stride

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor):
        """[B, 3, H, W], [B, H, W] -> features [B, C, h, w], mask [B, h, w] (True on padding)."""
        features = self.body(pixel_values)
        return features, downsample_mask(pixel_mask, features.shape[-2:])

    def freeze_stem(self) -> None:
        """Freeze conv1 and layer1, as the official recipe does when training the backbone."""
        for name, param in self.body.named_parameters():
            if not name.startswith(("layer2", "layer3", "layer4")):
                param.requires_grad_(False)
