"""DETR's training augmentations, moving the boxes together with the pixels.

Every transform takes and returns ``(image, target)``: a PIL image and a dict
whose "boxes" are [N, 4] absolute xyxy pixels until the final
``ToNormalizedTensor``, which outputs a normalised [3, H, W] tensor and boxes as
normalized cxcywh relative to that (unpadded) image. Randomness comes from
torch's global generator, so ``torch.manual_seed`` (and a checkpoint's RNG
state) decides every augmentation.

Official recipe (scaled by ``AugmentConfig.scaled`` for small images): flip,
then either a multi-scale resize or [resize to 400/500/600, random crop of
384..600 px, multi-scale resize], then ImageNet normalisation.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.ops import box_convert

from detr_core.model.config import IMAGENET_MEAN, IMAGENET_STD
from detr_core.model.config import PreprocessConfig
from detr_core.model.preprocess import image_to_tensor, resized_size

OFFICIAL_SCALES = tuple(range(480, 801, 32))
OFFICIAL_MAX_SIZE = 1333


@dataclass(frozen=True)
class AugmentConfig:
    """Sizes for the training augmentations (defaults: official DETR on COCO)."""

    scales: tuple = OFFICIAL_SCALES  # candidate shorter sides for the multi-scale resize
    max_size: int = OFFICIAL_MAX_SIZE  # cap on the longer side
    crop_resize: tuple = (400, 500, 600)  # shorter side before the random crop
    crop_min: int = 384
    crop_max: int = 600
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    flip_p: float = 0.5  # probability of a horizontal flip
    crop_p: float = 0.5  # probability of the resize-crop-resize branch instead of a plain resize
    # a box the crop cuts down below this share of its area is dropped: 0 keeps every remnant (official);
    # the shapes data labels a shape only when most of it shows, so a crop must follow the same rule
    crop_min_visible: float = 0.0

    def __post_init__(self):
        if not (0 <= self.flip_p <= 1 and 0 <= self.crop_p <= 1):
            raise ValueError(f"flip_p={self.flip_p}, crop_p={self.crop_p}: probabilities must be in [0, 1]")
        if not self.scales or min(self.scales) < 1 or max(self.scales) > self.max_size:
            raise ValueError(f"scales={self.scales} must be non-empty, positive, <= max_size={self.max_size}")
        if not 0 <= self.crop_min_visible < 1:
            raise ValueError(f"crop_min_visible={self.crop_min_visible}: expected a share in [0, 1)")
        if not 0 < self.crop_min <= self.crop_max:
            raise ValueError(f"need 0 < crop_min <= crop_max, got {self.crop_min}, {self.crop_max}")

    @classmethod
    def scaled(cls, min_size: int, max_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
               crop_min_visible: float = 0.0) -> "AugmentConfig":
        """The official recipe with every size multiplied by min_size / 800."""
        f = min_size / 800
        scales = tuple(sorted({max(1, round(s * f)) for s in OFFICIAL_SCALES}))
        return cls(scales=scales, max_size=max_size,
                   crop_resize=tuple(max(1, round(s * f)) for s in (400, 500, 600)),
                   crop_min=max(1, round(384 * f)), crop_max=max(1, round(600 * f)),
                   mean=tuple(mean), std=tuple(std), crop_min_visible=crop_min_visible)


def _choice(options):
    return options[int(torch.randint(len(options), ()).item())]


def resize(image: Image.Image, target: dict, min_size: int, max_size: int | None):
    """Resize keeping the aspect ratio; boxes and areas follow."""
    w, h = image.size
    # the same size rule as inference (detr_core.model.preprocess), so training sees what the model will see
    new_h, new_w = resized_size(h, w, min_size, max_size if max_size is not None else sys.maxsize)
    image = TF.resize(image, [new_h, new_w])
    sx, sy = new_w / w, new_h / h
    target = dict(target)
    target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy])
    if "area" in target:
        target["area"] = target["area"] * (sx * sy)
    return image, target


def hflip(image: Image.Image, target: dict):
    """Mirror left-right: x becomes width - x, and x0/x1 swap."""
    w = image.width
    target = dict(target)
    boxes = target["boxes"]  # [N, 4] xyxy
    target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    return TF.hflip(image), target


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)  # [N]


def crop(image: Image.Image, target: dict, top: int, left: int, height: int, width: int,
         min_visible: float = 0.0):
    """Cut a region; boxes are clipped to it and dropped when nothing of them is left, or when less than
    ``min_visible`` of their area is."""
    target = dict(target)
    before = _box_area(target["boxes"])  # [N]
    boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # [N]
    keep &= _box_area(boxes) >= min_visible * before
    target["boxes"] = boxes[keep]
    for key in ("labels", "area", "iscrowd"):
        if key in target:
            target[key] = target[key][keep]
    if "area" in target:  # the visible part's box area: the clipped mask is not tracked
        b = target["boxes"]
        target["area"] = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return TF.crop(image, top, left, height, width), target


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, target):
        return hflip(image, target) if torch.rand(()) < self.p else (image, target)


class RandomResize:
    """Resize to a shorter side drawn from ``sizes`` (multi-scale training)."""

    def __init__(self, sizes, max_size: int | None = None):
        self.sizes, self.max_size = tuple(sizes), max_size

    def __call__(self, image, target):
        return resize(image, target, _choice(self.sizes), self.max_size)


class RandomSizeCrop:
    """Crop a random region with sides in [min_size, max_size] (capped by the image)."""

    def __init__(self, min_size: int, max_size: int, min_visible: float = 0.0):
        self.min_size, self.max_size, self.min_visible = min_size, max_size, min_visible

    def __call__(self, image, target):
        w = int(torch.randint(min(self.min_size, image.width), min(image.width, self.max_size) + 1, ()))
        h = int(torch.randint(min(self.min_size, image.height), min(image.height, self.max_size) + 1, ()))
        top = int(torch.randint(image.height - h + 1, ()))
        left = int(torch.randint(image.width - w + 1, ()))
        return crop(image, target, top, left, h, w, self.min_visible)


class RandomSelect:
    """Apply ``first`` with probability p, otherwise ``second``."""

    def __init__(self, first, second, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, image, target):
        return self.first(image, target) if torch.rand(()) < self.p else self.second(image, target)


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class ToNormalizedTensor:
    """PIL -> normalised [3, H, W] tensor; boxes -> normalized cxcywh; records "size" (h, w)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image, target):
        tensor = TF.normalize(TF.to_tensor(image.convert("RGB")), self.mean, self.std)  # [3, H, W]
        h, w = tensor.shape[-2:]
        target = dict(target)
        boxes = box_convert(target["boxes"].reshape(-1, 4), "xyxy", "cxcywh")  # [N, 4] pixels
        target["boxes"] = boxes / torch.tensor([w, h, w, h], dtype=torch.float32)
        target["size"] = torch.tensor([h, w])
        return tensor, target


def train_transforms(cfg: AugmentConfig) -> Compose:
    """The official DETR training augmentations, sized by ``cfg``."""
    multi_scale = RandomResize(cfg.scales, cfg.max_size)
    crop_branch = Compose([RandomResize(cfg.crop_resize), RandomSizeCrop(cfg.crop_min, cfg.crop_max, cfg.crop_min_visible),
                           multi_scale])
    return Compose([
        RandomHorizontalFlip(cfg.flip_p),
        RandomSelect(crop_branch, multi_scale, cfg.crop_p),
        ToNormalizedTensor(cfg.mean, cfg.std),
    ])


class ModelInput:
    """Evaluation: exactly the model's own preprocessing (detr_core.image_to_tensor), boxes normalised."""

    def __init__(self, preprocess: PreprocessConfig):
        self.preprocess = preprocess

    def __call__(self, image, target):
        tensor = image_to_tensor(image.convert("RGB"), self.preprocess)  # [3, H, W]
        w, h = image.size  # normalised boxes do not change under an aspect-preserving resize
        target = dict(target)
        boxes = box_convert(target["boxes"].reshape(-1, 4), "xyxy", "cxcywh")  # [N, 4] pixels
        target["boxes"] = boxes / torch.tensor([w, h, w, h], dtype=torch.float32)
        target["size"] = torch.tensor(tensor.shape[-2:])
        return tensor, target


def eval_transforms(preprocess: PreprocessConfig) -> ModelInput:
    """Deterministic, and identical to what inference does with the same model."""
    return ModelInput(preprocess)
