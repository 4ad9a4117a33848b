"""Small data sets and recipes shared by the training tests (kept tiny: 2 CPU cores)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from detr_core import PreprocessConfig
from train.configs import OptimConfig, TrainConfig, tiny_train_config
from train.synthetic import SyntheticSpec, write_dataset
from train.transforms import AugmentConfig


def shapes_set(folder: Path, images: int, seed: int = 0, size: int = 64, max_objects: int = 2) -> Path:
    """A synthetic COCO-format folder (annotations.json + images/)."""
    write_dataset(SyntheticSpec(images=images, seed=seed, size=size, max_objects=max_objects), folder)
    return folder


def small_recipe(size: int = 64, augment: bool = True, lr: float = 1e-4, dropout: float = 0.0,
                 batch_size: int = 2, epochs: int = 3) -> TrainConfig:
    """The tiny recipe at ``size`` px; ``augment=False`` turns flips, crops and rescaling off."""
    base = tiny_train_config()
    aug = (AugmentConfig.scaled(size, size) if augment
           else AugmentConfig(scales=(size,), max_size=size, flip_p=0.0, crop_p=0.0))
    return base.replace(
        model=dataclasses.replace(base.model, dropout=dropout),
        preprocess=PreprocessConfig(size, size), augment=aug,
        optim=OptimConfig(lr=lr, lr_backbone=lr), batch_size=batch_size, epochs=epochs)
