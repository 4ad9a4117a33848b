"""App handlers with the tiny model: every handler, every selector value, and bad inputs give gr.Error."""
from __future__ import annotations

import io

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import ImageData
from hand_made import hand_inspection
from PIL import Image

import detr_core

from webapp import decoder_tab, detections_tab, encoder_tab
from webapp.analysis import analyze_handler, readable_upload, status_handler, switch_handler
from webapp.controls import DIRECTIONS, GRID, MEAN, head_choices, skip_before_image
from webapp.models import TINY, ModelCache, describe
from webapp.sampling_controls import ALL_LEVELS, POINTS
from webapp.session import MAX_SIDE, VIEW_MIN_SIDE, Session
from webapp.store import InspectionStore

HEADS = [value for _, value in head_choices(4)]  # the tiny model has 4 heads and 2+2 layers


@pytest.fixture(scope="module")
def models():
    cache = ModelCache()  # as the app runs: optimised, the backbone compiling in the background
    cache.get(TINY)
    return cache


def test_the_cache_compiles_in_the_background_and_keeps_serving(models):
    loaded = models.get(TINY)
    # the interpreter waits for a compile at exit rather than tearing it down mid-compile (an abort)
    assert models.compile_threads and not any(thread.daemon for thread in models.compile_threads)
    for thread in models.compile_threads:
        thread.join(timeout=300)
    assert loaded.model.backbone[0].body.compiled is not None
    assert models.get(TINY) is loaded  # the same model object, now with a compiled backbone


def _save(image: Image.Image, tmp_path, name="img.png", **kw) -> str:
    path = tmp_path / name
    image.save(path, **kw)
    return str(path)


@pytest.fixture(scope="module")
def session(models, tmp_path_factory):
    """One analysed 180x120 image shared by the read-only view tests."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 180, 3), dtype=np.uint8))
    return analyze_handler(models)(_save(image, tmp_path_factory.mktemp("session")), TINY)[0]


def _select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None, "selected": True})


def test_analyze_returns_the_exact_image_it_analysed(models, tmp_path, rgb_image):
    session, shown, status = analyze_handler(models)(_save(Image.fromarray(rgb_image), tmp_path), TINY)
    assert shown.size == (180, 120) and session.inspection.image_size == (120, 180)
    assert "tiny" in status and "Untrained" in status


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_analyze_accepts_every_image_mode(models, tmp_path, rgb_image, mode):
    image = Image.fromarray(rgb_image).convert(mode if mode != "I;16" else "I").convert(mode)
    name = "img.jpg" if mode == "CMYK" else "img.png"
    session, shown, _ = analyze_handler(models)(_save(image, tmp_path, name), TINY)
    assert shown.mode == "RGB" and shown.size == (180, 120)


def test_analyze_applies_exif_rotation(models, tmp_path):
    image = Image.new("RGB", (90, 40), (10, 200, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    session, shown, _ = analyze_handler(models)(_save(image, tmp_path, "r.jpg", exif=exif), TINY)
    assert shown.size == (40, 90) and session.inspection.image_size == (90, 40)


def test_large_images_are_downscaled_and_the_status_gives_each_size(models, tmp_path):
    session, shown, status = analyze_handler(models)(_save(Image.new("RGB", (2000, 1000)), tmp_path), TINY)
    assert shown.size == (MAX_SIDE, 666)  # 1000 * 1333 / 2000 = 666.5, and fit() rounds half to even
    # the tiny model's input, by DETR's resize rule (at most 213 px long): short side round(213 * 666 / 1333)
    # = 106, long side int(106 * 1333 / 666) = 212
    assert "Image 2000x1000, downscaled to 1333x666; the model saw it resized to 212x106." in status


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_uploads_are_reported_and_empty_the_upload_box(models, tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    component = readable_upload(gr.Image(type="filepath", image_mode=None))
    received = component.preprocess(ImageData(path=str(path), orig_name="broken.png"))
    assert received == str(path)  # gradio's own preprocessing fails on it; the handler gets the file
    with pytest.warns(UserWarning, match="could not read 'broken.png' as an image"):  # outside a page: a warning
        session, shown, status = analyze_handler(models)(received, TINY)
    assert session is None and shown is None and "tiny" in status  # no session, the box back to its drop zone


def test_truncated_jpeg_gives_a_plain_error(models, tmp_path, rgb_image):
    buffer = io.BytesIO()
    Image.fromarray(rgb_image).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:300])
    with pytest.warns(UserWarning, match="could not read 'cut.jpg' as an image"):
        assert analyze_handler(models)(str(path), TINY)[:2] == (None, None)


def test_no_image_and_unknown_model_are_reported(models, tmp_path, rgb_image):
    with pytest.warns(UserWarning, match="No image"):
        assert analyze_handler(models)(None, TINY)[:2] == (None, None)
    with pytest.warns(UserWarning, match="Could not load the model 'nope'"):
        assert analyze_handler(models)(_save(Image.fromarray(rgb_image), tmp_path), "nope")[:2] == (None, None)


def test_every_handler_before_any_image_asks_for_one():
    calls = [
        lambda: detections_tab.render_detections(None, 0.5),
        lambda: detections_tab.export_detections(None, 0.5),
        lambda: decoder_tab.render_gallery(None, 0.5, False, 2, "mean", 0.6, "inferno"),
        lambda: decoder_tab.render_query(None, 0, 2, "mean", 0.6, "inferno"),
        lambda: decoder_tab.select_tile(None, 0.5, False, 2, "mean", 0.6, "inferno", POINTS, ALL_LEVELS, _select(0)),
        lambda: decoder_tab.export_decoder(None, 0.5, False, 0, 2, "mean", "inferno"),
        lambda: encoder_tab.render_encoder(None, 1, 1, 2, "mean", DIRECTIONS[0], 0.6, "inferno"),
        lambda: encoder_tab.click(None, 2, "mean", DIRECTIONS[0], 0.6, "inferno", POINTS, ALL_LEVELS,
                                          _select([1, 1])),
        lambda: encoder_tab.export_encoder(None, 1, 1, 2, "mean", DIRECTIONS[0], "inferno"),
    ]
    for call in calls:
        with pytest.raises(gr.Error, match="Upload an image first"):
            call()


def test_views_redrawn_by_a_slider_or_a_tab_leave_the_page_alone_before_any_image():
    """Wired to the threshold slider, the heatmap controls or a tab's opening, the handlers skip every output
    instead of reporting an error (the tabs show their hint)."""
    gallery = skip_before_image(decoder_tab.render_gallery, 1)
    assert isinstance(gallery(None, 0.5, False, 2, MEAN, 0.6, "inferno"), type(gr.skip()))
    detections = skip_before_image(detections_tab.render_detections, 3)(None, 0.5)
    assert len(detections) == 3 and all(isinstance(v, type(gr.skip())) for v in detections)


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.7, 1.0])
def test_detections_follow_the_threshold(session, threshold):
    image, rows, summary = detections_tab.render_detections(session, threshold)
    assert image.size == (VIEW_MIN_SIDE, round(120 * VIEW_MIN_SIDE / 180))  # 180x120 drawn large enough to read
    assert len(rows) == len(session.inspection.detections(threshold)) and str(len(rows)) in summary
    assert detections_tab.export_detections(session, threshold).endswith(".png")
    with pytest.raises(gr.Error, match="threshold"):
        detections_tab.render_detections(session, 1.5)


def test_the_table_gives_boxes_in_the_uploaded_images_pixels_clipped_to_it(models, tmp_path):
    """A 2000x1000 upload is analysed at 1333x666; the table must report its boxes in the upload's pixels."""
    session, _, _ = analyze_handler(models)(_save(Image.new("RGB", (2000, 1000), (90, 120, 60)), tmp_path), TINY)
    _, rows, summary = detections_tab.render_detections(session, 0.0)  # every query
    ins = session.inspection
    cx, cy, w, h = ins.boxes.T.astype(np.float64)  # normalised to the image, whatever its size
    expected = np.stack([(cx - w / 2) * 2000, (cy - h / 2) * 1000, (cx + w / 2) * 2000, (cy + h / 2) * 1000], 1)
    expected = np.clip(expected, 0, [2000, 1000, 2000, 1000])
    for row in rows:
        np.testing.assert_allclose(row[4:], expected[row[1]], atol=0.5 + 1e-3)  # rounded to whole pixels
    assert "Image 2000x1000, downscaled to 1333x666" in summary


def test_boxes_in_size_scales_and_clips():
    from detr_core.inspection.coords import boxes_in_size
    boxes = np.array([[-2.0, -1.0, 105.0, 60.0], [10.0, 5.0, 20.0, 15.0]])  # on a 100 wide, 50 high image
    np.testing.assert_allclose(boxes_in_size(boxes, (50, 100), (100, 200)), [[0, 0, 200, 100], [20, 10, 40, 30]])
    np.testing.assert_allclose(boxes_in_size(boxes, (50, 100), (50, 100)), [[0, 0, 100, 50], [10, 5, 20, 15]])


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("head", HEADS)
def test_decoder_views_for_every_layer_and_head(session, layer, head):
    tiles = decoder_tab.render_gallery(session, 0.0, True, layer, head, 0.5, "viridis")
    assert len(tiles) == session.inspection.num_queries and "no object" in tiles[0][1]
    view, info = decoder_tab.render_query(session, 3, layer, head, 0.5, "viridis")
    assert "Query 3" in info and f"layer {layer}" in info
    shares = session.inspection.attention_in_box(3, layer - 1)  # the chosen layer's map and box
    heads = session.inspection.decoder_cross_attention.shape[1]
    assert f"per head: 1: {shares[0]:.2f}" in info and f"{heads}: {shares[-1]:.2f}; mean {shares.mean():.2f}" in info
    # one map on the image enlarged to the views' minimum side; the grid of 4 heads has its own size
    assert (view.size == session.view_base().size) == (head != GRID)


def test_decoder_gallery_shows_only_detections_unless_asked(session):
    shown = decoder_tab.render_gallery(session, 0.2, False, 2, "mean", 0.6, "inferno")
    assert len(shown) == len(session.inspection.detections(0.2))
    assert decoder_tab.render_gallery(session, 1.0, False, 2, "mean", 0.6, "inferno") == []


def test_the_line_above_the_gallery_says_what_it_shows_and_what_to_do_when_it_is_empty(session):
    ins = session.inspection
    assert decoder_tab.gallery_line(session, 1.0, False) == (
        '**No query scores above the threshold 1.00**: lower the confidence threshold (left) or tick "Show all'
        ' queries".')
    shown = len(ins.detections(0.2))
    assert shown > 1 and decoder_tab.gallery_line(session, 0.2, False).startswith(f"**{shown} queries score above"
                                                                                  " 0.20**: choose one")
    assert decoder_tab.gallery_line(session, 1.0, True).startswith(f"**All {ins.num_queries} queries**")


def test_choosing_a_tile_shows_that_query(session):
    cards_order = [int(c.split(":")[0].split()[-1])
                   for _, c in decoder_tab.render_gallery(session, 0.0, True, 2, "max", 0.6, "inferno")]
    query, view, info = decoder_tab.select_tile(session, 0.0, True, 2, "max", 0.6, "inferno", POINTS, ALL_LEVELS,
                                                  _select(2))
    assert query == cards_order[2] and f"Query {query}" in info
    with pytest.raises(gr.Error, match="no gallery tile"):
        decoder_tab.select_tile(session, 0.0, True, 2, "max", 0.6, "inferno", POINTS, ALL_LEVELS, _select(99))


@pytest.mark.parametrize("bad", [dict(layer=0), dict(layer=3), dict(layer=1.5), dict(head="5"), dict(head="x"),
                                 dict(query=None), dict(query=10), dict(cmap="nope")])
def test_decoder_rejects_bad_values(session, bad):
    args = dict(query=0, layer=2, head="mean", alpha=0.6, cmap="inferno") | bad
    with pytest.raises(gr.Error):
        decoder_tab.render_query(session, **args)


@pytest.mark.parametrize("head", ["mean", GRID])
def test_decoder_export_and_refresh(session, head):
    assert decoder_tab.export_decoder(session, 0.0, True, 1, 2, head, "inferno").endswith(".png")
    layer, heads, gallery, query, view, info, row, _, levels = decoder_tab.refresh(session, 0.7, False, 6, "head 7",
                                                                                    0.6, "inferno")
    assert row.visible is False and levels.choices == [("all levels", ALL_LEVELS)]  # DETR: one dense map per query
    assert layer.maximum == 2 and layer.value == 2 and heads.value == MEAN  # this model has no head 7
    assert query == viz_best_query(session) and view.size == session.view_base().size
    with pytest.raises(gr.Error, match="no query to export"):
        decoder_tab.export_decoder(session, 1.0, False, 1, 2, MEAN, "inferno")


def viz_best_query(session) -> int:
    probs = session.inspection.probabilities[:, :-1].max(-1)
    return int(np.argmax(probs))


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_encoder_view_for_every_layer_head_and_direction(session, layer, head, direction):
    view, info = encoder_tab.render_encoder(session, 30, 60, layer, head, direction, 0.6, "gray")
    assert f"layer {layer}" in info and direction in info
    assert (view.size == session.view_base().size) == (head != GRID)


def test_encoder_direction_changes_the_map(session):
    a, _ = encoder_tab.render_encoder(session, 30, 60, 1, "1", DIRECTIONS[0], 1.0, "gray")
    b, _ = encoder_tab.render_encoder(session, 30, 60, 1, "1", DIRECTIONS[1], 1.0, "gray")
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() > 0


def _direction_session() -> tuple[Session, np.ndarray, np.ndarray]:
    """A 192 x 192 image over a 3 x 3 grid of 64-px cells whose encoder attention is made by hand.

    In layer 2, head 1, cell 0 looks at cell k with weight k / 36 (darkest top-left, brightest bottom-right),
    and cell i looks at cell 0 with weight (9 - i) / 10 (brightest next to it, fading away); head 2 and layer 1
    are uniform. Returns the session and the two expected maps [3, 3], each scaled to its maximum.
    """
    looks_from = np.arange(9) / 36  # row 0
    looked_at = np.array([0.0, *range(8, 0, -1)]) / 10  # column 0; looked_at[0] = looks_from[0] = 0
    hand = np.zeros((9, 9))
    hand[0] = looks_from
    for i in range(1, 9):  # every row sums to 1
        hand[i, 0], hand[i, 1:] = looked_at[i], (1 - looked_at[i]) / 8
    uniform = np.full((9, 9), 1 / 9)
    encoder = np.stack([[uniform, uniform], [hand, uniform]])  # [L=2, heads=2, 9, 9]
    coords = detr_core.CoordinateMap(image_size=(192, 192), input_size=(96, 96), feature_size=(3, 3), stride=32)
    inspection = hand_inspection(coords, encoder=encoder)
    # as the app keeps it: the image and the inspection in the store
    session = Session.start(InspectionStore(), ModelCache(optimize=False), inspection, "hand-made", key="hand-made")
    return session, (looks_from / looks_from.max()).reshape(3, 3), (looked_at / looked_at.max()).reshape(3, 3)


def _cell_centres(grey: np.ndarray) -> list[int]:
    """Pixel index of the three cells' centres along a square view's side (cell k spans [k, k+1] * side / 3)."""
    side = grey.shape[0]
    assert grey.shape[:2] == (side, side) and side >= 192
    return [int((k + 0.5) * side / 3) for k in range(3)]


def test_both_encoder_directions_show_the_hand_made_map_cell_by_cell():
    session, looks_from, looked_at = _direction_session()
    for direction, expected in zip(DIRECTIONS, (looks_from, looked_at)):
        # the point (10, 10) lies in cell 0; its marker is drawn there, far from the cell's centre
        view, info = encoder_tab.render_encoder(session, 10, 10, 2, "1", direction, 1.0, "gray")
        assert "row 1/3, column 1/3" in info and direction in info
        grey = np.asarray(view)[..., 0].astype(float)  # [S, S] (the 192-px image shown enlarged); gray: value = level
        centres = grey[np.ix_(_cell_centres(grey), _cell_centres(grey))]  # [3, 3] the centre pixel of every cell
        np.testing.assert_allclose(centres / 255, expected, atol=12 / 255, err_msg=direction)
    # layer 1 is uniform in both directions
    for direction in DIRECTIONS:
        view, _ = encoder_tab.render_encoder(session, 10, 10, 1, "1", direction, 1.0, "gray")
        grey = np.asarray(view)[..., 0]
        assert np.ptp(grey[np.ix_(_cell_centres(grey), _cell_centres(grey))]) <= 1


@pytest.mark.parametrize("size", [(180, 120), (64, 300), (640, 90), (2400, 1800)])
def test_clicks_map_to_the_right_cell_for_any_shape(models, tmp_path, size):
    """The input shows the analysed image itself, so a click at its corners hits the corner cells."""
    session, shown, _ = analyze_handler(models)(_save(Image.new("RGB", size, (90, 90, 90)), tmp_path), TINY)
    w, h = shown.size
    coords = session.inspection.coords
    rows, cols = coords.valid_cells
    for (x, y), cell in [((0, 0), (1, 1)), ((w - 1, h - 1), (rows, cols))]:
        cx, cy, view, info, group, tab = encoder_tab.click(session, 2, MEAN, DIRECTIONS[0], 0.6, "inferno",
                                                           POINTS, ALL_LEVELS, _select([x, y]))
        assert (cx, cy) == (x, y) and f"row {cell[0]}/" in info and f"column {cell[1]}/" in info
        assert view.size == session.view_base().size and (group.selected, tab.selected) == ("inspect", "encoder")


@pytest.mark.parametrize("index", [None, [None, None], [5], "x"])
def test_empty_clicks_give_a_plain_error(session, index):
    with pytest.raises(gr.Error, match="did not land on the image"):
        encoder_tab.click(session, 2, "mean", DIRECTIONS[0], 0.6, "inferno", POINTS, ALL_LEVELS, _select(index))


@pytest.mark.parametrize("bad", [dict(x=None), dict(x=500), dict(y=-3), dict(direction="sideways"),
                                 dict(layer=7), dict(head="0")])
def test_encoder_rejects_bad_values(session, bad):
    args = dict(x=5, y=5, layer=2, head="mean", direction=DIRECTIONS[0], alpha=0.6, cmap="inferno") | bad
    with pytest.raises(gr.Error):
        encoder_tab.render_encoder(session, **args)


def test_encoder_export_and_refresh(session):
    assert encoder_tab.export_encoder(session, 5, 5, 1, "max", DIRECTIONS[1], "jet").endswith(".png")
    layer, heads, x, y, view, info, row, _, _ = encoder_tab.refresh(session, None, GRID, DIRECTIONS[0], 0.6,
                                                                     "inferno")
    assert row.visible is False  # DETR's encoder is dense: no points or level selectors
    assert (x, y) == (90, 60) and layer.value == 2 and heads.value == GRID


def test_switching_models_reruns_the_current_image(models, session):
    again, status, menu, in_use = switch_handler(models)(TINY, "shapes", session)
    assert again is not session and again.inspection.image.tobytes() == session.inspection.image.tobytes()
    assert "tiny" in status and in_use == TINY
    assert switch_handler(models)(TINY, "shapes", None)[0] is None
    assert "tiny" in status_handler(models, TINY)()
    assert "could not be loaded" in status_handler(models, "missing.pth")()


def test_a_model_that_fails_to_load_is_reported_whole_and_the_menu_goes_back(models, session):
    with pytest.warns(UserWarning) as caught:
        again, status, menu, in_use = switch_handler(models)("missing.pth", TINY, session)
    skip = type(gr.skip())
    assert menu == TINY and all(isinstance(v, skip) for v in (again, status, in_use))
    assert [str(w.message) for w in caught] == [
        "Could not load the model 'missing.pth': model source 'missing.pth' is neither a file, a Hugging Face "
        "folder or Hub id (owner/name), nor one of "
        "['detr-r101', 'detr-r101-dc5', 'detr-r50', 'detr-r50-dc5', 'shapes', 'untrained']"]


def test_choosing_the_model_in_use_does_nothing(models, session):
    """The menu's change event fires again when the handler puts the menu back: that must not re-run."""
    assert all(isinstance(v, type(gr.skip())) for v in switch_handler(models)(TINY, TINY, session))


@pytest.mark.cpu_dependent
@pytest.mark.skipif(not detr_core.bfloat16_is_fast(), reason="this CPU has no native bfloat16")
def test_the_approximate_mode_says_so_on_the_page():
    cache = ModelCache(compile_backbone=False, precision="bfloat16")
    assert "Approximate mode" in describe(cache.get(TINY))
    assert "Approximate" not in describe(ModelCache(compile_backbone=False).get(TINY))
