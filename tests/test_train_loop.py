"""The training loop: it learns, it resumes exactly, it stops cleanly on a NaN, its files load."""
import json

import pytest
import torch
from train_helpers import shapes_set, small_recipe

import detr_core
from detr_core.objective.criterion import SetCriterion
from train import checkpoints
from train.coco_file import DataSource
from train.dataset import collate
from train.loop import RunConfig, Trainer, TrainingDiverged, train


@pytest.fixture(scope="module")
def four_images(tmp_path_factory):
    return shapes_set(tmp_path_factory.mktemp("four"), images=4, seed=1)


def test_tiny_model_overfits_two_images(tmp_path):
    data = shapes_set(tmp_path / "data", images=2, seed=0)
    recipe = small_recipe(augment=False, lr=1e-3)
    trainer = Trainer(RunConfig(DataSource.from_paths(data), tmp_path / "run", recipe, seed=0,
                                progress_bar=False))
    batch = collate([trainer.train_set[0], trainer.train_set[1]])
    first = trainer.train_step(batch)
    for _ in range(249):
        last = trainer.train_step(batch)
    assert last["loss"] < 0.05 * first["loss"], (first, last)
    assert last["class_error"] == 0.0 and last["cardinality_error"] == 0.0


def _run(data, out, recipe, max_steps, resume=None):
    return train(RunConfig(DataSource.from_paths(data), out, recipe, val_data=None, resume=resume,
                           max_steps=max_steps, seed=3, progress_bar=False))


def test_resume_gives_the_same_weights_as_straight_through(tmp_path, four_images):
    # augmentation and dropout on: both draw random numbers that a resume must replay
    recipe = small_recipe(augment=True, dropout=0.1, epochs=3)
    _run(four_images, tmp_path / "straight", recipe, max_steps=5)
    _run(four_images, tmp_path / "split", recipe, max_steps=3)  # stops inside epoch 1
    stopped = torch.load(tmp_path / "split" / "last.pth", weights_only=True)
    assert stopped["progress"]["epoch"] == 1 and stopped["progress"]["epoch_step"] == 1
    _run(four_images, tmp_path / "split", recipe, max_steps=5, resume=tmp_path / "split" / "last.pth")
    a = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pth", weights_only=True)
    assert a["progress"] == b["progress"] and a["progress"]["step"] == 5
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["model"]["class_embed.weight"].ne(stopped["model"]["class_embed.weight"]).any()



def test_a_resumed_fine_tuning_run_can_be_resumed_again(tmp_path, four_images):
    # fine-tuning freezes the stem; a resumed run must remember where its weights came from,
    # or the second resume builds an optimiser over different parameters and refuses to load
    recipe = small_recipe(epochs=3)
    start = tmp_path / "start.pth"
    detr_core.save_model(detr_core.build_model(recipe.model), start)
    out = tmp_path / "run"

    def run(max_steps, **start_or_resume):  # as the command line: --init-from or --resume
        train(RunConfig(DataSource.from_paths(four_images), out, recipe, max_steps=max_steps,
                        seed=3, progress_bar=False, **start_or_resume))

    run(1, init_from=str(start))
    run(2, resume=out / "last.pth")
    run(3, resume=out / "last.pth")
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["progress"]["step"] == 3 and ckpt["init_from"] == str(start)
    stem = torch.load(start, weights_only=True)["model"]["backbone.0.body.conv1.weight"]
    assert torch.equal(ckpt["model"]["backbone.0.body.conv1.weight"], stem)

def test_checkpoint_and_log_are_readable(tmp_path, four_images):
    out = tmp_path / "run"
    train(RunConfig(DataSource.from_paths(four_images), out, small_recipe(epochs=2),
                    val_data=DataSource.from_paths(four_images), seed=0, progress_bar=False))
    lines = [e for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "kind" not in e]
    assert [e["epoch"] for e in lines] == [0, 1] and [e["step"] for e in lines] == [2, 4]
    assert set(lines[0]["train"]) >= {"loss", "loss_ce", "loss_bbox", "loss_giou", "class_error"}
    assert 0.0 <= lines[1]["val"]["AP"] <= 1.0 and len(lines[1]["val"]) == 12
    steps = [e for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if e.get("kind") == "step"]
    assert [(e["epoch"], e["step"]) for e in steps] == [(0, 1), (0, 2), (1, 3), (1, 4)]
    assert all(e["images_per_s"] > 0 and e["seconds"] > 0 for e in steps)
    # an epoch's mean loss is the mean of its steps' losses
    assert lines[1]["train"]["loss"] == pytest.approx((steps[2]["loss"] + steps[3]["loss"]) / 2, abs=1e-4)
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert {"optimizer", "lr_scheduler", "rng", "progress", "label_map"} <= set(ckpt)
    model = detr_core.load_model(out / "last.pth")
    assert model.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert model.preprocess.min_size == 64
    assert (out / "best.pth").is_file()


def test_val_attention_is_logged_each_epoch(tmp_path, four_images, monkeypatch):
    import functools

    import train.loop
    from train.attention_metric import attention_in_boxes

    # every query counts, so a barely trained model still has detections to measure
    monkeypatch.setattr(train.loop, "attention_in_boxes",
                        functools.partial(attention_in_boxes, threshold=0.0))
    out = tmp_path / "run"
    trainer = Trainer(RunConfig(DataSource.from_paths(four_images), out, small_recipe(epochs=1),
                                val_data=DataSource.from_paths(four_images), seed=0,
                                progress_bar=False, val_attention=True))
    trainer.fit()
    assert trainer.model.training  # measured in eval mode, handed back in training mode
    entry = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    files = sorted(str(p) for p in (four_images / "images").glob("*.png"))
    expected = attention_in_boxes(detr_core.load_model(out / "last.pth"), files, threshold=0.0)
    assert entry["val_attention_detections"] == expected.detections > 0
    assert entry["val_attention_in_box"] == pytest.approx(expected.mean_fraction, abs=1e-5)
    assert entry["val_attention_in_box_per_head"] == pytest.approx(list(expected.per_head), abs=1e-5)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, four_images,
                                                                    monkeypatch):
    calls = {"n": 0}
    real_forward = SetCriterion.forward

    def poisoned(self, outputs, targets):
        calls["n"] += 1
        losses = real_forward(self, outputs, targets)
        if calls["n"] > 2:  # epoch 0 (two steps) trains normally and is checkpointed
            losses["loss_giou"] = losses["loss_giou"] * float("nan")
        return losses

    monkeypatch.setattr(SetCriterion, "forward", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 2.*last good "
                                               r"checkpoint is .*last\.pth"):
        _run(four_images, out, small_recipe(epochs=3), max_steps=None)
    kept = torch.load(out / "last.pth", weights_only=True)
    assert kept["progress"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_resume_refuses_a_model_only_file(tmp_path, four_images):
    model = detr_core.build_model(small_recipe().model)
    detr_core.save_model(model, tmp_path / "model.pth")
    with pytest.raises(ValueError, match="use --init-from"):
        checkpoints.load_for_resume(tmp_path / "model.pth")


def test_batch_larger_than_data_set_is_rejected(tmp_path, four_images):
    with pytest.raises(ValueError, match="fewer than --batch-size 8"):
        Trainer(RunConfig(DataSource.from_paths(four_images), tmp_path, small_recipe(batch_size=8)))
