"""The app's handlers with DETR-family models: every supported model type, saved with save_pretrained into a
folder and opened as the model box opens it, answers in the detections, decoder, encoder and teaching views, or
says in one line why a view does not apply (never an error).

Tiny random-weight models (tests/family_models.py); scores checked against transformers' own forward."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from detr_core.family.capabilities import DETR_ONLY_TEACHING, ENCODER
from detr_core.family.registry import FAMILY, NONE
from family_models import DEFORMABLE, TINY, build_tiny
from webapp import decoder_tab, detections_tab, encoder_tab, teach_layers, teach_pipeline, teach_queries
from webapp.analysis import analyze_handler
from webapp.context import ViewSlot
from webapp.controls import DIRECTIONS, GRID, MEAN
from webapp.model_sources import menu_choices
from webapp.models import ModelCache
from webapp.page import view_state
from webapp.sampling_controls import ALL_LEVELS, HEATMAP, POINTS

NAMES = [name for name in TINY if name != "deformable_detr_two_stage"]  # one folder per model type


def _model_type(name: str) -> str:
    return TINY[name][1]().model_type


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """Every model type saved (config.json, model.safetensors, preprocessor_config.json), one ModelCache, one
    120x180 image; sessions made on first use."""
    root = tmp_path_factory.mktemp("family")
    image = np.random.default_rng(1).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    image[30:80, 40:120] = (220, 40, 40)
    Image.fromarray(image).save(root / "image.png")
    folders = {}
    for name in NAMES:
        fm = build_tiny(name)
        fm.model.save_pretrained(root / name)
        fm.processor.save_pretrained(root / name)
        folders[name] = (str(root / name), fm)
    return dict(models=ModelCache(), folders=folders, image=str(root / "image.png"), sessions={})


def _session(app, name):
    if name not in app["sessions"]:
        folder, _ = app["folders"][name]
        app["sessions"][name] = analyze_handler(app["models"])(app["image"], folder)
    return app["sessions"][name]


def _transformers_scores(app, name) -> np.ndarray:
    """[Q] each query's best sigmoid class score from transformers' own forward, no capture (the reference)."""
    _, fm = app["folders"][name]
    inputs, _ = fm.prepare(Image.open(app["image"]).convert("RGB"))
    with torch.no_grad():
        logits = fm.model(**inputs).logits[0].double()  # [Q, C]
    return torch.sigmoid(logits).max(-1).values.numpy()


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_folder_opens_and_the_detections_tab_answers(app, name):
    session, shown, status = _session(app, name)
    spec = FAMILY[_model_type(name)]
    assert session is not None and shown.size == (180, 120)
    assert f"({spec.title} through transformers" in status and "It knows 5 classes" in status
    image, rows, summary = detections_tab.render_detections(session, 0.0)
    expected = np.sort(_transformers_scores(app, name))[::-1]  # every query scores above 0 with sigmoids
    np.testing.assert_allclose([row[3] for row in rows], expected, atol=5e-4 + 1e-6)  # the table shows 3 decimals
    assert sorted(row[1] for row in rows) == list(range(len(expected))) and image.size == session.view_base().size
    assert summary.startswith(f"{len(expected)} detections with score above 0.00 out of {len(expected)} queries")


@pytest.mark.parametrize("name", NAMES)
def test_the_decoder_tab_draws_points_for_deformable_models_and_heatmaps_for_dense_ones(app, name):
    session = _session(app, name)[0]
    deformable = name in DEFORMABLE
    layer, head, gallery, query, view, info, row, display, level = decoder_tab.refresh(
        session, 0.0, False, 6, MEAN, 0.6, "inferno")
    levels = session.inspection.coords.levels if deformable else []
    assert row.visible is deformable and layer.maximum == 2 and len(gallery) == 10
    assert len(level.choices) == 1 + len(levels) and view.size == session.view_base().size
    assert ("Sampling points of all 4 heads, all" in info) is deformable
    heat, _ = decoder_tab.render_query(session, query, 2, MEAN, 0.6, "inferno", HEATMAP, ALL_LEVELS)
    assert heat.size == view.size
    if not deformable:  # dense models: the display selector changes nothing
        assert np.array_equal(np.asarray(heat), np.asarray(view))
        return
    assert not np.array_equal(np.asarray(heat), np.asarray(view))  # points by default, the heatmap on request
    grid, _ = decoder_tab.render_query(session, query, 1, GRID, 0.6, "inferno", POINTS, level.choices[-1][0])
    assert grid.width * grid.height >= 4 * 180 * 120  # one tile per head (4 heads) at the image size


@pytest.mark.parametrize("name", [n for n in NAMES if n in DEFORMABLE])
def test_the_dots_sit_on_the_sampling_points_of_the_chosen_head_and_level(app, name):
    """On a uniform image every drawn dot changes the pixel at its centre; other places stay grey."""
    models, folder = app["models"], app["folders"][name][0]
    session = analyze_handler(models)(Image.new("RGB", (180, 120), (128, 128, 128)), folder)[0]
    ins, base = session.inspection, np.asarray(session.view_base()).astype(int)
    choices = [c[0] for c in decoder_tab.refresh(session, 0.0, True, 2, MEAN, 0.6, "inferno")[-1].choices]
    query = int(np.argmax(1 - ins.probabilities[:, -1]))
    view, info = decoder_tab.render_query(session, query, 2, "head 2", 0.6, "inferno", POINTS, choices[1])
    assert "Sampling points of head 2, level 1 (stride" in info
    drawn = np.abs(np.asarray(view).astype(int) - base).sum(-1) > 30  # [H, W]
    points = ins.sampling_points(query, 1, head=1, level=0)
    scale = session.view_base().width / ins.image_size[1]
    inside = [(x, y) for x, y in points.xy * scale if 0 <= x < base.shape[1] and 0 <= y < base.shape[0]]
    assert inside and all(drawn[int(y), int(x)] for x, y in inside)
    assert drawn.mean() < 0.5  # dots, a box and a cross: most of the image is untouched


@pytest.mark.parametrize("name", NAMES)
def test_the_encoder_tab_answers_where_the_encoder_has_an_answer(app, name):
    session = _session(app, name)[0]
    spec = FAMILY[_model_type(name)]
    h, w = session.inspection.image_size
    view, info = encoder_tab.render_encoder(session, w // 2, h // 2, 1, MEAN, DIRECTIONS[0], 0.6, "inferno")
    slot = ViewSlot(None, None, "x", requires=ENCODER)
    if spec.encoder == NONE:  # RF-DETR, LW-DETR: the backbone feeds the decoder directly
        assert view is None and info.startswith(f"**Not available for {spec.title}:**") and "no transformer" in info
        assert view_state(slot, session) == (info, False)
        return
    assert view.size == session.view_base().size and "encoder layer 1" in info and view_state(slot, session)[1]
    layer, heads, x, y, *_, row, _, _ = encoder_tab.refresh(session, None, GRID, DIRECTIONS[0], 0.6, "inferno")
    assert row.visible is (spec.encoder == "deformable") and layer.maximum >= 1 and (x, y) == (w // 2, h // 2)
    back, line = encoder_tab.render_encoder(session, 10, 10, 1, MEAN, DIRECTIONS[1], 0.6, "inferno")
    if spec.encoder == "deformable":  # the points the location samples; no dense map to read backwards
        assert "samples" in info and back is None and "no dense map" in line
        heat, _ = encoder_tab.render_encoder(session, w // 2, h // 2, 1, MEAN, DIRECTIONS[0], 0.6, "inferno",
                                             HEATMAP)
        assert not np.array_equal(np.asarray(heat), np.asarray(view))
    else:
        assert back.size == view.size


@pytest.mark.parametrize("name", NAMES)
def test_teaching_views_answer_or_say_why_not(app, name):
    session = _session(app, name)[0]
    spec, ins = FAMILY[_model_type(name)], session.inspection
    query = int(np.argmax(1 - ins.probabilities[:, -1]))
    strip, rows = teach_layers.render_layers(session, query, 0.6, "inferno")
    best = (1 / (1 + np.exp(-ins.layer_logits[-1, query].astype(np.float64)))).max()  # sigmoid, not softmax
    assert len(rows) == 2 and rows[-1][2] == pytest.approx(best, abs=1e-3) and strip.width > 0
    image, bars, summary = teach_queries.render_queries(session, 0.5)
    assert image.size[0] > 0 and "quer" in summary
    slot = ViewSlot(None, None, "x", requires=DETR_ONLY_TEACHING, why=teach_pipeline.WHY_NOT)
    assert view_state(slot, session) == (f"**Not available for {spec.title}:** {teach_pipeline.WHY_NOT}.", False)
    show = teach_pipeline.show_handler(app["models"])  # opening the tab runs nothing for a family model
    assert show(session, None, 0.7) == tuple(gr.skip() for _ in range(1 + 2 * teach_pipeline.STAGES))


@pytest.mark.parametrize("name", ["deformable_detr", "rt_detr", "conditional_detr"])
def test_the_layers_tab_says_sampling_points_for_a_deformable_decoder(app, name):
    """A deformable decoder has no cross-attention: the tab's text names what its heatmaps are."""
    text = teach_layers.refresh(_session(app, name)[0], None, 0.6, "inferno")[-1]
    if name in DEFORMABLE:
        assert "sampling points" in text and "cross-attention" not in text
    else:
        assert "cross-attention" in text and "sampling" not in text


def test_the_model_menu_lists_well_known_family_models():
    menu = menu_choices("auto")
    for repo in ("SenseTime/deformable-detr", "PekingU/rtdetr_r50vd", "microsoft/conditional-detr-resnet-50"):
        assert repo in menu


@pytest.fixture(scope="module")
def served(app):
    """The page on 127.0.0.1 with the model folders' parent as a data root; stopped after the module."""
    import gradio_client

    from webapp import page
    from webapp.served import launched

    root = Path(app["image"]).parent
    demo = page.build_demo(app["models"], "tiny", data_roots=(root,))
    with launched(demo) as url:
        yield gradio_client.Client(url, verbose=False)


def test_the_page_serves_sampling_points_through_its_api(app, served):
    """The whole chain on the served page: analyse with a Deformable DETR folder, then the views' endpoints with
    the points display and one level, and the encoder's answer."""
    from gradio_client import handle_file

    folder = app["folders"]["deformable_detr"][0]
    shown, status = served.predict(handle_file(app["image"]), folder, api_name="/analyze")
    assert "Deformable DETR through transformers" in status
    view, info = served.predict(0, 2, "head 1", 0.6, "inferno", POINTS, "level 2 (stride 16)", api_name="/query_view")
    assert Image.open(view).size == (512, 341) and "Sampling points of head 1, level 2 (stride 16)" in info
    view, info = served.predict(90, 60, 1, MEAN, DIRECTIONS[0], 0.6, "inferno", api_name="/encoder_map")
    assert "the points this location" in info  # the display and level selectors keep their defaults
    # the steps the page chains after an analysis, run inside a request as the page runs them
    refreshed = served.predict(0.0, False, 2, MEAN, 0.6, "inferno", POINTS, ALL_LEVELS,
                               api_name="/refresh_decoder_tab")
    assert "Sampling points of all 4 heads" in refreshed[5]
    refreshed = served.predict(1, MEAN, DIRECTIONS[0], 0.6, "inferno", POINTS, ALL_LEVELS,
                               api_name="/refresh_encoder_tab")
    assert "the points this location" in refreshed[5]
