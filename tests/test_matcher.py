"""The Hungarian matcher finds the cheapest one-to-one assignment."""
import itertools
import math

import pytest
import torch

from detr_core.objective.matcher import HungarianMatcher, MatchWeights, match_costs


def _random_boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 4] valid normalized cxcywh boxes."""
    centre = torch.rand(n, 2, generator=gen) * 0.6 + 0.2
    size = torch.rand(n, 2, generator=gen) * 0.3 + 0.05
    return torch.cat([centre, size], dim=1)


def _independent_costs(logits, pred_boxes, labels, tgt_boxes, w_class, w_bbox, w_giou):
    """[Q][N] weighted matching costs in plain Python, written from the DETR paper, not from the module:
    -p(class) * w_class + L1(cx, cy, w, h) * w_bbox - GIoU(boxes as corners) * w_giou."""
    def corners(box):
        cx, cy, w, h = box
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    def giou(a, b):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = corners(a), corners(b)
        inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
        return inter / union - (hull - union) / hull

    costs = []
    for row, box in zip(logits, pred_boxes):
        exps = [math.exp(v) for v in row]
        prob = [e / sum(exps) for e in exps]
        costs.append([-w_class * prob[label] + w_bbox * sum(abs(p - t) for p, t in zip(box, tgt))
                      - w_giou * giou(box, tgt) for label, tgt in zip(labels, tgt_boxes)])
    return costs


def _brute_force(costs) -> float:
    """Cheapest assignment of all N targets to distinct predictions, by enumeration."""
    q, n = len(costs), len(costs[0])
    return min(sum(costs[p][t] for t, p in enumerate(perm)) for perm in itertools.permutations(range(q), n))


@pytest.mark.parametrize("seed", range(6))
def test_matcher_is_optimal_against_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    q, c = 5, 4
    n = 1 + seed % 4
    weights = [MatchWeights(), MatchWeights(2.0, 1.0, 4.0), MatchWeights(0.5, 8.0, 0.0)][seed % 3]
    outputs = {"pred_logits": torch.randn(1, q, c + 1, generator=gen) * 3,
               "pred_boxes": _random_boxes(q, gen)[None]}
    target = {"labels": torch.randint(0, c, (n,), generator=gen), "boxes": _random_boxes(n, gen)}
    (pred_idx, tgt_idx), = HungarianMatcher(weights)(outputs, [target])

    costs = _independent_costs(outputs["pred_logits"][0].tolist(), outputs["pred_boxes"][0].tolist(),
                               target["labels"].tolist(), target["boxes"].tolist(),
                               weights.cost_class, weights.cost_bbox, weights.cost_giou)
    assert len(pred_idx) == n and sorted(tgt_idx.tolist()) == list(range(n))
    assert len(set(pred_idx.tolist())) == n and pred_idx.tolist() == sorted(pred_idx.tolist())
    found = sum(costs[p][t] for p, t in zip(pred_idx.tolist(), tgt_idx.tolist()))
    assert found == pytest.approx(_brute_force(costs), abs=1e-5)


def test_match_costs_equal_the_independent_costs():
    gen = torch.Generator().manual_seed(7)
    logits, boxes = torch.randn(4, 3, generator=gen) * 2, _random_boxes(4, gen)
    labels, tgt_boxes = torch.tensor([1, 0, 1]), _random_boxes(3, gen)
    weights = MatchWeights(2.0, 3.0, 0.5)
    costs = match_costs(logits, boxes, labels, tgt_boxes, weights)
    expected = _independent_costs(logits.tolist(), boxes.tolist(), labels.tolist(), tgt_boxes.tolist(), 2.0, 3.0, 0.5)
    assert costs.total.tolist() == [pytest.approx(row, abs=1e-5) for row in expected]
    one_term = {"cost_class": (1, 0, 0), "cost_bbox": (0, 1, 0), "cost_giou": (0, 0, 1)}
    for name, term_weights in one_term.items():  # the stored terms are unweighted
        alone = _independent_costs(logits.tolist(), boxes.tolist(), labels.tolist(), tgt_boxes.tolist(), *term_weights)
        assert getattr(costs, name).tolist() == [pytest.approx(row, abs=1e-5) for row in alone], name


def test_matcher_recovers_a_permutation_of_the_targets():
    gen = torch.Generator().manual_seed(0)
    tgt_boxes = _random_boxes(4, gen)
    labels = torch.tensor([0, 1, 2, 1])
    perm = torch.tensor([2, 0, 3, 1])  # prediction k is target perm[k]
    logits = torch.full((4, 4), -5.0)
    logits[torch.arange(4), labels[perm]] = 5.0
    outputs = {"pred_logits": logits[None], "pred_boxes": tgt_boxes[perm][None]}
    (pred_idx, tgt_idx), = HungarianMatcher()(outputs, [{"labels": labels, "boxes": tgt_boxes}])
    assert tgt_idx[pred_idx.argsort()].tolist() == perm.tolist()


def test_empty_targets_give_empty_matches():
    gen = torch.Generator().manual_seed(1)
    outputs = {"pred_logits": torch.randn(2, 3, 5, generator=gen),
               "pred_boxes": _random_boxes(6, gen).view(2, 3, 4)}
    targets = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)},
               {"labels": torch.tensor([1]), "boxes": _random_boxes(1, gen)}]
    (p0, t0), (p1, t1) = HungarianMatcher()(outputs, targets)
    assert p0.numel() == 0 and t0.numel() == 0 and p0.dtype == t0.dtype == torch.long  # usable as indices
    assert len(p1) == 1 and t1.tolist() == [0]


def test_match_costs_terms_and_weights():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))  # one query, C=2
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    tgt = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]])
    costs = match_costs(logits, pred, torch.tensor([0, 1]), tgt, MatchWeights(1, 5, 2))
    assert costs.cost_class.tolist()[0] == pytest.approx([-0.7, -0.2])
    assert costs.cost_bbox.tolist()[0] == pytest.approx([0.0, 0.1])
    # second target: same size shifted by half a width -> IoU 1/3, hull = union, GIoU 1/3
    assert costs.cost_giou.tolist()[0] == pytest.approx([-1.0, -1 / 3], abs=1e-6)
    expected = -0.2 + 5 * 0.1 + 2 * (-1 / 3)
    assert costs.total[0, 1].item() == pytest.approx(expected, abs=1e-6)
    assert costs.total.shape == (1, 2)


def test_mismatched_batch_is_rejected():
    outputs = {"pred_logits": torch.zeros(2, 3, 4), "pred_boxes": torch.full((2, 3, 4), 0.5)}
    with pytest.raises(ValueError, match="1 target dicts for a batch of 2"):
        HungarianMatcher()(outputs, [{"labels": torch.tensor([0]), "boxes": torch.rand(1, 4)}])


def test_non_finite_predictions_are_reported():
    boxes = torch.full((1, 3, 4), 0.5)
    boxes[0, 1, 0] = float("nan")
    outputs = {"pred_logits": torch.zeros(1, 3, 4), "pred_boxes": boxes}
    target = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}
    with pytest.raises(RuntimeError, match=r"^non-finite matching cost \(NaN/inf in predicted boxes or logits\); "
                                           "the model has diverged, lower the learning rate or resume"):
        HungarianMatcher()(outputs, [target])


@pytest.mark.parametrize("weights", [(0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 5, 2)])
def test_any_non_zero_weight_is_accepted(weights):
    assert MatchWeights(*weights).cost_giou == weights[2]


def test_all_zero_weights_are_rejected():
    with pytest.raises(ValueError, match="^all matching cost weights are 0; at least one must be non-zero$"):
        MatchWeights(0, 0, 0)
