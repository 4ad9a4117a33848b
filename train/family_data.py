"""This module's data pipeline, fitted to a DETR-family model's own image processor.

Training keeps the DETR augmentations (flip, resize-crop, multi-scale) at the processor's size and with its
normalisation; evaluation runs the processor itself, so what is measured is what the app computes. A
processor with a fixed output size (RT-DETR's 640x640) resizes to that size after the augmentations, as the
processor does, aspect ratio not kept.

Box convention: models that read ``pixel_mask`` (Deformable, Conditional, DAB-DETR: DETR's valid-region
convention, their reference points are scaled by the valid ratios) take boxes normalised to each unpadded
image, as this module's batches give them; the others see only the padded canvas, so their boxes are
normalised to it. ``labels_for`` and ``boxes_to_pixels`` apply that one rule both ways.
"""
from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from torch import Tensor
from torchvision.ops import box_convert

from .dataset import Batch
from .family_configs import FamilyRecipe
from .transforms import (Compose, RandomHorizontalFlip, RandomResize, RandomSelect, RandomSizeCrop,
                         ToNormalizedTensor, train_transforms)

MASKED_TYPES = frozenset({"deformable_detr", "conditional_detr", "dab-detr"})


def uses_mask(model) -> bool:
    return model.config.model_type in MASKED_TYPES


def processor_geometry(processor) -> tuple[str, int, int, tuple, tuple]:
    """("edges", shortest, longest, mean, std) or ("fixed", height, width, mean, std) of an image processor;
    ValueError for one this pipeline cannot follow."""
    if getattr(processor, "do_rescale", True) and abs(getattr(processor, "rescale_factor", 1 / 255) - 1 / 255) > 1e-9:
        raise ValueError(f"{type(processor).__name__}: rescale_factor {processor.rescale_factor}, expected 1/255")
    normalise = getattr(processor, "do_normalize", False)
    mean = tuple(processor.image_mean) if normalise else (0.0, 0.0, 0.0)
    std = tuple(processor.image_std) if normalise else (1.0, 1.0, 1.0)
    size = processor.size
    if getattr(size, "height", None) and getattr(size, "width", None):
        return "fixed", int(size.height), int(size.width), mean, std
    if getattr(size, "shortest_edge", None):
        return "edges", int(size.shortest_edge), int(size.longest_edge or 10 * size.shortest_edge), mean, std
    raise ValueError(f"{type(processor).__name__}: size {size} is neither height/width nor shortest_edge")


class FixedResize:
    """Resize to exactly (height, width), as a fixed-size processor does; boxes follow."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width

    def __call__(self, image, target):
        sx, sy = self.width / image.width, self.height / image.height
        target = dict(target)
        target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy])
        return TF.resize(image, [self.height, self.width]), target


def family_train_transforms(processor, recipe: FamilyRecipe) -> Compose:
    """DETR's augmentations at the processor's size and normalisation."""
    kind, a, b, mean, std = processor_geometry(processor)
    if kind == "edges":
        return train_transforms(recipe.augment(a, b, mean, std))
    cfg = recipe.augment(min(a, b), max(a, b), mean, std)
    crop = Compose([RandomResize(cfg.crop_resize), RandomSizeCrop(cfg.crop_min, cfg.crop_max, cfg.crop_min_visible)])
    return Compose([RandomHorizontalFlip(cfg.flip_p), RandomSelect(crop, Compose([]), cfg.crop_p),
                    FixedResize(a, b), ToNormalizedTensor(mean, std)])


class ProcessorInput:
    """Evaluation: the processor's own tensor for the image; boxes normalised cxcywh; "size" the unpadded (h, w)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image, target):
        out = self.processor(images=image.convert("RGB"), return_tensors="pt")
        pixels = out["pixel_values"][0]  # [3, h_pad, w_pad]
        if "pixel_mask" in out:  # 1 on the image, 0 on padding
            mask = out["pixel_mask"][0].bool()
            size = [int(mask.any(1).sum()), int(mask.any(0).sum())]
        else:
            size = list(pixels.shape[-2:])
        w, h = image.size  # normalised boxes are the same in the resized image, whatever the resize
        target = dict(target)
        boxes = box_convert(target["boxes"].reshape(-1, 4), "xyxy", "cxcywh")  # [N, 4] pixels
        target["boxes"] = boxes / torch.tensor([w, h, w, h], dtype=torch.float32)
        target["size"] = torch.tensor(size)
        return pixels, target


def model_inputs(model, batch: Batch, device) -> dict[str, Tensor]:
    """pixel_values, and pixel_mask (transformers' convention: 1 on the image) for the models that read it."""
    inputs = {"pixel_values": batch.pixel_values.to(device)}
    if uses_mask(model):
        inputs["pixel_mask"] = (~batch.pixel_mask).long().to(device)
    return inputs


def _canvas_scale(target: dict, padded: tuple[int, int]) -> Tensor:
    """[4] factors from unpadded-image-normalised cxcywh to canvas-normalised cxcywh."""
    h, w = (int(v) for v in target["size"])
    return torch.tensor([w / padded[1], h / padded[0], w / padded[1], h / padded[0]])


def labels_for(model, batch: Batch, device) -> list[dict]:
    """The ``labels`` transformers' losses take: per image "class_labels" [N] and "boxes" [N, 4] cxcywh."""
    padded = tuple(batch.pixel_values.shape[-2:])
    labels = []
    for t in batch.targets:
        boxes = t["boxes"] if uses_mask(model) else t["boxes"] * _canvas_scale(t, padded)
        labels.append({"class_labels": t["labels"].to(device), "boxes": boxes.to(device)})
    return labels


def boxes_to_pixels(model, boxes: Tensor, target: dict, padded: tuple[int, int]) -> Tensor:
    """Predicted cxcywh [Q, 4] of one image -> xyxy [Q, 4] in its original pixels."""
    if not uses_mask(model):
        boxes = boxes / _canvas_scale(target, padded).to(boxes)
    h, w = (float(v) for v in target["orig_size"])
    cx, cy, bw, bh = boxes.unbind(-1)
    return torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], dim=-1)
