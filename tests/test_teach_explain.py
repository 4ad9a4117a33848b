"""Attention rollout, Chefer et al. relevance, and head ablation, with the tiny model."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import detr_core
from detr_core.teaching.ablation import HeadAblation, ablated_heads, compare, inspect_ablated
from detr_core.teaching.explain import _gradcam, _normalise_residual, attention_rollout, chefer_relevance, \
    detection_rollout, explain_detection


@pytest.fixture(scope="module")
def model(module_tiny_model):
    return module_tiny_model


@pytest.fixture(scope="module")
def image():
    img = np.random.default_rng(1).integers(0, 255, (120, 180, 3), dtype=np.uint8)
    img[30:80, 40:120] = (220, 40, 40)
    return img


@pytest.fixture(scope="module")
def ins(model, image):
    return detr_core.inspect_image(model, image)


def _random_attention(rng, layers, heads, n):
    a = rng.random((layers, heads, n, n))
    return a / a.sum(-1, keepdims=True)


def test_rollout_of_one_layer_is_the_head_mean_mixed_with_identity():
    att = _random_attention(np.random.default_rng(0), 1, 3, 5)
    expected = 0.5 * att[0].mean(0) + 0.5 * np.eye(5)
    np.testing.assert_allclose(attention_rollout(att), expected, atol=1e-12)


def test_rollout_multiplies_layers_last_first_and_rows_sum_to_one():
    att = _random_attention(np.random.default_rng(1), 3, 2, 6)
    mixed = [0.5 * a.mean(0) + 0.5 * np.eye(6) for a in att]
    expected = mixed[2] @ mixed[1] @ mixed[0]
    rollout = attention_rollout(att)
    np.testing.assert_allclose(rollout, expected, atol=1e-12)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-12)


def test_rollout_rejects_a_bad_residual_and_shape():
    with pytest.raises(ValueError, match="residual"):
        attention_rollout(np.ones((1, 1, 2, 2)) / 2, residual=1.5)
    with pytest.raises(ValueError, match="shape"):
        attention_rollout(np.ones((2, 3, 4)))


def test_detection_rollout_is_a_distribution_over_the_grid(ins):
    rollout = detection_rollout(ins, 0)
    assert rollout.shape == ins.feature_size
    assert rollout.min() >= 0 and rollout.sum() == pytest.approx(1.0, abs=1e-6)


def test_chefer_relevance_matches_a_hand_computation_for_one_encoder_and_one_decoder_layer():
    g = torch.Generator().manual_seed(0)
    hw, q, heads = 4, 3, 2
    enc = (torch.rand(heads, hw, hw, generator=g), torch.randn(heads, hw, hw, generator=g))
    dself = (torch.rand(heads, q, q, generator=g), torch.randn(heads, q, q, generator=g))
    cross = (torch.rand(heads, q, hw, generator=g), torch.randn(heads, q, hw, generator=g))
    pos = lambda a, g_: (a * g_).clamp(min=0).mean(0).double()  # noqa: E731
    r_ii = torch.eye(hw, dtype=torch.float64) + pos(*enc)
    r_qq = torch.eye(q, dtype=torch.float64) + pos(*dself)

    def bar(r):  # (R - I) rows normalised, + I
        extra = r - torch.eye(len(r), dtype=torch.float64)
        return extra / extra.sum(-1, keepdim=True) + torch.eye(len(r), dtype=torch.float64)
    expected = bar(r_qq).T @ pos(*cross) @ bar(r_ii)  # R_qi starts at 0, so the self-attention term adds nothing
    result = chefer_relevance([enc], [dself], [cross])
    torch.testing.assert_close(result, expected)


def test_normalise_residual_leaves_rows_with_nothing_added_as_identity():
    r = torch.eye(3, dtype=torch.float64)
    r[0, 1] = 2.0
    bar = _normalise_residual(r)
    assert torch.equal(bar[1:], torch.eye(3, dtype=torch.float64)[1:])
    assert bar[0].tolist() == [1.0, 1.0, 0.0]


def test_gradcam_keeps_only_positive_products():
    att = torch.ones(2, 1, 2)
    grad = torch.tensor([[[1.0, -1.0]], [[3.0, -2.0]]])
    assert _gradcam(att, grad).tolist() == [[2.0, 0.0]]


def test_explanation_has_grid_shapes_and_non_negative_relevance(model, ins):
    best = ins.detections(-1.0)[0]
    e = explain_detection(model, ins, best.query)
    assert e.label == best.label
    for m in (e.raw, e.rollout, e.relevance):
        assert m.shape == ins.feature_size
    assert e.relevance.min() >= 0 and e.relevance.max() > 0
    np.testing.assert_allclose(e.raw, ins.decoder_map(best.query), atol=1e-7)


def test_relevance_depends_on_the_class_explained(model, ins):
    a = explain_detection(model, ins, 0, label=0).relevance
    b = explain_detection(model, ins, 0, label=1).relevance
    assert not np.allclose(a, b)


def test_explain_rejects_a_query_out_of_range(model, ins):
    with pytest.raises(ValueError, match="query=99"):
        explain_detection(model, ins, 99)


def test_ablating_no_head_reproduces_the_model(model, image, ins):
    after = inspect_ablated(model, image, HeadAblation(1, ()))
    np.testing.assert_allclose(after.layer_logits, ins.layer_logits, atol=1e-5)
    np.testing.assert_allclose(after.layer_boxes, ins.layer_boxes, atol=1e-6)


# Not decoder self-attention in layer 0: its queries start as zeros, so every head's values are equal there.
@pytest.mark.parametrize("kind, layer", [("cross", 0), ("self", 1), ("encoder", 0)])
def test_ablating_every_head_of_a_layer_changes_the_outputs(model, image, ins, kind, layer):
    after = inspect_ablated(model, image, HeadAblation(layer, (0, 1, 2, 3), kind))
    assert np.abs(after.logits - ins.logits).max() > 1e-3


def test_ablation_leaves_the_weights_and_later_passes_untouched(model, image, ins):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inspect_ablated(model, image, HeadAblation(1, (0, 2)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    np.testing.assert_allclose(detr_core.inspect_image(model, image).logits, ins.logits, atol=1e-6)


def test_ablation_acts_only_in_the_calling_thread(model, image, ins):
    seen = {}
    started, done = threading.Event(), threading.Event()

    def other():
        started.wait(5)
        seen["logits"] = detr_core.inspect_image(model, image).logits
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with ablated_heads(model, HeadAblation(0, (0, 1, 2, 3))):
        started.set()
        assert done.wait(10)
    thread.join()
    # while hooks are on the model, inspect_image runs the model itself, not its inference twin: the same
    # numbers up to float rounding (an ablated head would move them by > 1e-3)
    np.testing.assert_allclose(seen["logits"], ins.logits, atol=1e-5)


def test_ablation_rejects_heads_and_layers_the_model_lacks(model, image):
    with pytest.raises(ValueError, match="heads=\\[7\\]"):
        inspect_ablated(model, image, HeadAblation(0, (7,)))
    with pytest.raises(ValueError, match="layer=5"):
        inspect_ablated(model, image, HeadAblation(5, (0,)))
    with pytest.raises(ValueError, match="kind="):
        HeadAblation(0, (0,), "values")


def test_compare_lists_every_query_with_the_changed_ones_first(model, image, ins):
    after = inspect_ablated(model, image, HeadAblation(1, (0, 1, 2, 3)))
    changes = compare(ins, after, threshold=0.0)
    assert sorted(c.query for c in changes) == list(range(ins.num_queries))
    flags = [c.changed for c in changes]
    assert flags == sorted(flags, reverse=True)  # answers that changed come first
    for group in (True, False):  # and within each group the largest score change first (threshold 0: all detected)
        deltas = [abs(c.score_change) for c in changes if c.changed == group]
        assert deltas == sorted(deltas, reverse=True)
