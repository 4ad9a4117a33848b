"""detr_core.compare: two models' detections on one image paired one to one (Hungarian on 1 - GIoU plus class
disagreement by name, an IoU floor), and two different images refused. Detections made by hand, boxes chosen so
that every IoU below is worked out on paper."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import detr_core
from detr_core import Detection
from detr_core.inspection.compare import box_overlaps, check_same_image, pair_detections


def det(name: str, box, score: float = 0.9, query: int = 0, label: int = 0) -> Detection:
    return Detection(query, label, name, score, tuple(float(v) for v in box))


# Three boxes far apart on a 300x200 image (no two overlap)
CAT, DOG, CAR = (10, 10, 60, 50), (100, 20, 160, 90), (200, 100, 290, 190)


def test_identical_sets_pair_every_detection_with_iou_one():
    a = [det("cat", CAT, 0.9, 3), det("dog", DOG, 0.8, 7), det("car", CAR, 0.7, 1)]
    b = [det("car", CAR, 0.95, 0), det("cat", CAT, 0.6, 9), det("dog", DOG, 0.55, 4)]
    pairs, only_a, only_b = pair_detections(a, b)
    assert only_a == () and only_b == ()
    assert [(p.a.query, p.b.query) for p in pairs] == [(3, 9), (7, 4), (1, 0)]  # by place, never by query number
    assert [p.iou for p in pairs] == [1.0, 1.0, 1.0] and [p.giou for p in pairs] == [1.0, 1.0, 1.0]
    assert all(p.same_class for p in pairs)


def test_a_swapped_pair_of_classes_pairs_by_box_and_shows_the_disagreement():
    """A calls them cat and dog, B dog and cat: the boxes decide (crosswise the boxes do not even overlap)."""
    a = [det("cat", CAT), det("dog", DOG)]
    b = [det("dog", CAT), det("cat", DOG)]
    pairs, only_a, only_b = pair_detections(a, b)
    assert [(p.a.name, p.b.name) for p in pairs] == [("cat", "dog"), ("dog", "cat")]
    assert [p.a.box == p.b.box for p in pairs] == [True, True] and not any(p.same_class for p in pairs)
    assert only_a == only_b == ()


def test_the_class_decides_between_two_boxes_that_both_overlap_enough():
    """Two of A's boxes overlap B's two almost alike: B's cat box (0,0)-(100,100) has IoU 1 with A's dog box
    and 0.81 with A's cat box (0,0)-(90,90): 8100 / 10000. By box alone B's cat would go with A's dog; the class
    cost (1) outweighs the box cost (1 - 0.81 = 0.19 more), so the names pair."""
    a = [det("cat", (0, 0, 90, 90)), det("dog", (0, 0, 100, 100))]
    b = [det("cat", (0, 0, 100, 100)), det("dog", (0, 0, 90, 90))]
    pairs, _, _ = pair_detections(a, b)
    assert [(p.a.name, p.b.name) for p in pairs] == [("cat", "cat"), ("dog", "dog")]
    assert [p.iou for p in pairs] == pytest.approx([0.81, 0.81])
    by_box, _, _ = pair_detections(a, b, class_weight=0.0)  # without the class cost, the boxes pair exactly
    assert [(p.a.name, p.b.name, p.iou) for p in by_box] == [("cat", "dog", 1.0), ("dog", "cat", 1.0)]


def test_a_pair_below_the_iou_floor_stays_unpaired():
    """B's box is A's shifted right by 50 of its 100 px: intersection 50x100 = 5000, union 15000, IoU 1/3."""
    a = [det("cat", (0, 0, 100, 100)), det("dog", DOG)]
    b = [det("cat", (50, 0, 150, 100)), det("dog", DOG)]
    pairs, only_a, only_b = pair_detections(a, b, min_iou=0.5)
    assert [(p.a.name, p.b.name) for p in pairs] == [("dog", "dog")]
    assert [d.name for d in only_a] == ["cat"] and [d.name for d in only_b] == ["cat"]
    lower, _, _ = pair_detections(a, b, min_iou=0.3)  # the same boxes pair with a lower floor
    assert [p.iou for p in lower] == pytest.approx([1 / 3, 1.0])


def test_a_pair_exactly_at_the_iou_floor_pairs():
    """(0,0,100,100) and (0,0,100,50): intersection 5000, union 10000, IoU exactly 0.5; a floor of 1 takes only
    identical boxes."""
    a, b = [det("cat", (0, 0, 100, 100))], [det("cat", (0, 0, 100, 50))]
    assert [p.iou for p in pair_detections(a, b, min_iou=0.5)[0]] == [0.5]
    assert pair_detections(a, b, min_iou=1.0)[0] == () and len(pair_detections(a, a, min_iou=1.0)[0]) == 1


def test_an_unpaired_detection_does_not_steal_a_valid_pair():
    """A's weak box overlaps B's box by IoU 0.25 only; A's good box by 1. One valid pair, one left over."""
    a = [det("cat", (0, 0, 50, 50), 0.99, 1), det("cat", (0, 0, 100, 100), 0.6, 2)]
    b = [det("cat", (0, 0, 100, 100), 0.9, 5)]
    pairs, only_a, only_b = pair_detections(a, b)
    assert [(p.a.query, p.b.query, p.iou) for p in pairs] == [(2, 5, 1.0)]
    assert [d.query for d in only_a] == [1] and only_b == ()


def test_different_label_sets_pair_by_name():
    """A has COCO's ids (cat = 17, dog = 18), B a fine-tuned head (dog = 0, cat = 1, 'Person' capitalised)."""
    a = [det("cat", CAT, label=17), det("dog", DOG, label=18), det("person", CAR, label=1)]
    b = [det("dog", DOG, label=0), det("Cat", CAT, label=1), det(" person", CAR, label=2)]
    pairs, _, _ = pair_detections(a, b)
    assert [(p.a.label, p.b.label) for p in pairs] == [(17, 1), (18, 0), (1, 2)]
    assert all(p.same_class for p in pairs)


def test_no_detections_on_either_side():
    a = [det("cat", CAT)]
    assert pair_detections(a, []) == ((), tuple(a), ())
    assert pair_detections([], a) == ((), (), tuple(a))


def test_box_overlaps_against_hand_worked_values():
    """(0,0,2,2) and (1,1,3,3): intersection 1, union 7, IoU 1/7; enclosing box 9, GIoU 1/7 - 2/9.
    A degenerate (zero-area) box has IoU 0; corners given in the wrong order are put right."""
    iou, giou = box_overlaps(np.array([[0, 0, 2, 2], [2, 2, 0, 0]]), np.array([[1, 1, 3, 3], [5, 5, 5, 5]]))
    assert iou[0, 0] == pytest.approx(1 / 7) and giou[0, 0] == pytest.approx(1 / 7 - 2 / 9)
    assert iou[1, 0] == pytest.approx(1 / 7)  # (2,2,0,0) is (0,0,2,2)
    assert iou[0, 1] == 0.0 and np.isfinite(giou).all()
    iou, giou = box_overlaps(np.array([[5, 5, 5, 5]]), np.array([[5, 5, 5, 5]]))  # 0 / 0 in torchvision
    assert iou[0, 0] == 0.0 and giou[0, 0] == -1.0  # no overlap to speak of, the worst GIoU


@pytest.mark.parametrize("bad", [dict(min_iou=0.0), dict(min_iou=1.5), dict(class_weight=-1)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        pair_detections([det("cat", CAT)], [det("cat", CAT)], **bad)


# --- on real inspections (tiny random models) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (120, 180, 3), dtype=np.uint8)  # non-square
    pixels[30:80, 40:120] = (220, 40, 40)
    return Image.fromarray(pixels)


def test_an_inspection_compared_with_itself_pairs_every_detection(module_tiny_model, image):
    ins = detr_core.inspect_image(module_tiny_model, image)
    result = detr_core.compare(ins, ins, threshold=0.0)
    assert len(result.pairs) == ins.num_queries and result.only_a == result.only_b == ()
    assert (result.threshold, result.min_iou) == (0.0, 0.5)
    assert detr_core.compare(ins, ins, threshold=1.0).pairs == ()  # 1 is a threshold no score exceeds
    with pytest.raises(ValueError, match="threshold=1.5 must be between 0 and 1"):
        detr_core.compare(ins, ins, threshold=1.5)
    assert all(p.a == p.b and p.iou == pytest.approx(1.0) for p in result.pairs)
    assert [p.a.score for p in result.pairs] == sorted((p.a.score for p in result.pairs), reverse=True)


def test_compare_hands_its_iou_floor_and_class_weight_to_the_pairing(module_tiny_model, image, monkeypatch):
    import detr_core.inspection.compare as compare_module

    seen, real = [], compare_module.pair_detections
    unset = object()

    def spy(dets_a, dets_b, min_iou=unset, class_weight=unset):
        seen.append((min_iou, class_weight))
        return real(dets_a, dets_b, min_iou, class_weight)
    monkeypatch.setattr(compare_module, "pair_detections", spy)
    ins = detr_core.inspect_image(module_tiny_model, image)
    detr_core.compare(ins, ins, threshold=0.0)
    result = detr_core.compare(ins, ins, threshold=0.0, min_iou=0.3, class_weight=0.25)
    assert seen == [(0.5, 1.0), (0.3, 0.25)] and result.min_iou == 0.3


def test_a_detr_and_a_family_model_compare_on_one_image(module_tiny_model, image):
    pytest.importorskip("transformers")
    from family_models import build_tiny

    ins_a = detr_core.inspect_image(module_tiny_model, image)
    ins_b = detr_core.inspect_any(build_tiny("deformable_detr"), image)
    result = detr_core.compare(ins_a, ins_b, threshold=0.0, min_iou=0.01)
    a_all, b_all = ins_a.detections(0.0), ins_b.detections(0.0)
    assert len(result.pairs) + len(result.only_a) == len(a_all)
    assert len(result.pairs) + len(result.only_b) == len(b_all)
    for p in result.pairs:  # every reported IoU is the IoU of the two boxes, worked independently
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = p.a.box, p.b.box
        inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        assert p.iou == pytest.approx(inter / union, abs=1e-9) and p.iou >= 0.01


def test_two_different_images_are_refused(module_tiny_model, image):
    ins = detr_core.inspect_image(module_tiny_model, image)
    resized = detr_core.inspect_image(module_tiny_model, image.resize((150, 100)))
    with pytest.raises(ValueError, match=r"two different images \(180x120 and 150x100 pixels\)"):
        detr_core.compare(ins, resized)
    pixels = np.asarray(image).copy()
    pixels[0, 0] ^= 1  # one pixel differs by one bit
    changed = detr_core.inspect_image(module_tiny_model, Image.fromarray(pixels))
    with pytest.raises(ValueError, match=r"both 180x120 pixels, but their pixels differ"):
        detr_core.compare(ins, changed)
    copy = detr_core.inspect_image(module_tiny_model, image.copy())  # the same pixels in another object
    check_same_image(ins, copy)


def test_nearest_query_finds_the_other_models_query_at_that_place(module_tiny_model, image):
    ins = detr_core.inspect_image(module_tiny_model, image)
    boxes = ins.coords.boxes_to_pixels(ins.boxes)
    query, iou = detr_core.nearest_query(ins, boxes[4])
    assert iou == pytest.approx(1.0) and np.allclose(boxes[query], boxes[4])
