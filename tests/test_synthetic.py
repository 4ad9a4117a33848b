"""The synthetic shapes generator: reproducible, COCO-valid, varied."""
import json

import numpy as np

from train.synthetic import CLASS_NAMES, MIN_VISIBLE_FRACTION, SyntheticSpec, main, render_image


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        main(["--out", str(tmp_path / name), "--images", "3", "--seed", "5", "--size", "64"])
    main(["--out", str(tmp_path / "c"), "--images", "3", "--seed", "6", "--size", "64"])
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_annotations_are_valid_coco(tmp_path):
    main(["--out", str(tmp_path), "--images", "6", "--seed", "1", "--size", "96"])
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
    assert len(coco["images"]) == 6
    for img in coco["images"]:
        assert (tmp_path / "images" / img["file_name"]).is_file()
        assert (img["width"], img["height"]) == (96, 96)
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x < x + w <= 96 and 0 <= y < y + h <= 96
        assert 0 < ann["area"] <= w * h and ann["iscrowd"] == 0


def test_shapes_vary_and_stay_mostly_visible():
    spec = SyntheticSpec(images=40, seed=3, size=96, max_objects=4)
    labels, counts, widths = set(), set(), []
    for index in range(spec.images):
        pixels, objects = render_image(spec, index)
        assert pixels.shape == (96, 96, 3) and pixels.dtype == np.uint8
        counts.add(len(objects))
        for obj in objects:
            labels.add(obj.label)
            assert obj.mask.sum() >= MIN_VISIBLE_FRACTION * obj.full_area
            widths.append(np.ptp(np.nonzero(obj.mask.any(0))[0]))
    assert labels == set(range(len(CLASS_NAMES)))
    assert max(counts) >= 3 and min(counts) >= 1
    assert max(widths) > 2 * min(widths)


def test_background_is_textured_not_flat():
    pixels, _ = render_image(SyntheticSpec(images=1, seed=0, size=64), 0)
    assert pixels.reshape(-1, 3).std(0).min() > 3
