"""Pipeline stages from the single forward pass, query-slot statistics and their CLI, set-prediction helpers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import detr_core
from detr_core.teaching import pipeline, query_slots
from detr_core.teaching.set_prediction import box_iou, suppressed_duplicates


@pytest.fixture(scope="module")
def model(module_tiny_model):
    return module_tiny_model


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(2).integers(0, 255, (120, 180, 3), dtype=np.uint8)


def test_stages_come_from_the_same_single_forward_pass(model, image, monkeypatch):
    calls = []
    real_forward = type(model).forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real_forward(self, *args, **kwargs)
    monkeypatch.setattr(type(model), "forward", counting)
    ins, stages = pipeline.inspect_with_stages(model, image)
    assert len(calls) == 1
    fh, fw = ins.feature_size
    d, q = model.config.hidden_dim, model.config.num_queries
    assert stages.input.shape == (3, *ins.input_size)
    assert stages.backbone.shape == (model.backbone[0].num_channels, fh, fw)
    assert stages.position.shape == stages.projected.shape == stages.memory.shape == (d, fh, fw)
    assert stages.query_embed.shape == (q, d)
    assert stages.decoder.shape == (model.config.dec_layers, q, d)


def test_decoder_stage_is_what_the_heads_read(model, image):
    ins, stages = pipeline.inspect_with_stages(model, image)
    with torch.no_grad():
        logits = model.class_embed(torch.from_numpy(stages.decoder)).numpy()  # [L, Q, C+1]
    np.testing.assert_allclose(logits, ins.layer_logits, atol=1e-5)


def test_memory_is_the_encoder_output_in_grid_layout(model, image):
    _, stages = pipeline.inspect_with_stages(model, image)
    t = model.transformer
    src = torch.from_numpy(stages.projected)[None].flatten(2).transpose(1, 2)  # [1, HW, d]
    pos = torch.from_numpy(stages.position)[None].flatten(2).transpose(1, 2)
    with torch.no_grad():
        memory = t.encoder(src, pos, torch.zeros(src.shape[:2], dtype=torch.bool))[0]  # [HW, d]
    np.testing.assert_allclose(stages.memory.reshape(memory.shape[1], -1).T, memory.numpy(), atol=1e-5)


def test_input_pixels_undo_the_normalisation(model):
    flat = np.full((64, 96, 3), 200, np.uint8)
    _, stages = pipeline.inspect_with_stages(model, flat)
    pixels = stages.input_pixels()
    assert pixels.shape == (*stages.input.shape[1:], 3) and np.abs(pixels.astype(int) - 200).max() <= 1


def test_principal_components_find_the_dominant_direction():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=8)
    strength = rng.normal(size=(1, 5, 6)) * 10
    features = direction[:, None, None] * strength + rng.normal(size=(8, 5, 6)) * 0.01  # [C, h, w]
    comps, share = pipeline.principal_components(features, 3)
    assert comps.shape == (3, 5, 6) and share[0] > 0.99
    corr = np.corrcoef(comps[0].ravel(), strength.ravel())[0, 1]
    assert abs(corr) > 0.999


def _write_images(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (60 + 10 * i, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_query_slot_stats_count_every_image(model, tmp_path):
    _write_images(tmp_path, 3)
    seen = []
    stats = query_slots.collect(model, sorted(tmp_path.glob("*.png")), "tiny", lambda d, t: seen.append((d, t)))
    assert stats.num_images == 3 and seen == [(1, 3), (2, 3), (3, 3)]
    assert stats.centres.shape == stats.sizes.shape == (3, model.config.num_queries, 2)
    loaded = query_slots.QuerySlotStats.load(stats.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.centres, stats.centres)
    assert loaded.images == ("0.png", "1.png", "2.png") and loaded.model == "tiny"


def test_query_slot_cli_on_a_coco_set(model, tmp_path, capsys):
    _write_images(tmp_path / "set" / "images", 4)
    (tmp_path / "set" / "annotations.json").write_text(json.dumps(
        {"images": [{"id": i, "file_name": f"{i}.png"} for i in range(4)], "categories": [], "annotations": []}))
    checkpoint = tmp_path / "tiny.pth"
    detr_core.save_model(model, checkpoint)
    out = tmp_path / "slots.npz"
    query_slots.main(["--model", str(checkpoint), "--data", str(tmp_path / "set"), "--out", str(out)])
    assert query_slots.QuerySlotStats.load(out).num_images == 4
    assert "4 images" in capsys.readouterr().out


def test_query_slot_cli_needs_data(tmp_path):
    with pytest.raises(SystemExit):
        query_slots.main(["--model", "untrained", "--out", str(tmp_path / "x.npz")])


def test_box_iou_by_hand():
    iou = box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]))
    np.testing.assert_allclose(iou, [[1 / 7, 1.0, 0.0]])


def test_suppressed_duplicates_are_undetected_queries_overlapping_a_detection(model, image):
    ins = detr_core.inspect_image(model, image)
    best = ins.detections(-1.0)[0]
    threshold = best.score - 1e-6  # exactly one detection
    dups = suppressed_duplicates(ins, threshold, min_iou=0.0)
    assert {d.detection_query for d in dups} == {best.query}
    assert sorted(d.query for d in dups) == [q for q in range(ins.num_queries) if q != best.query]
