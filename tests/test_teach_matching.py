"""The Hungarian matching explorer: the training matcher's assignment, checked by brute force, and ground truth."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import detr_core
import detr_core.teaching.matching_explorer as explorer
from detr_core.objective.criterion import LossWeights, SetCriterion
from detr_core.teaching.ground_truth import CocoSet
from detr_core.objective.matcher import MatchWeights

SHAPES_VAL = Path(__file__).resolve().parent.parent / "webapp" / "examples" / "shapes_val"


def _random_case(seed: int, q: int, n: int, classes: int = 3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(q, classes + 1)).astype(np.float32)
    boxes = np.concatenate([rng.uniform(0.2, 0.8, (q, 2)), rng.uniform(0.05, 0.4, (q, 2))], 1).astype(np.float32)
    labels = rng.integers(0, classes, n)
    targets = np.concatenate([rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.4, (n, 2))], 1).astype(np.float32)
    return logits, boxes, labels, targets


@pytest.mark.parametrize("seed, q, n", [(0, 4, 2), (1, 5, 3), (2, 3, 3)])
def test_assignment_is_the_cheapest_of_all_one_to_one_assignments(seed, q, n):
    logits, boxes, labels, targets = _random_case(seed, q, n)
    expl = explorer.explain_matching_arrays(logits, boxes, labels, targets)
    total = expl.costs["total"]  # [Q, N]
    brute = min(sum(total[p, t] for t, p in enumerate(perm)) for perm in itertools.permutations(range(q), n))
    assert expl.assignment_cost == pytest.approx(brute, abs=1e-5)
    assert sorted(expl.tgt_idx.tolist()) == list(range(n)) and len(set(expl.pred_idx.tolist())) == n


def test_cost_terms_combine_with_the_weights_and_the_class_cost_is_minus_the_probability():
    logits, boxes, labels, targets = _random_case(3, 4, 2)
    w = MatchWeights(2.0, 3.0, 0.5)
    expl = explorer.explain_matching_arrays(logits, boxes, labels, targets, w)
    c = expl.costs
    np.testing.assert_allclose(c["total"], 2.0 * c["cost_class"] + 3.0 * c["cost_bbox"] + 0.5 * c["cost_giou"],
                               atol=1e-5)
    probs = torch.as_tensor(logits).softmax(-1).numpy()
    np.testing.assert_allclose(c["cost_class"], -probs[:, labels], atol=1e-6)
    np.testing.assert_allclose(c["cost_bbox"][1, 0], np.abs(boxes[1] - targets[0]).sum(), atol=1e-5)


def test_weights_change_the_assignment_when_class_and_box_disagree():
    # Query 0 has the right class but a far box; query 1 the wrong class but the exact box.
    logits = np.array([[5.0, -5.0, 0.0], [-5.0, 5.0, 0.0]], np.float32)
    boxes = np.array([[0.8, 0.8, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2]], np.float32)
    labels, targets = np.array([0]), np.array([[0.3, 0.3, 0.2, 0.2]], np.float32)
    by_class = explorer.explain_matching_arrays(logits, boxes, labels, targets, MatchWeights(10.0, 0.0, 0.0))
    by_box = explorer.explain_matching_arrays(logits, boxes, labels, targets, MatchWeights(0.0, 5.0, 2.0))
    assert by_class.target_of(0) == 0 and by_class.target_of(1) is None
    assert by_box.target_of(1) == 0 and by_box.target_of(0) is None


def test_losses_are_the_criterions_losses():
    logits, boxes, labels, targets = _random_case(4, 5, 2)
    expl = explorer.explain_matching_arrays(logits, boxes, labels, targets)
    outputs = {"pred_logits": torch.as_tensor(logits)[None], "pred_boxes": torch.as_tensor(boxes)[None]}
    ref = SetCriterion(3)(outputs, [{"labels": torch.as_tensor(labels), "boxes": torch.as_tensor(targets)}])
    for key in ("loss_ce", "loss_bbox", "loss_giou"):
        assert expl.losses[key] == pytest.approx(float(ref[key]), abs=1e-6)
    w = LossWeights()
    assert expl.weighted_loss == pytest.approx(
        w.ce * float(ref["loss_ce"]) + w.bbox * float(ref["loss_bbox"]) + w.giou * float(ref["loss_giou"]), abs=1e-5)


def test_explorer_uses_the_training_matcher(monkeypatch):
    calls = []
    real = explorer.HungarianMatcher.__call__

    def spy(self, outputs, targets):
        calls.append(len(targets))
        return real(self, outputs, targets)
    monkeypatch.setattr(explorer.HungarianMatcher, "__call__", spy)
    explorer.explain_matching_arrays(*_random_case(5, 4, 2))
    assert calls


def test_labels_outside_the_model_are_rejected():
    logits, boxes, _, targets = _random_case(6, 4, 2)
    with pytest.raises(ValueError, match="outside the model's classes"):
        explorer.explain_matching_arrays(logits, boxes, np.array([0, 7]), targets)


def test_bundled_shapes_set_is_small_and_complete():
    coco = CocoSet(SHAPES_VAL)
    files = coco.files()
    assert len(files) >= 8 and all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in SHAPES_VAL.rglob("*") if f.is_file()) < 1_000_000
    names = ("circle", "square", "triangle", "star", "cross")
    truth = coco.ground_truth(0, names)
    assert len(truth.labels) >= 1 and not truth.by_position
    assert [names[k] for k in truth.labels] == list(truth.names)


def test_ground_truth_maps_names_or_by_position_and_normalises(tmp_path):
    (tmp_path / "images").mkdir()
    data = {"images": [{"id": 3, "file_name": "a.jpg", "width": 200, "height": 100}],
            "categories": [{"id": 7, "name": "dog"}, {"id": 2, "name": "cat"}],
            "annotations": [{"image_id": 3, "category_id": 7, "bbox": [20, 10, 40, 30]},
                            {"image_id": 3, "category_id": 2, "bbox": [0, 0, 10, 10], "iscrowd": 1}]}
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    coco = CocoSet(tmp_path)
    truth = coco.ground_truth(0, ["cat", "dog"])
    assert truth.labels.tolist() == [1] and truth.names == ("dog",)  # the crowd box is left out
    np.testing.assert_allclose(truth.normalised_cxcywh((100, 200)), [[0.2, 0.25, 0.2, 0.3]])
    with pytest.raises(ValueError, match="dog"):
        coco.ground_truth(0, ["a", "b", "c"])
    assert coco.ground_truth(0, ["a", "b", "c"], by_position=True).labels.tolist() == [1]  # ids 2, 7 -> 0, 1


def test_explain_matching_on_a_bundled_image_with_the_tiny_model(tiny_model):
    coco = CocoSet(SHAPES_VAL)
    ins = detr_core.inspect_image(tiny_model, coco.files()[0])
    truth = coco.ground_truth(0, ins.class_names, by_position=True)
    expl = explorer.explain_matching(ins, truth)
    assert expl.costs["total"].shape == (ins.num_queries, len(truth.labels))
    matched = [q for q in range(ins.num_queries) if expl.target_of(q) is not None]
    assert len(matched) == len(truth.labels)
