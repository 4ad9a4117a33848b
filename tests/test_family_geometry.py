"""Multi-scale geometry of the DETR family, checked by hand: strides, the common grid, normalised sampling
locations to pixels, the bilinear splat and the sigmoid scores."""
import numpy as np
import pytest

from detr_core.family.capture import DeformableCall
from detr_core.family.deformable import DeformableSampling, bilinear_splat
from detr_core.family.scoring import class_probabilities
from detr_core.inspection.coords import CoordinateMap, FeatureLevel, infer_stride


@pytest.mark.parametrize("input_size, level, stride", [
    ((800, 1066), (100, 134), 8),  # ResNet C3: 1066 / 8 = 133.25 rounds up
    ((800, 1066), (25, 34), 32),
    ((800, 1066), (13, 17), 64),  # the extra stride-2 level on C5
    ((214, 427), (4, 7), 64),  # 427 / 7 = 61 fits too; ceil(214 / 64) = 4, ceil(427 / 64) = 7: the power of two
    ((640, 640), (20, 20), 32),  # 33 fits too; the power of two wins
    ((560, 560), (40, 40), 14),  # DINOv2 patches
    # stride 64 on a small non-square input: ceil(96 / 64) = 2, ceil(160 / 64) = 3, although 160 / 3 = 53.3
    # (54 fits too: the power of two wins, as for the stride-32 level (3, 5) and the stride-8 one (12, 20))
    ((96, 160), (2, 3), 64), ((96, 160), (3, 5), 32), ((96, 160), (12, 20), 8),
    ((90, 100), (1, 1), 128),  # one cell: any stride from 100 up fits; the power of two nearest the ratio
])
def test_infer_stride(input_size, level, stride):
    assert infer_stride(input_size, level) == stride


def test_infer_stride_refuses_impossible_grids():
    with pytest.raises(ValueError, match="cannot come from"):
        infer_stride((800, 800), (10, 40))


def test_common_grid_covers_every_level():
    coords = CoordinateMap.multi_scale((480, 640), (800, 1066), [(100, 134), (50, 67), (25, 34), (13, 17)])
    assert [lv.stride for lv in coords.levels] == [8, 16, 32, 64]
    # rows: max(100, 50*2, 25*4, 13*8) = 104; cols: max(134, 67*2, 34*4, 17*8) = 136
    assert coords.feature_size == (104, 136) and coords.stride == 8
    assert [coords.level_scale(i) for i in range(4)] == [1, 2, 4, 8]


def test_normalised_locations_to_pixels_and_cells():
    coords = CoordinateMap.multi_scale((480, 640), (800, 1066), [(100, 134), (25, 34)])
    # level 1: 34 cells of 32 px; u = 0.5 is 17 cells = 544 input px = 544 * 640 / 1066 original px
    x, y = coords.normalised_to_pixels(np.array([0.5, 0.5]), 1)
    assert x == pytest.approx(544 * 640 / 1066) and y == pytest.approx(400 * 480 / 800)
    col, row = coords.normalised_to_level_cells(np.array([0.0, 1.0]), 1)
    assert (col, row) == (-0.5, 24.5)  # the outer edges, half a cell beyond the first and last centres
    assert coords.pixel_to_level_cell(639, 479, 1) == (24, 33)


def test_bilinear_splat_by_hand():
    cells = np.array([[[1.25, 2.5]]])  # one grid, one point between columns 1-2 and rows 2-3 (row 4 stays empty)
    grid = bilinear_splat(cells, np.array([[1.0]]), (5, 5))[0]
    expected = np.zeros((5, 5))
    expected[2, 1], expected[2, 2], expected[3, 1], expected[3, 2] = 0.375, 0.125, 0.375, 0.125
    np.testing.assert_allclose(grid, expected)


def test_bilinear_splat_keeps_weight_that_falls_outside():
    cells = np.array([[[-0.5, 0.0], [5.0, 7.0], [2.0, -0.5]]])  # left of the grid; past its bottom-right; above
    grid = bilinear_splat(cells, np.array([[0.6, 0.2, 0.2]]), (4, 4))[0]
    assert grid[0, 0] == pytest.approx(0.6) and grid[3, 3] == pytest.approx(0.2) and grid[0, 2] == pytest.approx(0.2)
    assert grid.sum() == pytest.approx(1.0)


def _two_level_sampling() -> tuple[DeformableSampling, CoordinateMap]:
    """One layer, one query, two heads; one point on the 4x4 level (stride 8) and one on the 2x2 level."""
    coords = CoordinateMap((32, 32), (32, 32), (4, 4), 8, (FeatureLevel((4, 4), 8), FeatureLevel((2, 2), 16)))
    locations = np.array([[[[[0.375, 0.625], [0.25, 0.75]],  # head 0: level-0 cell (2, 1); level-1 cell (1, 0)
                            [[0.875, 0.125], [0.75, 0.25]]]]], dtype=np.float32)  # head 1: (0, 3); (0, 1)
    weights = np.array([[[[0.3, 0.7], [0.6, 0.4]]]], dtype=np.float32)
    references = np.zeros((1, 1, 1, 2), dtype=np.float32)
    return DeformableSampling(locations, weights, np.array([0, 1]), references), coords


def test_splat_spreads_coarse_levels_over_the_common_grid():
    sampling, coords = _two_level_sampling()
    head0 = sampling.splat(coords, 0, 0, head=0)
    expected = np.zeros((4, 4))
    expected[2:4, 0:2] = 0.7 / 4  # the level-1 cell (1, 0) covers common rows 2-3, cols 0-1
    expected[2, 1] += 0.3  # the level-0 point sits on a cell centre
    np.testing.assert_allclose(head0, expected, atol=1e-6)
    assert sampling.splat(coords, 0, 0, head=1).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(sampling.splat(coords, 0, 0, head=None),
                               (head0 + sampling.splat(coords, 0, 0, head=1)) / 2, atol=1e-6)
    assert sampling.splat(coords, 0, 0, head=0, level=1).sum() == pytest.approx(0.7)


def test_sampling_points_in_pixels_with_levels_and_heads():
    sampling, coords = _two_level_sampling()
    points = sampling.points(coords, 0, 0)
    np.testing.assert_allclose(points.xy, [[12, 20], [8, 24], [28, 4], [24, 8]])  # u * w_l * stride_l
    np.testing.assert_array_equal(points.level, [0, 1, 0, 1])
    np.testing.assert_array_equal(points.head, [0, 0, 1, 1])
    one = sampling.points(coords, 0, 0, head=1, level=1)
    assert len(one) == 1 and one.weight[0] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="head=2"):
        sampling.points(coords, 0, 0, head=2)
    with pytest.raises(ValueError, match="query=1"):
        sampling.splat(coords, 1, 0)


def test_levels_that_cover_different_pixels_non_square():
    """A 36x52 input: level 0 is 5x7 cells of 8 px (40x56 px), level 1 is 3x4 cells of 16 px (48x64 px), so the
    same normalised location is a different pixel on each level, and the common grid (6x8) is wider than tall."""
    coords = CoordinateMap.multi_scale((36, 52), (36, 52), [(5, 7), (3, 4)])
    locations = np.full((1, 1, 2, 2, 2), 0.5, dtype=np.float32)  # both heads: each level's centre
    weights = np.array([[[[0.25, 0.75], [1.0, 0.0]]]], dtype=np.float32)
    sampling = DeformableSampling(locations, weights, np.array([0, 1]), np.zeros((1, 1, 1, 2), np.float32))
    points = sampling.points(coords, 0, 0, head=0)
    np.testing.assert_allclose(points.xy, [[28, 20], [32, 24]])  # u * w_l * stride_l, u * h_l * stride_l
    assert points.xy.dtype == np.float32
    head0 = sampling.splat(coords, 0, 0, head=0)
    expected = np.zeros((6, 8))
    expected[2:4, 2:6] = 0.75 * 0.5 / 4  # level-1 cells (1, 1) and (1, 2), half each, 2x2 common cells apiece
    expected[2, 3] += 0.25  # the level-0 centre sits on cell (2, 3)
    np.testing.assert_allclose(head0, expected, atol=1e-7)
    assert head0.dtype == np.float32 and sampling.head_splats(coords, 0, 0).dtype == np.float32
    np.testing.assert_array_equal(sampling.points(coords, 0, 0, head=-2).head, [0, 0])  # -2 of 2 heads: head 0
    for head in (2, -3):
        with pytest.raises(ValueError) as err:
            sampling.points(coords, 0, 0, head=head)
        assert str(err.value) == f"head={head}: use None (all heads) or an index in 0..1"


@pytest.mark.parametrize("call, message", [
    (lambda s, c: s.points(c, 0, 1), "layer=1 out of range 0..0"),
    (lambda s, c: s.points(c, 0, -2), "layer=-2 out of range 0..0"),
    (lambda s, c: s.splat(c, 1, 0), "query=1 out of range 0..0"),
    (lambda s, c: s.splat(c, -2, 0), "query=-2 out of range 0..0"),
    (lambda s, c: s.splat(c, 0, 0, level=2), "level=2 out of range 0..1"),
    (lambda s, c: s.points(c, 0, 0, level=-3), "level=-3 out of range 0..1"),
])
def test_a_layer_query_or_level_out_of_range_is_named_with_the_range(call, message):
    sampling, coords = _two_level_sampling()
    with pytest.raises(ValueError) as err:
        call(sampling, coords)
    assert str(err.value) == message


def test_negative_indices_count_from_the_end_as_in_python():
    sampling, coords = _two_level_sampling()
    np.testing.assert_array_equal(sampling.splat(coords, -1, -1, head=0), sampling.splat(coords, 0, 0, head=0))
    np.testing.assert_array_equal(sampling.points(coords, 0, 0, level=-2).level, [0, 0])  # -2 of 2 levels: level 0
    np.testing.assert_array_equal(sampling.points(coords, 0, 0, level=-1).level, [1, 1])


def _call(points_per_level: tuple[int, ...], seed: int = 0) -> DeformableCall:
    """A captured call: batch 1, 2 queries, 1 head, the given points per level."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    t = sum(points_per_level)
    return DeformableCall(torch.rand(1, 2, 1, 2, generator=g), torch.rand(1, 2, 1, t, 2, generator=g),
                          torch.rand(1, 2, 1, t, generator=g), points_per_level, ((4, 4),) * len(points_per_level))


def test_sampling_from_calls_keeps_every_array_and_refuses_what_cannot_stack():
    one = _call((2, 1))
    sampling = DeformableSampling.from_calls([one])
    np.testing.assert_array_equal(sampling.references, one.reference_points.numpy())
    np.testing.assert_array_equal(sampling.locations, one.sampling_locations.numpy())
    np.testing.assert_array_equal(sampling.point_levels, [0, 0, 1])
    assert DeformableSampling.from_calls([one, _call((2, 1), seed=1)]).layers == 2
    with pytest.raises(ValueError) as err:
        DeformableSampling.from_calls([])
    assert str(err.value) == "no deformable attention calls were captured"
    with pytest.raises(ValueError) as err:
        DeformableSampling.from_calls([one, _call((1, 2))])
    assert str(err.value) == "layers sample different numbers of points per level"


def test_sigmoid_scores_have_a_no_object_column():
    probs = class_probabilities(np.array([[0.0, 2.0]]), "sigmoid")
    best = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(probs, [[0.5, best, 1 - best]], rtol=1e-6)
    np.testing.assert_allclose(class_probabilities(np.array([[1.0, 1.0, 1.0]]), "softmax"), [[1 / 3] * 3], rtol=1e-6)
    with pytest.raises(ValueError, match="score_kind"):
        class_probabilities(np.zeros((1, 2)), "logistic")


def test_layer_probabilities_of_detr_are_a_softmax_and_of_the_family_their_own():
    from types import SimpleNamespace

    from detr_core.family.scoring import FamilyScoring, layer_probabilities

    detr = SimpleNamespace(layer_logits=np.array([[[0.0, np.log(3.0)]], [[np.log(2.0), 0.0]]]))  # [L=2, Q=1, 2]
    np.testing.assert_allclose(layer_probabilities(detr, 0), [[0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(layer_probabilities(detr), [[2 / 3, 1 / 3]], rtol=1e-6)

    class Family(FamilyScoring):
        score_kind = "sigmoid"
        layer_logits = np.array([[[0.0, 0.0]], [[np.log(3.0), -np.log(3.0)]]])  # sigmoids 0.5, 0.5; 0.75, 0.25

    family = Family()
    np.testing.assert_allclose(layer_probabilities(family, 0), [[0.5, 0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(layer_probabilities(family, -1), [[0.75, 0.25, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(family.layer_probabilities(1), [[0.75, 0.25, 0.25]], rtol=1e-6)


def test_family_detections_by_hand():
    """Two queries, two classes, a 100x200 image: scores are the best sigmoid, boxes corners times (W, H)."""
    from detr_core.family.scoring import FamilyScoring

    class Family(FamilyScoring):
        score_kind = "sigmoid"
        coords = CoordinateMap((100, 200), (50, 100), (2, 4), 25)
        layer_logits = np.array([[[0.0, np.log(4.0)], [np.log(9.0), 0.0]],  # layer 0: 0.8 (class 1), 0.9 (class 0)
                                 [[-5.0, -5.0], [np.log(3.0), 0.0]]])  # layer 1: 0.0067, 0.75 (class 0)
        layer_boxes = np.array([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]] * 2)

        def class_name(self, label):
            return ["cat", "dog"][label]

    found = Family().detections(threshold=0.5, layer=0)
    assert [(d.query, d.label, d.name) for d in found] == [(1, 0, "cat"), (0, 1, "dog")]
    assert [d.score for d in found] == pytest.approx([0.9, 0.8])
    assert found[0].box == pytest.approx((0.0, 50.0, 100.0, 100.0)) and found[1].box == pytest.approx((80, 30, 120, 70))
    assert [d.query for d in Family().detections()] == [1]  # the last layer, threshold 0.5 by default
    assert Family().detections(threshold=0.75) == []  # strictly above the threshold


def test_capabilities_of_a_detr_inspection_by_hand():
    from types import SimpleNamespace

    from detr_core.family.capabilities import Capabilities, capabilities

    ins = SimpleNamespace(decoder_cross_attention=np.zeros((3, 2, 5, 6)), encoder_attention=np.zeros((4, 8, 6, 6)))
    caps = capabilities(ins)
    assert (caps.model_type, caps.title, caps.decoder_layers, caps.heads, caps.levels, caps.encoder_layers,
            caps.encoder_heads, caps.is_deformable, caps.has_dense_encoder, caps.has_deformable_encoder,
            caps.score_kind) == ("detr", "DETR", 3, 2, 1, 4, 8, False, True, False, "softmax")
    dense = "DETR's attention is dense: every cell gets a weight, shown as the heatmap"
    assert caps.reason("sampling_points") == caps.reason("encoder_sampling_points") == dense
    assert caps.reason("reference") == "DETR's queries have no reference point: they are learned embeddings"
    assert caps.supports("encoder") and caps.supports("encoder_incoming") and not caps.supports("reference")
    own = Capabilities("x", "X", 1, 1, 1, 0, 0, True, False, False, "sigmoid")
    assert capabilities(SimpleNamespace(capabilities=own)) is own
    with pytest.raises(ValueError) as err:
        Capabilities("x", "X", 1, 1, 1, 0, 0, True, False, False, "sigmoid", (("heatmap", "why"),))
    assert str(err.value).startswith("unknown views ['heatmap']; known: ('decoder_heatmap', 'sampling_points',")
    with pytest.raises(ValueError) as err:
        own.supports("heatmap")
    assert str(err.value).startswith("unknown view 'heatmap'; known: ('decoder_heatmap',")


def test_family_specs_refuse_unknown_kinds():
    from detr_core.family.registry import FamilySpec

    with pytest.raises(ValueError) as err:
        FamilySpec("m", "M", "A", "P", "sparse", "dense", "lw")
    assert str(err.value) == "m: unknown decoder/encoder kind sparse/dense"
    with pytest.raises(ValueError, match="^m: unknown decoder/encoder kind dense/sparse$"):
        FamilySpec("m", "M", "A", "P", "dense", "sparse", "lw")
    with pytest.raises(ValueError) as err:
        FamilySpec("m", "M", "A", "P", "deformable", "none", "yolo")
    assert str(err.value) == "m: unknown layer_heads 'yolo'"
    for encoder in ("dense", "deformable", "dense-coarsest", "none"):
        assert FamilySpec("m", "M", "A", "P", "dense", encoder, "dab").encoder == encoder
    assert FamilySpec("m", "M", "A", "P", "dense", "none", "dab").decoder_view == (
        "per-head cross-attention heatmap over the stride-32 grid")


def test_the_registry_by_hand():
    from detr_core.family.registry import spec_for, views_table

    assert spec_for("rt_detr").title == "RT-DETR"
    with pytest.raises(ValueError) as err:
        spec_for("detr")
    assert str(err.value) == (
        "model_type 'detr' is not a supported DETR-family model (plain DETR checkpoints open through"
        " detr_core.load_model); supported: conditional_detr, d_fine, dab-detr, deformable_detr, deimv2, lw_detr,"
        " rf_detr, rt_detr, rt_detr_v2")
    with pytest.raises(ValueError, match=r"^model_type 'yolo' is not a supported DETR-family model; supported"):
        spec_for("yolo")
    table = views_table().splitlines()
    assert table[:2] == ["| Model (`model_type`) | Decoder view | Encoder view | Notes |", "|---|---|---|---|"]
    assert table[2] == ("| Conditional DETR (`conditional_detr`) | per-head cross-attention heatmap over the stride-32"
                        " grid | per-head self-attention of the clicked cell (both directions) | reference point per"
                        " query (the same in every layer) |")
    assert table[5] == ("| RT-DETR (`rt_detr`) | sampling points (per head, level, point; size = weight) and their"
                        " bilinear splat as a heatmap | per-head AIFI self-attention of the clicked cell on the"
                        " coarsest level (stride 32) | 640x640 input, no normalisation |")
    assert "| none: no transformer encoder (the backbone's own attention is not shown) |" in table[-1]
    assert "| the sampling points of the clicked location (deformable encoder) and their splat |" in table[4]
    assert len(table) == 2 + 9


def test_class_probabilities_row_by_row_without_overflow_and_in_float64():
    """Several rows (a softmax over the wrong axis would show), huge logits (no overflow), a batch of layers, and
    float32 logits computed in float64 (1 - sigmoid(20) is 2.1e-9, 0 in float32 arithmetic)."""
    third = np.log(3.0)
    probs = class_probabilities(np.array([[1000.0, 1000.0 + third], [np.log(2.0), 0.0]]), "softmax")
    np.testing.assert_allclose(probs, [[0.25, 0.75], [2 / 3, 1 / 3]], rtol=1e-6)
    assert probs.dtype == np.float32
    batch = class_probabilities(np.array([[[0.0, third]], [[np.log(2.0), 0.0]]]), "softmax")  # [L=2, Q=1, C+1=2]
    np.testing.assert_allclose(batch, [[[0.25, 0.75]], [[2 / 3, 1 / 3]]], rtol=1e-6)
    layers = class_probabilities(np.array([[[third, -third]], [[0.0, 0.0]]]), "sigmoid")  # [L=2, Q=1, C=2]
    np.testing.assert_allclose(layers, [[[0.75, 0.25, 0.25]], [[0.5, 0.5, 0.5]]], rtol=1e-6)
    assert layers.dtype == np.float32
    assert class_probabilities(np.array([[20.0]], dtype=np.float32), "sigmoid")[0, 1] == pytest.approx(2.06e-9, rel=1e-2)


def test_family_labels_per_query_ties_in_query_order_and_any_layer():
    from detr_core.family.scoring import FamilyScoring

    class Family(FamilyScoring):
        score_kind = "sigmoid"
        coords = CoordinateMap((10, 10), (10, 10), (1, 1), 10)
        layer_logits = np.array([[[1.0, 0.0], [2.0, 3.0], [0.0, 4.0]],
                                 [[0.0, 1.0], [5.0, 0.0], [0.0, 0.0]],
                                 [[0.0, 0.0], [0.0, 0.0], [6.0, 0.0]]])  # [L=3, Q=3, C=2]
        layer_boxes = np.full((3, 3, 4), 0.5)

        def class_name(self, label):
            return str(label)

    family = Family()
    assert [(d.query, d.label) for d in family.detections(0.0, layer=0)] == [(2, 1), (1, 1), (0, 0)]
    assert [(d.query, d.label) for d in family.detections(0.0, layer=1)] == [(1, 0), (0, 1), (2, 0)]
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(family.layer_probabilities(1)[:, 0], sigmoid(np.array([0.0, 5.0, 0.0])), rtol=1e-6)
    np.testing.assert_allclose(family.layer_probabilities(-2)[:, 0], sigmoid(np.array([0.0, 5.0, 0.0])), rtol=1e-6)
    np.testing.assert_allclose(family.layer_probabilities(-1)[:, 0], sigmoid(np.array([0.0, 0.0, 6.0])), rtol=1e-6)

    class Ties(Family):
        layer_logits = np.zeros((1, 40, 2))  # every query scores 0.5: best first keeps the query order
        layer_boxes = np.full((1, 40, 4), 0.5)

    assert [d.query for d in Ties().detections(0.0)] == list(range(40))
