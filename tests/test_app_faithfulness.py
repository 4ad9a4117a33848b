"""The app's "How faithful is this map?" view: curves, AUC table and summary for one query; D-RISE on its own
button with a mask count; bad values named."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import viz.faithfulness
from webapp import faithfulness_panel as teach_faithfulness
from webapp.models import ModelCache
from webapp.session import analyze
from webapp.store import InspectionStore


@pytest.fixture(scope="module")
def models():
    return ModelCache(compile_backbone=False)


@pytest.fixture(scope="module")
def store():
    return InspectionStore()


@pytest.fixture(scope="module")
def session(models, store):
    image = np.random.default_rng(4).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    return analyze(models, store, models.get("tiny"), image)


def test_every_map_is_tested_for_the_chosen_query(session, models, store):
    ins = session.inspection
    seen = []

    def progress(fraction, desc=""):
        seen.append((fraction, desc))

    image, rows, summary = teach_faithfulness.faithfulness_handler(models, store, False)(
        session, 5, 4, 100, progress=progress)
    names = [r[0] for r in rows]
    layers = ins.layer_logits.shape[0]
    assert names[:1 + layers] == ["attention"] + [f"layer {k + 1}" for k in range(layers)]
    assert {"rollout", "relevance", "random", "box", "centre"} <= set(names) and "D-RISE" not in names
    assert all(0 <= r[1] <= 1 and 0 <= r[2] <= 1 for r in rows)
    assert isinstance(image, Image.Image) and image.width >= 1000
    assert summary.startswith("**Query 5**") and "forwards" in summary
    assert seen[-1][0] == pytest.approx(1.0) and "forwards" in seen[-1][1]


def test_drise_runs_on_its_own_button_with_the_mask_count(session, models, store):
    _, rows, summary = teach_faithfulness.faithfulness_handler(models, store, True)(
        session, None, 4, 6, progress=lambda *a, **k: None)
    assert "D-RISE" in [r[0] for r in rows]
    forwards = int(summary.split(";")[1].split()[0])
    assert forwards == 2 + 6 * (len(rows) + 1) + 6  # 2 (steps - 1) per map (random: 2 seeds), one per mask
    with pytest.raises(gr.Error, match="masks=0"):
        teach_faithfulness.faithfulness_handler(models, store, True)(session, None, 4, 0, progress=lambda *a, **k: None)


def test_the_caveat_says_perturbed_images_leave_the_distribution():
    assert "not natural images" in viz.faithfulness.CAVEAT


def test_before_any_image_the_panel_asks_for_one(models, store):
    for with_drise in (False, True):
        with pytest.raises(gr.Error, match="Upload an image first"):
            teach_faithfulness.faithfulness_handler(models, store, with_drise)(None, 0, 6, 10,
                                                                              progress=lambda *a, **k: None)


def test_the_batch_is_smaller_at_r50_sizes():
    assert teach_faithfulness.batch_size((256, 256)) == 16 and teach_faithfulness.batch_size((800, 1066)) == 4
