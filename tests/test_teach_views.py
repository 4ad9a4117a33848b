"""Teaching views: drawing functions, the app tabs' handlers (tiny model), and the slide-figure CLI."""
from __future__ import annotations

import types

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import detr_core
import viz.ablation
import viz.all_queries
import viz.explain
import viz.layers
import viz.matching
import viz.pipeline
import viz.query_slots
import viz.slides
from detr_core.teaching.query_slots import QuerySlotStats
from webapp import teach_ablation, teach_explain, teach_layers, teach_matching, teach_pipeline, teach_queries, \
    teach_slots
from webapp.models import ModelCache
from webapp.session import analyze
from webapp.store import InspectionStore


@pytest.fixture(scope="module")
def models():
    return ModelCache(compile_backbone=False)  # compiling is covered by test_app_handlers


@pytest.fixture(scope="module")
def session(models):
    image = np.random.default_rng(4).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    return analyze(models, InspectionStore(), models.get("tiny"), image)


def test_query_bars_stack_each_querys_probabilities(session):
    ins = session.inspection
    height, column = 220, 9
    chart = np.asarray(viz.all_queries.query_bars(ins, 0.5, height, column))
    plot_h = height - 34 - 10
    for q in (0, 4, ins.num_queries - 1):
        x = 34 + q * column + 2
        light = np.all(chart[:, x] == viz.all_queries.NO_OBJECT, -1).sum()  # [H] -> pixel count
        assert light == pytest.approx(ins.probabilities[q, -1] * plot_h, abs=2)


@pytest.mark.parametrize("queries, labels", [(3, [0, 1, 2]), (12, list(range(12))), (100, list(range(0, 100, 5)))])
def test_the_query_chart_keeps_its_text_inside_and_its_query_numbers_apart(queries, labels):
    """Its legend (it once ran past the right edge of a chart of 12 queries) ends before the image's right edge,
    and the query numbers under the columns are separate words (runs of dark pixels more than 6 px apart: the
    digits of one number are closer, the numbers at least 8 px apart), one per labelled query: every one of a few,
    every 5th of DETR's 100 at 9 px a column."""
    probabilities = np.random.default_rng(queries).dirichlet(np.ones(6), queries).astype(np.float32)  # [Q, C+1]
    ins = types.SimpleNamespace(num_queries=queries, probabilities=probabilities)
    height = 220
    chart = np.asarray(viz.all_queries.query_bars(ins, 0.5, height, None if queries < 100 else 9)).astype(int)
    dark = chart.sum(-1) < 200  # [H, W]: text and ticks are black
    assert not dark[:, -4:].any() and not dark[-3:].any()  # nothing touches the right or the bottom edge
    assert dark[height + 2:].any()  # the legend is there, below the plot
    numbers = dark[height - 34 + 12: height - 34 + 26]  # the row of query numbers under the ticks
    columns = np.flatnonzero(numbers.any(0))
    words = 1 + np.count_nonzero(np.diff(columns) > 6)
    assert words == len(labels)


def test_all_queries_image_keeps_size_and_draws_every_box(session):
    ins = session.inspection
    out = viz.all_queries.all_queries_image(ins, 0.5)
    assert out.size == ins.image.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(ins.image))
    with pytest.raises(ValueError, match="threshold"):
        viz.all_queries.all_queries_image(ins, 1.5)


def test_layer_predictions_end_with_the_final_prediction(session):
    ins = session.inspection
    best = ins.detections(-1.0)[0]
    rows = viz.layers.layer_predictions(ins, best.query)
    assert len(rows) == ins.layer_logits.shape[0]
    name, p, _, box = rows[-1]
    assert (name, p) == (best.name, pytest.approx(best.score, abs=1e-5))
    np.testing.assert_allclose(box, best.box, atol=1e-3)
    with pytest.raises(ValueError, match="query=99"):
        viz.layers.layer_predictions(ins, 99)


def test_a_figure_that_cannot_be_drawn_is_one_line_with_status_1_and_no_usage_block(tmp_path, capsys):
    """A well-formed command whose figure cannot be made (no detection above the threshold) says so in one line
    and exits with 1; argparse's usage block stays for usage errors (status 2)."""
    checkpoint = tmp_path / "tiny.pth"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        detr_core.save_model(detr_core.untrained_model(tiny=True), checkpoint)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(6).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(image)
    with pytest.raises(SystemExit) as stop:
        viz.slides.main([str(image), "--model", str(checkpoint), "--out", str(tmp_path / "f.png"), "--figure",
                         "decoder", "--threshold", "1.0"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "usage:" not in err and err.count("\n") == 1, err
    assert err == ("python -m viz.figures: error: no detection scores above threshold=1.0; lower --threshold\n")
    with pytest.raises(SystemExit) as stop:
        viz.slides.main([str(image), "--out", str(tmp_path / "f.png")])  # no --model: a usage error
    assert stop.value.code == 2 and "usage:" in capsys.readouterr().err


def test_size_colours_follow_the_papers_legend():
    small, wide, tall = viz.query_slots.size_colours(np.array([[0.05, 0.05], [0.9, 0.4], [0.3, 0.9]]))
    assert np.argmax(small) == 1 and np.argmax(wide) == 0 and np.argmax(tall) == 2


def test_slots_image_draws_one_tile_per_slot_and_rejects_bad_slots():
    rng = np.random.default_rng(0)
    stats = QuerySlotStats(rng.random((5, 8, 2), np.float32), rng.random((5, 8, 2), np.float32) * 0.5,
                           rng.random((5, 8), np.float32), np.zeros((5, 8), np.int64), tuple("abcde"), "m")
    one = viz.query_slots.slots_image(stats, [3], columns=1, tile_side=100)
    four = viz.query_slots.slots_image(stats, [0, 1, 2, 3], columns=4, tile_side=100)
    assert four.width > 3 * one.width
    with pytest.raises(ValueError, match="slots"):
        viz.query_slots.slots_image(stats, [8])


def test_pipeline_panels_show_the_feature_grid_at_its_size(session, models):
    ins, stages = detr_core.teaching.pipeline.inspect_with_stages(models.get("tiny").model, session.inspection.image)
    panels = viz.pipeline.pipeline_panels(ins, stages, 0.5)
    assert [p.title[0] for p in panels] == list("123456")
    fh, fw = ins.feature_size
    backbone = panels[1].image
    assert backbone.width % fw == 0 and backbone.height % fh == 0 and backbone.width // fw == backbone.height // fh


def test_matching_rows_list_every_query_once_with_no_object_for_the_unmatched(session):
    ins = session.inspection
    truth = detr_core.teaching.ground_truth.GroundTruth(None, np.array([[10.0, 10, 60, 50], [90, 40, 170, 110]]),
                                               np.array([1, 3]), ("b", "d"))
    expl = detr_core.teaching.matching_explorer.explain_matching(ins, truth)
    rows = viz.matching.match_rows(ins, expl)
    assert sorted(r[0] for r in rows) == list(range(ins.num_queries))
    assert sum(r[1] == "no object" for r in rows) == ins.num_queries - 2
    assert viz.matching.matching_image(ins, truth, expl).size == ins.image.size
    assert len(viz.matching.cost_figure(expl, truth.names).axes) == 8  # four heatmaps with their colour bars


def test_layers_and_queries_tabs_render_from_the_stored_inspection(session):
    strip, rows = teach_layers.render_layers(session, None, 0.6, "inferno")
    assert isinstance(strip, Image.Image) and len(rows) == 2
    image, bars, text = teach_queries.render_queries(session, 0.5)
    assert image.size[0] > 0 and "queries" in text
    with pytest.raises(gr.Error):
        teach_queries.render_queries(None, 0.5)


def test_pipeline_tab_runs_once_per_image(session, models):
    show = teach_pipeline.show_handler(models)
    opened, *outputs = show(session, False, 0.5)
    assert opened is True and len(outputs) == 12
    stages = session.store.get((session.key, "pipeline"))  # kept in the store, beside the inspection
    assert stages.backbone.shape[-2:] == session.inspection.feature_size
    show(session, True, 0.5)
    assert session.store.get((session.key, "pipeline")) is stages  # not run again
    placeholder = teach_pipeline.refresh_handler(models)(session, False, 0.5)
    assert placeholder[0] is False and "Press the button" in placeholder[7]


def test_matching_tab_on_a_bundled_image(session, models, tmp_path):
    roots = (teach_matching.SHAPES_VAL.parent,)
    names = teach_matching.list_images_handler(roots)(str(teach_matching.SHAPES_VAL)).choices
    match = teach_matching.match_handler(models, roots)
    pairs, costs, rows, text = match(session, str(teach_matching.SHAPES_VAL), names[0][0], 1, 5, 2)
    assert len(rows) == 10 and "Loss" in text and "category k is compared with class k" in text
    # the data set image's inspection is kept once per (model, image), for every page to share
    file = str(teach_matching.CocoSet(teach_matching.SHAPES_VAL).files()[0])
    kept = session.store.get(("matching", "tiny", file))
    assert kept.image_size == detr_core.load_image(file).size[::-1]
    with pytest.raises(gr.Error, match="COCO"):
        match(session, "", names[0][0], 1, 5, 2)
    with pytest.raises(gr.Error, match="weights are 0"):
        match(session, str(teach_matching.SHAPES_VAL), names[0][0], 0, 0, 0)
    assert session.store.get(("matching", "tiny", file)) is kept
    # a set elsewhere on the server is refused, even through "..", with a way out in the message
    for outside in (str(tmp_path), str(teach_matching.SHAPES_VAL / ".." / ".." / "tests")):
        with pytest.raises(gr.Error, match="outside the folders this app may read.*--data-root"):
            teach_matching.list_images_handler(roots)(outside)
        with pytest.raises(gr.Error, match="outside the folders"):
            match(session, outside, names[0][0], 1, 5, 2)


def test_explain_and_ablation_tabs(session, models):
    image, text = teach_explain.explain_handler(models)(session, None, 0.6, "inferno")
    assert isinstance(image, Image.Image) and "relevance" in text.lower()
    image, rows, summary = teach_ablation.ablation_handler(models)(session, "cross", 2, ["1", "2", "3", "4"], 0.0)
    assert len(rows) == 10 and "heads off: 1, 2, 3, 4" in summary
    with pytest.raises(gr.Error, match="layer"):
        teach_ablation.ablation_handler(models)(session, "cross", 9, ["1"], 0.0)
    with pytest.raises(gr.Error, match="at least one head"):
        teach_ablation.ablation_handler(models)(session, "self", 1, [], 0.0)


def test_slots_tab_computes_over_the_bundled_examples(session, models, monkeypatch, tmp_path):
    monkeypatch.setattr(teach_slots, "PRECOMPUTED", tmp_path)  # no precomputed file for "tiny"
    image, text = teach_slots.render_slots(session, None, 0.0)
    assert image is None and "Press the button" in text
    files = teach_slots.bundled_images()[:3]
    monkeypatch.setattr(teach_slots, "bundled_images", lambda: files)
    stats, image, text = teach_slots.compute_handler(models)(session, 0.0)
    assert stats.num_images == 3 and isinstance(image, Image.Image) and "3 images" in text


def test_slide_figures_cli_writes_pdf_and_png(tmp_path, models):
    checkpoint = tmp_path / "tiny.pth"
    with pytest.warns(UserWarning, match="UNTRAINED"):  # random weights must never pass silently
        detr_core.save_model(detr_core.untrained_model(tiny=True), checkpoint)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(image)
    viz.slides.main([str(image), "--model", str(checkpoint), "--out", str(tmp_path / "f.pdf"), "--threshold", "0"])
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    viz.slides.main([str(image), "--model", str(checkpoint), "--out", str(tmp_path / "f.png"), "--figure",
                     "encoder", "--points", "10,10", "60,40", "--dpi", "50"])
    assert Image.open(tmp_path / "f.png").size[0] > 100
    with pytest.raises(SystemExit):
        viz.slides.main([str(image), "--model", str(checkpoint), "--out", str(tmp_path / "f.svg")])
