"""Pre- and post-processing on small hand-worked examples: resize rule, normalisation, padding, pixel boxes.

Non-square images throughout, in both orientations, so that a swapped height and width cannot pass.
"""
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import detr_core
from detr_core import PreprocessConfig

REPO = Path(__file__).resolve().parents[1]

# Three queries, two classes and "no object" (last column); logits = log(p), so softmax gives p back.
PROBS = torch.tensor([[0.6, 0.3, 0.1],  # class 0 at 0.6
                      [0.1, 0.2, 0.7],  # mostly "no object": its best real class is class 1 at 0.2
                      [0.25, 0.5, 0.25]])  # class 1 at 0.5
BOXES = torch.tensor([[0.25, 0.5, 0.5, 0.25],  # normalised cx, cy, w, h
                      [0.5, 0.5, 1.0, 1.0],
                      [0.75, 0.25, 0.1, 0.5]])


@pytest.mark.parametrize("size,expected", [
    # (H, W) = (64, 96): x scales by 96, y by 64
    ((64, 96), [[0, 24, 48, 40], [0, 0, 96, 64], [67.2, 0, 76.8, 32]]),
    # (H, W) = (96, 64): the other orientation
    ((96, 64), [[0, 36, 32, 60], [0, 0, 64, 96], [44.8, 0, 51.2, 48]]),
])
def test_postprocess_scores_labels_and_pixel_boxes(size, expected):
    scores, labels, boxes = detr_core.postprocess(PROBS.log(), BOXES, size)
    assert scores.tolist() == pytest.approx([0.6, 0.2, 0.5])
    assert labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(boxes.numpy(), expected, atol=1e-4)


def test_postprocess_keeps_leading_batch_dimensions():
    logits = torch.stack([PROBS.log(), PROBS.log().flip(0)])  # [B=2, Q=3, 3]
    boxes = torch.stack([BOXES, BOXES.flip(0)])  # [2, 3, 4]
    scores, labels, pixels = detr_core.postprocess(logits, boxes, (64, 96))
    assert scores.shape == labels.shape == (2, 3) and pixels.shape == (2, 3, 4)
    assert scores[1].tolist() == pytest.approx([0.5, 0.2, 0.6]) and labels[1].tolist() == [1, 1, 0]
    np.testing.assert_allclose(pixels[1, 2].numpy(), [0, 24, 48, 40], atol=1e-4)


@pytest.mark.parametrize("height,width,min_size,max_size,expected", [
    (120, 180, 128, 213, (128, 192)),  # shorter side to 128; the longer 192 fits under 213
    (180, 120, 128, 213, (192, 128)),  # portrait
    (100, 400, 128, 213, (53, 212)),  # 512 would pass 213: shorter side round(213 * 100 / 400) = 53
    (400, 100, 128, 213, (212, 53)),
    (128, 300, 128, 1000, (128, 300)),  # already the right size: unchanged
    (50, 50, 64, 64, (64, 64)),  # enlarged
])
def test_resized_size_by_hand(height, width, min_size, max_size, expected):
    assert detr_core.resized_size(height, width, min_size, max_size) == expected


def test_image_to_tensor_normalises_each_channel_in_place():
    """A 3 x 2 (W x H) image already at its input size: every value is (pixel / 255 - mean) / std."""
    pixels = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 14  # [H=2, W=3, RGB], all different
    pre = PreprocessConfig(min_size=2, max_size=3, mean=(0.1, 0.5, 0.9), std=(0.5, 0.25, 2.0))
    x = detr_core.image_to_tensor(Image.fromarray(pixels), pre)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    for c, (mean, std) in enumerate(zip(pre.mean, pre.std)):
        for row in range(2):
            for col in range(3):
                assert x[c, row, col].item() == pytest.approx((pixels[row, col, c] / 255 - mean) / std, abs=1e-6)


@pytest.mark.parametrize("size,expected_shape", [((6, 4), (3, 8, 12)), ((4, 6), (3, 12, 8))])
def test_image_to_tensor_resizes_to_the_rule(size, expected_shape):
    """A uniform 6 x 4 (W x H) image with min_size 8: 12 x 8; its value survives resizing."""
    pre = PreprocessConfig(min_size=8, max_size=100)
    x = detr_core.image_to_tensor(Image.new("RGB", size, (255, 0, 51)), pre)
    assert x.shape == expected_shape
    for c, value in enumerate((1.0, 0.0, 0.2)):
        torch.testing.assert_close(x[c], torch.full(expected_shape[1:], (value - pre.mean[c]) / pre.std[c]))


def test_image_to_tensor_resizes_bilinearly():
    """Two pixels, black and white, doubled to four: bilinear weights 3/4 and 1/4 give 64 and 191 between."""
    pre = PreprocessConfig(min_size=2, max_size=4, mean=(0, 0, 0), std=(1, 1, 1))
    x = detr_core.image_to_tensor(Image.fromarray(np.array([[0, 255]], np.uint8)).convert("RGB"), pre)
    assert x.shape == (3, 2, 4)
    assert (x * 255).round().tolist() == [[[0, 64, 191, 255]] * 2] * 3


def test_pad_batch_places_each_image_top_left_and_masks_the_rest():
    a = torch.arange(24.0).view(3, 2, 4)  # [3, h=2, w=4]
    b = -torch.arange(9.0).view(3, 3, 1) - 1  # [3, h=3, w=1]
    values, mask = detr_core.pad_batch([a, b])
    assert values.shape == (2, 3, 3, 4) and mask.shape == (2, 3, 4) and mask.dtype == torch.bool
    assert torch.equal(values[0, :, :2, :], a) and values[0, :, 2, :].abs().sum() == 0
    assert torch.equal(values[1, :, :, :1], b) and values[1, :, :, 1:].abs().sum() == 0
    assert mask[0].tolist() == [[False] * 4, [False] * 4, [True] * 4]
    assert mask[1].tolist() == [[False, True, True, True]] * 3
    alone, alone_mask = detr_core.pad_batch([a])
    assert torch.equal(alone[0], a) and not alone_mask.any()
    with pytest.raises(ValueError, match="^pad_batch needs at least one image$"):
        detr_core.pad_batch([])


@pytest.mark.parametrize("array,expected", [
    (np.full((2, 3), 7, np.uint8), (7, 7, 7)),  # H x W grey
    (np.full((2, 3, 1), 9, np.uint8), (9, 9, 9)),  # H x W x 1 grey
    (np.full((2, 3, 3), (1, 2, 3), np.uint8), (1, 2, 3)),  # RGB as is
    (np.full((2, 3, 4), (0, 0, 0, 0), np.uint8), (255, 255, 255)),  # fully transparent: white
    (np.full((2, 3, 4), (200, 100, 0, 255), np.uint8), (200, 100, 0)),  # opaque: its colour
])
def test_arrays_become_rgb_images(array, expected):
    image = detr_core.load_image(array)
    assert image.mode == "RGB" and image.size == (3, 2) and image.getpixel((2, 1)) == expected


@pytest.mark.parametrize("array,message", [
    (np.zeros((4, 4, 2), np.uint8), r"^image array must be HxW, HxWx3 or HxWx4, got shape \(4, 4, 2\)$"),
    (np.zeros((4,), np.uint8), r"got shape \(4,\)$"),
    (np.zeros((4, 4, 3), np.float32), r"^image array must be uint8 \(0..255\), got dtype float32$"),
])
def test_bad_arrays_are_named(array, message):
    with pytest.raises(ValueError, match=message):
        detr_core.load_image(array)


def test_half_transparent_palette_and_grey_alpha_images_are_composited_on_white():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0  # palette entry 0 is transparent
    assert [detr_core.load_image(palette).getpixel((x, 0)) for x in (0, 1)] == [(255, 255, 255), (10, 20, 30)]
    grey_alpha = Image.new("LA", (1, 1), (0, 0))  # black, fully transparent
    assert detr_core.load_image(grey_alpha).getpixel((0, 0)) == (255, 255, 255)


def test_files_that_would_be_too_large_to_open_are_refused(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses more than twice this
    with pytest.raises(ValueError, match=r"big.png' has too many pixels to open safely; use a smaller image$"):
        detr_core.load_image(tmp_path / "big.png")


def test_the_pixel_limit_is_checked_from_the_header_naming_the_size_and_the_limit(tmp_path):
    Image.new("RGB", (101, 50)).save(tmp_path / "wide.png")  # 5,050 pixels
    with pytest.raises(ValueError, match=re.escape("wide.png' is 101x50 pixels (0.0 megapixels), more than the"
                                                   " 0.005 megapixels this program opens; scale it down")):
        detr_core.load_image(tmp_path / "wide.png", max_pixels=5000)
    with pytest.raises(ValueError, match=r"^the uploaded bytes is 101x50 pixels"):
        detr_core.load_image((tmp_path / "wide.png").read_bytes(), max_pixels=5049)
    assert detr_core.load_image(tmp_path / "wide.png", max_pixels=5050).size == (101, 50)  # at the limit: opens
    assert detr_core.load_image(tmp_path / "wide.png", max_pixels=None).size == (101, 50)
    assert detr_core.MAX_IMAGE_PIXELS == 40_000_000 < Image.MAX_IMAGE_PIXELS / 2  # well below Pillow's own


def huge_png(path, side: int = 12000):
    """A single-colour PNG of side x side pixels (144 MP at 12000: under twice Pillow's bomb limit, so Pillow
    alone would open it) in a file of a few hundred KB."""
    Image.new("1", (side, side), 1).save(path)  # 1 bit a pixel here: 18 MB while it is written
    return path


MEASURE_OPEN = """
import resource, sys
import detr_core
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    detr_core.load_image(sys.argv[1])
    print("opened")
except ValueError as err:
    print(err)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_small_file_of_144_megapixels_is_refused_without_decoding_it(tmp_path):
    """Measured in a fresh process: the peak resident size grows by less than 50 MB (decoding it to RGB would
    take 576 MB)."""
    path = huge_png(tmp_path / "huge.png")
    assert path.stat().st_size < 2_000_000
    out = subprocess.run([sys.executable, "-c", MEASURE_OPEN, str(path)], capture_output=True, text=True,
                         cwd=REPO, timeout=300, check=True).stdout.splitlines()
    assert out[0].endswith("huge.png' is 12000x12000 pixels (144.0 megapixels), more than the 40 megapixels this"
                           " program opens; scale it down (e.g. to 4000 px on its longer side) and try again")
    assert int(out[1]) < 50 * 1024, f"the process grew by {int(out[1]) / 1024:.0f} MB"


def test_unreadable_sources_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"^could not read '.*notes.txt' as an image \(.*\); give a JPEG, PNG"):
        detr_core.load_image(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match=r"^could not read the uploaded bytes as an image"):
        detr_core.load_image(b"not an image")
    with pytest.raises(ValueError, match=r"^image file '.*missing.png' does not exist$"):
        detr_core.load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("size", [(0, 3), (3, 0)])
def test_an_image_without_pixels_is_refused(size):
    with pytest.raises(ValueError, match=re.escape(f"image has no pixels (size {size})")):
        detr_core.load_image(Image.new("RGB", size))


@pytest.mark.parametrize("mode", ["1", "L", "P", "I", "I;16", "F", "RGBA", "LA", "CMYK", "YCbCr"])
def test_every_image_mode_becomes_rgb_of_the_same_size(mode):
    image = Image.new("RGB", (5, 3), (200, 60, 20)).convert(mode if mode != "I;16" else "L")
    image = Image.fromarray(np.full((3, 5), 300, np.uint16)) if mode == "I;16" else image
    loaded = detr_core.load_image(image)
    assert loaded.mode == "RGB" and loaded.size == (5, 3)


def test_exif_orientation_is_applied():
    """Stored 60 x 40 with a red left half and a blue right half; orientation 6 means "turn 90 degrees
    clockwise to display": 40 x 60, red on top, blue below."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30], pixels[:, 30:] = (255, 0, 0), (0, 0, 255)
    image, buffer = Image.fromarray(pixels), io.BytesIO()
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    upright = detr_core.load_image(buffer.getvalue())
    assert upright.size == (40, 60)
    red, blue = np.asarray(upright.getpixel((20, 10))), np.asarray(upright.getpixel((20, 50)))
    assert red[0] > 200 and red[2] < 50 and blue[2] > 200 and blue[0] < 50
