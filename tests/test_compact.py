"""16-bit fixed-point storage of attention: rows sum to 1, values stay close to float32, slicing reads the right cells."""
import numpy as np
import pytest
import torch

import detr_core
from detr_core.inspection.compact import MAX_ERROR, SCALE, QuantizedProbabilities, quantize


def _probabilities(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=gen) * 4, -1)  # peaky rows, values up to ~1


def _check_rows(codes: np.ndarray, p: torch.Tensor) -> None:
    """Every row of the decoded codes sums to 1 within 1e-6 (float64 and numpy's float32 sum), every value is
    within 2e-5 of p (and within one step of the row scaled to sum to exactly 1), and zeros stay zero."""
    decoded = np.asarray(QuantizedProbabilities([codes]))[0]  # float32, as every view reads it
    exact = p.double().numpy()
    assert np.abs(decoded.astype(np.float64).sum(-1) - 1).max() < 1e-6
    assert np.abs(decoded.sum(-1, dtype=np.float32) - 1).max() < 1e-6
    assert np.abs(decoded - exact).max() <= MAX_ERROR < 2e-5
    steps = codes.astype(np.float64) - exact / exact.sum(-1, keepdims=True) * SCALE
    assert np.abs(steps).max() < 1 + 1e-3  # the floor or the ceiling of each scaled value
    assert not decoded[exact == 0].any()


def test_rows_of_r50_size_sum_to_one_and_stay_close():
    # 2 heads x 850 rows x 850 keys, as DETR-R50's encoder at 800x1066; peaky and flat rows
    logits = torch.randn(2, 850, 850, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits * torch.linspace(0.1, 12, 850)[:, None], -1)
    rounded_alone = ((p * SCALE + 0.5).floor().double().sum(-1) / SCALE - 1).abs().max().item()
    assert rounded_alone > 1e-5  # what this storage fixes: rounding each value alone misses 1 by far more
    _check_rows(quantize(p), p)


def test_hand_computed_rows():
    p = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0]])
    # running sums x SCALE: (0, 65535, 65535), (32767.5, 65535, 65535), (21845, 43690, 65535)
    expected = [[0, SCALE, 0], [32768, 32767, 0], [21845, 21845, 21845], [0, 0, 0]]
    np.testing.assert_array_equal(quantize(p), expected)


def test_a_row_off_one_by_float_rounding_still_sums_to_one():
    p = torch.full((4, 700), 1 / 700) * torch.tensor([1 - 1e-6, 1 + 1e-6, 1 - 1e-5, 1 + 1e-5])[:, None]
    assert (quantize(p).astype(np.int64).sum(-1) == SCALE).all()


def test_long_rows_take_64_bit_running_sums():
    logits = torch.randn(3, 9000, generator=torch.Generator().manual_seed(1)) * 5
    logits[:, -500:] = -float("inf")  # padded keys
    p = torch.softmax(logits, -1)
    _check_rows(quantize(p), p)


def test_padded_keys_stay_zero(tiny_model):
    gen = torch.Generator().manual_seed(3)
    x, mask = detr_core.pad_batch([torch.randn(3, 96, 128, generator=gen), torch.randn(3, 64, 96, generator=gen)])
    with torch.inference_mode(), detr_core.capture_attention(tiny_model) as maps:
        tiny_model(x, mask)
    small = maps.encoder[0][1]  # [heads, HW, HW] of the smaller, padded image
    assert (small == 0).any()
    _check_rows(quantize(small), small)


@pytest.mark.parametrize("backbone", ["resnet50", "resnet101"])
def test_official_layouts_store_rows_that_sum_to_one(backbone, rgb_image):
    """DETR-R50 / R101 as the official checkpoints lay them out (random weights), at a small input."""
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.DETRConfig(backbone=backbone), detr_core.PreprocessConfig(256, 400)).eval()
    with detr_core.capture_attention(model) as maps:  # records the float32 maps of inspect_image's own pass
        ins = detr_core.inspect_image(model, rgb_image, fast=False)
    exact = torch.stack(maps.encoder)[:, 0]  # [L, heads, HW, HW]
    assert exact.shape[-1] == 8 * 12
    decoded = np.asarray(ins.encoder_attention)
    assert np.abs(decoded.astype(np.float64).sum(-1) - 1).max() < 1e-6
    assert np.abs(decoded - exact.numpy()).max() < 2e-5


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


def test_inspection_keeps_the_captured_maps_within_max_error(tiny_model, rgb_image):
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
