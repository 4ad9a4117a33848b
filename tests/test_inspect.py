"""inspect_image: one forward pass, and the queries the app makes on its result."""
import io

import numpy as np
import pytest
import torch
from hand_made import hand_inspection
from PIL import Image

import detr_core
from detr_core.inspection.compact import MAX_ERROR

# a 64 x 128 (W x H) original shown at 32 x 64, stride 16: a 4 x 2 grid of 32 x 32-pixel cells (original)
GRID_4X2 = detr_core.CoordinateMap(image_size=(128, 64), input_size=(64, 32), feature_size=(4, 2), stride=16)


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


def test_scores_labels_and_detections_are_the_plain_models_softmax_at_every_layer(tiny_model, rgb_image):
    """Every layer's detections against torch.softmax over the classes of the plain model's own outputs."""
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    with torch.no_grad():
        out = tiny_model(detr_core.image_to_tensor(ins.image, tiny_model.preprocess)[None])
    layers = [*out["aux_outputs"], out]
    assert len(layers) == tiny_model.config.dec_layers == 2
    np.testing.assert_allclose(ins.probabilities, torch.softmax(out["pred_logits"][0], -1).numpy(), atol=1e-6)
    for layer, outputs in enumerate(layers):
        probs = torch.softmax(outputs["pred_logits"][0], -1)[:, :-1]  # [Q, C]: the last column is "no object"
        scores, labels = probs.max(-1)
        cx, cy, w, h = outputs["pred_boxes"][0].unbind(-1)  # each [Q]
        pixel_boxes = torch.stack([(cx - w / 2) * 180, (cy - h / 2) * 120, (cx + w / 2) * 180, (cy + h / 2) * 120], -1)
        order = sorted(range(len(scores)), key=lambda q: -scores[q].item())
        for index in (layer, layer - len(layers)):  # 0, 1 and -2, -1 name the same layers
            dets = ins.detections(threshold=0.0, layer=index)
            assert [d.query for d in dets] == order
            np.testing.assert_allclose([d.score for d in dets], scores[order].numpy(), atol=1e-6)
            assert [d.label for d in dets] == labels[order].tolist()
            np.testing.assert_allclose([d.box for d in dets], pixel_boxes[order].numpy(), atol=1e-3)
        ranked = scores[order]
        between = (ranked[4] + ranked[5]).item() / 2  # a threshold that keeps exactly the best five
        assert [d.query for d in ins.detections(threshold=between, layer=layer)] == order[:5]


def test_attention_in_box_uses_each_layers_own_box_and_map():
    """Two decoder layers whose boxes and maps differ, on the 4 x 2 grid (cell index = 2 * row + col)."""
    one_hot = np.eye(8)
    cross = np.stack([
        # layer 0, box = cell (1, 0): head 0 all on cell (1, 0); head 1 half there, half on (3, 1)
        [one_hot[2], (one_hot[2] + one_hot[7]) / 2],
        # layer 1, box = cell (3, 1): head 0 all on (3, 0); head 1 spread evenly, summing to 2 (shares are relative)
        [one_hot[6], np.full(8, 0.25)],
    ])[:, :, None, :]  # [L=2, heads=2, Q=1, 8]
    boxes = np.array([[[16 / 64, 48 / 128, 32 / 64, 32 / 128]],  # x 0..32, y 32..64 of the 64 x 128 image
                      [[48 / 64, 112 / 128, 32 / 64, 32 / 128]]])  # x 32..64, y 96..128
    ins = hand_inspection(GRID_4X2, cross=cross, boxes=boxes)
    # not grown: the box is one cell
    assert ins.attention_in_box(0, layer=0, grow_cells=0) == pytest.approx([1.0, 0.5])
    assert ins.attention_in_box(0, layer=1, grow_cells=0) == pytest.approx([0.0, 1 / 8])
    # grown by a cell: layer 0 covers rows 0-2 (cells 0..5), layer 1 rows 2-3 (cells 4..7)
    assert ins.attention_in_box(0, layer=0) == pytest.approx([1.0, 0.5])
    assert ins.attention_in_box(0, layer=1) == pytest.approx([1.0, 4 / 8])
    assert ins.attention_in_box(0) == pytest.approx([1.0, 4 / 8])  # the last layer by default
    assert ins.attention_in_box(0).dtype == np.float32
    assert ins.attention_in_box(0, layer=-2, grow_cells=0) == pytest.approx([1.0, 0.5])
    with pytest.raises(ValueError, match="query=1"):
        ins.attention_in_box(1)


def test_encoder_map_both_directions_on_a_hand_made_matrix():
    """Rows of a permutation matrix: cell i looks only at cell (i + shift) % 8, so the cell looked at from
    cell 2 is 2 + shift and the one looking at cell 2 is 2 - shift, in every layer with its own shift."""
    shifts = (1, 5)
    encoder = np.stack([[np.roll(np.eye(8), s, axis=1), np.full((8, 8), 1 / 8)] for s in shifts])  # [2, 2, 8, 8]
    ins = hand_inspection(GRID_4X2, encoder=encoder)
    x, y = 10, 40  # original pixel in cell (1, 0), index 2
    expected = {  # (layer, incoming) -> the cell where head 0's map is 1, as (row, col)
        (0, False): (1, 1), (0, True): (0, 1),  # layer 0: 2 -> 3, and 1 -> 2
        (1, False): (3, 1), (1, True): (2, 1),  # layer 1: 2 -> 7, and 5 -> 2
    }
    for (layer, incoming), (row, col) in expected.items():
        head0 = np.zeros((4, 2))
        head0[row, col] = 1.0
        got = ins.encoder_map(x, y, layer=layer, head=0, incoming=incoming)
        np.testing.assert_allclose(got, head0, atol=MAX_ERROR)
        np.testing.assert_allclose(ins.encoder_map(x, y, layer=layer, head=1, incoming=incoming), 1 / 8,
                                   atol=MAX_ERROR)
        np.testing.assert_allclose(ins.encoder_map(x, y, layer=layer, incoming=incoming), (head0 + 1 / 8) / 2,
                                   atol=MAX_ERROR)
    # the default is the last layer, looking from the point
    np.testing.assert_allclose(ins.encoder_map(x, y, head=0), [[0, 0], [0, 0], [0, 0], [0, 1]], atol=MAX_ERROR)


def test_detections_default_threshold_and_class_names():
    probs = np.array([[0.75, 0.15, 0.10],  # class "a" at 0.75: above the default 0.7
                      [0.05, 0.65, 0.30],  # class "b" at 0.65: below
                      [0.02, 0.72, 0.26]])  # class "b" at 0.72: above
    ins = hand_inspection(GRID_4X2, cross=np.full((1, 1, 3, 8), 1 / 8), logits=np.log(probs)[None])
    found = [(d.query, d.label, d.name, round(d.score, 4)) for d in ins.detections()]
    assert found == [(0, 0, "a", 0.75), (2, 1, "b", 0.72)]
    assert [ins.class_name(k) for k in (0, 1, 2, -1)] == ["a", "b", "class 2", "class -1"]


def test_every_layer_scores_with_its_own_logits():
    """Three decoder layers, one query; the best class moves from "a" to "b" to "c"."""
    logits = np.log(np.array([[[0.8, 0.1, 0.05, 0.05]], [[0.1, 0.8, 0.05, 0.05]], [[0.05, 0.1, 0.8, 0.05]]]))
    ins = hand_inspection(GRID_4X2, cross=np.full((3, 1, 1, 8), 1 / 8), logits=logits)
    assert [ins.detections(0.5, layer=layer)[0].name for layer in (0, 1, 2, -1, -2, -3)] == list("abccba")


def test_equal_scores_keep_query_order():
    """120 queries, every other one more confident: equal scores are listed by query number, so the ranks
    (and the colours the app gives them) do not shuffle from one call to the next."""
    probs = np.tile([[0.6, 0.1, 0.3], [0.3, 0.1, 0.6]], (60, 1))  # queries 0, 2, 4, ... score 0.6
    ins = hand_inspection(GRID_4X2, cross=np.full((1, 1, 120, 8), 1 / 8), logits=np.log(probs)[None])
    assert [d.query for d in ins.detections(0.0)] == list(range(0, 120, 2)) + list(range(1, 120, 2))


def test_huge_logits_give_probabilities_not_overflow():
    """A diverged or over-confident model: logits of 1000 still give probabilities (softmax shifted by
    each row's own maximum), for a row far below the others too."""
    logits = np.array([[[1000.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    ins = hand_inspection(GRID_4X2, cross=np.full((1, 1, 2, 8), 1 / 8), logits=logits)
    np.testing.assert_allclose(ins.probabilities, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    assert [round(d.score, 4) for d in ins.detections(0.0, layer=0)] == [1.0, 0.3333]


def test_head_and_query_selection_on_hand_made_maps():
    """Four heads, each a different one-hot map; three queries."""
    cross = np.zeros((1, 4, 3, 8))
    for head in range(4):
        cross[0, head, :, 2 * head] = 1.0  # head h looks at cell 2h: (0, 0), (1, 0), (2, 0), (3, 0)
    ins = hand_inspection(GRID_4X2, cross=cross, boxes=np.full((1, 3, 4), 0.5))
    assert ins.decoder_map(1, head=2).tolist() == [[0, 0], [0, 0], [1, 0], [0, 0]]
    assert ins.decoder_map(1, head=np.int64(1)).tolist() == [[0, 0], [1, 0], [0, 0], [0, 0]]
    assert ins.decoder_map(1, head=-1).tolist() == ins.decoder_map(1, head=3).tolist() == [[0, 0]] * 3 + [[1, 0]]
    assert ins.decoder_map(1, head=-4).tolist() == [[1, 0]] + [[0, 0]] * 3
    assert ins.decoder_map(1, head="mean").tolist() == ins.decoder_map(1).tolist() == [[0.25, 0]] * 4
    assert ins.decoder_map(1, head="max").tolist() == [[1, 0]] * 4
    for bad in (4, -5, "min", 1.0):
        with pytest.raises(ValueError, match=rf"^head={bad!r}: use None/'mean', 'max', or an index in 0..3$"):
            ins.decoder_map(1, head=bad)
    assert ins.decoder_map(-3, head=0).tolist() == ins.decoder_map(0, head=0).tolist()
    for method in (ins.decoder_map, ins.attention_in_box):
        for bad in (3, -4):
            with pytest.raises(ValueError, match=rf"^query={bad} out of range 0..2$"):
                method(bad)
        method(-3)


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
