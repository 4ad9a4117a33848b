"""COCO evaluation: a perfect predictor scores AP 1, a shifted one less, the CLI writes JSON."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from train_helpers import shapes_set

import detr_core
from detr_core import PreprocessConfig
from train.coco_file import DataSource
from train.dataset import CocoDetection
from train.evaluate import STAT_NAMES, coco_results, evaluate, main
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


def _non_square_set(folder):
    """Two images, 96 x 64 and 64 x 96 (W x H), two boxes each, in COCO format."""
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    boxes = {1: [[10, 5, 40, 20], [60, 30, 30, 30]], 2: [[5, 50, 20, 40], [30, 10, 30, 20]]}  # x, y, w, h
    for image_id, (name, (w, h)) in enumerate([("wide.png", (96, 64)), ("tall.png", (64, 96))], start=1):
        Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(folder / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        annotations += [{"image_id": image_id, "category_id": k + 1, "bbox": box}
                        for k, box in enumerate(boxes[image_id])]
    categories = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    (folder / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    return CocoDetection(DataSource.from_paths(folder), eval_transforms(PRE))


@pytest.mark.parametrize("orig_size,expected", [
    # (H, W) = (64, 96): box 0 is x 0..48, y 24..40; box 1 is x 67.2..76.8, y 0..32
    ((64, 96), [[0, 24, 48, 16], [67.2, 0, 9.6, 32]]),
    ((96, 64), [[0, 36, 32, 24], [44.8, 0, 6.4, 48]]),
])
def test_coco_results_are_xywh_in_original_pixels(orig_size, expected):
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.25, 0.5, 0.25], [0.1, 0.1, 0.8]])  # [Q=3, C+1=3]
    boxes = torch.tensor([[0.25, 0.5, 0.5, 0.25], [0.75, 0.25, 0.1, 0.5], [0.5, 0.5, 1.0, 1.0]])
    outputs = {"pred_logits": probs.log()[None], "pred_boxes": boxes[None]}
    targets = [{"image_id": 7, "orig_size": torch.tensor(orig_size)}]
    results = coco_results(outputs, targets, {0: 11, 1: 12})
    assert [r["image_id"] for r in results] == [7, 7, 7]
    assert [r["category_id"] for r in results] == [11, 12, 11]  # the third query's best real class is 0
    assert [r["score"] for r in results] == pytest.approx([0.6, 0.5, 0.1])
    for result, box in zip(results, expected):
        assert result["bbox"] == pytest.approx(box, abs=0.01)
    # a label without a category (e.g. COCO-91's "N/A" slots) gives no entry
    assert [r["category_id"] for r in coco_results(outputs, targets, {1: 12})] == [12]


def test_perfect_predictions_on_non_square_images_score_ap_one(tmp_path):
    """Ground truth as predictions on 96 x 64 and 64 x 96 images: any mix-up of height and width when the
    boxes go back to pixels moves them and the AP drops."""
    data = _non_square_set(tmp_path)
    result = evaluate(Oracle(data), data, batch_size=1)
    assert result.stats["AP"] == pytest.approx(1.0) and result.detections == 2 * 6


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
    assert list(stats) == list(STAT_NAMES) and all(-1 <= v <= 1 for v in stats.values())


def test_model_without_the_data_set_classes_is_rejected(tmp_path, val_set, capsys):
    model = detr_core.build_model(detr_core.tiny_config(num_classes=2), PRE, ["cat", "dog"])
    detr_core.save_model(model, tmp_path / "m.pth")
    code = main(["--model", str(tmp_path / "m.pth"), "--data", str(val_set.source.annotations.parent)])
    assert code == 2 and "not among the model's class names" in capsys.readouterr().err


def test_missing_model_file_is_reported(tmp_path, val_set, capsys):
    code = main(["--model", str(tmp_path / "none.pth"), "--data", str(val_set.source.annotations.parent)])
    assert code == 2 and "none.pth" in capsys.readouterr().err
