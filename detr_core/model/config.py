"""Architecture and preprocessing configuration: frozen dataclasses, stored in checkpoints as plain dicts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
POSITION_EMBEDDINGS = ("sine", "learned")


@dataclass(frozen=True)
class DETRConfig:
    """Everything that decides the model's modules and parameter shapes.

    Defaults are the official DETR-R50 COCO model.
    """

    backbone: str = "resnet50"
    dilation: bool = False  # DC5: last stage dilated, stride 16 instead of 32
    backbone_stages: int = 4  # 3 stops after layer3 (stride 16, finer maps, cheaper)
    frozen_bn: bool = True  # False: trainable BatchNorm2d, for backbones trained from scratch
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_queries: int = 100
    num_classes: int = 91  # class_embed has num_classes + 1 outputs; the last is "no object"
    pre_norm: bool = False
    position_embedding: str = "sine"
    # transformers' DETR with `auxiliary_loss: true` hands each decoder layer's layer-normed output to the next
    # layer and norms the last one twice; a model trained that way only gives its own outputs with the same wiring
    decoder_renorm: bool = False

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone={self.backbone!r}: expected one of {BACKBONES}")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"position_embedding={self.position_embedding!r}: expected one of {POSITION_EMBEDDINGS}"
            )
        if self.dilation and self.backbone in ("resnet18", "resnet34"):
            raise ValueError(f"dilation (DC5) needs a bottleneck ResNet (resnet50/101), not {self.backbone}")
        if self.backbone_stages not in (3, 4):
            raise ValueError(f"backbone_stages={self.backbone_stages}: expected 3 or 4")
        if self.hidden_dim % self.nheads or self.hidden_dim % 2:
            raise ValueError(
                f"hidden_dim={self.hidden_dim} must be even and divisible by nheads={self.nheads}"
            )
        for name in ("enc_layers", "dec_layers", "num_queries", "num_classes", "nheads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: expected a rate in [0, 1)")

    @property
    def stride(self) -> int:
        """Input pixels per feature cell."""
        stride = 32 if self.backbone_stages == 4 else 16
        return stride // 2 if self.dilation and self.backbone_stages == 4 else stride

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DETRConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DETRConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
MAX_IMAGE_SIDE = 4096  # pixels: DETRs read 512-1333 px; one image's encoder attention at 4096 px is gigabytes
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the model's input: shorter side to min_size, longer side at most max_size."""

    min_size: int = 800
    max_size: int = 1333
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __post_init__(self):
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.max_size > MAX_IMAGE_SIDE:
            raise ValueError(f"max_size={self.max_size} px is beyond any DETR's input (at most {MAX_IMAGE_SIDE})")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean={self.mean}, std={self.std}: expected one value per RGB channel (3 each)")
        if not all(v > 0 for v in self.std):  # pixels are divided by it: 0 gives inf/NaN
            raise ValueError(f"std={self.std}: every channel's std must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(**d)


def tiny_config(**overrides) -> DETRConfig:
    """A very small DETR for tests and quick experiments (ResNet-18, d=32, 2+2 layers)."""
    base = dict(
        backbone="resnet18", hidden_dim=32, nheads=4, enc_layers=2, dec_layers=2,
        dim_feedforward=64, num_queries=10, num_classes=5, dropout=0.0,
    )
    base.update(overrides)
    return DETRConfig(**base)


