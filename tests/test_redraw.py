"""The page's event wiring: every control event has exactly one listener (two or more "always_last" listeners on one
event re-triggered each other without end in Gradio 6.31, and their views spun for good: see webapp/redraw.py),
the views' script endpoints are kept, and one failing view does not stop the others from redrawing."""
from __future__ import annotations

from collections import Counter

import gradio as gr
import pytest

from webapp import page, redraw
from webapp.models import TINY, ModelCache


@pytest.fixture(scope="module")
def config():
    return page.build_demo(ModelCache(optimize=False), TINY).get_config_file()


def test_every_trigger_event_on_the_page_has_exactly_one_listener(config):
    listeners = Counter((target, event) for dep in config["dependencies"] for target, event in dep["targets"]
                        if target is not None)  # None: .then/.success chains, dispatched one listener at a time
    assert listeners and max(listeners.values()) == 1, [k for k, n in listeners.items() if n > 1]


def test_the_heatmap_controls_redraw_every_heatmap_view_in_one_listener(config):
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]}
    (dep,) = [d for d in config["dependencies"] if [ids["cmap"], "input"] in [list(t) for t in d["targets"]]]
    assert [ids["alpha"], "input"] in [list(t) for t in dep["targets"]] and dep["trigger_mode"] == "always_last"
    assert {ids[v] for v in ("query-gallery", "query-view", "encoder-map", "layers-strip")} <= set(dep["outputs"])
    (dep,) = [d for d in config["dependencies"] if [ids["threshold"], "input"] in [list(t) for t in d["targets"]]]
    assert {ids[v] for v in ("detections", "query-gallery", "queries-boxes")} <= set(dep["outputs"])


def test_each_views_script_endpoint_is_kept(config):
    names = {d["api_name"]: d for d in config["dependencies"]}
    for name, inputs in [("detections", 2), ("query_gallery", 9), ("query_view", 8), ("encoder_map", 10),
                         ("teach_layers", 4), ("teach_queries", 2), ("teach_slots", 3)]:
        assert name in names and names[name]["targets"] == [] and len(names[name]["inputs"]) == inputs, name


def test_a_view_that_fails_leaves_its_outputs_and_the_others_still_redraw():
    with gr.Blocks():
        a, b, out1, out2, out3, out4 = (gr.Number(), gr.Number(), gr.Textbox(), gr.Textbox(), gr.Textbox(),
                                        gr.Textbox())

        def fails(x):
            raise gr.Error(f"x={x} is not allowed")
        views = [redraw.Redraw((), lambda x, y: (f"sum {x + y}", f"product {x * y}"), (a, b), (out1, out2), "one"),
                 redraw.Redraw((), fails, (b,), (out3,), "two"),
                 redraw.Redraw((), lambda y: f"half {y / 2}", (b,), (out4,), "three")]
        fn = redraw.all_views(views, [a, b])
    with pytest.warns(UserWarning, match="x=4 is not allowed"):  # gr.Warning, outside a page
        result = fn(3, 4)
    assert result[:2] == ("sum 7", "product 12") and isinstance(result[2], type(gr.skip()))
    assert result[3] == "half 2.0" and len(result) == 4
