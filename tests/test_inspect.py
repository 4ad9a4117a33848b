"""inspect_image: one forward pass, and the queries the app makes on its result."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import detr_core


def test_shapes_and_consistency(tiny_model, rgb_image):
    cfg = tiny_model.config
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    assert ins.image_size == (120, 180)
    assert ins.input_size == (128, 192)
    fh, fw = ins.feature_size
    assert (fh, fw) == (4, 6)
    q, c1 = cfg.num_queries, cfg.num_classes + 1
    assert ins.logits.shape == (q, c1) and ins.boxes.shape == (q, 4)
    assert ins.layer_logits.shape == (cfg.dec_layers, q, c1) and ins.layer_boxes.shape == (cfg.dec_layers, q, 4)
    assert ins.encoder_attention.shape == (cfg.enc_layers, cfg.nheads, fh * fw, fh * fw)
    assert ins.decoder_cross_attention.shape == (cfg.dec_layers, cfg.nheads, q, fh * fw)
    assert ins.decoder_self_attention.shape == (cfg.dec_layers, cfg.nheads, q, q)
    # stored in 16-bit fixed point, rounded row by row so that every row still sums to 1
    np.testing.assert_allclose(np.asarray(ins.encoder_attention).astype(np.float64).sum(-1), 1, atol=1e-6)
    with torch.no_grad():
        x = detr_core.image_to_tensor(ins.image, tiny_model.preprocess)[None]
        out = tiny_model(x)
    np.testing.assert_allclose(ins.logits, out["pred_logits"][0].numpy(), atol=1e-5)


def test_detections_sorted_thresholded_in_pixels(tiny_model, rgb_image):
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    dets = ins.detections(threshold=0.0)
    assert len(dets) == tiny_model.config.num_queries
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)
    mid = scores[len(scores) // 2]
    assert all(d.score > mid for d in ins.detections(threshold=mid))
    d = dets[0]
    cx, cy, w, h = ins.boxes[d.query]
    np.testing.assert_allclose(d.box, [(cx - w / 2) * 180, (cy - h / 2) * 120, (cx + w / 2) * 180, (cy + h / 2) * 120], rtol=1e-5)
    assert d.name == tiny_model.class_names[d.label]
    assert ins.detections(threshold=1.0) == []


def test_decoder_map_heads(tiny_model, rgb_image):
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    per_head = ins.decoder_cross_attention[-1, :, 3].reshape(-1, *ins.feature_size)
    np.testing.assert_allclose(ins.decoder_map(3), per_head.mean(0), atol=1e-6)
    np.testing.assert_allclose(ins.decoder_map(3, head="max"), per_head.max(0))
    np.testing.assert_allclose(ins.decoder_map(3, layer=0, head=1),
                               ins.decoder_cross_attention[0, 1, 3].reshape(ins.feature_size))
    with pytest.raises(ValueError, match="head"):
        ins.decoder_map(3, head=99)
    with pytest.raises(ValueError, match="query"):
        ins.decoder_map(10_000)


def test_encoder_map_coordinate_mapping(tiny_model, rgb_image):
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    fh, fw = ins.feature_size
    att = ins.encoder_attention[-1].mean(0)  # [HW, HW]
    # Bottom-right pixel -> the last cell; top-left -> the first; a pixel in the middle -> its cell.
    np.testing.assert_allclose(ins.encoder_map(179, 119), att[fh * fw - 1].reshape(fh, fw), atol=1e-6)
    np.testing.assert_allclose(ins.encoder_map(0, 0), att[0].reshape(fh, fw), atol=1e-6)
    # x=100 of 180 -> input x=106.7 -> column 3 (stride 32); y=70 of 120 -> input 74.7 -> row 2.
    assert ins.coords.pixel_to_cell(100, 70) == (2, 3)
    np.testing.assert_allclose(ins.encoder_map(100, 70, incoming=True), att[:, 2 * fw + 3].reshape(fh, fw), atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        ins.encoder_map(500, 10)


@pytest.mark.parametrize("fast", [True, False])  # through the inference twin, and the model itself
def test_a_model_in_training_mode_is_inspected_as_at_inference(rgb_image, fast):
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.tiny_config(dropout=0.5), detr_core.PreprocessConfig(128, 213))
    expected = detr_core.inspect_image(model.eval(), rgb_image, fast=fast)
    model.train()
    for _ in range(2):  # with dropout active the maps would change from call to call
        got = detr_core.inspect_image(model, rgb_image, fast=fast)
        np.testing.assert_array_equal(got.decoder_cross_attention, expected.decoder_cross_attention)
        np.testing.assert_array_equal(got.layer_logits, expected.layer_logits)
    assert model.training  # the caller's mode is handed back


def test_encoder_map_with_padding_cells():
    """A grid with padding (as in a batch): the last image pixel maps to the last unpadded cell."""
    coords = detr_core.CoordinateMap(image_size=(100, 150), input_size=(100, 150), feature_size=(5, 8), stride=32)
    assert coords.valid_cells == (4, 5)
    assert coords.pixel_to_cell(149, 99) == (3, 4)
    assert coords.cell_index(3, 4) == 3 * 8 + 4
    assert coords.cell_bounds(3, 4) == (128, 96, 150, 100)  # the last cell is clipped to the image
    x0, y0, x1, y1 = coords.cell_bounds(1, 2)
    assert coords.pixel_to_cell(x0, y0) == (1, 2) and coords.pixel_to_cell(x1 - 1, y1 - 1) == (1, 2)


def _encode(image, fmt="PNG", **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16"])
def test_image_modes(tiny_model, rgb_image, mode):
    image = Image.fromarray(rgb_image).convert(mode if mode != "I;16" else "I")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image) * 200).astype(np.uint16))
    ins = detr_core.inspect_image(tiny_model, Image.open(io.BytesIO(_encode(image))))
    assert ins.image.mode == "RGB" and ins.image_size == (120, 180)


def test_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    assert np.all(np.asarray(detr_core.load_image(rgba)) == 255)


def test_exif_rotation_is_applied(tiny_model, rgb_image):
    image = Image.fromarray(rgb_image)  # 180 wide, 120 high
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated = detr_core.load_image(_encode(image, "JPEG", exif=exif.tobytes()))
    assert rotated.size == (120, 180)
    ins = detr_core.inspect_image(tiny_model, _encode(image, "JPEG", exif=exif.tobytes()))
    assert ins.image_size == (180, 120)


def test_not_an_image_is_a_clear_error(tiny_model, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, not a picture")
    with pytest.raises(ValueError, match="notes.txt.*as an image"):
        detr_core.inspect_image(tiny_model, bad)
    with pytest.raises(ValueError, match="as an image"):
        detr_core.inspect_image(tiny_model, b"\x89PNG broken")
    with pytest.raises(ValueError, match="does not exist"):
        detr_core.inspect_image(tiny_model, tmp_path / "missing.png")
    with pytest.raises(ValueError, match="shape"):
        detr_core.inspect_image(tiny_model, np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        detr_core.inspect_image(tiny_model, np.zeros((4, 4, 3), dtype=np.float32))


@pytest.mark.parametrize("size,expected", [
    ((480, 640), (800, 1066)), ((800, 1066), (800, 1066)), ((100, 1000), (133, 1330)), ((640, 480), (1066, 800)),
])
def test_resized_size_official_rule(size, expected):
    assert detr_core.resized_size(*size, 800, 1333) == expected
