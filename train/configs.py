"""Named training recipes (``--config shapes|r50|tiny``): model, image sizes, optimiser.

A recipe is plain data; the command line picks one by name and may override the
run-level fields (epochs, batch size). ``num_classes`` in a recipe's model is a
placeholder: the data set (or the model being fine-tuned) decides it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from detr_core import DETRConfig, PreprocessConfig, tiny_config
from detr_core.objective.criterion import LossWeights
from detr_core.objective.matcher import MatchWeights

from .transforms import AugmentConfig


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a separate backbone learning rate, gradient clipping and a step decay."""

    lr: float = 1e-4
    lr_backbone: float = 1e-5  # 0 freezes the backbone
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1  # 0 disables clipping
    lr_drop_epochs: int = 200  # multiply the learning rates by lr_gamma every this many epochs
    lr_gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up from ~0 over this many optimiser steps
    freeze_pretrained_stem: bool = True  # official: a pre-trained ResNet keeps conv1 + layer1 fixed

    def __post_init__(self):
        if self.lr <= 0 or self.lr_backbone < 0 or self.weight_decay < 0:
            raise ValueError(f"need lr > 0, lr_backbone >= 0, weight_decay >= 0; got {self}")
        if self.lr_drop_epochs < 1 or not 0 < self.lr_gamma <= 1 or self.warmup_steps < 0:
            raise ValueError(f"need lr_drop_epochs >= 1, 0 < lr_gamma <= 1, warmup_steps >= 0; got {self}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a named recipe fixes."""

    name: str
    model: DETRConfig
    preprocess: PreprocessConfig
    augment: AugmentConfig
    optim: OptimConfig
    batch_size: int
    epochs: int
    losses: LossWeights = LossWeights()
    matching: MatchWeights = MatchWeights()
    query_groups: int = 1  # Group DETR: >1 trains extra query groups (training only, see group_detr.py)

    def __post_init__(self):
        if self.batch_size < 1 or self.epochs < 1 or self.query_groups < 1:
            raise ValueError(f"need batch_size, epochs and query_groups >= 1; got {self.batch_size}, "
                             f"{self.epochs}, {self.query_groups}")

    def to_dict(self) -> dict:
        """Plain data for checkpoints and the log (tuples become lists)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of ``to_dict`` (how ``--resume`` recovers the recipe it was trained with)."""
        parts = {"model": DETRConfig.from_dict, "preprocess": PreprocessConfig.from_dict,
                 "augment": lambda v: AugmentConfig(**{k: tuple(x) if isinstance(x, list) else x
                                                       for k, x in v.items()}),
                 "optim": lambda v: OptimConfig(**v), "losses": lambda v: LossWeights(**v),
                 "matching": lambda v: MatchWeights(**v)}
        return cls(**{k: parts[k](v) if k in parts else v for k, v in d.items()})


def _scaled(name: str, model: DETRConfig, pre: PreprocessConfig, optim: OptimConfig,
            batch_size: int, epochs: int, crop_min_visible: float = 0.0) -> TrainConfig:
    augment = AugmentConfig.scaled(pre.min_size, pre.max_size, pre.mean, pre.std, crop_min_visible)
    return TrainConfig(name, model, pre, augment, optim, batch_size, epochs)


def shapes_config() -> TrainConfig:
    """The bundled model: ResNet-18 trained from scratch on 256-px synthetic shapes.

    Stopping after ResNet stage 3 (stride 16) gives 16x16 attention maps and
    cheaper steps; trainable BatchNorm because nothing is pre-trained; few
    queries because images hold at most a handful of shapes. The higher
    learning rates follow the measured probe (training-probe note).
    """
    model = DETRConfig(backbone="resnet18", backbone_stages=3, frozen_bn=False, hidden_dim=128,
                       nheads=8, enc_layers=3, dec_layers=3, dim_feedforward=512, dropout=0.1,
                       num_queries=12, num_classes=5)
    optim = OptimConfig(lr=2e-4, lr_backbone=1e-4, lr_drop_epochs=40, warmup_steps=200)
    # crops keep a shape only when half its box survives: the data labels a shape only when most of it
    # shows (train/shapes.py), and cut-off remnants are what the model must learn to refuse
    return _scaled("shapes", model, PreprocessConfig(min_size=256, max_size=427), optim,
                   batch_size=8, epochs=60, crop_min_visible=0.5)


def r50_config() -> TrainConfig:
    """Official DETR-R50 on COCO: 800-1333 px, lr 1e-4 / backbone 1e-5, 300 epochs, drop at 200."""
    return TrainConfig("r50", DETRConfig(), PreprocessConfig(800, 1333), AugmentConfig(),
                       OptimConfig(), batch_size=2, epochs=300)


def tiny_train_config() -> TrainConfig:
    """For tests and smoke runs: the tiny DETR on 128-px images, from scratch like ``shapes``
    (with frozen random BatchNorm a scratch backbone's features barely depend on the image)."""
    model = tiny_config(backbone_stages=3, frozen_bn=False)
    return _scaled("tiny", model, PreprocessConfig(min_size=128, max_size=213),
                   OptimConfig(lr=1e-4, lr_backbone=1e-5), batch_size=2, epochs=2)


NAMED_CONFIGS = {"shapes": shapes_config, "r50": r50_config, "tiny": tiny_train_config}


def named_config(name: str) -> TrainConfig:
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[name]()
