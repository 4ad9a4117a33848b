"""Faithfulness: deletion/insertion on a model whose answer is known, D-RISE similarity by hand, pointing game,
and the map upsampling through the coordinate module."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import detr_core
from detr_core.faithfulness import Detector, Proposals, Target, drise_similarity, make_baseline, pairwise_similarity, \
    pointing_game
from detr_core.faithfulness.drise import random_masks
from detr_core.faithfulness.perturb import pixel_ranks

H, W = 40, 56  # non-square; min_size = H keeps the image at its own size
REGION = (slice(10, 22), slice(30, 46))  # rows, cols: the only pixels the model looks at


class RegionModel(nn.Module):
    """One query, one class: p(class) = sigmoid(12 (mean of channel 0 over REGION - 0.5)), a fixed box on the
    region. Its detection depends on the region alone, so the answer to "what does it use?" is known."""

    preprocess = detr_core.PreprocessConfig(min_size=H, max_size=200, mean=(0, 0, 0), std=(1, 1, 1))

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m = x[:, 0, REGION[0], REGION[1]].mean((1, 2))  # [B]
        logits = torch.stack([12 * (m - 0.5), torch.zeros_like(m)], -1)[:, None]  # [B, 1, 2]
        box = torch.tensor([(30 + 46) / 2 / W, (10 + 22) / 2 / H, 16 / W, 12 / H])
        return {"pred_logits": logits, "pred_boxes": box.expand(x.shape[0], 1, 4)}


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)  # dark texture
    img[REGION] = 250  # the bright region the model reads
    return img


def _region_map():
    m = np.zeros((H, W), np.float32)
    m[REGION] = 1.0
    return m


def _run(image, saliency, **kw):
    return detr_core.faithfulness(RegionModel(), image, 0, saliency, steps=16, baseline="mean", batch_size=5, **kw)


def test_region_map_beats_random_and_the_inverted_map_is_worse(image):
    region = _run(image, _region_map())
    randoms = [_run(image, np.random.default_rng(s).random((H, W))) for s in range(3)]
    inverted = _run(image, 1.0 - _region_map())
    rand_del = np.mean([r.deletion_auc for r in randoms])
    rand_ins = np.mean([r.insertion_auc for r in randoms])
    assert region.deletion_auc < rand_del - 0.2 and region.insertion_auc > rand_ins + 0.2
    assert inverted.deletion_auc > rand_del + 0.2 and inverted.insertion_auc < rand_ins - 0.2


def test_curves_run_from_the_original_to_the_baseline(image):
    r = _run(image, _region_map())
    p_original = 1 / (1 + math.exp(-12 * (250 / 255 - 0.5)))
    assert r.fractions[0] == 0 and r.fractions[-1] == 1 and len(r.fractions) == 17
    # score = IoU 1 x cosine 1 x objectness (one class: 1 - p(no object) = p(class))
    assert r.deletion[0] == pytest.approx(p_original, abs=1e-5) == r.insertion[-1]
    assert r.deletion[-1] == pytest.approx(r.insertion[0], abs=1e-6)
    # the region is 192 of 2240 pixels: after 2/16 of the pixels (280) it is all gone
    assert r.deletion[2] == pytest.approx(r.deletion[-1], abs=1e-6)
    assert r.forwards == 2 + 2 * 15
    assert 0.0 <= r.deletion_auc <= 1.0 and 0.0 <= r.insertion_auc <= 1.0


def test_grid_maps_are_upsampled_like_image_maps(image):
    """A map over a 5x7 grid of 8-pixel cells (the region covers cells rows 1-2, cols 4-5) places the region
    as the pixel map does."""
    coords = detr_core.CoordinateMap((H, W), (H, W), (5, 7), 8)
    grid = np.zeros((5, 7))
    grid[1:3, 4:6] = 1.0
    r = _run(image, grid, coords=coords)
    assert r.deletion_auc < 0.25 and r.insertion_auc > 0.75


def test_bad_inputs_are_named(image):
    with pytest.raises(ValueError, match="fits neither"):
        detr_core.faithfulness(RegionModel(), image, 0, np.zeros((3, 3)),
                               coords=detr_core.CoordinateMap((H, W), (H, W), (5, 7), 8))
    with pytest.raises(ValueError, match="query=4"):
        detr_core.faithfulness(RegionModel(), image, 4, _region_map())
    with pytest.raises(ValueError, match="baseline='grey'"):
        detr_core.faithfulness(RegionModel(), image, 0, _region_map(), baseline="grey")
    with pytest.raises(ValueError, match="steps=1"):
        detr_core.faithfulness(RegionModel(), image, 0, _region_map(), steps=1)


def test_drise_similarity_on_hand_worked_vectors():
    target = Target(torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor([0.8, 0.2, 0.0]), 0.9, 0)
    proposals = Proposals(
        boxes=torch.tensor([[[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]]]),
        probs=torch.tensor([[[0.6, 0.8, 0.0], [0.0, 0.0, 1.0], [0.8, 0.2, 0.0]]]),
        objectness=torch.tensor([[0.5, 0.9, 1.0]]))
    # IoU 2/6; cos = (0.48 + 0.16) / (sqrt(0.68) * 1); O = 0.5
    first = (1 / 3) * (0.64 / math.sqrt(0.68)) * 0.5
    pair = pairwise_similarity(target, proposals)
    assert pair[0].tolist() == pytest.approx([first, 0.0, 0.0], abs=1e-7)  # orthogonal classes; no overlap
    assert drise_similarity(target, proposals).tolist() == pytest.approx([first], abs=1e-7)


def test_detr_objectness_is_one_minus_no_object():
    model = RegionModel()
    det = Detector(model)
    x = torch.zeros(2, 3, H, W)
    x[1, 0] = 1.0
    out = det(x)
    p = torch.sigmoid(torch.tensor([12 * (0 - 0.5), 12 * (1 - 0.5)]))
    assert out.objectness[:, 0].tolist() == pytest.approx(p.tolist(), abs=1e-6)
    assert out.boxes[0, 0].tolist() == pytest.approx([30 / W, 10 / H, 46 / W, 22 / H], abs=1e-6)


def test_blur_baseline_keeps_a_flat_image_and_mean_is_the_mean_colour():
    flat = torch.full((3, 30, 44), 0.3)
    assert torch.allclose(make_baseline(flat, "blur"), flat, atol=1e-6)
    x = torch.zeros(3, 2, 2)
    x[0, 0, 0] = 4.0
    assert make_baseline(x, "mean")[0].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_ties_are_broken_at_random_not_by_raster_order():
    box = _region_map()
    ranks = pixel_ranks(box).numpy()
    first = ranks < 96  # half the region
    assert first[REGION].all() == False and first[REGION].sum() == 96  # noqa: E712
    assert first[REGION][:6].sum() < 96  # not the top six rows of the region


def test_pointing_game_hits_misses_and_energy():
    m = np.zeros((H, W))
    m[15, 40] = 3.0  # peak at pixel centre (40.5, 15.5)
    m[0, 0] = 1.0
    hit = pointing_game(m, (30, 10, 46, 22))
    assert hit.hit and hit.energy == pytest.approx(0.75) and hit.peak == (40.5, 15.5)
    near = (0, 0, 30.5, 40)  # the peak is 10 px right of the box
    assert pointing_game(m, near).hit and not pointing_game(m, near, tolerance=5).hit
    with pytest.raises(ValueError, match="empty"):
        pointing_game(m, (5, 5, 5, 9))


def test_random_masks_are_smooth_in_unit_range_and_seeded():
    a = random_masks(4, (30, 44), grid=4, seed=3)
    assert a.shape == (4, 30, 44) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, random_masks(4, (30, 44), grid=4, seed=3))
    assert 0.2 < a.mean() < 0.8


def test_every_explanation_of_a_tiny_detr_is_tested_with_shared_endpoints(module_tiny_model, rgb_image):
    ins = detr_core.inspect_image(module_tiny_model, rgb_image)
    seen = []
    c = detr_core.compare_explanations(module_tiny_model, ins, 3, steps=3, batch_size=4, random_seeds=2,
                                       drise_masks=5, progress=lambda done, total: seen.append((done, total)))
    layers = ins.layer_logits.shape[0]
    names = ["attention"] + [f"layer {k + 1}" for k in range(layers)] + ["rollout", "relevance", "random", "box",
                                                                        "centre", "D-RISE"]
    assert sorted(c.results) == sorted(names)
    maps_tested = len(names) + 1  # random twice
    assert c.forwards == 2 + 4 * maps_tested + 5  # endpoints once, 2 (K - 1) per map, one per mask
    assert seen[-1] == (c.forwards, c.forwards) and all(d <= t for d, t in seen)
    r = c.results["attention"]
    assert r.deletion[0] == c.results["box"].deletion[0] == r.insertion[-1]
    assert all(m.shape == ins.input_size for m in c.maps.values())


def test_family_models_are_tracked_by_their_own_forward():
    from family_models import build_tiny

    fm = build_tiny("deformable_detr")
    ins = detr_core.inspect_any(fm, np.random.default_rng(2).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    q = int(np.argmax(1 - ins.probabilities[:, -1]))
    r = detr_core.faithfulness(fm, ins, q, ins.decoder_map(q), steps=3)
    # objectness of a sigmoid model: its best class probability; unperturbed, the query finds itself (IoU 1, cos 1)
    assert r.deletion[0] >= float(ins.probabilities[q, :-1].max()) - 1e-4
    assert r.forwards == 2 + 4
    c = detr_core.compare_explanations(fm, ins, q, steps=3, random_seeds=1)
    assert [name for name, _, _ in c.table()] == ["splat", "layer 1", "layer 2", "random", "box", "centre"]
    with pytest.raises(ValueError, match="coords=ins.coords"):
        detr_core.faithfulness(fm, ins.image, q, ins.decoder_map(q), steps=3)

