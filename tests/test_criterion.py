"""DETR set-criterion values on small hand-computed examples."""
import math

import pytest
import torch

from detr_core.objective.criterion import LossWeights, SetCriterion, weighted_total


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
    with pytest.raises(ValueError, match="num_classes \\+ 1 = 4"):
        SetCriterion(num_classes=3)(_one_image_outputs(), [TARGET])


def test_bad_eos_coef_is_rejected():
    with pytest.raises(ValueError, match="eos_coef"):
        LossWeights(eos_coef=0.0)
