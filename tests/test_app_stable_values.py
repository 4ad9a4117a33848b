"""Selector values are stable and separate from the labels the page shows, and every spelling a script ever sent
still works: the head selector's first values ("mean", "max", "grid", "3"), its later ones (its labels: "mean over
heads", "head 3", ...), the feature level's labels ("all levels", "level 2 (stride 16)") and today's values.

Checked on the handlers and through gradio_client against a served page (Gradio checks a value against the
choices before any handler runs): an old spelling and today's value give the same view, pixel for pixel.
"""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from family_models import build_tiny
from webapp import page
from webapp.controls import (DIRECTION_CHOICES, GRID, LOOKED_AT, LOOKS_FROM, MAX, MEAN, fitted_head, head_choices,
                             parse_head)
from webapp.models import ModelCache
from webapp.sampling_controls import ALL_LEVELS, DISPLAY_LABELS, POINTS
from webapp.served import launched

# (today's value, the spellings of earlier versions)
HEAD_SPELLINGS = [(MEAN, ["mean over heads"]), (MAX, ["max over heads"]), (GRID, ["all heads (grid)"]),
                  ("3", ["head 3"])]


def test_head_choices_pair_stable_values_with_the_labels_the_page_shows():
    assert head_choices(3) == [("mean over heads", "mean"), ("max over heads", "max"), ("head 1", "1"),
                               ("head 2", "2"), ("head 3", "3"), ("all heads (grid)", "grid")]
    assert DIRECTION_CHOICES == [("where this location looks", LOOKS_FROM), ("which locations look here", LOOKED_AT)]
    assert (LOOKS_FROM, POINTS, DISPLAY_LABELS[POINTS]) == ("where this location looks", "sampling points",
                                                            "sampling points")  # the values they always had


@pytest.mark.parametrize("value, older", HEAD_SPELLINGS)
def test_every_spelling_of_a_head_choice_means_the_same(value, older):
    expected = {MEAN: None, MAX: "max", GRID: GRID, "3": 2}[value]
    for spelling in [value, *older]:
        assert parse_head(spelling, 4) == expected
        assert fitted_head(spelling, 4) == value  # a new analysis keeps the choice, in today's spelling
    assert parse_head(3, 4) == 2  # a bare number from a script
    assert fitted_head("head 7", 4) == MEAN  # this model has no head 7
    with pytest.raises(ValueError, match=r"head='head 7': this model has heads 1\.\.4"):
        parse_head("head 7", 4)
    with pytest.raises(ValueError, match="head='average': choose 'mean', 'max', 'grid' or a head number"):
        parse_head("average", 4)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The page (tiny DETR by default) on 127.0.0.1 with a tiny Deformable DETR folder in a data root, a 120x180
    image beside it; yields (client, folder of the deformable model, image path); stopped after the module."""
    gradio_client = pytest.importorskip("gradio_client")
    root = tmp_path_factory.mktemp("stable-values")
    fm = build_tiny("deformable_detr")
    fm.model.save_pretrained(root / "deformable")
    fm.processor.save_pretrained(root / "deformable")
    image = np.random.default_rng(3).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    image[30:80, 40:120] = (220, 40, 40)
    Image.fromarray(image).save(root / "image.png")
    demo = page.build_demo(ModelCache(compile_backbone=False), "tiny", data_roots=(root,))
    with launched(demo) as url:
        yield gradio_client.Client(url, verbose=False), root / "deformable", root / "image.png"


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _same_answers(client, api_name: str, make_args, spellings) -> None:
    """Every spelling gives the first one's text and image, pixel for pixel."""
    answers = [client.predict(*make_args(s), api_name=api_name) for s in spellings]
    (view, info), rest = answers[0], answers[1:]
    for (other_view, other_info), spelling in zip(rest, spellings[1:]):
        assert other_info == info, spelling
        assert np.array_equal(_pixels(other_view), _pixels(view)), spelling


@pytest.mark.parametrize("value, older", HEAD_SPELLINGS)
def test_scripts_may_send_old_and_new_head_values_to_the_served_page(served, value, older):
    from gradio_client import handle_file

    client, _, image = served
    _, status = client.predict(handle_file(str(image)), "tiny", api_name="/analyze")
    assert "tiny" in status
    spellings = [value, *older]
    _same_answers(client, "/encoder_map", lambda head: (90, 60, 2, head, LOOKS_FROM, 0.6, "inferno"), spellings)
    _same_answers(client, "/query_view", lambda head: (0, 2, head, 0.6, "inferno"), spellings)
    gallery = [client.predict(0.0, True, 1, head, 0.6, "inferno", api_name="/query_gallery") for head in spellings]
    assert all(len(tiles) == 10 and [t["caption"] for t in tiles] == [t["caption"] for t in gallery[0]]
               for tiles in gallery)


def test_scripts_may_send_old_and_new_level_values_to_the_served_page(served):
    from gradio_client import handle_file

    client, folder, image = served
    _, status = client.predict(handle_file(str(image)), str(folder), api_name="/analyze")
    assert "Deformable DETR" in status
    for spellings in (["2", "level 2 (stride 16)"], [ALL_LEVELS, "all levels"]):
        _same_answers(client, "/query_view", lambda level: (0, 2, "1", 0.6, "inferno", POINTS, level), spellings)
    view, info = client.predict(0, 2, "head 1", 0.6, "inferno", "sampling points", "2", api_name="/query_view")
    assert "Sampling points of head 1, level 2 (stride 16)" in info  # the info line names the level by its label
