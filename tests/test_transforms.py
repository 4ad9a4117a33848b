"""Augmentations keep every box on the same pixels as the object it bounds."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_convert

from train.transforms import (AugmentConfig, RandomHorizontalFlip, RandomSizeCrop, ToNormalizedTensor, crop, hflip,
                              resize, train_transforms)

RED = (230, 20, 20)


def _image_with_box(w: int, h: int, box: tuple) -> tuple[Image.Image, dict]:
    """A grey image with a red rectangle filling the xyxy pixel box, and its target."""
    pixels = np.full((h, w, 3), 120, dtype=np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = RED
    target = {"boxes": torch.tensor([box], dtype=torch.float32), "labels": torch.tensor([3]),
              "area": torch.tensor([float((x1 - x0) * (y1 - y0))])}
    return Image.fromarray(pixels), target


def _red_extent(pixels: np.ndarray) -> list[float] | None:
    """xyxy extent (pixel edges) of the red pixels of an [H, W, 3] array, or None."""
    red = (pixels[..., 0] > 175) & (pixels[..., 1] < 75)
    if not red.any():
        return None
    ys, xs = np.nonzero(red)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _assert_box_on_red(image: Image.Image, target: dict, tol: float):
    assert target["boxes"][0].tolist() == pytest.approx(_red_extent(np.asarray(image)), abs=tol)


def test_hflip_mirrors_box_exactly():
    image, target = _image_with_box(100, 60, (10, 5, 30, 40))
    image, target = hflip(image, target)
    assert target["boxes"][0].tolist() == [70, 5, 90, 40]
    _assert_box_on_red(image, target, tol=0)


@pytest.mark.parametrize("size,max_size", [(50, None), (240, None), (128, 150), (90, 1000)])
def test_resize_scales_box_with_pixels(size, max_size):
    image, target = _image_with_box(160, 100, (40, 20, 100, 70))
    image, target = resize(image, target, size, max_size)
    assert min(image.size) == size or max(image.size) <= max_size
    _assert_box_on_red(image, target, tol=1.5)
    sx, sy = image.width / 160, image.height / 100
    assert target["area"].item() == pytest.approx(60 * 50 * sx * sy)


def test_random_flip_flips_about_half_the_time():
    torch.manual_seed(0)
    image, target = _image_with_box(100, 60, (10, 5, 30, 40))
    flips = sum(RandomHorizontalFlip()(image, target)[1]["boxes"][0, 0].item() == 70 for _ in range(200))
    assert 70 < flips < 130


def test_crop_clips_partial_box_and_drops_outside_box():
    image, target = _image_with_box(100, 100, (20, 30, 60, 80))
    target["boxes"] = torch.cat([target["boxes"], torch.tensor([[80.0, 0.0, 95.0, 10.0]])])
    target["labels"] = torch.tensor([3, 4])
    target["area"] = torch.tensor([2000.0, 150.0])
    image, target = crop(image, target, top=40, left=10, height=50, width=40)
    assert target["labels"].tolist() == [3]  # the second box lies outside the crop
    assert target["boxes"][0].tolist() == [10, 0, 40, 40]
    _assert_box_on_red(image, target, tol=0)
    assert target["area"].tolist() == [1200.0]


def test_random_size_crop_respects_bounds():
    torch.manual_seed(0)
    image, target = _image_with_box(120, 90, (0, 0, 120, 90))
    for _ in range(20):
        out, t = RandomSizeCrop(30, 80)(image, target)
        assert 30 <= out.width <= 80 and 30 <= out.height <= 80
        assert t["boxes"][0].tolist() == [0, 0, out.width, out.height]


def test_full_pipeline_boxes_follow_pixels():
    """Normalised cxcywh boxes, scaled back to pixels, still bound the red object."""
    cfg = AugmentConfig.scaled(min_size=128, max_size=213)
    transform = train_transforms(cfg)
    mean, std = torch.tensor(cfg.mean)[:, None, None], torch.tensor(cfg.std)[:, None, None]
    for seed in range(12):
        torch.manual_seed(seed)
        image, target = _image_with_box(200, 150, (60, 40, 150, 110))
        tensor, out = transform(image, target)  # [3, H, W]
        h, w = tensor.shape[-2:]
        assert out["size"].tolist() == [h, w] and max(h, w) <= cfg.max_size
        pixels = ((tensor * std + mean).clamp(0, 1) * 255).permute(1, 2, 0).numpy()  # [H, W, 3]
        extent = _red_extent(pixels)
        if len(out["boxes"]) == 0:  # the crop missed the object entirely
            assert extent is None
            continue
        xyxy = box_convert(out["boxes"], "cxcywh", "xyxy")[0] * torch.tensor([w, h, w, h])
        assert xyxy.tolist() == pytest.approx(extent, abs=1.5)


def test_pipeline_is_reproducible_under_a_seed():
    transform = train_transforms(AugmentConfig.scaled(128, 213))
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        outputs.append(transform(*_image_with_box(200, 150, (60, 40, 150, 110))))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert torch.equal(outputs[0][1]["boxes"], outputs[1][1]["boxes"])


def test_to_tensor_normalises_boxes_relative_to_image():
    image, target = _image_with_box(100, 50, (10, 10, 30, 50))
    _, out = ToNormalizedTensor()(image, target)
    assert out["boxes"][0].tolist() == pytest.approx([0.2, 0.6, 0.2, 0.8])


def test_scaled_config_keeps_official_proportions():
    cfg = AugmentConfig.scaled(400, 667)
    assert min(cfg.scales) == 240 and max(cfg.scales) == 400
    assert cfg.crop_resize == (200, 250, 300) and (cfg.crop_min, cfg.crop_max) == (192, 300)
    with pytest.raises(ValueError, match="max_size"):
        AugmentConfig(scales=(900,), max_size=800)


def test_eval_transform_matches_inference_preprocessing():
    from detr_core import PreprocessConfig, image_to_tensor
    from train.transforms import eval_transforms
    pre = PreprocessConfig(min_size=64, max_size=100)
    image, target = _image_with_box(100, 50, (10, 10, 30, 50))
    tensor, out = eval_transforms(pre)(image, target)
    assert torch.equal(tensor, image_to_tensor(image, pre))
    assert out["size"].tolist() == [50, 100]
    assert out["boxes"][0].tolist() == pytest.approx([0.2, 0.6, 0.2, 0.8])
