"""viz: heatmaps line up with the feature grid, drawing functions keep sizes and reject bad values."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import detr_core
import viz
from detr_core import CoordinateMap


@pytest.fixture(scope="module")
def ins():
    """One tiny-model inspection of a 180x120 image, shared: the views only read it."""
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.tiny_config(), detr_core.PreprocessConfig(128, 213)).eval()
    image = np.random.default_rng(0).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    return detr_core.inspect_image(model, image)


def test_upsample_crops_a_grid_that_reaches_past_the_image():
    # 100x150 image, stride 32: the 4x5 grid covers 128x160 pixels, more than the image.
    coords = CoordinateMap((100, 150), (100, 150), (4, 5), 32)
    assert viz.upsample(np.ones((4, 5)), coords, (150, 100)).shape == (100, 150)


@pytest.mark.parametrize("size", [(150, 100), (75, 50), (300, 200)])
def test_upsample_puts_a_cell_at_its_centre_at_any_display_size(size):
    coords = CoordinateMap((100, 150), (100, 150), (4, 5), 32)
    one_hot = np.zeros((4, 5), np.float32)
    one_hot[1, 2] = 1.0
    up = viz.upsample(one_hot, coords, size)
    peak_y, peak_x = np.unravel_index(np.argmax(up), up.shape)
    cx, cy = 2.5 * 32, 1.5 * 32  # the centre of cell (1, 2) of a 32-px grid shown at its own size
    scale = size[0] / 150
    assert abs(peak_x - cx * scale) <= 2 * scale + 1 and abs(peak_y - cy * scale) <= 2 * scale + 1


def test_upsample_rejects_a_map_of_the_wrong_shape():
    coords = CoordinateMap((100, 150), (100, 150), (4, 5), 32)
    with pytest.raises(ValueError, match="feature grid"):
        viz.upsample(np.ones((5, 4)), coords, (150, 100))


def test_normalise_colorize_blend():
    assert not viz.normalise(np.zeros((3, 3))).any()
    assert viz.normalise(np.array([[0.0, 2.0]])).tolist() == [[0.0, 1.0]]
    heat = viz.colorize(np.linspace(0, 1, 12).reshape(3, 4), "viridis")
    assert heat.shape == (3, 4, 3) and heat.dtype == np.uint8
    image = np.full((3, 4, 3), 200, np.uint8)
    assert (viz.blend(image, heat, 0.0) == image).all() and (viz.blend(image, heat, 1.0) == heat).all()
    with pytest.raises(ValueError, match="alpha=1.5"):
        viz.blend(image, heat, 1.5)


def test_palette_rejects_unknown_names_and_ranks():
    with pytest.raises(ValueError, match="nope"):
        viz.colormap_lut("nope")
    with pytest.raises(ValueError, match="rank=-1"):
        viz.box_colour(-1)
    assert viz.box_colour(0) == viz.box_colour(10) != viz.box_colour(1)


def test_draw_detections_draws_boxes_without_touching_the_input():
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    det = detr_core.Detection(3, 1, "cat", 0.9, (20.0, 30.0, 120.0, 90.0))
    out = viz.draw_detections(image, [det])
    assert out.size == image.size and image.getpixel((20, 60)) == (0, 0, 0)
    assert out.getpixel((20, 60)) == viz.box_colour(0)
    assert viz.detection_rows([det]) == [[0, 3, "cat", 0.9, 20, 30, 120, 90]]


def test_tile_grid_lays_out_tiles_and_checks_them():
    tiles = [Image.new("RGB", (40, 30))] * 5
    sheet = viz.tile_grid(tiles, [f"t{i}" for i in range(5)], columns=3)
    assert sheet.width == 3 * 40 + 2 * 4 and sheet.height > 2 * 30
    with pytest.raises(ValueError, match="captions"):
        viz.tile_grid(tiles, ["a"])
    with pytest.raises(ValueError, match="at least one"):
        viz.tile_grid([], [])
    with pytest.raises(ValueError, match="tile 1"):
        viz.tile_grid([Image.new("RGB", (4, 4)), Image.new("RGB", (5, 4))], ["a", "b"])


def test_query_cards_filter_by_threshold_and_keep_ranks(ins):
    everything = viz.query_cards(ins, 0.5, show_all=True)
    assert [c.rank for c in everything] == list(range(ins.num_queries))
    scores = [c.detection.score for c in everything]
    assert scores == sorted(scores, reverse=True)
    above = viz.query_cards(ins, 0.2)
    assert above == everything[:len(above)] and all(c.detection.score > 0.2 for c in above)
    assert "no object" in everything[0].caption(True) and "no object" not in everything[0].caption()
    assert viz.query_cards(ins, 1.0) == []
    with pytest.raises(ValueError, match="threshold=2"):
        viz.query_cards(ins, 2)
    with pytest.raises(ValueError, match="query=99"):
        viz.card_for(ins, 99)


@pytest.mark.parametrize("head", [None, "mean", "max", 0, 3])
def test_query_image_and_head_grid(ins, head):
    card = viz.card_for(ins, 4)
    assert viz.query_image(ins, card, 0, head).size == ins.image.size
    assert max(viz.query_image(ins, card, -1, head, max_side=64).size) == 64
    grid = viz.head_grid(ins, card, 1, tile_side=50)
    assert grid.width >= 2 * 50
    names = [name for name, _ in viz.class_summary(ins, 4)]
    assert "no object" in names and len(names) == 4


@pytest.mark.parametrize("incoming", [False, True])
def test_encoder_image_marks_the_point(ins, incoming):
    image = viz.encoder_image(ins, 10, 100, layer=0, head="max", incoming=incoming, alpha=0.0)
    assert image.size == ins.image.size
    assert image.getpixel((10, 100)) == (0, 255, 255)  # the marker's centre
    assert viz.encoder_head_grid(ins, 10, 100, tile_side=40).width >= 2 * 40
    with pytest.raises(ValueError, match="outside"):
        viz.encoder_image(ins, 500, 5)
    assert "row" in viz.describe_point(ins, 0, 0)


def test_export_figures_are_png(ins):
    cards = viz.query_cards(ins, 0.0, show_all=True)[:3]
    figures = [viz.detections_figure(ins, ins.detections(0.0)), viz.decoder_figure(ins, cards, 1, "max"),
               viz.view_figure(ins.image, "title", "inferno")]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert viz.figure_png(fig, dpi=40).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="at least one"):
        viz.decoder_figure(ins, [])


LONG_TITLE = ("runs/my-fine-tuned-detr/best.pth: pixel (268, 268) -> feature cell row 9/17, column 9/17, "
              "encoder layer 6: where this location looks.")


@pytest.mark.parametrize("make", ["view with colour bar", "view", "decoder", "detections"])
def test_long_titles_of_export_figures_stay_inside_the_figure(ins, make):
    """Matplotlib never wraps a title: one wider than the figure was cut at both edges of the PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    cards = viz.query_cards(ins, 0.0, show_all=True)[:2]
    fig = {"view with colour bar": lambda: viz.view_figure(ins.image, LONG_TITLE, "inferno"),
           "view": lambda: viz.view_figure(ins.image, LONG_TITLE),
           "decoder": lambda: viz.decoder_figure(ins, cards, title=LONG_TITLE),
           "detections": lambda: viz.detections_figure(ins, [], LONG_TITLE)}[make]()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    titles = [t for t in [ax.title for ax in fig.axes] + [fig._suptitle] if t is not None and t.get_text()]
    assert titles
    for title in titles:
        box = title.get_window_extent(canvas.get_renderer())
        assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (title.get_text(), box, fig.bbox.width)
    squeezed = ["".join(t.get_text().split()) for t in titles]
    assert "".join(LONG_TITLE.split()) in squeezed  # wrapped onto lines, nothing lost


def test_fast_heat_image_matches_the_float_path():
    coords = CoordinateMap((100, 150), (100, 150), (4, 5), 32)
    attention = np.random.default_rng(1).random((4, 5)).astype(np.float32)
    fast = np.asarray(viz.heat_image(attention, coords, (150, 100), "gray"))[..., 0].astype(int)
    slow = np.clip(viz.normalise(viz.upsample(attention, coords, (150, 100))) * 255, 0, 255)
    assert fast.shape == (100, 150) and np.corrcoef(fast.ravel(), slow.ravel())[0, 1] > 0.99
    one_hot = np.zeros((4, 5), np.float32)
    one_hot[2, 3] = 1.0
    peak = np.asarray(viz.heat_image(one_hot, coords, (150, 100), "gray"))[..., 0]
    (y, x), (cx, cy) = np.unravel_index(peak.argmax(), peak.shape), (3.5 * 32, 2.5 * 32)  # centre of cell (2, 3)
    assert abs(x - cx) <= 3 and abs(y - cy) <= 3
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(Image.new("RGB", (150, 100)), attention, coords, alpha=-0.1)
