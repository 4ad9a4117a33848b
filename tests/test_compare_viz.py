"""Drawing two models side by side (viz/compare.py), the --compare slide figure and its command line.

The tiny DETR sees the 180x120 image at 192x128 (min side 128) in 32-px cells: a 4x6 grid whose cells cover
30x30 original pixels each (32 * 180 / 192 = 32 * 120 / 128 = 30), worked by hand below."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

import detr_core
import viz
from viz.compare import A_COLOUR, B_COLOUR, DIFFERENCE_CMAP
from viz.compare_figure import MAX_ROWS, compare_figure
from viz.slides import main as figures_main


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (120, 180, 3), dtype=np.uint8)
    pixels[30:80, 40:120] = (220, 40, 40)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def ins(module_tiny_model, image):
    return detr_core.inspect_image(module_tiny_model, image)


def _with_map(ins, query: int, cells: np.ndarray):
    """The inspection with `query`'s cross-attention replaced, in every layer and head, by `cells` [4, 6]."""
    cross = ins.decoder_cross_attention.copy()  # [L, heads, Q, 24]
    cross[:, :, query] = (cells / cells.sum()).reshape(-1)
    return dataclasses.replace(ins, decoder_cross_attention=cross)


def test_the_grid_is_the_one_worked_by_hand(ins):
    assert ins.input_size == (128, 192) and ins.feature_size == (4, 6) and ins.coords.stride == 32


def test_pixel_density_is_the_map_over_each_cells_area_in_original_pixels(ins):
    density = viz.pixel_density(ins, 3, -1, None)
    np.testing.assert_allclose(density, ins.decoder_map(3) / 900.0, rtol=1e-6)


def test_a_map_compared_with_itself_has_a_white_difference_and_one_scale(ins):
    side = viz.Side(ins, 2)
    view = viz.pair_view(side, dataclasses.replace(side, name="B"), alpha=1.0)
    middle = np.round(np.asarray(colormaps[DIFFERENCE_CMAP](128 / 255)[:3]) * 255)  # the colormap's middle
    assert np.abs(np.asarray(view.difference).astype(int) - middle).max() <= 1
    assert view.top == pytest.approx(float(ins.decoder_map(2).max()) / 900.0, rel=1e-6)
    panel_a, panel_b = np.asarray(view.a), np.asarray(view.b)
    differ = (panel_a != panel_b).any(-1)  # only the box and its label differ: cyan for A, magenta for B
    assert differ.mean() < 0.3 and (panel_a[differ] == A_COLOUR).all(-1).mean() > 0.5


def test_the_difference_is_red_where_a_attends_more_and_blue_where_b_does(ins):
    left, right = np.full((4, 6), 0.01), np.full((4, 6), 0.01)
    left[0, 0] = right[3, 5] = 1.0
    a, b = viz.Side(_with_map(ins, 1, left), 1), viz.Side(_with_map(ins, 1, right), 1, name="B")
    diff = np.asarray(viz.pair_view(a, b, alpha=1.0).difference).astype(int)  # [120, 180, 3]
    red, blue = diff[15, 15], diff[105, 165]  # the centres of cells (0, 0) and (3, 5)
    assert red[0] > red[2] + 60 and red[0] > red[1] + 60, red  # RdBu_r's dark red end, (103, 0, 31)
    assert blue[2] > blue[0] + 60 and blue[2] > blue[1] + 30, blue  # its dark blue end, (5, 48, 97)
    middle = diff[15, 90]  # cell (0, 3): the same in both, white
    assert middle.min() > 200, middle


def test_one_colour_scale_shows_a_flat_map_dim_beside_a_peaked_one(ins):
    """B's map is flat: on its own scale every cell is at the top of the colormap; on A's (peaked) scale it is
    dark. A's panel is the same either way (its peak is the shared top)."""
    peaked = np.full((4, 6), 0.01)
    peaked[1, 2] = 1.0
    a = viz.Side(_with_map(ins, 4, peaked), 4)
    b = viz.Side(_with_map(ins, 4, np.ones((4, 6))), 4, name="B")
    shared, own = viz.pair_view(a, b, alpha=1.0), viz.pair_view(a, b, alpha=1.0, shared=False)
    assert shared.top == pytest.approx(1.0 / 1.23 / 900.0, rel=1e-5)  # 1 + 23 x 0.01 and own.top is None
    bright = lambda im: float(np.asarray(im)[60:, :].mean())  # below the box labels
    assert bright(shared.b) < 0.5 * bright(own.b)
    assert np.array_equal(np.asarray(shared.a), np.asarray(own.a))


def test_the_boxes_panel_draws_both_boxes_in_their_colours(ins):
    a = detr_core.Detection(0, 0, "cat", 0.9, (20.0, 20.0, 100.0, 90.0))
    b = detr_core.Detection(5, 1, "dog", 0.8, (60.0, 10.0, 170.0, 60.0))
    drawn = np.asarray(viz.draw_pair(Image.new("RGB", (360, 240), (128, 128, 128)), a, b, (120, 180)))
    assert tuple(drawn[180 - 1, 100]) == A_COLOUR  # A's bottom edge at y = 2 * 90, scaled by 2
    assert tuple(drawn[60, 340]) == tuple(drawn[60, 339]) == B_COLOUR  # B: x1 = 2 * 170, 2 px wide, inward
    assert tuple(drawn[60, 341]) == (128, 128, 128)


def test_a_deformable_side_shows_points_or_its_splat_and_no_difference(ins, image):
    pytest.importorskip("transformers")
    from family_models import build_tiny

    other = detr_core.inspect_any(build_tiny("deformable_detr"), image)
    a, b = viz.Side(ins, 0), viz.Side(other, 3, name="B")
    heat, points = viz.pair_view(a, b), viz.pair_view(a, b, points=True)
    assert heat.difference is None and not viz.same_grid(ins, other)
    assert np.array_equal(np.asarray(heat.a), np.asarray(points.a))  # the dense side is a heatmap either way
    assert not np.array_equal(np.asarray(heat.b), np.asarray(points.b))


def test_the_compare_figure_has_one_row_per_pair(ins):
    comparison = detr_core.compare(ins, ins, threshold=0.0)
    fig = compare_figure(ins, ins, comparison)
    assert len(fig.axes) == 3 * MAX_ROWS + 1  # eight rows of three, and the colour bar
    few = dataclasses.replace(comparison, pairs=comparison.pairs[:2])
    assert len(compare_figure(ins, ins, few).axes) == 3 * 2 + 1
    with pytest.raises(ValueError, match="no detections of the two models pair"):
        compare_figure(ins, ins, dataclasses.replace(comparison, pairs=()))


def test_the_figure_command_writes_a_pdf(tmp_path):
    """The bundled model against itself on the shapes example: every detection pairs with itself."""
    from webapp.bundled import EXAMPLES_DIR

    out = tmp_path / "compare.pdf"
    figures_main([str(EXAMPLES_DIR / "shapes.jpg"), "--model", "shapes", "--compare", "shapes", "--out", str(out)])
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") >= 1


def test_the_figure_command_says_when_nothing_pairs(tmp_path, capsys):
    from webapp.bundled import EXAMPLES_DIR

    with pytest.raises(SystemExit):
        figures_main([str(EXAMPLES_DIR / "shapes.jpg"), "--model", "shapes", "--compare", "shapes",
                      "--threshold", "1.0", "--out", str(tmp_path / "x.pdf")])
    assert "lower --threshold or --min-iou" in capsys.readouterr().err
