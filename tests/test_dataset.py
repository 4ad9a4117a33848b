"""COCO-format loading: targets, label mapping, batching, and clear errors for bad input."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from detr_core import COCO_CLASS_NAMES, PreprocessConfig
from train.coco_file import DataSource
from train.dataset import CocoDetection, LabelMap, collate
from train.synthetic import main as synthetic_main
from train.transforms import eval_transforms

PRE = PreprocessConfig(min_size=64, max_size=96)


def _write_set(folder, images, annotations, categories=None, sizes=None):
    """A hand-made COCO set of grey PNGs (default 40x30 each)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in images:
        w, h = (sizes or {}).get(i, (40, 30))
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(folder / "images" / f"{i}.png")
        entries.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
    cats = categories or [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    coco = {"images": entries, "annotations": annotations, "categories": cats}
    (folder / "annotations.json").write_text(json.dumps(coco))
    return folder


def _ann(i, image_id, cat, bbox, crowd=0):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": crowd,
            "area": bbox[2] * bbox[3]}


def test_synthetic_folder_loads_with_normalised_targets(tmp_path):
    synthetic_main(["--out", str(tmp_path), "--images", "4", "--seed", "0", "--size", "64"])
    ds = CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))
    assert len(ds) == 4 and ds.label_map.class_names[:3] == ("circle", "square", "triangle")
    image, target = ds[0]
    assert image.shape == (3, 64, 64)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert ((target["boxes"] > 0) & (target["boxes"] <= 1)).all()
    assert target["labels"].max() < len(ds.label_map.class_names)
    assert target["orig_size"].tolist() == [64, 64] and target["image_id"] == 1


def test_categories_map_to_contiguous_labels_and_boxes_to_cxcywh(tmp_path):
    _write_set(tmp_path, [1], [_ann(1, 1, 7, [4, 3, 20, 12]), _ann(2, 1, 3, [0, 0, 10, 10])])
    ds = CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))
    assert ds.label_map.class_names == ("cat", "dog")
    assert ds.label_map.category_to_label == {3: 0, 7: 1}
    _, target = ds[0]
    assert target["labels"].tolist() == [1, 0]
    assert target["boxes"][0].tolist() == pytest.approx([14 / 40, 9 / 30, 20 / 40, 12 / 30])


def test_coco_91_names_keep_label_equal_to_category_id(tmp_path):
    cats = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}]
    _write_set(tmp_path, [1], [_ann(1, 1, 18, [1, 1, 5, 5]), _ann(2, 1, 90, [2, 2, 5, 5])], cats)
    label_map = LabelMap.by_name(cats, COCO_CLASS_NAMES)
    ds = CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE), label_map)
    assert ds[0][1]["labels"].tolist() == [18, 90]
    assert LabelMap.covers(cats, COCO_CLASS_NAMES)
    assert not LabelMap.covers([{"id": 1, "name": "circle"}], COCO_CLASS_NAMES)
    with pytest.raises(ValueError, match="circle"):
        LabelMap.by_name([{"id": 1, "name": "circle"}], COCO_CLASS_NAMES)


def test_crowd_degenerate_and_empty_images(tmp_path, caplog):
    anns = [_ann(1, 1, 3, [1, 1, 10, 10]), _ann(2, 1, 3, [5, 5, 10, 10], crowd=1),
            _ann(3, 1, 7, [5, 5, 0, 8]), _ann(4, 1, 7, [45, 5, 10, 8])]  # zero width; outside
    _write_set(tmp_path, [1, 2], anns)
    with caplog.at_level("INFO"):
        ds = CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))
    s = ds.summary
    assert (s.images, s.boxes, s.crowd_skipped, s.degenerate_removed, s.empty_images) == (2, 1, 1, 2, 1)
    assert "removed 2 degenerate" in caplog.text and "skipped 1 crowd" in caplog.text
    assert ds[1][1]["boxes"].shape == (0, 4) and ds[1][1]["labels"].shape == (0,)


def test_annotation_file_with_separate_image_folder(tmp_path):
    _write_set(tmp_path / "set", [1], [_ann(1, 1, 3, [1, 1, 10, 10])])
    ann_file = tmp_path / "instances.json"
    ann_file.write_text((tmp_path / "set" / "annotations.json").read_text())
    source = DataSource.from_paths(ann_file, tmp_path / "set" / "images")
    assert len(CocoDetection(source, eval_transforms(PRE))) == 1
    with pytest.raises(ValueError, match="--images"):
        DataSource.from_paths(ann_file)


def test_collate_pads_bottom_right_and_masks_padding(tmp_path):
    _write_set(tmp_path, [1, 2], [_ann(1, 1, 3, [1, 1, 10, 10])], sizes={1: (40, 30), 2: (20, 50)})
    ds = CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PreprocessConfig(30, 100)))
    batch = collate([ds[0], ds[1]])
    h0, w0 = ds[0][0].shape[-2:]
    h1, w1 = ds[1][0].shape[-2:]
    assert batch.pixel_values.shape == (2, 3, max(h0, h1), max(w0, w1))
    assert batch.pixel_mask.dtype == torch.bool
    assert not batch.pixel_mask[0, :h0, :w0].any() and batch.pixel_mask[0, h0:].all()
    assert batch.pixel_mask[1, :, w1:].all() and (batch.pixel_values[1, :, :, w1:] == 0).all()
    assert batch.targets[0]["labels"].tolist() == [0] and len(batch.targets) == 2


# --- bad input: each error names the file and the entry ---------------------------------------

def test_malformed_json_names_file_and_position(tmp_path):
    _write_set(tmp_path, [1], [])
    (tmp_path / "annotations.json").write_text('{"images": [}')
    with pytest.raises(ValueError, match=r"annotations\.json is not valid JSON.*line 1"):
        CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))


def test_wrong_json_structure(tmp_path):
    _write_set(tmp_path, [1], [])
    (tmp_path / "annotations.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="'categories'"):
        CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))


def test_missing_image_file_names_the_entry(tmp_path):
    _write_set(tmp_path, [1, 2], [])
    (tmp_path / "images" / "2.png").unlink()
    with pytest.raises(ValueError, match=r"image 2 file_name '2\.png'.*does not exist"):
        CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))


def test_unknown_category_names_the_annotation(tmp_path):
    _write_set(tmp_path, [1], [_ann(1, 1, 3, [1, 1, 5, 5]), _ann(42, 1, 5, [1, 1, 5, 5])])
    with pytest.raises(ValueError, match=r"annotations\.json: annotation 42 has category_id 5"):
        CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))


def test_unreadable_image_names_the_file(tmp_path):
    _write_set(tmp_path, [1, 2], [])
    (tmp_path / "images" / "2.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"image 2: .*2\.png is not a readable image"):
        CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))


def test_truncated_image_found_at_load_time(tmp_path):
    _write_set(tmp_path, [1], [], sizes={1: (200, 200)})
    data = (tmp_path / "images" / "1.png").read_bytes()
    (tmp_path / "images" / "1.png").write_bytes(data[: len(data) // 2])
    ds = CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))  # header is fine
    with pytest.raises(ValueError, match=r"image 1: .*1\.png could not be read"):
        ds[0]


def test_bad_bbox_names_the_annotation(tmp_path):
    _write_set(tmp_path, [1], [{"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, 2]}])
    with pytest.raises(ValueError, match=r"annotation 9 has bbox \[1, 2\]"):
        CocoDetection(DataSource.from_paths(tmp_path), eval_transforms(PRE))
