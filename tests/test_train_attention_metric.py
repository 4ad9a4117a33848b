"""The attention-in-box figure: geometry on hand-made maps, and the CLI on a tiny model."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from train_helpers import shapes_set

import detr_core
from detr_core.inspection.coords import CoordinateMap
from train.attention_metric import attention_in_boxes
from train.evaluate import main

# a 128x64 original image shown to the model at 64x32, stride 16: a 4x2 grid of 32-px cells (original)
COORDS = CoordinateMap(image_size=(128, 64), input_size=(64, 32), feature_size=(4, 2), stride=16)


def test_coverage_grows_the_box_by_one_cell():
    # one original cell (rows 32..64, cols 0..32) = cell (1, 0); grown by a cell: rows 0-2, cols 0-1
    coverage = COORDS.box_cell_coverage((0, 32, 32, 64))
    assert coverage.tolist() == [[1, 1], [1, 1], [1, 1], [0, 0]]
    assert COORDS.box_cell_coverage((0, 32, 32, 64), grow_cells=0).tolist() == [[0, 0], [1, 0], [0, 0], [0, 0]]


def test_partial_cells_count_by_area():
    # half a cell wide and tall, not grown: a quarter of cell (0, 0)
    assert COORDS.box_cell_coverage((0, 0, 16, 16), grow_cells=0)[0, 0] == pytest.approx(0.25)


def test_per_head_share_on_hand_made_maps(tiny_model, rgb_image):
    """Inspection.attention_in_box on a 4x2 grid, one query whose box is cell (1, 0) of the original."""
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    focused, uniform, far = np.zeros(8), np.full(8, 1 / 8), np.zeros(8)
    focused[1 * 2 + 0] = 1.0
    far[3 * 2 + 1] = 1.0
    cross = np.stack([focused, uniform, far])[None, :, None, :]  # [L=1, heads=3, Q=1, fh*fw=8]
    box = np.array([[16 / 64, 48 / 128, 32 / 64, 32 / 128]])  # cx, cy, w, h of (0, 32, 32, 64) in 64x128
    hand = dataclasses.replace(ins, coords=COORDS, decoder_cross_attention=cross,
                               layer_boxes=box[None], layer_logits=np.zeros((1, 1, 6)), _probs=None)
    assert hand.attention_in_box(0) == pytest.approx([1.0, 6 / 8, 0.0])
    assert hand.attention_in_box(0, grow_cells=0) == pytest.approx([1.0, 1 / 8, 0.0])
    with pytest.raises(ValueError, match="query=1"):
        hand.attention_in_box(1)


def test_tiny_model_figure_and_cli(tmp_path, capsys):
    data = shapes_set(tmp_path / "data", images=2, seed=3, size=64)
    torch.manual_seed(0)
    config = detr_core.tiny_config(backbone_stages=3)
    names = ["circle", "square", "triangle", "star", "cross"]
    model = detr_core.build_model(config, detr_core.PreprocessConfig(64, 64), names).eval()
    files = sorted((data / "images").glob("*.png"))
    low = attention_in_boxes(model, files, threshold=0.0)  # every query counts as a detection
    assert low.images == 2 and low.detections == 2 * config.num_queries
    assert 0.0 <= low.mean_fraction <= 1.0
    # the mean over heads of a map is the mean of the heads' shares (the box weighting is linear)
    assert len(low.per_head) == config.nheads
    assert np.mean(low.per_head) == pytest.approx(low.mean_fraction, abs=1e-6)
    assert attention_in_boxes(model, files, threshold=1.0).detections == 0

    detr_core.save_model(model, tmp_path / "m.pth")
    code = main(["--model", str(tmp_path / "m.pth"), "--data", str(data), "--attention",
                 "--score-threshold", "0.0", "--json-out", str(tmp_path / "out.json")])
    printed = capsys.readouterr().out
    assert code == 0 and (f"decoder attention inside the box grown by one cell: {low.mean_fraction:.3f} "
                          f"(mean over {low.detections} detections scoring > 0.0)\n") in printed
    assert "  the same, each head's own map: " + ", ".join(f"{v:.2f}" for v in low.per_head) + "\n" in printed
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["attention_in_box"] == pytest.approx(low.mean_fraction, abs=1e-6)
    assert out["attention_in_box_per_head"] == pytest.approx(list(low.per_head), abs=1e-6)
    assert out["attention_detections"] == low.detections


def test_measured_in_eval_mode_and_the_mode_is_restored(tmp_path):
    data = shapes_set(tmp_path / "data", images=2, seed=3, size=64)
    torch.manual_seed(0)
    config = detr_core.tiny_config(backbone_stages=3, dropout=0.5)
    model = detr_core.build_model(config, detr_core.PreprocessConfig(64, 64))
    files = sorted((data / "images").glob("*.png"))
    in_eval = attention_in_boxes(model.eval(), files, threshold=0.0)
    in_training = attention_in_boxes(model.train(), files, threshold=0.0)
    assert model.training
    assert in_training.mean_fraction == in_eval.mean_fraction  # no dropout in the measured maps
