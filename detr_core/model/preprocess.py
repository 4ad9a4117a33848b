"""Image in, model input out (and back): EXIF, RGB, resize, normalise, pad; post-processing to detections."""
from __future__ import annotations

import io
import os
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.ops import box_convert

from .config import PreprocessConfig

ImageSource = Union[Image.Image, np.ndarray, str, os.PathLike, bytes]
# Files and bytes with more pixels than this are refused from their header, before any pixel is decoded. 40
# megapixels is above any camera a class brings (a 24 MP photo passes) and less than half of Pillow's own
# decompression-bomb limit (89.5 MP, which only warns up to twice that): a 17 KB PNG of 144 MP would otherwise
# take 0.6 GB to decode and gigabytes more to convert. The model never sees more than 1333 px a side anyway.
MAX_IMAGE_PIXELS = 40_000_000


def _check_pixels(image: Image.Image, source_desc: str, max_pixels: int | None) -> None:
    """ValueError naming the size and the limit if the opened (not yet decoded) image has too many pixels."""
    width, height = image.size  # from the header: Image.open decodes nothing
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(
            f"{source_desc} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), more than the"
            f" {max_pixels / 1e6:g} megapixels this program opens; scale it down (e.g. to 4000 px on its longer"
            " side) and try again")


def _open(source: ImageSource, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, bytes):
        source_desc, handle = "the uploaded bytes", io.BytesIO(source)
    else:
        source_desc, handle = repr(os.fspath(source)), os.fspath(source)
    try:
        image = Image.open(handle)
        _check_pixels(image, source_desc, max_pixels)
        image.load()
        return image
    except FileNotFoundError:
        raise ValueError(f"image file {source_desc} does not exist") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{source_desc} has too many pixels to open safely; use a smaller image") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(
            f"could not read {source_desc} as an image ({err}); give a JPEG, PNG, WebP, BMP or TIFF file"
        ) from None


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"image array must be uint8 (0..255), got dtype {array.dtype}")
    return Image.fromarray(array)


def load_image(source: ImageSource, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    """Any supported image source -> RGB PIL image, upright (EXIF orientation applied).

    Transparent pixels are composited on white, so an RGBA logo does not turn black. A file or bytes with more
    than `max_pixels` pixels (default MAX_IMAGE_PIXELS, 40 MP; None: no limit but Pillow's) is refused with a
    ValueError before it is decoded; images and arrays already in memory are taken as they are.
    """
    image = _open(source, max_pixels)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        pass
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels (size {image.size})")
    return image.convert("RGB")


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Shorter side to min_size unless that pushes the longer side past max_size. -> (h, w)."""
    short, long = min(height, width), max(height, width)
    size = min_size
    if long / short * size > max_size:
        size = int(round(max_size * short / long))
    if short == size:
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def image_to_tensor(image: Image.Image, preprocess: PreprocessConfig) -> torch.Tensor:
    """RGB PIL image -> normalised [3, h, w] float tensor at the model's input size."""
    h, w = resized_size(image.height, image.width, preprocess.min_size, preprocess.max_size)
    resized = image.resize((w, h), Image.BILINEAR) if (h, w) != (image.height, image.width) else image
    x = torch.from_numpy(np.asarray(resized, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    mean = torch.tensor(preprocess.mean).view(3, 1, 1)
    std = torch.tensor(preprocess.std).view(3, 1, 1)
    return (x - mean) / std  # [3, h, w]


def pad_batch(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[3, h_i, w_i] tensors -> pixel_values [B, 3, H, W] zero-padded bottom/right, pixel_mask [B, H, W] (True on padding)."""
    if not images:
        raise ValueError("pad_batch needs at least one image")
    h = max(t.shape[1] for t in images)
    w = max(t.shape[2] for t in images)
    pixel_values = images[0].new_zeros((len(images), 3, h, w))
    pixel_mask = torch.ones((len(images), h, w), dtype=torch.bool)
    for i, t in enumerate(images):
        pixel_values[i, :, : t.shape[1], : t.shape[2]] = t
        pixel_mask[i, : t.shape[1], : t.shape[2]] = False
    return pixel_values, pixel_mask


def postprocess(logits: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]):
    """logits [..., Q, C+1], boxes [..., Q, 4] normalised cxcywh -> (scores [..., Q], labels [..., Q],
    boxes [..., Q, 4] x0, y0, x1, y1 in pixels of an image of size (H, W)). No NMS: DETR needs none."""
    prob = logits.softmax(-1)[..., :-1]  # the last column is "no object"
    scores, labels = prob.max(-1)
    h, w = image_size
    scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return scores, labels, box_convert(boxes, "cxcywh", "xyxy") * scale
