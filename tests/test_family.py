"""The DETR family through transformers: capture leaves outputs unchanged, the captured sampling points are the
ones the model used, hooks and function taps are always removed, every view answers or says why not.

Tiny random-weight models (tests/family_models.py), each built once per module."""
import threading

import numpy as np
import pytest
import torch
import transformers.models.rt_detr_v2.modeling_rt_detr_v2 as rt_detr_v2_modeling
from PIL import Image

import detr_core
from detr_core.family import capabilities, capture_family, inspect_family, load_family_model
from detr_core.family import inspect as family_inspect
from detr_core.family.capture import deformable_attention_modules, hook_count
from detr_core.family.function_tap import is_tapped
from family_models import DEFORMABLE, DENSE, TINY, build_tiny, built_on_first_use



@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    img[30:80, 40:120] = (220, 40, 40)
    return img


@pytest.fixture(scope="module")
def family(image):
    """name -> (FamilyModel, its inspection of `image`), built on first use and kept for the module."""
    return built_on_first_use(build_tiny, image)


def _plain(fm, image):
    """The plain transformers forward on the same preprocessed input, no capture, no attention outputs."""
    inputs, _ = fm.prepare(Image.fromarray(image))
    with torch.no_grad():
        return fm.model(**inputs), inputs


@pytest.mark.parametrize("name", list(TINY))
def test_capture_leaves_outputs_unchanged(family, image, name):
    fm, ins = family(name)
    plain, inputs = _plain(fm, image)
    with torch.no_grad(), capture_family(fm.model):
        captured = fm.model(**inputs, output_attentions=True)
    for key in ("logits", "pred_boxes"):
        assert (plain[key] - captured[key]).abs().max() <= 1e-5
    assert np.abs(ins.layer_logits[-1] - plain.logits[0].numpy()).max() <= 1e-5
    assert np.abs(ins.layer_boxes[-1] - plain.pred_boxes[0].numpy()).max() <= 1e-5
    assert ins.layer_logits.shape == (2, 10, 5) and ins.layer_boxes.shape == (2, 10, 4)


@pytest.mark.parametrize("name", DEFORMABLE)
def test_sampling_weights_are_the_models_and_sum_to_one(family, image, name):
    fm, ins = family(name)
    weights = ins.decoder.weights  # [L, Q, heads, T]
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    _, inputs = _plain(fm, image)
    with torch.no_grad():
        returned = fm.model(**inputs, output_attentions=True).cross_attentions  # the model's own record
    for layer, theirs in enumerate(returned):
        np.testing.assert_allclose(weights[layer], theirs[0].reshape(weights.shape[1:]).numpy(), atol=1e-6)
    if ins.encoder_sampling is not None:
        np.testing.assert_allclose(ins.encoder_sampling.weights.sum(-1), 1.0, atol=1e-5)


def _offsets_and_locations(fm, image):
    """Decoder layer 0's sampling_offsets output (hooked independently) and the captured locations."""
    attention = deformable_attention_modules(fm.model)["decoder"][0]
    seen = []
    handle = attention.sampling_offsets.register_forward_hook(lambda m, a, out: seen.append(out.clone()))
    _, inputs = _plain(fm, image)
    try:
        with torch.no_grad(), capture_family(fm.model) as capture:
            out = fm.model(**inputs)
    finally:
        handle.remove()
    return attention, seen[0], capture.decoder[0], out


def test_locations_equal_reference_plus_offsets_over_level_size(family, image):
    """Deformable DETR, reference points: location = reference + offset / (w_l, h_l) (paper, eq. 3)."""
    fm, _ = family("deformable_detr")
    attention, offsets, call, out = _offsets_and_locations(fm, image)
    heads, levels, points = attention.n_heads, attention.n_levels, attention.n_points
    reference = out.init_reference_points[0]  # [Q, 2]; no padding, so every valid ratio is 1
    h, w = 96, 128  # the processor's input; ResNet levels at strides 8, 16, 32 and the extra 64
    sizes = torch.tensor([[-(-w // s), -(-h // s)] for s in (8, 16, 32, 64)], dtype=torch.float32)  # (w_l, h_l)
    expected = reference[:, None, None, None, :] + offsets[0].view(-1, heads, levels, points, 2) / sizes[:, None, :]
    torch.testing.assert_close(call.sampling_locations[0], expected.flatten(2, 3))


@pytest.mark.parametrize("name", ["rt_detr", "d_fine"])  # the kernel submodule; the tapped v2 function
def test_locations_equal_box_centre_plus_scaled_offsets(family, image, name):
    """Reference boxes: location = centre + offset / points * (w, h) * offset_scale (0.5 in RT-DETR)."""
    fm, _ = family(name)
    attention, offsets, call, out = _offsets_and_locations(fm, image)
    heads, points = attention.n_heads, attention.n_points
    box = torch.sigmoid(out.init_reference_points[0])  # [Q, 4]: the decoder starts from sigmoid(proposals)
    scale = getattr(attention, "offset_scale", 0.5)
    offsets = offsets[0].view(box.shape[0], heads, -1, 2)  # [Q, heads, levels * points, 2]
    expected = box[:, None, None, :2] + offsets / points * box[:, None, None, 2:] * scale
    torch.testing.assert_close(call.sampling_locations[0], expected)


@pytest.mark.parametrize("name", ["deformable_detr", "rt_detr_v2", "d_fine", "dab-detr"])
def test_hooks_and_taps_removed_after_the_context_and_after_errors(family, image, name):
    fm, _ = family(name)
    model, before = fm.model, hook_count(fm.model)
    targets = [(a, "ms_deformable_attn_core") for a in deformable_attention_modules(model)["decoder"]
               if "ms_deformable_attn_core" in vars(a)]
    targets.append((rt_detr_v2_modeling, "multi_scale_deformable_attention_v2"))
    originals = [getattr(owner, attr) for owner, attr in targets]
    with capture_family(model):
        assert hook_count(model) > before
    with pytest.raises(RuntimeError, match="boom"):
        with capture_family(model):
            raise RuntimeError("boom")
    with pytest.raises(Exception):
        with torch.no_grad(), capture_family(model):
            model(pixel_values=torch.zeros(1, 5, 64, 64))  # 5 channels: fails inside the forward
    assert hook_count(model) == before
    assert [getattr(owner, attr) for owner, attr in targets] == originals
    assert not any(is_tapped(owner, attr) for owner, attr in targets)


def test_two_threads_inspecting_one_model_get_their_own_points(family, image):
    fm, ins = family("rt_detr_v2")  # the tapped module-level function is shared by both threads
    other = np.ascontiguousarray(image[::-1])
    expected_other = inspect_family(fm, other)
    results: dict = {}
    threads = [threading.Thread(target=lambda k=k, im=im: results.__setitem__(k, inspect_family(fm, im)))
               for k, im in (("same", image), ("other", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(results["same"].decoder.locations, ins.decoder.locations, atol=1e-6)
    np.testing.assert_allclose(results["other"].decoder.locations, expected_other.decoder.locations, atol=1e-6)
    assert not np.allclose(results["same"].decoder.locations, results["other"].decoder.locations)


@pytest.mark.parametrize("name", list(TINY))
def test_every_decoder_map_sums_to_one_per_head(family, name):
    fm, ins = family(name)
    caps = capabilities(ins)
    for query in (0, ins.num_queries - 1):
        for head in range(caps.heads):
            assert ins.decoder_map(query, -1, head).sum() == pytest.approx(1.0, abs=1e-4)
        assert ins.decoder_map(query, 0, None).shape == ins.feature_size
    assert ins.attention_in_box(0).shape == (caps.heads,)


@pytest.mark.parametrize("name", DENSE)
def test_dense_family_maps_are_the_models_cross_attention(family, image, name):
    fm, ins = family(name)
    _, inputs = _plain(fm, image)
    with torch.no_grad():
        cross = fm.model(**inputs, output_attentions=True).cross_attentions[-1][0]  # [heads, Q, HW]
    np.testing.assert_allclose(ins.decoder_map(3, -1, 1).reshape(-1), cross[1, 3].numpy(), atol=1e-6)
    assert capabilities(ins).reason("sampling_points").endswith("shown as the heatmap")


def test_aifi_encoder_map_is_the_clicked_cells_row(family, image):
    fm, ins = family("rt_detr")
    _, inputs = _plain(fm, image)
    with torch.no_grad():
        aifi = fm.model(**inputs, output_attentions=True).encoder_attentions[0][0]  # [heads, 16, 16]: 4x4 cells
    x, y = 130.0, 50.0  # input pixel (104, 53.3) of the 128x128 input: coarse cell (1, 3) at stride 32
    spread = ins.encoder_map(x, y, 0, head=2)  # [16, 16] on the stride-8 grid
    coarse = spread.reshape(4, 4, 4, 4).sum((1, 3))  # back onto the 4x4 coarse grid
    np.testing.assert_allclose(coarse.reshape(-1), aifi[2, 1 * 4 + 3].numpy(), atol=2e-5)


def test_deformable_encoder_points_of_a_clicked_cell(family, image):
    fm, ins = family("deformable_detr")
    _, inputs = _plain(fm, image)
    with torch.no_grad():
        returned = fm.model(**inputs, output_attentions=True).encoder_attentions[1][0]  # [N, heads, levels, points]
    x, y = 100.0, 30.0  # input pixel (80, 24) of the 96x128 input: level-0 cell (3, 10) at stride 8, 16 columns
    points = ins.encoder_sampling_points(x, y, layer=1)
    np.testing.assert_allclose(points.weight, returned[3 * 16 + 10].reshape(-1).numpy(), atol=1e-6)
    assert ins.encoder_map(x, y, 1, head=0).sum() == pytest.approx(1.0, abs=1e-5)
    assert "no dense map" in capabilities(ins).reason("encoder_incoming")


def test_reference_boxes_and_per_layer_boxes(family, image):
    fm, ins = family("rt_detr")
    _, inputs = _plain(fm, image)
    with torch.no_grad():
        start = torch.sigmoid(fm.model(**inputs).init_reference_points[0]).numpy()  # [Q, 4] of the 128x128 input
    x, y = ins.reference_point(4, layer=0)
    assert (x, y) == pytest.approx((start[4, 0] * 160, start[4, 1] * 120), rel=1e-5)  # image is 160x120
    box = ins.reference_box(4, layer=0)
    assert box[2] - box[0] == pytest.approx(start[4, 2] * 160, rel=1e-4)
    # RT-DETR refines boxes: the box a layer predicts is the reference the next layer's points start from
    np.testing.assert_allclose(ins.layer_boxes[0], ins.decoder.references[1, :, 0], atol=1e-6)


def test_no_encoder_views_for_rf_detr_say_why(family):
    _, ins = family("rf_detr")
    caps = capabilities(ins)
    assert caps.encoder_layers == 0 and "no transformer encoder" in caps.reason("encoder")
    with pytest.raises(ValueError, match="no transformer encoder"):
        ins.encoder_map(10, 10)


def test_detr_inspection_capabilities(module_tiny_model, rgb_image):
    from detr_core.family import layer_probabilities

    ins = detr_core.inspect_image(module_tiny_model, rgb_image)
    caps = capabilities(ins)
    assert (caps.model_type, caps.decoder_layers, caps.heads, caps.is_deformable) == ("detr", 2, 4, False)
    assert caps.supports("encoder_incoming") and not caps.supports("sampling_points")
    np.testing.assert_allclose(layer_probabilities(ins, -1), ins.probabilities, rtol=1e-5, atol=1e-7)


def test_detections_use_sigmoid_scores(family):
    _, ins = family("deformable_detr")
    scores = 1 / (1 + np.exp(-ins.logits.astype(np.float64)))  # [Q, C]
    found = ins.detections(threshold=0.0)
    assert [d.query for d in found] == list(np.argsort(-scores.max(1), kind="stable"))
    assert found[0].score == pytest.approx(scores.max())
    np.testing.assert_allclose(1 - ins.probabilities[:, -1], scores.max(1), rtol=1e-6)
    first = 1 / (1 + np.exp(-ins.layer_logits[0].astype(np.float64)))
    np.testing.assert_allclose(ins.layer_probabilities(0)[:, :-1], first, rtol=1e-5)


def test_load_from_folder_uses_its_preprocessor_config(family, image, tmp_path):
    fm, ins = family("rt_detr")
    fm.model.save_pretrained(tmp_path)
    fm.processor.save_pretrained(tmp_path)
    loaded = load_family_model(tmp_path)
    assert loaded.processor_note == "" and loaded.processor.size == {"height": 128, "width": 128}
    assert loaded.model.config._attn_implementation == "eager"
    again = inspect_family(loaded, image)
    np.testing.assert_allclose(again.layer_logits, ins.layer_logits, atol=1e-5)
    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.warns(UserWarning, match="no preprocessor_config.json: using RTDetrImageProcessor"):
        assert load_family_model(tmp_path).processor.size == {"height": 640, "width": 640}


def test_load_refuses_what_it_cannot_open(tmp_path):
    with pytest.raises(ValueError, match="neither a folder nor a Hub id"):
        load_family_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="no config.json"):
        load_family_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "detr"}')
    with pytest.raises(ValueError, match="detr_core.load_model"):
        load_family_model(tmp_path)


def test_a_hub_id_that_is_not_cached_offline_is_a_clear_error(tmp_path):
    """The error is detr_core.weights.hub's, as for DETR: the repo, the cache folder, how to fill it."""
    with pytest.raises(RuntimeError, match=r"'detr-lens-tests/not-a-cached-model' is not in the Hub cache .*hf download"):
        load_family_model("detr-lens-tests/not-a-cached-model", cache_dir=tmp_path)


def test_a_cached_hub_id_opens_offline(family, tmp_path, monkeypatch):
    """The Hugging Face cache layout: models--OWNER--NAME/refs/main names a snapshot folder of files."""
    fm, ins = family("d_fine")
    repo = tmp_path / "models--detr-lens-tests--tiny-dfine"
    snapshot = repo / "snapshots" / ("0" * 40)
    fm.model.save_pretrained(snapshot)
    fm.processor.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = load_family_model("detr-lens-tests/tiny-dfine", cache_dir=tmp_path)  # the network is blocked
    assert loaded.spec.model_type == "d_fine" and loaded.processor_note == ""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # open_any decides from the cached config.json's model type
    opened = detr_core.open_any("detr-lens-tests/tiny-dfine")
    assert isinstance(opened, detr_core.FamilyModel) and opened.spec.model_type == "d_fine"
    expected = fm.model(**fm.prepare(Image.fromarray(np.zeros((32, 32, 3), np.uint8)))[0]).logits
    got = opened.model(**opened.prepare(Image.fromarray(np.zeros((32, 32, 3), np.uint8)))[0]).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)  # the same weights came back


def test_open_any_tells_family_folders_from_detr(family, module_tiny_model, tmp_path):
    fm, _ = family("rt_detr")
    fm.model.save_pretrained(tmp_path / "rt")
    fm.processor.save_pretrained(tmp_path / "rt")
    assert isinstance(detr_core.open_any(tmp_path / "rt"), detr_core.FamilyModel)
    detr_core.save_model(module_tiny_model, tmp_path / "detr", format="hf")
    assert isinstance(detr_core.open_any(tmp_path / "detr"), detr_core.DETR)
    assert isinstance(detr_core.open_any("shapes"), detr_core.DETR)


def test_load_model_is_the_one_front_door_for_family_folders(family, image, tmp_path):
    """detr_core.load_model said "model_type 'rt_detr' is not a DETR" and never named open_any: one door now,
    and inspect_image inspects what it opens."""
    fm, _ = family("rt_detr")
    fm.model.save_pretrained(tmp_path / "rt")
    fm.processor.save_pretrained(tmp_path / "rt")
    opened = detr_core.load_model(tmp_path / "rt")
    assert isinstance(opened, detr_core.FamilyModel) and opened.spec.model_type == "rt_detr"
    ins = detr_core.inspect_image(opened, image)
    assert isinstance(ins, detr_core.DeformableInspection)
    np.testing.assert_allclose(ins.logits, inspect_family(fm, image).logits, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\['dilation'\]: overrides apply to DETR checkpoints only"):
        detr_core.load_model(tmp_path / "rt", dilation=True)


def test_a_folder_of_checkpoints_names_the_files_it_holds(module_tiny_model, tmp_path):
    run = tmp_path / "runs" / "shapes"
    run.mkdir(parents=True)
    detr_core.save_model(module_tiny_model, run / "best.pth")
    (run / "last.pth").write_bytes((run / "best.pth").read_bytes())
    (run / "log.jsonl").write_text("{}")
    with pytest.raises(ValueError) as err:
        detr_core.load_model(run)
    message = str(err.value)
    assert "has no config.json" in message and "best.pth, last.pth" in message and "log.jsonl" not in message
    assert f"load_model({str(run / 'best.pth')!r})" in message
    assert isinstance(detr_core.load_model(run / "best.pth"), detr_core.DETR)  # the file it names opens


def test_padded_input_maps_points_to_the_image(image):
    """A processor that pads (bottom/right) changes the grids, not where a point lands in the image."""
    import transformers

    fm = build_tiny("deformable_detr")
    fm.processor = transformers.DeformableDetrImageProcessor(size={"shortest_edge": 96, "longest_edge": 160},
                                                             pad_size={"height": 128, "width": 192})
    ins = inspect_family(fm, image)
    assert ins.input_size == (96, 128) and ins.coords.levels[0].size == (16, 24)  # 128x192 padded, stride 8
    inputs, _ = fm.prepare(Image.fromarray(image))
    with torch.no_grad():
        start = fm.model(**inputs).init_reference_points[0].numpy()  # [Q, 2] normalised to the unpadded input
    for query in (0, 7):
        # the model scales references by the valid ratio of each grid (12/16 rows, 16/24 columns on level 0)
        assert ins.reference_point(query, layer=0) == pytest.approx((start[query, 0] * 160, start[query, 1] * 120),
                                                                    abs=1e-3)


@pytest.mark.parametrize("padded, cells, expected", [
    ((100, 150), 4 * 5, ((4, 5), 32)),  # ceil(100/32) x ceil(150/32): convolutions round up
    ((100, 150), 7 * 10, ((7, 10), 16)),  # DC5
    ((150, 100), 5 * 4, ((5, 4), 32)),  # rows first
    ((64, 640), 1 * 10, ((1, 10), 64)),
])
def test_a_dense_grid_from_the_number_of_attention_keys(padded, cells, expected):
    assert family_inspect._dense_grid(padded, cells) == expected


def test_a_number_of_keys_no_stride_explains_is_refused():
    with pytest.raises(RuntimeError) as err:
        family_inspect._dense_grid((100, 150), 21)
    assert str(err.value) == "21 attention keys fit no feature grid of the 100x150 input at strides (32, 16, 64, 8)"


def test_focal_loss_models_score_with_a_sigmoid_others_with_a_softmax():
    from types import SimpleNamespace

    from detr_core.family.scoring import SIGMOID, SOFTMAX
    assert family_inspect._score_kind(SimpleNamespace(use_focal_loss=False)) == SOFTMAX
    assert family_inspect._score_kind(SimpleNamespace(use_focal_loss=True)) == SIGMOID
    assert family_inspect._score_kind(SimpleNamespace()) == SIGMOID  # the family's default (RT-DETR, D-FINE, ...)


def test_inspect_any_picks_the_inspection_for_the_model(family, image, module_tiny_model):
    fm, ins = family("conditional_detr")
    again = family_inspect.inspect_any(fm, image)
    assert type(again) is type(ins) and again.image.size == ins.image.size
    np.testing.assert_allclose(again.layer_logits, ins.layer_logits, rtol=0, atol=1e-6)
    detr = family_inspect.inspect_any(module_tiny_model, image)
    assert isinstance(detr, detr_core.Inspection) and detr.image.size == (image.shape[1], image.shape[0])


def test_a_dense_family_inspection_keeps_every_map_of_the_forward(family, image):
    """Conditional DETR: the grid and stride from the padded input, the encoder's and both decoder attentions of
    every layer, one reference point per query and layer."""
    fm, ins = family("conditional_detr")
    layers, queries = fm.model.config.decoder_layers, fm.model.config.num_queries
    heads = fm.model.config.decoder_attention_heads
    grid = ins.coords.feature_size
    assert ins.coords.image_size == image.shape[:2] and ins.coords.stride == 32
    assert ins.decoder_cross_attention.shape == (layers, heads, queries, grid[0] * grid[1])
    assert ins.decoder_self_attention.shape == (layers, heads, queries, queries)
    assert ins.references.shape == (layers, queries, 2)
    assert ins.encoder_attention is not None and len(ins.encoder_attention) == fm.model.config.encoder_layers


@pytest.mark.parametrize("name", ["deformable_detr", "rt_detr"])
def test_sampling_weight_in_a_box_grown_past_the_image_is_all_of_it(family, name):
    """attention_in_box of a deformable model: each head's share of its splatted weight inside the box. A box grown
    past the whole grid holds all of it; the default growth is one cell; each layer reads its own box and points."""
    fm, ins = family(name)
    heads = capabilities(ins).heads
    everything = ins.attention_in_box(3, layer=0, grow_cells=1e6)
    assert everything.dtype == np.float32 and everything == pytest.approx(np.ones(heads), abs=1e-5)
    shares = ins.attention_in_box(3)
    assert ((shares >= 0) & (shares <= 1 + 1e-6)).all()
    np.testing.assert_array_equal(shares, ins.attention_in_box(3, layer=-1, grow_cells=1.0))
    assert not np.array_equal(shares, ins.attention_in_box(3, layer=-1, grow_cells=2.0))
    assert not np.array_equal(ins.attention_in_box(3, layer=0), ins.attention_in_box(3, layer=-1))
