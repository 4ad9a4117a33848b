"""COCO evaluation: a perfect predictor scores AP 1, a shifted one less, the CLI writes JSON."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from train_helpers import shapes_set

import detr_core
from detr_core import PreprocessConfig
from train.coco_file import DataSource
from train.dataset import CocoDetection
from train.distributed import DistInfo
from train.evaluate import STAT_NAMES, EvalResult, coco_results, evaluate, main, parse_args, summarize
from train.transforms import eval_transforms

PRE = PreprocessConfig(64, 64)


class Oracle(nn.Module):
    """Returns each image's ground truth (optionally shifted) as confident predictions.

    Images arrive in data set order (evaluation does not shuffle); batch_sizes records each call's batch.
    """

    def __init__(self, dataset: CocoDetection, shift: float = 0.0, queries: int = 6):
        super().__init__()
        self.targets = [dataset[i][1] for i in range(len(dataset))]
        self.shift, self.queries, self.batch_sizes = shift, queries, []
        self.num_classes = len(dataset.label_map.class_names)

    def forward(self, pixel_values, pixel_mask):
        first = sum(self.batch_sizes)
        self.batch_sizes.append(len(pixel_values))
        logits, boxes = zip(*(self._predict(t) for t in self.targets[first:first + len(pixel_values)]))
        return {"pred_logits": torch.stack(logits), "pred_boxes": torch.stack(boxes)}

    def _predict(self, t: dict):
        """-> logits [Q, C+1], boxes [Q, 4]: the targets first, then "no object" queries."""
        n = len(t["labels"])
        logits = torch.full((self.queries, self.num_classes + 1), -10.0)
        logits[:, -1] = 10.0  # unused queries: "no object"
        logits[torch.arange(n), t["labels"]] = 10.0
        logits[torch.arange(n), -1] = -10.0
        boxes = torch.full((self.queries, 4), 0.5)
        boxes[:n] = t["boxes"] + torch.tensor([self.shift, 0, 0, 0])
        return logits, boxes


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


def test_coco_results_round_boxes_to_hundredths():
    outputs = {"pred_logits": torch.tensor([[[2.0, 0.0, 0.0]]]),
               "pred_boxes": torch.tensor([[[0.3, 0.3, 0.1234, 0.1]]])}
    result, = coco_results(outputs, [{"image_id": 1, "orig_size": torch.tensor([64, 96])}], {0: 1})
    # x0 = (0.3 - 0.0617) * 96 = 22.8768, y0 = 0.25 * 64 = 16, w = 0.1234 * 96 = 11.8464, h = 6.4
    assert result["bbox"] == [22.88, 16.0, 11.85, 6.4]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_perfect_predictions_on_non_square_images_score_ap_one(tmp_path, batch_size):
    """Ground truth as predictions on 96 x 64 and 64 x 96 images: any mix-up of height and width when the
    boxes go back to pixels moves them and the AP drops. In one batch the smaller image is padded."""
    data = _non_square_set(tmp_path)
    oracle = Oracle(data)
    result = evaluate(oracle, data, batch_size=batch_size)
    assert result.stats["AP"] == pytest.approx(1.0) and result.detections == 2 * 6
    assert oracle.batch_sizes == [batch_size] * (2 // batch_size)


def test_each_process_predicts_only_its_share(val_set, monkeypatch):
    """Rank 1 of 2 on 5 images: the sampler gives it images 1, 3 and (padding to equal shares) 0. Rank 0 runs
    COCOeval and every process returns rank 0's result."""
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.images = 0

        def forward(self, pixel_values, pixel_mask):
            self.images += len(pixel_values)
            batch = len(pixel_values)
            return {"pred_logits": torch.zeros(batch, 3, 6), "pred_boxes": torch.full((batch, 3, 4), 0.5)}

    def all_gather_object(out, obj):
        out[:] = [{}, obj]

    def broadcast_object_list(box, src):
        box[0] = "rank 0's result"

    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast_object_list)
    counter = Counter()
    assert evaluate(counter, val_set, batch_size=1, info=DistInfo(rank=1, world_size=2)) == "rank 0's result"
    assert counter.images == 3


def test_no_detections_give_zeros_and_say_so(val_set):
    result = summarize(val_set.coco, [], [r.image_id for r in val_set.records])
    annotations = json.loads(val_set.source.annotations.read_text())["annotations"]
    objects = sum(1 for a in annotations if not a.get("iscrowd", 0))  # read from the file, not through COCO
    assert objects > 0
    assert result == EvalResult({name: 0.0 for name in STAT_NAMES}, "no detections: every AP is 0\n", 0, 0, objects)


def test_the_table_is_cocoevals_twelve_lines(val_set):
    table = evaluate(Oracle(val_set), val_set, batch_size=1).table
    lines = table.split("\n")
    assert len(lines) == 13 and lines[-1] == "" and all(line.startswith(" Average ") for line in lines[:12])
    assert lines[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000")


def test_command_line_arguments():
    args = parse_args(["--model", "m.pth", "--data", "d"])
    assert (args.model, args.data, args.images, args.json_out) == ("m.pth", Path("d"), None, None)
    assert (args.batch_size, args.device, args.attention, args.score_threshold) == (4, "cpu", False, 0.7)
    args = parse_args(["--model", "m", "--data", "a.json", "--images", "im", "--json-out", "o.json",
                       "--batch-size", "3", "--attention", "--score-threshold", "0.25"])
    assert (args.images, args.json_out, args.batch_size, args.attention, args.score_threshold) == \
        (Path("im"), Path("o.json"), 3, True, 0.25)
    for missing in (["--model", "m"], ["--data", "d"]):
        with pytest.raises(SystemExit):
            parse_args(missing)


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
    annotations, images = val_set.source.annotations, val_set.source.images  # the file-and-folder form
    json_out = tmp_path / "new" / "folder" / "ap.json"  # folders made as needed
    assert main(["--model", str(path), "--data", str(annotations), "--images", str(images),
                 "--json-out", str(json_out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{path} on {annotations} (5 images):\n")
    lines = printed.splitlines()
    # the table, then the count line straight after it (5 images of up to 3 objects each)
    assert re.fullmatch(r"\d+ detections above 0\.7 for \d+ objects \(\d+\.\d{3} per object\)", lines[-1])
    assert lines[-2] != ""
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in printed or "no detections" in printed
    stats = json.loads(json_out.read_text())
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


class HalfSure(Oracle):
    """The ground truth again, but each true query split evenly between its class and "no object" (score ~0.5)."""

    def _predict(self, t: dict):
        logits, boxes = super()._predict(t)
        logits[torch.arange(len(t["labels"])), -1] = 10.0
        return logits, boxes


def _objects(val_set) -> int:
    return len(json.loads(Path(val_set.source.annotations).read_text())["annotations"])


def test_confident_count_follows_the_threshold_given(val_set):
    """Confident = score above the threshold: 0.7 by default, else the one passed down to the count."""
    objects = _objects(val_set)
    assert objects > 0
    sure = evaluate(Oracle(val_set), val_set, batch_size=2)  # every true query scores ~1.0
    assert (sure.confident, sure.objects) == (objects, objects)
    assert evaluate(HalfSure(val_set), val_set, batch_size=2).confident == 0  # ~0.5 < 0.7
    half = evaluate(HalfSure(val_set), val_set, batch_size=2, threshold=0.4)
    assert half.confident == objects and half.confident_per_object == pytest.approx(1.0)


def test_cli_json_counts_at_the_given_threshold_with_negatives(tmp_path, val_set, capsys):
    """--score-threshold 0 counts every query (each has some best class); --negatives adds its counts."""
    config = detr_core.tiny_config(num_classes=5)
    model = detr_core.build_model(config, PRE, list(val_set.label_map.class_names))
    detr_core.save_model(model, tmp_path / "tiny.pth")
    negatives = tmp_path / "negatives"
    negatives.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 160)).save(negatives / f"blank{i}.png")
    json_out = tmp_path / "ap.json"
    assert main(["--model", str(tmp_path / "tiny.pth"), "--data", str(val_set.source.annotations.parent),
                 "--score-threshold", "0", "--negatives", str(negatives), "--json-out", str(json_out)]) == 0
    out = json.loads(json_out.read_text())
    queries, objects = config.num_queries, _objects(val_set)
    assert (out["confident_detections"], out["objects"]) == (5 * queries, objects)
    assert out["confident_per_object"] == pytest.approx(5 * queries / objects)
    assert (out["negative_images"], out["negative_detections"]) == (2, 2 * queries)
    assert out["negative_detections_per_10_images"] == pytest.approx(10 * queries)
    assert f"{2 * queries} detections above 0.0 on 2 images" in capsys.readouterr().out
