"""Controls whose range comes from the model, for models where that range has one value: an RT-DETR and a D-FINE
with one encoder layer (transformers' default for both, so their real checkpoints too), and a DETR with one encoder
layer, one decoder layer and one head.

Gradio refuses a slider whose minimum is not below its maximum ("Slider minimum must be less than maximum"), but only
when it applies a handler's update to the page's component: a handler called directly returns its update without
complaint. So these tests run the handlers through Gradio's own processing (`Blocks.process_api`, what a page's
request runs), and through the API of a served page (gradio_client), then use the one-value control.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detr_core
from family_models import TINY
from webapp import decoder_tab, encoder_tab, page, teach_ablation
from webapp.analysis import analyze_handler
from webapp.controls import DIRECTIONS, GRID, MAX, MEAN, head_choices
from webapp.head_dropdown import HeadDropdown
from webapp.models import ModelCache
from webapp.served import launched

gradio_state = pytest.importorskip("gradio.state_holder")


def _one_encoder_layer(name: str, folder: Path) -> None:
    """The tiny `name` (tests/family_models.py) with encoder_layers=1 said explicitly, saved as save_pretrained."""
    model_class, config, processor = TINY[name]
    config = config()
    config.encoder_layers = 1
    model_class._from_config(config, attn_implementation="eager").eval().save_pretrained(folder)
    processor().save_pretrained(folder)


def _one_of_each_detr(path: Path) -> None:
    """A tiny DETR with 1 encoder layer, 1 decoder layer and 1 head, as a DETR Lens checkpoint."""
    torch = pytest.importorskip("torch")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = detr_core.build_model(detr_core.tiny_config(enc_layers=1, dec_layers=1, nheads=1),
                                      detr_core.PreprocessConfig(min_size=128, max_size=213))
    detr_core.save_model(model, path)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """{name: model source}: the three models saved under one folder, and a 120x180 image beside them."""
    root = tmp_path_factory.mktemp("one-value")
    _one_encoder_layer("rt_detr", root / "rt_detr")
    _one_encoder_layer("d_fine", root / "d_fine")
    _one_of_each_detr(root / "detr-1-1-1.pth")
    image = np.random.default_rng(2).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "image.png")
    return root


SOURCES = {"rt_detr": "rt_detr", "d_fine": "d_fine", "detr 1+1 layers, 1 head": "detr-1-1-1.pth"}
MODELS = ModelCache(compile_backbone=False)


def _session(root: Path, name: str):
    session, _, status = analyze_handler(MODELS)(str(root / "image.png"), str(root / SOURCES[name]))
    assert session is not None, status
    return session


def _refreshed(root: Path, name: str):
    """A page on model `name` after an analysis, with the refresh that follows it processed by Gradio as a page's
    request is (its inputs at the page's initial values: layer 6, mean, ...) -> (session, demo, state, listener)."""
    session = _session(root, name)
    demo = page.build_demo(MODELS, str(root / SOURCES[name]), data_roots=(root,))
    state = gradio_state.SessionState(demo)
    [fn] = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == page.REFRESH_AFTER_ANALYSIS]
    inputs = []
    for i, block in enumerate(fn.inputs):
        if block.stateful:  # the listener's first input is the page's session; other states keep their defaults
            state[block._id] = session if i == 0 else block.value
        inputs.append(None if block.stateful else block.value)
    asyncio.run(demo.process_api(fn, inputs, state))
    return session, demo, state, fn


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_refresh_goes_through_gradio_and_the_one_layer_view_answers(models_dir, name):
    """Every step the page chains after an analysis, processed by Gradio as a page's request is (its inputs at the
    page's initial values: layer 6, mean, ...); then the encoder (and decoder) view at layer 1."""
    # every tab's step, processed by Gradio as a page's request is; before the fix: "Slider minimum must be less
    # than maximum", raised where Gradio applies the slider updates
    session, demo, state, fn = _refreshed(models_dir, name)
    assert {"refresh_encoder_tab", "refresh_decoder_tab", "refresh_teach_ablation"} <= set(fn.fn.parts)
    views = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in ("encoder_map", "query_view")}
    h, w = session.inspection.image_size
    out = asyncio.run(demo.process_api(views["encoder_map"], [None, w // 2, h // 2, 1, MEAN, DIRECTIONS[0], 0.6,
                                                              "inferno", None, None], state))
    assert "encoder layer 1" in out["data"][1]
    if name.startswith("detr"):  # one decoder layer, one head: the head selector's "head 1" too
        out = asyncio.run(demo.process_api(views["query_view"], [None, 0, 1, "1", 0.6, "inferno", None, None], state))
        assert "(decoder layer 1)" in out["data"][1] and "per head: 1:" in out["data"][1]


@pytest.mark.parametrize("name", list(SOURCES))
def test_a_one_layer_slider_stays_at_1_and_cannot_be_moved_and_the_next_model_gets_its_range_back(models_dir, name):
    """The refresh handlers' slider updates: a valid slider (minimum below maximum) at 1, not interactive, its
    label saying why; a model with more layers gets a movable 1..L slider and the plain label back."""
    session = _session(models_dir, name)
    encoder = encoder_tab.refresh(session, 6, MEAN, DIRECTIONS[0], 0.6, "inferno")[0]
    sliders = [encoder]
    if name.startswith("detr"):
        sliders.append(decoder_tab.refresh(session, 0.0, False, 6, MEAN, 0.6, "inferno")[0])
        sliders += [teach_ablation.refresh(session, kind, 6)[0] for kind in ("encoder", "cross", "self")]
    for slider in sliders:
        assert slider.minimum < slider.maximum == 1 and slider.value == 1 and slider.interactive is False
        assert slider.label.endswith("(this model has only one)")
    folder = models_dir / "four-layers.pth"
    detr_core.save_model(detr_core.build_model(detr_core.tiny_config(enc_layers=4), detr_core.PreprocessConfig(
        min_size=128, max_size=213)), folder)
    other = analyze_handler(MODELS)(str(models_dir / "image.png"), str(folder))[0]
    again = encoder_tab.refresh(other, encoder.value, MEAN, DIRECTIONS[0], 0.6, "inferno")[0]
    assert (again.minimum, again.maximum, again.value, again.interactive, again.label) == (1, 4, 1, True,
                                                                                           "Encoder layer")
    assert encoder_tab.refresh(other, None, MEAN, DIRECTIONS[0], 0.6, "inferno")[0].value == 4  # none: the last


def test_a_script_asking_for_layer_0_of_a_one_layer_model_is_told_its_one_layer(models_dir):
    """The one-value slider's range is 0..1 (Gradio needs two ends); 0 is no layer, and the error says so."""
    session = _session(models_dir, "rt_detr")
    with pytest.raises(Exception, match=r"layer=0: this model has layers 1\.\.1"):
        encoder_tab.render_encoder(session, 10, 10, 0, MEAN, DIRECTIONS[0], 0.6, "inferno")


@pytest.fixture(scope="module")
def served(models_dir):
    """The page with the RT-DETR of one encoder layer as its model, on 127.0.0.1; stopped after the module."""
    gradio_client = pytest.importorskip("gradio_client")
    demo = page.build_demo(MODELS, str(models_dir / "rt_detr"), data_roots=(models_dir,))
    with launched(demo) as url:
        yield gradio_client.Client(url, verbose=False)


def test_the_served_page_refreshes_the_encoder_tab_of_a_one_layer_encoder_and_draws_it(models_dir, served):
    """Through the API, as the page chains it: analyse, refresh the encoder tab (the step that failed with
    "Slider minimum must be less than maximum"), then draw layer 1 where the user clicked."""
    from gradio_client import handle_file

    _, status = served.predict(handle_file(str(models_dir / "image.png")), str(models_dir / "rt_detr"),
                               api_name="/analyze")
    assert "RT-DETR" in status
    refreshed = served.predict(6, MEAN, DIRECTIONS[0], 0.6, "inferno", "sampling points", "all",
                               api_name="/refresh_encoder_tab")
    slider = refreshed[0]  # the update the page applies to the layer slider
    assert (slider["value"], slider["interactive"]) == (1, False) and slider["minimum"] < slider["maximum"] == 1
    assert "encoder layer 1" in refreshed[5]
    view, info = served.predict(40, 30, 1, MEAN, DIRECTIONS[0], 0.6, "inferno", api_name="/encoder_map")
    assert Image.open(view).size == (512, 341) and "encoder layer 1" in info  # small images are drawn at 512 px


def test_a_layer_sent_before_the_fitted_range_reached_the_page_draws_the_last_layer(models_dir):
    """The race a page runs into: the refresh after an analysis fits the layer sliders (here to this model's one
    layer) on the server, and a control moved before that update reaches the browser sends the page's initial
    layer, 6. Gradio's stock slider refused it against the fitted maximum ("Value 6 is greater than maximum value
    1"): the user saw "Error". The page's layer sliders take it as the last layer, what the update sets anyway."""
    name = "detr 1+1 layers, 1 head"
    session, demo, state, _ = _refreshed(models_dir, name)  # the sliders are fitted: range 0..1 on the server
    views = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in ("encoder_map", "query_view")}
    h, w = session.inspection.image_size
    stale = 6  # the page's initial layer, still in the browser
    out = asyncio.run(demo.process_api(views["encoder_map"], [None, w // 2, h // 2, stale, MEAN, DIRECTIONS[0],
                                                              0.6, "inferno", None, None], state))
    assert "encoder layer 1" in out["data"][1]
    out = asyncio.run(demo.process_api(views["query_view"], [None, 0, stale, MEAN, 0.6, "inferno", None, None], state))
    assert "(decoder layer 1)" in out["data"][1]
    with pytest.raises(Exception, match="less than minimum"):  # below the range is no stale value: refused
        asyncio.run(demo.process_api(views["query_view"], [None, 0, -1, MEAN, 0.6, "inferno", None, None], state))


def test_a_head_sent_before_the_fitted_choices_reached_the_page_draws_the_mean(models_dir):
    """The same race for heads: a page that had "head 7" of an 8-head model chosen sends it until the refit (here
    to this model's one head: the mean, as controls.fitted_head sets) reaches the browser. The views said "this model
    has heads 1..1"; the page's head selectors take a head past the model's as the mean."""
    session, demo, state, _ = _refreshed(models_dir, "detr 1+1 layers, 1 head")
    views = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in ("encoder_map", "query_view")}
    h, w = session.inspection.image_size

    def drawn(view: str, head) -> tuple[np.ndarray, str]:  # (the view's pixels, its line of text)
        args = ([None, w // 2, h // 2, 1, head, DIRECTIONS[0], 0.6, "inferno", None, None] if view == "encoder_map"
                else [None, 0, 1, head, 0.6, "inferno", None, None])
        image, info = asyncio.run(demo.process_api(views[view], args, state))["data"][:2]
        path = image["path"] if isinstance(image, dict) else image.path
        return np.asarray(Image.open(path).convert("RGB")), info

    for view in views:
        (stale, stale_info), (mean, mean_info) = drawn(view, "7"), drawn(view, MEAN)
        assert stale_info == mean_info and np.array_equal(stale, mean)


def test_the_head_selector_maps_only_head_numbers_past_its_choices():
    compare_like = HeadDropdown(head_choices(4)[:-1], value=MEAN)  # no custom values, no grid (the Compare view's)
    assert [compare_like.preprocess(v) for v in ("7", "head 7", 7, "4", MAX)] == [MEAN, MEAN, MEAN, "4", MAX]
    for value in ("average", "head 2"):  # no head past the choices: Gradio's own check, as before
        with pytest.raises(Exception, match="not in the list of choices"):
            compare_like.preprocess(value)
    custom = HeadDropdown(head_choices(4), value=MEAN, allow_custom_value=True)  # the decoder's and encoder's
    assert [custom.preprocess(v) for v in ("5", "0", "average", GRID)] == [MEAN, "0", "average", GRID]
