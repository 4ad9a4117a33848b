"""The data that teaches "no object": mixed scenes, distractors, photo sources, and the measurements of
false detections and duplicates."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import shapes_set, small_recipe

import detr_core
from train import distractors, photos
from train.backgrounds import photo_background, procedural_background
from train.coco_file import DataSource
from train.distractors import PARTIAL_MAX_VISIBLE
from train.evaluate import main as evaluate_main
from train.loop import RunConfig, train
from train.negatives import false_positives
from train.scenes import SceneMix
from train.shapes import MIN_VISIBLE_FRACTION, shape_mask
from train.synthetic import SyntheticSpec, main as synthetic_main, render_image
from train.transforms import crop


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Two 'photos': one pure red, one pure blue, 120x90."""
    folder = tmp_path_factory.mktemp("photos")
    Image.new("RGB", (120, 90), (255, 0, 0)).save(folder / "a-red.png")
    Image.new("RGB", (120, 90), (0, 0, 255)).save(folder / "b-blue.png")
    return folder


def test_scene_mix_rejects_bad_settings():
    with pytest.raises(ValueError, match="backgrounds='wallpaper'"):
        SceneMix("wallpaper")
    with pytest.raises(ValueError, match="needs a photo folder"):
        SceneMix("mixed")
    with pytest.raises(ValueError, match="empty_fraction=1.5"):
        SceneMix("plain", empty_fraction=1.5)


def test_empty_fraction_one_gives_images_without_shapes(photo_dir):
    spec = SyntheticSpec(images=6, seed=3, size=64, mix=SceneMix("mixed", str(photo_dir), 1.0, 1.0))
    for index in range(spec.images):
        pixels, objects = render_image(spec, index)
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
        assert objects == []


def test_mixed_shapes_keep_the_visibility_rule(photo_dir):
    spec = SyntheticSpec(images=12, seed=4, size=96, mix=SceneMix("mixed", str(photo_dir), 0.0, 1.0))
    shapes = [obj for i in range(spec.images) for obj in render_image(spec, i)[1]]
    assert shapes, "a mix with no empty images must draw shapes"
    assert all(obj.mask.sum() >= MIN_VISIBLE_FRACTION * obj.full_area for obj in shapes)


def test_worker_processes_write_the_same_files(tmp_path, photo_dir):
    args = ["--images", "5", "--seed", "2", "--size", "48", "--backgrounds", "mixed", "--photos",
            str(photo_dir), "--empty-fraction", "0.4", "--distractors", "0.8"]
    synthetic_main(["--out", str(tmp_path / "one"), *args])
    synthetic_main(["--out", str(tmp_path / "two"), *args, "--workers", "2"])
    files = lambda d: {p.name: p.read_bytes() for p in sorted((tmp_path / d).rglob("*")) if p.is_file()}
    assert files("one") == files("two")
    info = json.loads((tmp_path / "one" / "annotations.json").read_text())["info"]
    assert info["backgrounds"] == "mixed" and info["empty_fraction"] == 0.4


def test_photo_backgrounds_come_from_the_photos(photo_dir):
    files = tuple(sorted(photo_dir.iterdir()))
    dominant = set()
    for seed in range(30):
        img = photo_background(np.random.default_rng(seed), 32, files)
        assert img.shape == (32, 32, 3)
        means = img.reshape(-1, 3).mean(0)
        if means[0] > means[2] + 60:
            dominant.add("red")
        elif means[2] > means[0] + 60:
            dominant.add("blue")
    assert dominant == {"red", "blue"}


def test_procedural_backgrounds_have_texture():
    for seed in range(8):
        img = procedural_background(np.random.default_rng(seed), 64)
        assert img.shape == (64, 64, 3) and np.isfinite(img).all()
        assert img.std() > 1.0, f"seed {seed}: a flat background teaches nothing"


def _principal_axes(mask):
    ys, xs = np.nonzero(mask)
    evals = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
    return math.sqrt(evals[1] / evals[0])  # ratio of the standard deviations along the two axes


def test_elongated_distractors_are_neither_square_nor_round():
    for seed in range(10):
        mask = distractors.elongated(np.random.default_rng(seed), 128, (64, 64), 40)
        assert _principal_axes(mask) > 1.8  # a square or a circle has ratio 1


def test_ring_has_a_hole_or_crescent_a_bite():
    for seed in range(6):
        mask = distractors.ring_or_crescent(np.random.default_rng(seed), 128, (64, 64), 40)
        disc = np.hypot(*np.mgrid[0:128, 0:128] - 64) <= 38
        assert 0 < mask.sum() < 0.9 * disc.sum()  # a full disc would be a circle


def test_text_distractors_avoid_letters_that_look_like_classes():
    assert not set("OoXx0+") & set(distractors._LETTERS)
    assert distractors.text(np.random.default_rng(0), 96, (48, 48), 30).sum() > 20


def test_partial_shapes_show_too_little_to_count():
    drawn = []

    def full_circle(centre, radius, canvas):
        mask = shape_mask("circle", centre, radius, 0.0, canvas)
        drawn.append(mask.sum())
        return mask

    for seed in range(10):
        visible = distractors.partial_shape(np.random.default_rng(seed), 96, full_circle, 10, 30)
        if visible is None:
            continue
        assert visible.shape == (96, 96)
        assert 0.1 <= visible.sum() / drawn[-1] <= PARTIAL_MAX_VISIBLE < MIN_VISIBLE_FRACTION


def test_occluded_shapes_are_mostly_hidden_behind_their_occluder():
    drawn = []

    def full_square(centre, radius):
        mask = shape_mask("square", centre, radius, 0.3, 96)
        drawn.append(mask)
        return mask

    found = 0
    for seed in range(10):
        pair = distractors.occluded_shape(np.random.default_rng(seed), 96, full_square, 12, 30)
        if pair is None:
            continue
        visible, occluder = pair
        found += 1
        assert not (visible & occluder).any() and not (visible & ~drawn[-1]).any()
        assert 0.1 <= visible.sum() / drawn[-1].sum() <= PARTIAL_MAX_VISIBLE
    assert found >= 5


def test_crop_drops_boxes_mostly_cut_away():
    # a 20x20 box at (0, 0); the crop starts at x=12: 8 of its 20 columns survive, 40% of the area
    target = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 5.0, 40.0, 15.0]]),
              "labels": torch.tensor([1, 2])}
    image = Image.new("RGB", (50, 30))
    _, kept = crop(image, target, top=0, left=12, height=30, width=38, min_visible=0.5)
    assert kept["labels"].tolist() == [2]
    assert kept["boxes"].tolist() == [[18.0, 5.0, 28.0, 15.0]]
    _, official = crop(image, target, top=0, left=12, height=30, width=38)
    assert official["labels"].tolist() == [1, 2]
    assert official["boxes"][0].tolist() == [0.0, 0.0, 8.0, 20.0]


def _model_that_always_says(label: int | None, num_classes: int = 5):
    """A tiny DETR whose every query answers ``label`` (None: "no object") with probability ~1."""
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.tiny_config(num_classes=num_classes),
                                  detr_core.PreprocessConfig(64, 64)).eval()
    with torch.no_grad():
        model.class_embed.weight.zero_()
        model.class_embed.bias.fill_(-20.0)
        model.class_embed.bias[num_classes if label is None else label] = 20.0
    return model


def test_false_positives_count_every_confident_query(tmp_path):
    for k in range(3):
        Image.new("RGB", (40 + 10 * k, 30), (10 * k, 80, 160)).save(tmp_path / f"{k}.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    silent = false_positives(_model_that_always_says(None), tmp_path)
    assert (silent.images, silent.detections, silent.found) == (3, 0, {})
    eager = false_positives(_model_that_always_says(2), tmp_path)
    queries = detr_core.tiny_config().num_queries
    assert eager.detections == 3 * queries and eager.per_10_images == pytest.approx(10 * queries)
    assert set(eager.found) == {"0.jpg", "1.jpg", "2.jpg"}
    assert "per 10 images" in eager.summary()


def test_negatives_folder_must_hold_images(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        false_positives(_model_that_always_says(None), tmp_path)


def test_evaluate_cli_reports_confident_detections_and_negatives(tmp_path):
    data = shapes_set(tmp_path / "val", images=3, seed=5, size=64)
    objects = len(json.loads((data / "annotations.json").read_text())["annotations"])
    negatives = tmp_path / "neg"
    negatives.mkdir()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(negatives / "grey.png")
    model = _model_that_always_says(0)
    model.class_names = ["circle", "square", "triangle", "star", "cross"]
    detr_core.save_model(model, tmp_path / "m.pth")
    out = tmp_path / "ap.json"
    assert evaluate_main(["--model", str(tmp_path / "m.pth"), "--data", str(data), "--negatives",
                          str(negatives), "--json-out", str(out)]) == 0
    stats = json.loads(out.read_text())
    queries = detr_core.tiny_config().num_queries
    assert stats["objects"] == objects
    assert stats["confident_detections"] == 3 * queries  # every query of every image says "circle"
    assert stats["confident_per_object"] == pytest.approx(3 * queries / objects)
    assert (stats["negative_images"], stats["negative_detections"]) == (1, queries)


def test_max_minutes_stops_training_and_logs_a_partial_epoch(tmp_path):
    data = shapes_set(tmp_path / "data", images=8, seed=1)
    result = train(RunConfig(DataSource.from_paths(data), tmp_path / "run", small_recipe(epochs=5),
                             max_minutes=1e-6, seed=0, progress_bar=False))
    assert result.progress.step == 1  # the limit is checked after each step
    entry = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert entry["partial"] is True and entry["step"] == 1


def test_photo_collection_checks_sources_before_writing(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    good = folder / "good.jpg"
    Image.new("RGB", (2000, 1000), (0, 128, 0)).save(good)
    import hashlib
    digest = hashlib.sha256(good.read_bytes()).hexdigest()[:16]
    ok = photos.PhotoSource("green", "some-package", str(good), "me", "CC0-1.0", "train", digest)
    held = photos.PhotoSource("held", "some-package", str(good), "me", "CC0-1.0", "heldout", digest)
    counts = photos.collect(tmp_path / "out", max_side=500, photos=(ok, held))
    assert counts == {"train": 1, "heldout": 1}
    with Image.open(tmp_path / "out" / "train" / "green.jpg") as im:
        assert im.size == (500, 250)
    assert "| heldout | held | some-package | me | CC0-1.0 |" in (tmp_path / "out" / "SOURCES.md").read_text()

    changed = photos.PhotoSource("green", "some-package", str(good), "me", "CC0-1.0", "train", "0" * 16)
    with pytest.raises(RuntimeError, match="another version of some-package"):
        photos.collect(tmp_path / "out2", photos=(changed,))
    missing = photos.PhotoSource("gone", "wallpapers-pkg", str(folder / "gone.jpg"), "me", "CC0-1.0",
                                 "train", digest)
    with pytest.raises(RuntimeError, match="apt-get install wallpapers-pkg"):
        photos.collect(tmp_path / "out3", photos=(ok, missing))
    assert not (tmp_path / "out3").exists()  # nothing written when one photo is missing


def test_the_photo_manifest_keeps_the_splits_apart():
    names = [p.name for p in photos.PHOTOS]
    files = [p.path for p in photos.PHOTOS]
    assert len(set(names)) == len(names) and len(set(files)) == len(files)
    held = [p for p in photos.PHOTOS if p.split == "heldout"]
    assert len(held) >= 15 and "grace-hopper" in {p.name for p in held}  # the app's portrait example
