"""The DETR family against references that do not go through the code under test: every decoder layer's logits and
boxes as transformers itself computes them (its auxiliary outputs, or its own head calls recorded by a hook),
non-square inputs and grids on images of another size than the input (so that a height/width swap shows), class
names from id2label, and pixel positions worked out by hand.

Models: tests/family_models.py's tiny configurations with 3 decoder layers and random box and class heads
(transformers initialises the box heads' last layers to zero, which makes every layer's box the same)."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import transformers as T
from PIL import Image

from detr_core.family import FamilyModel, capabilities, capture_family, inspect_family, load_family_model
from detr_core.family.capture import deformable_attention_modules
from family_models import TINY, built_on_first_use

H, W = 120, 200  # the image: non-square, and another size than every model's input
LAYERS = 3
NAMES = {0: "cat", 1: "dog", 2: "bird", 3: "fish", 4: "owl"}
HEADS = ("bbox_embed", "bbox_predictor", "pre_bbox_head", "class_embed", "class_labels_classifier", "lqe_layers")


def build(name: str, processor=None, **config) -> FamilyModel:
    """TINY[name] with 3 decoder layers, class names, random deformable attention and heads, eval mode."""
    model_class, make_config, make_processor = TINY[name]
    cfg = make_config()
    for key, value in {"decoder_layers": LAYERS, "id2label": NAMES, **config}.items():
        setattr(cfg, key, value)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = model_class._from_config(cfg, attn_implementation="eager").eval()
        for attentions in deformable_attention_modules(model).values():
            for attention in attentions:
                torch.nn.init.normal_(attention.sampling_offsets.weight, std=0.05)
                torch.nn.init.normal_(attention.attention_weights.weight, std=0.5)
        with torch.no_grad():
            for key, parameter in model.named_parameters():
                if any(part in key for part in HEADS):
                    parameter.normal_(0.0, 0.3 if parameter.dim() > 1 else 0.1)
    return FamilyModel.from_transformers(model, processor or make_processor(), source=f"tiny {name}")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    pixels[20:70, 120:180] = (30, 200, 60)
    return pixels


@pytest.fixture(scope="module")
def family(image):
    """name -> (FamilyModel, its inspection of `image`), built on first use."""
    return built_on_first_use(build, image)


def _inputs(fm, image):
    return fm.prepare(Image.fromarray(image))[0]


def _auxiliary(fm, image) -> tuple[np.ndarray, np.ndarray]:
    """Layers 0..L-2 as transformers' auxiliary loss sees them (labels given, auxiliary_loss on), then the model's
    own last-layer output: (logits [L, Q, C], boxes [L, Q, 4])."""
    labels = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])}]
    fm.model.config.auxiliary_loss = True
    try:
        with torch.no_grad():
            out = fm.model(**_inputs(fm, image), labels=labels)
    finally:
        fm.model.config.auxiliary_loss = False
    earlier = out.auxiliary_outputs[:LAYERS - 1]  # RT-DETR appends the encoder's proposals after these
    logits = [a["logits"][0] for a in earlier] + [out.logits[0]]
    boxes = [a["pred_boxes"][0] for a in earlier] + [out.pred_boxes[0]]
    return torch.stack(logits).numpy(), torch.stack(boxes).numpy()


def _fdr_training_decoder(fm, image) -> tuple[np.ndarray, np.ndarray]:
    """D-FINE / DEIMv2 compute earlier layers' predictions only in training: the decoder alone in training mode
    (no dropout in these configs), its class heads' outputs recorded as it calls them; boxes from its
    intermediate_reference_points (index 0 is the pre-box head's, then one per layer)."""
    decoder, seen = fm.model.model.decoder, {}

    def keep(i):
        def hook(module, args, out):
            seen.setdefault(i, out[0].clone())  # returns None: the output goes on unchanged
        return hook
    handles = [head.register_forward_hook(keep(i)) for i, head in enumerate(decoder.class_embed)]
    decoder.train()
    try:
        with torch.no_grad():
            trained = fm.model(**_inputs(fm, image))
    finally:
        decoder.eval()
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        out = fm.model(**_inputs(fm, image))
    logits = [seen[i] for i in range(LAYERS - 1)] + [out.logits[0]]
    boxes = [trained.intermediate_reference_points[0, i + 1] for i in range(LAYERS - 1)] + [out.pred_boxes[0]]
    return torch.stack(logits).numpy(), torch.stack(boxes).numpy()


@pytest.mark.parametrize("name", list(TINY))
def test_every_decoder_layer_is_what_transformers_computes_for_it(family, image, name):
    fm, ins = family(name)
    reference = _fdr_training_decoder if name in ("d_fine", "deimv2") else _auxiliary
    logits, boxes = reference(fm, image)
    assert ins.layer_logits.shape == logits.shape == (LAYERS, 10, 5)
    for layer in range(LAYERS):
        np.testing.assert_allclose(ins.layer_logits[layer], logits[layer], atol=2e-4, err_msg=f"{name} {layer}")
        np.testing.assert_allclose(ins.layer_boxes[layer], boxes[layer], atol=1e-5, err_msg=f"{name} {layer}")
    for a, b in ((0, 1), (1, 2)):  # the layers differ, so a layer read from its neighbour would show
        assert np.abs(logits[a] - logits[b]).max() > 1e-2 and np.abs(boxes[a] - boxes[b]).max() > 1e-3, (name, a)


@pytest.mark.parametrize("name", ["deformable_detr", "rt_detr", "lw_detr"])
def test_every_layer_scores_and_boxes_in_original_pixels(family, name):
    """detections(layer=...) from that layer's own logits and boxes: sigmoid scores, corners times (W, H)."""
    _, ins = family(name)
    for layer in range(LAYERS):
        scores = 1 / (1 + np.exp(-ins.layer_logits[layer].astype(np.float64)))  # [Q, C]
        found = {d.query: d for d in ins.detections(threshold=0.0, layer=layer)}
        assert len(found) == 10
        for query in (0, 9):
            cx, cy, w, h = ins.layer_boxes[layer, query].astype(np.float64)
            d = found[query]
            assert d.score == pytest.approx(scores[query].max(), rel=1e-5)
            assert d.label == int(scores[query].argmax()) and d.name == NAMES[d.label]
            assert d.box == pytest.approx(((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H),
                                          abs=1e-3)


def test_class_names_come_from_id2label_and_survive_a_save(family, image, tmp_path):
    fm, ins = family("rt_detr")
    assert fm.class_names == ins.class_names == ["cat", "dog", "bird", "fish", "owl"]
    assert ins.class_name(4) == "owl" and ins.class_name(5) == "class 5" and ins.class_name(-1) == "class -1"
    from types import SimpleNamespace

    from detr_core.family.loading import class_names

    gappy = SimpleNamespace(id2label={"0": "cat", 2: "bird", 7: "never"}, num_labels=5)  # gaps: named by index
    assert class_names(gappy) == ["cat", "class 1", "bird", "class 3", "class 4"]
    assert class_names(SimpleNamespace(id2label=None, num_labels=2)) == ["class 0", "class 1"]
    fm.model.save_pretrained(tmp_path)
    fm.processor.save_pretrained(tmp_path)
    loaded = load_family_model(tmp_path)
    assert loaded.class_names == ["cat", "dog", "bird", "fish", "owl"] and loaded.source == str(tmp_path)
    names = {d.name for d in inspect_family(loaded, image).detections(threshold=0.0)}
    assert names <= set(NAMES.values()) and len(names) > 1


def test_a_model_without_a_processor_gets_its_types_default_and_says_so(family):
    fm, _ = family("rt_detr")
    bare = FamilyModel.from_transformers(fm.model)
    assert type(bare.processor).__name__ == "RTDetrImageProcessor" and bare.processor.size == {"height": 640,
                                                                                                 "width": 640}
    assert bare.processor_note == "no image processor given: using RTDetrImageProcessor() defaults"
    assert FamilyModel.from_transformers(fm.model, fm.processor).processor_note == ""


# --- non-square inputs and grids ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rt_wide(image):
    """RT-DETR on a non-square 96x128 input: levels 12x16 (stride 8), 6x8 and 3x4 (AIFI's)."""
    fm = build("rt_detr", processor=T.RTDetrImageProcessor(size={"height": 96, "width": 128}))
    return fm, inspect_family(fm, image)


def test_sizes_and_levels_of_a_non_square_input(rt_wide):
    _, ins = rt_wide
    assert (ins.image_size, ins.input_size, ins.feature_size) == ((H, W), (96, 128), (12, 16))
    assert [(lv.size, lv.stride) for lv in ins.coords.levels] == [((12, 16), 8), ((6, 8), 16), ((3, 4), 32)]
    assert ins.decoder_map(0).shape == (12, 16) and ins.encoder_map(10.0, 10.0).shape == (12, 16)


def test_aifi_maps_of_a_clicked_pixel_on_a_non_square_grid_both_ways(rt_wide, image):
    fm, ins = rt_wide
    with torch.no_grad():
        aifi = fm.model(**_inputs(fm, image), output_attentions=True).encoder_attentions[0][0]  # [heads, 12, 12]
    # pixel (150, 50) of the 200x120 image = input pixel (96, 40) of 128x96 = coarse cell row 1, column 3 of 3x4
    x, y, cell = 150.0, 50.0, 1 * 4 + 3
    for head, incoming in ((1, False), (3, True)):
        spread = ins.encoder_map(x, y, 0, head=head, incoming=incoming)  # [12, 16]: each coarse cell over 4x4
        coarse = spread.reshape(3, 4, 4, 4).sum((1, 3))
        row = aifi[head, :, cell] if incoming else aifi[head, cell]
        np.testing.assert_allclose(coarse.reshape(-1), row.numpy(), atol=2e-5)
        np.testing.assert_allclose(spread[4:8, 12:16], row[cell].item() / 16, atol=2e-6)  # the cell itself


def test_sampling_points_in_pixels_of_a_non_square_image(rt_wide, image):
    """No padding: a point's normalised (u, v) is (u * 200, v * 120) in the image, on every level; the weight
    each level gets is the sum of its points' weights."""
    fm, ins = rt_wide
    with torch.no_grad(), capture_family(fm.model) as capture:
        fm.model(**_inputs(fm, image))
    layer, query, head = 1, 6, 2
    call = capture.decoder[layer]
    locations = call.sampling_locations[0, query, head].numpy()  # [T, 2]
    weights = call.attention_weights[0, query, head].numpy()  # [T]
    levels = np.repeat(np.arange(3), call.points_per_level)
    points = ins.sampling_points(query, layer, head)
    np.testing.assert_allclose(points.xy, locations * [W, H], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(points.weight, weights, atol=1e-7)
    np.testing.assert_array_equal(points.level, levels)
    for level in range(3):
        share = ins.decoder_map(query, layer, head, level=level).sum()
        assert share == pytest.approx(weights[levels == level].sum(), abs=1e-5)
    x, y = ins.reference_point(query, layer)
    centre = call.reference_points[0, query, 0, :2].numpy()
    assert (x, y) == pytest.approx((centre[0] * W, centre[1] * H), rel=1e-5)
    cx, cy, w, h = call.reference_points[0, query, 0].numpy().astype(np.float64)
    assert ins.reference_box(query, layer) == pytest.approx(
        ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H), rel=1e-5)


@pytest.mark.parametrize("name", ["conditional_detr", "dab-detr"])
def test_dense_maps_of_every_layer_on_a_non_square_grid(family, image, name):
    """200x120 -> a 160x96 input (shortest edge 96, longest 160) -> a 3x5 grid at stride 32; every layer's
    cross-attention and encoder self-attention, cell by cell, are the model's own."""
    fm, ins = family(name)
    assert (ins.image_size, ins.input_size, ins.feature_size) == ((H, W), (96, 160), (3, 5))
    with torch.no_grad():
        out = fm.model(**_inputs(fm, image), output_attentions=True)
    for layer in range(LAYERS):
        cross = out.cross_attentions[layer][0]  # [heads, Q, 15]
        for query, head in ((2, 1), (9, 3)):
            np.testing.assert_allclose(ins.decoder_map(query, layer, head), cross[head, query].reshape(3, 5).numpy(),
                                       atol=1e-6, err_msg=f"{name} layer {layer}")
    # pixel (130, 100) = input pixel (104, 80) = cell row 2, column 3 of 3x5
    for layer in range(2):
        encoder = out.encoder_attentions[layer][0]  # [heads, 15, 15]
        np.testing.assert_allclose(ins.encoder_map(130.0, 100.0, layer, head=2),
                                   encoder[2, 2 * 5 + 3].reshape(3, 5).numpy(), atol=2e-5)
        np.testing.assert_allclose(ins.encoder_map(130.0, 100.0, layer, head=0, incoming=True),
                                   encoder[0, :, 2 * 5 + 3].reshape(3, 5).numpy(), atol=2e-5)


def test_dab_anchor_boxes_per_layer_in_pixels(family, image):
    fm, ins = family("dab-detr")
    with torch.no_grad(), capture_family(fm.model) as capture:
        fm.model(**_inputs(fm, image), output_attentions=True)
    boxes = capture.base_output.reference_points[:, 0].numpy().astype(np.float64)  # [L, Q, 4] anchors
    assert np.abs(boxes[0] - boxes[2]).max() > 1e-3  # refined layer by layer
    for layer in range(LAYERS):
        cx, cy, w, h = boxes[layer, 5]
        assert ins.reference_box(5, layer) == pytest.approx(
            ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H), rel=1e-5)
        assert ins.reference_point(5, layer) == pytest.approx((cx * W, cy * H), rel=1e-5)


def test_conditional_reference_points_in_pixels(family, image):
    fm, ins = family("conditional_detr")
    with torch.no_grad(), capture_family(fm.model) as capture:
        fm.model(**_inputs(fm, image), output_attentions=True)
    points = capture.base_output.reference_points[:, 0].numpy()  # [Q, 2]
    for layer in range(LAYERS):  # the same point in every layer
        assert ins.reference_point(7, layer) == pytest.approx((points[7, 0] * W, points[7, 1] * H), rel=1e-5)
    assert ins.reference_box(7) is None


def test_deformable_encoder_query_of_a_clicked_pixel_on_each_level(family, image):
    """Deformable DETR's encoder queries are the cells of every level, level by level: 200x120 -> 160x96 input,
    levels 12x20, 6x10, 3x5, 2x3; pixel (150, 50) = input (120, 40) = cell (5, 15) on level 0, (2, 7) on 1."""
    fm, ins = family("deformable_detr")
    assert [lv.size for lv in ins.coords.levels] == [(12, 20), (6, 10), (3, 5), (2, 3)]
    assert [lv.stride for lv in ins.coords.levels] == [8, 16, 32, 64]
    with torch.no_grad():
        returned = fm.model(**_inputs(fm, image), output_attentions=True).encoder_attentions[1][0]  # [N, heads, ...]
    for query_level, index in ((0, 5 * 20 + 15), (1, 12 * 20 + 2 * 10 + 7)):
        points = ins.encoder_sampling_points(150.0, 50.0, layer=1, query_level=query_level)
        np.testing.assert_allclose(points.weight, returned[index].reshape(-1).numpy(), atol=1e-6)


# --- what each model can show, written out ------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("conditional_detr", ("conditional_detr", "Conditional DETR", LAYERS, 4, 1, 2, 4, False, True, False)),
    ("dab-detr", ("dab-detr", "DAB-DETR", LAYERS, 4, 1, 2, 4, False, True, False)),
    ("deformable_detr", ("deformable_detr", "Deformable DETR", LAYERS, 4, 4, 2, 4, True, False, True)),
    ("rt_detr", ("rt_detr", "RT-DETR", LAYERS, 4, 3, 1, 4, True, True, False)),
    ("d_fine", ("d_fine", "D-FINE", LAYERS, 4, 3, 1, 4, True, True, False)),
    ("rf_detr", ("rf_detr", "RF-DETR", LAYERS, 4, 1, 0, 0, True, False, False)),
])
def test_capabilities_from_the_configs(family, name, expected):
    caps = capabilities(family(name)[1])
    assert (caps.model_type, caps.title, caps.decoder_layers, caps.heads, caps.levels, caps.encoder_layers,
            caps.encoder_heads, caps.is_deformable, caps.has_dense_encoder, caps.has_deformable_encoder) == expected
    assert caps.score_kind == "sigmoid" and not caps.supports("detr_only_teaching")
    assert caps.reason("detr_only_teaching") == ("ablation and explanation re-run DETR's own modules: DETR"
                                                 " checkpoints only for now")


def test_unavailable_views_say_why_in_the_models_words(family):
    rf = capabilities(family("rf_detr")[1])
    why = "RF-DETR has no transformer encoder: its backbone feeds the decoder directly"
    assert [rf.reason(v) for v in ("encoder", "encoder_incoming", "encoder_sampling_points")] == [why] * 3
    assert rf.supports("sampling_points") and rf.supports("decoder_self_attention")
    rt = capabilities(family("rt_detr")[1])
    assert rt.reason("encoder_sampling_points") == "RT-DETR's encoder (AIFI) attends densely" and rt.supports("encoder")
    dab = capabilities(family("dab-detr")[1])
    assert dab.reason("sampling_points") == "DAB-DETR attends densely: every cell gets a weight, shown as the heatmap"
    assert dab.reason("encoder_sampling_points") == "DAB-DETR's encoder attends densely"
    with pytest.raises(ValueError, match="unknown view 'heatmap'"):
        dab.reason("heatmap")
