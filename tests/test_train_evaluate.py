"""COCO evaluation: a perfect predictor scores AP 1, a shifted one less, the CLI writes JSON."""
import json

import pytest
import torch
from torch import nn
from train_helpers import shapes_set

import detr_core
from detr_core import PreprocessConfig
from train.coco_file import DataSource
from train.dataset import CocoDetection
from train.evaluate import STAT_NAMES, evaluate, main
from train.transforms import eval_transforms

PRE = PreprocessConfig(64, 64)


class Oracle(nn.Module):
    """Returns each image's ground truth (optionally shifted) as confident predictions.

    Images arrive in data set order (evaluation does not shuffle), one per batch.
    """

    def __init__(self, dataset: CocoDetection, shift: float = 0.0, queries: int = 6):
        super().__init__()
        self.targets = [dataset[i][1] for i in range(len(dataset))]
        self.shift, self.queries, self.calls = shift, queries, 0
        self.num_classes = len(dataset.label_map.class_names)

    def forward(self, pixel_values, pixel_mask):
        t = self.targets[self.calls]
        self.calls += 1
        n = len(t["labels"])
        logits = torch.full((1, self.queries, self.num_classes + 1), -10.0)
        logits[0, :, -1] = 10.0  # unused queries: "no object"
        logits[0, torch.arange(n), t["labels"]] = 10.0
        logits[0, torch.arange(n), -1] = -10.0
        boxes = torch.full((1, self.queries, 4), 0.5)
        boxes[0, :n] = t["boxes"] + torch.tensor([self.shift, 0, 0, 0])
        return {"pred_logits": logits, "pred_boxes": boxes}


@pytest.fixture(scope="module")
def val_set(tmp_path_factory):
    folder = shapes_set(tmp_path_factory.mktemp("val"), images=5, seed=9, size=80, max_objects=3)
    return CocoDetection(DataSource.from_paths(folder), eval_transforms(PRE))


def test_perfect_predictions_score_ap_one(val_set):
    result = evaluate(Oracle(val_set), val_set, batch_size=1)
    assert result.stats["AP"] == pytest.approx(1.0) and result.stats["AP50"] == pytest.approx(1.0)
    assert list(result.stats) == list(STAT_NAMES)
    assert "Average Precision" in result.table


def test_shifted_predictions_score_lower(val_set):
    shifted = evaluate(Oracle(val_set, shift=0.04), val_set, batch_size=1).stats
    assert 0.0 < shifted["AP"] < 0.95 and shifted["AP50"] > shifted["AP"]


def test_tiny_model_on_tiny_set_and_cli_json(tmp_path, val_set, capsys):
    torch.manual_seed(0)
    config = detr_core.tiny_config(num_classes=5)
    model = detr_core.build_model(config, PRE, list(val_set.label_map.class_names))
    path = tmp_path / "tiny.pth"
    detr_core.save_model(model, path)
    assert main(["--model", str(path), "--data", str(val_set.source.annotations.parent),
                 "--json-out", str(tmp_path / "ap.json")]) == 0
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in printed or "no detections" in printed
    stats = json.loads((tmp_path / "ap.json").read_text())
    assert list(stats)[:len(STAT_NAMES)] == list(STAT_NAMES)
    assert all(-1 <= stats[k] <= 1 for k in STAT_NAMES)
    assert {"confident_detections", "objects", "confident_per_object"} <= set(stats)


def test_model_without_the_data_set_classes_is_rejected(tmp_path, val_set, capsys):
    model = detr_core.build_model(detr_core.tiny_config(num_classes=2), PRE, ["cat", "dog"])
    detr_core.save_model(model, tmp_path / "m.pth")
    code = main(["--model", str(tmp_path / "m.pth"), "--data", str(val_set.source.annotations.parent)])
    assert code == 2 and "not among the model's class names" in capsys.readouterr().err


def test_missing_model_file_is_reported(tmp_path, val_set, capsys):
    code = main(["--model", str(tmp_path / "none.pth"), "--data", str(val_set.source.annotations.parent)])
    assert code == 2 and "none.pth" in capsys.readouterr().err
