"""The Compare view (Inspect): a second model from the same menu on the page's image, both inspections in the
store and counted in its budget (and run again if evicted), the table of pairs and unpaired detections, both maps
for a row; through its handlers and through the served page's Gradio API. Tiny random models only."""
from __future__ import annotations

import types

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import detr_core
from conftest import TINY_PREPROCESS
from webapp import compare_tab, page
from webapp.analysis import analyze_handler
from webapp.controls import MEAN
from webapp.model_sources import SourcePolicy
from webapp.models import TINY, ModelCache
from webapp.sampling_controls import HEATMAP, POINTS
from webapp.served import launched
from webapp.session import encode_png, analyze
from webapp.store import InspectionStore, measure

SHOW = (2, MEAN, 2, MEAN, True, HEATMAP, 0.6, "inferno")  # layers, heads, one scale, display, alpha, colormap


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A folder the page may read holding: a second tiny DETR (other weights: the same grid, like a fine-tuned
    copy), a tiny Deformable DETR saved with save_pretrained, and a 400x600 image; one ModelCache."""
    root = tmp_path_factory.mktemp("compare")
    torch.manual_seed(1)
    detr_core.save_model(detr_core.build_model(detr_core.tiny_config(), TINY_PREPROCESS), root / "other.pth")
    pixels = np.random.default_rng(2).integers(0, 255, (400, 600, 3), dtype=np.uint8)
    pixels[100:300, 150:450] = (220, 40, 40)
    Image.fromarray(pixels).save(root / "image.png")
    folders = {"other": str(root / "other.pth")}
    if _has_transformers():
        from family_models import build_tiny

        fm = build_tiny("deformable_detr")
        fm.model.save_pretrained(root / "deformable")
        fm.processor.save_pretrained(root / "deformable")
        folders["deformable"] = str(root / "deformable")
    models = ModelCache(optimize=False)
    models.get(TINY)
    return types.SimpleNamespace(root=root, image=str(root / "image.png"), folders=folders, models=models,
                                 policy=SourcePolicy((root,)))


def _has_transformers() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _compare(setup, session, name, threshold=0.0, min_iou=0.5, show=SHOW):
    ctx = types.SimpleNamespace(policy=setup.policy, models=setup.models)
    return compare_tab.compare_handler(ctx)(session, name, threshold, min_iou, *show)


def _session(setup, store=None):
    return analyze_handler(setup.models, store)(setup.image, TINY)[0]


def test_a_model_compared_with_itself_pairs_every_query_and_their_difference_is_shown(setup):
    session = _session(setup)
    source, text, rows, *_, row, boxes, map_a, map_b, difference, info = _compare(setup, session, TINY)
    assert source == TINY and text.startswith("**10 pairs** above score 0.00") and "**0 only in A**" in text
    assert [r[1] for r in rows] == ["pair"] * 10 and [r[-1] for r in rows] == [1.0] * 10
    assert [r[2] for r in rows] == [r[6] for r in rows]  # the same query on both sides
    assert row == 1 and info.startswith("**Pair** (IoU 1.00, the same class)")
    assert map_a.size == map_b.size == boxes.size == (600, 400) and difference.visible


def test_another_tiny_detr_pairs_by_place_and_the_table_counts_every_detection(setup):
    session = _session(setup)
    _, text, rows, layer_a, head_a, layer_b, head_b, *_ = _compare(setup, session, setup.folders["other"],
                                                                   min_iou=0.05)
    ins_a = session.inspection
    ins_b = detr_core.inspect_image(detr_core.load_model(setup.folders["other"]), session.image)
    kinds = [r[1] for r in rows]
    assert kinds.count("pair") + kinds.count("only A") == len(ins_a.detections(0.0)) == 10
    assert kinds.count("pair") + kinds.count("only B") == len(ins_b.detections(0.0)) == 10
    assert kinds == sorted(kinds, key=["pair", "only A", "only B"].index)  # pairs first, then A's, then B's
    assert layer_a.maximum == layer_b.maximum == 2 and head_a.choices[-1][0] == "head 4"


@pytest.mark.skipif(not _has_transformers(), reason="transformers is not installed")
def test_an_unpaired_detection_shows_the_other_models_nearest_query_and_says_nothing_was_paired(setup):
    session = _session(setup)
    folder = setup.folders["deformable"]
    _, text, rows, *_, difference, info = _compare(setup, session, folder, min_iou=0.9)
    assert not difference.visible  # DETR and Deformable DETR: no common grid to subtract
    only_a = next(r for r in rows if r[1] == "only A")
    box = np.array([float(v) for v in only_a[5].split(", ")])  # the table's box, whole pixels
    ins_b = detr_core.inspect_any(setup.models.get(folder).model, session.image)
    nearest = int(np.argmax(_giou(box, ins_b.coords.boxes_to_pixels(ins_b.boxes))))
    boxes, map_a, map_b, _, line = compare_tab.render_pair(session, folder, 0.0, 0.9, only_a[0], *SHOW)
    assert line.startswith(f"**Nothing was paired:** only A ({TINY}) found this {only_a[3]}")
    assert f"Shown for B: its query {nearest}, whose box is closest" in line
    points = compare_tab.render_pair(session, folder, 0.0, 0.9, only_a[0], *SHOW[:5], POINTS, 0.6, "inferno")[2]
    assert not np.array_equal(np.asarray(points), np.asarray(map_b))  # B is deformable: its points on request


def _giou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """GIoU of one x0, y0, x1, y1 box with each of boxes [N, 4], worked with numpy (not torchvision)."""
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area(box) + area(boxes) - inter
    hull = (np.maximum(box[2:], boxes[:, 2:]) - np.minimum(box[:2], boxes[:, :2])).prod(1)
    return inter / union - (hull - union) / hull


def test_bad_rows_heads_and_sources_are_plain_errors(setup, tmp_path):
    session = _session(setup)
    _compare(setup, session, TINY)
    with pytest.raises(gr.Error, match=r"row=11: choose a row of the table, 1\.\.10"):
        compare_tab.render_pair(session, TINY, 0.0, 0.5, 11, *SHOW)
    with pytest.raises(gr.Error, match="each side shows one map"):
        compare_tab.render_pair(session, TINY, 0.0, 0.5, 1, 2, "all heads (grid)", *SHOW[2:])
    with pytest.raises(gr.Error, match="outside the folders this app may read models from"):
        _compare(setup, session, str(tmp_path))
    with pytest.raises(gr.Error, match="press Compare first"):
        compare_tab.render_pair(session, None, 0.0, 0.5, 1, *SHOW)


def test_both_inspections_count_in_the_stores_budget_and_an_evicted_one_is_run_again(setup, capsys):
    other = setup.folders["other"]
    probe = InspectionStore()
    session = _session(setup, probe)
    _compare(setup, session, other)
    second = probe.get((session.key, "compare", other))
    assert second.image.tobytes() == session.image.tobytes()  # the session's image, decoded for the second model
    # each inspection as the store sized it (fresh: before any view caches its probabilities), images included,
    # and the page's image kept once more as a PNG (webapp/session.py)
    fresh = [detr_core.inspect_image(setup.models.get(name).model, session.image) for name in (TINY, other)]
    size_a = measure(fresh[0])  # A's inspection holds (and counts) the page's image
    size_b = measure(fresh[1], exclude=frozenset({id(fresh[1].image)}))  # B shares it: counted once, with A
    assert size_a == size_b + measure(session.image) and size_b > 20_000
    png = len(encode_png(session.image))
    assert probe.used_bytes == size_a + size_b + png and len(probe) == 3  # the page's two inspections and image
    first_rows = _compare(setup, session, other)[2]

    store = InspectionStore(budget_bytes=size_a + size_b + png - 1)  # not room for both: B's arrival evicts A
    session = _session(setup, store)
    _, _, rows, *_ = _compare(setup, session, other)
    assert session.key not in store and (session.key, "compare", other) in store and store.evictions == 1
    capsys.readouterr()
    assert compare_tab.render_table(session, other, 0.0, 0.5)[1] == rows == first_rows  # A again, same answer
    assert "it was run again" in capsys.readouterr().out
    store.release_group(session.key)
    assert len(store) == 0  # whatever of the page is left goes with it


def test_a_new_image_drops_the_pages_earlier_comparison_from_the_store(setup):
    store = InspectionStore()
    first = analyze(setup.models, store, setup.models.get(TINY), setup.image, owner="page")
    _compare(setup, first, setup.folders["other"])
    assert len(store) == 3  # the page's image, its inspection and the comparison
    second = analyze(setup.models, store, setup.models.get(TINY), Image.new("RGB", (300, 200)), owner="page")
    assert set(store.keys()) == {second.key, (second.key, "source")}
    refreshed = compare_tab.refresh(second, setup.folders["other"], 0.0, 0.5, *SHOW)  # the page's next step
    assert len(refreshed[2]) >= 10  # the new image through both models, its enlarged copy for the views beside
    assert set(store.keys()) == {second.key, (second.key, "source"), (second.key, "compare", setup.folders["other"]),
                                 (second.key, "view")}


@pytest.fixture(scope="module")
def served(setup):
    gradio_client = pytest.importorskip("gradio_client")
    demo = page.build_demo(setup.models, TINY, data_roots=(setup.root,))
    with launched(demo) as url:
        yield gradio_client, gradio_client.Client(url, verbose=False)


def test_the_served_page_compares_through_its_api(setup, served):
    gradio_client, client = served
    client.predict(gradio_client.handle_file(setup.image), TINY, api_name="/analyze")
    other = setup.folders["other"]
    text, table, layer_a, head_a, layer_b, head_b, row, boxes, map_a, map_b, difference, info = client.predict(
        other, 0.0, 0.05, *SHOW, api_name="/compare_models")
    rows = table["data"]
    assert table["headers"][:3] == ["row", "kind", "A query"] and len(rows) >= 10 and row == 1
    assert layer_a["maximum"] == layer_b["maximum"] == 2 and len(head_b["choices"]) == 6  # mean, max, 4 heads
    assert Image.open(map_a).size == Image.open(map_b).size == Image.open(boxes).size == (600, 400)
    assert difference["visible"] and info.startswith("**Pair**")  # two DETRs of one architecture: a difference
    last = rows[-1]
    boxes, map_a, map_b, _, info = client.predict(0.0, 0.05, last[0], 1, "2", 2, "max", False,
                                                  HEATMAP, 0.6, "viridis", api_name="/compare_view")
    assert f"query {last[2] if last[2] != '' else last[6]}" in info and "each map scaled by its own maximum" in info
    with pytest.raises(Exception, match="outside the folders this app may read models from"):
        client.predict(str(setup.root.parent), 0.0, 0.5, *SHOW, api_name="/compare_models")
