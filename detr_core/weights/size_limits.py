"""Sizes beyond any real model, refused before anything is built.

A config.json is text anyone can write: `d_model` 16384, 30 million queries or 100,000 decoder layers would make
torch allocate gigabytes (or build for minutes) before any shape check could refuse the file. Every size a config
or preprocessor_config.json can state is checked here first, against a bound about ten times the largest
checkpoint of the DETR family (DETR, Deformable/Conditional/DAB-DETR, RT-DETR, D-FINE, DEIMv2, LW-DETR, RF-DETR)
and of their backbones (ResNet-101, ViT-L/DINOv2-L); then the parameter count of the model the config describes,
counted on the meta device (no memory), and the tensors the weights file really holds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from ..model.config import MAX_IMAGE_SIDE

MAX_PARAMETERS = 1_000_000_000  # the largest supported checkpoints hold ~130 M; 1e9 float32 values are 4 GB
PARAMETER_SLACK = 1_000_000  # weights a config may describe beyond those its file holds (re-initialised buffers)


@dataclass(frozen=True)
class SizeLimit:
    pattern: re.Pattern  # matches the field's name (the last part of its path)
    maximum: int
    largest_known: str  # what the bound is ten times, for the message


def _limit(pattern: str, maximum: int, largest_known: str) -> SizeLimit:
    return SizeLimit(re.compile(pattern), maximum, largest_known)


# first match wins; a field matching none is not a size (temperatures, loss weights, token ids)
LIMITS = (
    _limit(r"(^|_)(num_queries|num_denoising|two_stage_num_proposals)$", 10_000, "900 queries (DINO-style)"),
    _limit(r"(^|_)group_detr$", 200, "13 query groups (LW-DETR)"),
    _limit(r"(^|_)(num_labels|num_classes)$", 20_000, "1,203 classes (LVIS)"),
    _limit(r"(layers|depths|num_blocks)$", 256, "24 layers (ViT-L), 23 blocks (ResNet-101 stage 3)"),
    _limit(r"heads$", 256, "16 heads (ViT-L)"),
    _limit(r"(ffn_dim|intermediate_size|dim_feedforward)$", 65_536, "4,096 (ViT-L)"),
    _limit(r"(^|_)(d_model|hidden_dim)$", 4_096, "384 (RF-DETR's transformer)"),
    _limit(r"(^|_)(hidden_size|hidden_sizes|channels|embedding_size|head_dim)$", 16_384,
           "2,048 channels (ResNet-101)"),
    _limit(r"(n_points|n_levels|num_feature_levels)$", 64, "8 points, 5 levels"),
    _limit(r"(^|_)(image_size|max_position_embeddings)$", 16_384, "1,024 px (RF-DETR)"),
    _limit(r"(^|_)(patch_size|num_windows)$", 1_024, "16"),
)


def limit_for(field: str) -> SizeLimit | None:
    return next((limit for limit in LIMITS if limit.pattern.search(field)), None)


def check_config_sizes(cfg: Mapping, where: str, prefix: str = "") -> None:
    """ValueError naming the first size field (nested configs included, e.g. backbone_config.hidden_sizes) that is
    negative or beyond its bound, and the number of labels in id2label."""
    for key, value in cfg.items():
        field = f"{prefix}{key}"
        if isinstance(value, Mapping) and key not in ("id2label", "label2id"):
            check_config_sizes(value, where, field + ".")
            continue
        limit = limit_for(str(key))
        if limit is None:
            continue
        for number in value if isinstance(value, list) else [value]:
            _check_number(number, field, limit, where)
    labels = cfg.get("id2label")
    if isinstance(labels, Mapping) and len(labels) > limit_for("num_labels").maximum:
        raise ValueError(f"{where}: {prefix}id2label holds {len(labels)} labels; no detection model has more than"
                         f" {limit_for('num_labels').maximum} (the largest known: 1,203 classes, LVIS)")


def _check_number(number, field: str, limit: SizeLimit, where: str) -> None:
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return  # not a size (null, a name): the model's own config class says what it accepts
    if number < 0 or number > limit.maximum:
        raise ValueError(f"{where}: {field}={number!r} is beyond any real model (at most {limit.maximum:,}; the"
                         f" largest known checkpoint has {limit.largest_known}); refusing it before building")


def check_parameter_count(count: int, where: str) -> None:
    if count > MAX_PARAMETERS:
        raise ValueError(f"{where}: the config describes a model of {count:,} parameters, beyond any real DETR (at"
                         f" most {MAX_PARAMETERS:,}; the largest known hold about 130 million); refusing it before"
                         " building")


def check_weights_cover(model_parameters: int, file_values: int, where: str) -> None:
    """The model the config describes may not be much larger than the weights file: the rest would be random
    weights, allocated by the config alone."""
    if model_parameters > file_values + PARAMETER_SLACK:
        raise ValueError(f"{where}: the config describes {model_parameters:,} parameters but the weights file holds"
                         f" only {file_values:,} values: the config does not belong to these weights")


def check_image_side(value, field: str, where: str) -> None:
    """An image size from a preprocessor config: a positive number of pixels up to MAX_IMAGE_SIDE."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_IMAGE_SIDE:
        raise ValueError(f"{where}: {field}={value!r}: expected a size in pixels from 1 to {MAX_IMAGE_SIDE}"
                         " (DETRs read images of 512 to 1333 px)")


def check_normalisation(mean, std, where: str) -> None:
    """image_mean / image_std: three numbers each (one per RGB channel, or one for all); std positive."""
    for name, values in (("image_mean", mean), ("image_std", std)):
        listed = [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else values
        if not isinstance(listed, (list, tuple)) or len(listed) not in (1, 3) or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in listed):
            raise ValueError(f"{where}: {name}={values!r}; expected one number per RGB channel (3)")
        if name == "image_std" and not all(v > 0 for v in listed):
            raise ValueError(f"{where}: image_std={values!r}; every channel's std must be positive (pixels are"
                             " divided by it)")
