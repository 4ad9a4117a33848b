"""Where a detection's head-mean attention peaks: inside its box or not, on hand-made maps."""
import dataclasses

import numpy as np

import detr_core
from detr_core.inspection.coords import CoordinateMap
from train.attention_metric import _peaks_in_box

# a 128x64 original image shown to the model at 64x32, stride 16: a 4x2 grid of 32-px cells (original)
COORDS = CoordinateMap(image_size=(128, 64), input_size=(64, 32), feature_size=(4, 2), stride=16)
BOX = (0.0, 32.0, 32.0, 64.0)  # exactly cell (1, 0) in original pixels


def _inspection_with(tiny_model, rgb_image, heads: np.ndarray):
    """The tiny model's inspection with one query whose last-layer cross-attention is ``heads`` [H, 8]."""
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    cross = heads[None, :, None, :]  # [L=1, heads, Q=1, fh*fw=8]
    return dataclasses.replace(ins, coords=COORDS, decoder_cross_attention=cross,
                               layer_boxes=np.zeros((1, 1, 4)), layer_logits=np.zeros((1, 1, 6)), _probs=None)


def _detection(box):
    return detr_core.Detection(query=0, label=0, name="x", score=0.9, box=box)


def test_a_peak_on_the_box_counts_even_if_most_heads_look_elsewhere(tiny_model, rgb_image):
    on_box, spread = np.zeros(8), np.full(8, 1 / 8)
    on_box[2] = 1.0  # cell (1, 0)
    ins = _inspection_with(tiny_model, rgb_image, np.stack([on_box, spread, spread]))
    # head mean: 0.083 everywhere, 0.417 on cell (1, 0): the peak is in the box although 5/6 of the mass is not
    assert _peaks_in_box(ins, _detection(BOX))


def test_a_peak_outside_the_box_does_not(tiny_model, rgb_image):
    far = np.zeros(8)
    far[7] = 1.0  # cell (3, 1)
    ins = _inspection_with(tiny_model, rgb_image, np.stack([far, np.full(8, 1 / 8)]))
    assert not _peaks_in_box(ins, _detection(BOX))
    assert _peaks_in_box(ins, _detection((32.0, 96.0, 64.0, 128.0)))  # the box around cell (3, 1)
