"""16-bit fixed-point storage of attention: how far from float32, and that slicing reads the right cells."""
import numpy as np
import pytest
import torch

import detr_core
from detr_core.inspection.compact import MAX_ERROR, QuantizedProbabilities, quantize


def _probabilities(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=gen) * 4, -1)  # peaky rows, values up to ~1


def test_every_value_is_within_half_a_step():
    p = torch.cat([_probabilities(3, 50, 50).flatten(), torch.tensor([0.0, 1.0, 0.5, 1 - 1e-7])])
    decoded = np.asarray(QuantizedProbabilities([quantize(p)]))[0]
    assert np.abs(decoded - p.numpy()).max() <= MAX_ERROR + 1e-9
    assert decoded[-4] == 0.0 and decoded[-3] == 1.0
    assert MAX_ERROR < 1e-5  # the speed issue's bar for attention maps is 1e-4


def test_slices_match_the_decoded_whole():
    maps = [_probabilities(1, 4, 30, 30, seed=s) for s in range(3)]  # L tensors [1, heads, N, S]
    att = QuantizedProbabilities.from_tensors(maps)
    whole = np.asarray(att)
    assert att.shape == whole.shape == (3, 4, 30, 30) and len(att) == 3 and att.ndim == 4
    assert whole.dtype == np.float32 and att[1].dtype == np.float32
    np.testing.assert_array_equal(att[-1, :, 7, :], whole[2, :, 7, :])  # a row, per head
    np.testing.assert_array_equal(att[0, :, :, 11], whole[0, :, :, 11])  # a column
    np.testing.assert_array_equal(att[np.int64(1)], whole[1])
    np.testing.assert_array_equal(att[1:, 2], whole[1:, 2])
    np.testing.assert_array_equal(att[-3], whole[0])  # negative layers down to -len
    assert np.asarray(att, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(np.asarray(att, dtype=np.float64), whole)
    assert att.nbytes * 2 == sum(m.numel() * 4 for m in maps)
    with pytest.raises(IndexError, match="layer 3 out of range for 3 layers"):
        att[3]
    with pytest.raises(IndexError, match="layer -4 out of range"):
        att[-4]


def test_repr_gives_shape_and_megabytes():
    att = QuantizedProbabilities([np.zeros((525, 1000), np.uint16)])  # 1,050,000 bytes
    assert repr(att) == "QuantizedProbabilities(shape=(1, 525, 1000), 1.1 MB)"


@pytest.mark.parametrize("layers", [[np.zeros((2, 3), np.uint16), np.zeros((2, 4), np.uint16)],
                                    [np.zeros((2, 3), np.float32)], []])
def test_rejects_mixed_layers(layers):
    with pytest.raises(ValueError, match="^need one or more uint16 arrays of equal shape, one per layer$"):
        QuantizedProbabilities(layers)


def test_inspection_keeps_the_captured_maps_within_half_a_step(tiny_model, rgb_image):
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    x = detr_core.image_to_tensor(ins.image, tiny_model.preprocess)[None]
    with torch.inference_mode(), detr_core.capture_attention(tiny_model) as maps:
        tiny_model(x)
    exact = torch.stack(maps.encoder)[:, 0].numpy()  # [L, heads, HW, HW]
    assert np.abs(np.asarray(ins.encoder_attention) - exact).max() <= MAX_ERROR + 1e-7
    # pixel (40, 30) of 180 x 120, input 192 x 128, stride 32: x 43.2 -> column 1, y 32.5 -> row 1 of 6 columns
    idx = 1 * 6 + 1
    np.testing.assert_allclose(ins.encoder_map(40, 30, layer=1, head=2).ravel(), exact[1, 2, idx],
                               atol=MAX_ERROR + 1e-7)
