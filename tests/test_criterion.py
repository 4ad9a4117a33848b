"""DETR set-criterion values on small hand-computed examples."""
import math

import pytest
import torch
import torch.distributed as dist

from detr_core.objective.criterion import LossWeights, SetCriterion, num_boxes_across_processes, weighted_total
from detr_core.objective.matcher import HungarianMatcher, MatchWeights


def _one_image_outputs():
    """Two queries, two classes (+ no object). Query 0 sits near the one target."""
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])  # [Q, C+1]
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.15, 0.15, 0.1, 0.1]])  # [Q, 4]
    return {"pred_logits": probs.log()[None], "pred_boxes": boxes[None]}


TARGET = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.55, 0.5, 0.2, 0.2]])}


def test_hand_computed_losses():
    losses = SetCriterion(num_classes=2)(_one_image_outputs(), [TARGET])
    # query 0 -> class 0 (weight 1); query 1 -> no object (weight eos_coef 0.1)
    expected_ce = (-math.log(0.5) + 0.1 * -math.log(0.8)) / 1.1
    assert losses["loss_ce"].item() == pytest.approx(expected_ce, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(0.05, abs=1e-6)
    # boxes [.4,.4,.6,.6] and [.45,.4,.65,.6]: IoU .03/.05 = .6, hull = union -> GIoU .6
    assert losses["loss_giou"].item() == pytest.approx(0.4, abs=1e-5)
    assert losses["class_error"].item() == 0.0
    assert losses["cardinality_error"].item() == 0.0


def test_logged_errors_count_mistakes():
    outputs = _one_image_outputs()
    target = {"labels": torch.tensor([1]), "boxes": TARGET["boxes"]}  # query 0 predicts class 0
    losses = SetCriterion(num_classes=2)(outputs, [target])
    assert losses["class_error"].item() == 100.0
    two = {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.5, 0.5, .2, .2], [.2, .2, .1, .1]])}
    losses = SetCriterion(num_classes=2)(outputs, [two])
    assert losses["cardinality_error"].item() == 1.0  # 1 query predicts an object, 2 exist


def test_box_losses_are_normalised_by_boxes_in_the_batch():
    # image 0: one target 0.1 away in cx; image 1: two targets matched exactly
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]],
                          [[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]]])  # [B=2, Q=2, 4]
    logits = torch.zeros(2, 2, 3)
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.6, 0.5, 0.2, 0.2]])},
               {"labels": torch.tensor([1, 0]), "boxes": boxes[1].clone()}]
    losses = SetCriterion(num_classes=2)({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert losses["loss_bbox"].item() == pytest.approx(0.1 / 3, abs=1e-6)
    # image 0: [.4,.4,.6,.6] and [.5,.4,.7,.6] overlap .02 of a .06 union = the hull, GIoU 1/3; image 1: GIoU 1
    assert losses["loss_giou"].item() == pytest.approx((1 - 1 / 3) / 3, abs=1e-6)


def test_the_normaliser_averages_the_box_count_over_processes(monkeypatch):
    """Three boxes here and five in a second process: every process divides by (3 + 5) / 2 = 4."""
    def all_reduce(tensor):
        tensor += 5.0  # the other process's count, summed in place as all_reduce does

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    targets = [{"labels": torch.tensor([0, 1])}, {"labels": torch.tensor([1])}]
    assert num_boxes_across_processes(targets, torch.device("cpu")) == 4.0
    monkeypatch.setattr(dist, "all_reduce", lambda tensor: None)  # the other process has no boxes either
    assert num_boxes_across_processes([{"labels": torch.zeros(0)}], torch.device("cpu")) == 1.0  # never below 1


def test_the_matcher_given_is_the_one_used():
    """Query 0 has the target's class but a far box, query 1 the exact box but the wrong class: matching
    on the class alone pairs the target with query 0, so the box loss is their L1 distance."""
    logits = torch.tensor([[[4.0, -4.0, 0.0], [-4.0, 4.0, 0.0]]])
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.6, 0.6, 0.2, 0.2]]])
    target = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.6, 0.6, 0.2, 0.2]])}
    outputs = {"pred_logits": logits, "pred_boxes": boxes}
    by_class = SetCriterion(2, HungarianMatcher(MatchWeights(1.0, 0.0, 0.0)))(outputs, [target])
    assert by_class["loss_bbox"].item() == pytest.approx(0.4 + 0.4 + 0.1 + 0.1, abs=1e-6)
    assert SetCriterion(2)(outputs, [target])["loss_bbox"].item() == pytest.approx(0.0, abs=1e-6)  # 1 / 5 / 2


def test_loss_weights_by_key():
    weights = LossWeights(ce=1.5, bbox=4.0, giou=3.0)
    assert [weights.for_loss(k) for k in ("loss_ce", "loss_bbox_3", "loss_giou_12")] == [1.5, 4.0, 3.0]
    assert weights.for_loss("class_error") == 0.0 and weights.for_loss("cardinality_error") == 0.0
    with pytest.raises(ValueError, match=r"^no weighted loss among keys \['cardinality_error', 'class_error'\]$"):
        weighted_total({"class_error": torch.tensor(1.0), "cardinality_error": torch.tensor(2.0)}, weights)


def test_auxiliary_losses_are_suffixed_per_layer_and_weighted():
    out = _one_image_outputs()
    out["aux_outputs"] = [_one_image_outputs(), _one_image_outputs()]
    weights = LossWeights()
    losses = SetCriterion(num_classes=2, weights=weights)(out, [TARGET])
    for i in (0, 1):
        for name in ("loss_ce", "loss_bbox", "loss_giou"):
            assert losses[f"{name}_{i}"].item() == pytest.approx(losses[name].item())
    assert "class_error_0" not in losses
    one_layer = losses["loss_ce"] + 5 * losses["loss_bbox"] + 2 * losses["loss_giou"]
    assert weighted_total(losses, weights).item() == pytest.approx(3 * one_layer.item(), rel=1e-6)


def test_empty_targets_train_towards_no_object():
    outputs = _one_image_outputs()
    outputs["pred_logits"].requires_grad_(True)
    outputs["pred_boxes"].requires_grad_(True)
    empty = {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    losses = SetCriterion(num_classes=2)(outputs, [empty])
    expected_ce = (-math.log(0.2) - math.log(0.8)) / 2  # both queries target no object
    assert losses["loss_ce"].item() == pytest.approx(expected_ce, rel=1e-5)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_giou"].item() == 0.0
    weighted_total(losses, LossWeights()).backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0


def test_wrong_class_count_is_rejected():
    with pytest.raises(ValueError, match="model predicts 3 logits per query; the criterion expects num_classes "
                                         "\\+ 1 = 4"):
        SetCriterion(num_classes=3)(_one_image_outputs(), [TARGET])
    with pytest.raises(ValueError, match="^num_classes=0 must be at least 1$"):
        SetCriterion(num_classes=0)


def test_a_single_class_is_enough():
    probs = torch.tensor([[0.6, 0.4], [0.3, 0.7]])  # [Q, 1 class + no object]
    outputs = {"pred_logits": probs.log()[None], "pred_boxes": _one_image_outputs()["pred_boxes"]}
    losses = SetCriterion(num_classes=1)(outputs, [TARGET])
    assert losses["loss_ce"].item() == pytest.approx((-math.log(0.6) - 0.1 * math.log(0.7)) / 1.1, rel=1e-5)


@pytest.mark.parametrize("eos_coef", [0.0, -0.1, 1.01, 2.0])
def test_bad_eos_coef_is_rejected(eos_coef):
    with pytest.raises(ValueError, match=f"eos_coef={eos_coef}: expected 0 < eos_coef <= 1"):
        LossWeights(eos_coef=eos_coef)
    assert LossWeights(eos_coef=1.0).eos_coef == 1.0  # no down-weighting at all is allowed
