"""Training DETR-family models through transformers (python -m train --model): tiny models from the named
configurations learn, resume exactly, save folders that detr_core opens with the same outputs, and fine-tune onto
another class count."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import shapes_set

import detr_core
from detr_core.family import FamilyModel
from train.__main__ import main
from train.coco_file import DataSource
from train.dataset import collate
from train.family_configs import default_recipe, named_family
from train.family_step import FamilyTrainer
from train.loop import RunConfig

TINY = ("deformable-tiny", "rtdetr-tiny")


@pytest.fixture(scope="module")
def four_images(tmp_path_factory):
    return shapes_set(tmp_path_factory.mktemp("four"), images=4, seed=1)


def _trainer(data, out, name, recipe=None, **run):
    named = named_family(name)
    recipe = recipe or (named.recipe if named else default_recipe())
    return FamilyTrainer(RunConfig(DataSource.from_paths(data), out, recipe, init_from=name, seed=3,
                                   progress_bar=False, **run))


def _run(data, out, name, max_steps, resume=None):
    recipe = named_family(name).recipe.replace(epochs=3)
    run = RunConfig(DataSource.from_paths(data), out, recipe, init_from=None if resume else name, resume=resume,
                    max_steps=max_steps, seed=3, progress_bar=False)
    return FamilyTrainer(run).fit()


@pytest.mark.parametrize("name", TINY)
def test_a_few_steps_on_two_images_lower_the_models_own_loss(tmp_path, four_images, name):
    recipe = named_family(name).recipe.replace(flip_p=0.0, crop_p=0.0)
    trainer = _trainer(four_images, tmp_path / "run", name, recipe)
    batch = collate([trainer.train_set[0], trainer.train_set[1]])
    first = trainer.train_step(batch)
    for _ in range(29):
        last = trainer.train_step(batch)
    assert last["loss"] < 0.6 * first["loss"], (first, last)
    class_term = "loss_vfl" if name == "rtdetr-tiny" else "loss_ce"  # each model's own classification loss
    assert {class_term, "loss_bbox", "loss_giou"} <= set(last)
    assert last["loss_bbox"] < first["loss_bbox"] and last["loss_giou"] < first["loss_giou"]


@pytest.mark.parametrize("name", TINY)
def test_resume_gives_the_same_weights_and_losses_as_straight_through(tmp_path, four_images, name):
    # augmentation on (and RT-DETR's denoising queries): both draw random numbers that a resume must replay
    _run(four_images, tmp_path / "straight", name, max_steps=5)
    _run(four_images, tmp_path / "split", name, max_steps=3)  # 2 steps an epoch: stops inside epoch 1
    state = torch.load(tmp_path / "split" / "last" / "training_state.pth", weights_only=True)
    assert state["progress"]["epoch"] == 1 and state["progress"]["epoch_step"] == 1
    stopped = load_file(tmp_path / "split" / "last" / "model.safetensors")
    torch.manual_seed(12345)  # as a new process would: only the checkpoint's RNG state may decide what follows
    _run(four_images, tmp_path / "split", name, max_steps=5, resume=tmp_path / "split" / "last")
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(tmp_path / "split" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    assert any(not torch.equal(value, stopped[key]) for key, value in a.items())  # it did train after the stop
    logs = [[e for e in map(json.loads, (tmp_path / run / "log.jsonl").read_text().splitlines()) if "kind" not in e]
            for run in ("straight", "split")]
    assert logs[0][-1]["step"] == logs[1][-1]["step"] == 5
    assert logs[0][-1]["train"] == logs[1][-1]["train"]  # step 5's own losses, to the last bit
    assert logs[0][0]["train"] == logs[1][0]["train"]  # epoch 0, before the split


def test_saved_folder_opens_with_open_any_and_gives_the_trained_models_outputs(tmp_path, four_images):
    out = tmp_path / "run"
    trainer = _trainer(four_images, out, "deformable-tiny", max_steps=2, val_data=DataSource.from_paths(four_images))
    trainer.fit()
    assert sorted(p.name for p in out.iterdir()) == ["best", "last", "log.jsonl"]
    fm = detr_core.open_any(out / "last")
    assert isinstance(fm, FamilyModel) and fm.processor_note == ""
    assert fm.class_names == ["circle", "square", "triangle", "star", "cross"]
    image = next((four_images / "images").iterdir())
    from PIL import Image
    inputs, _ = fm.prepare(Image.open(image).convert("RGB"))
    trainer.model.eval()
    with torch.no_grad():
        ours, theirs = trainer.model(**inputs), fm.model(**inputs)
    assert torch.equal(ours.logits, theirs.logits) and torch.equal(ours.pred_boxes, theirs.pred_boxes)
    ins = detr_core.inspect_any(fm, image)  # and the app's path runs on it
    assert ins.layer_logits.shape[0] == 2


def _relabelled(source, folder, names):
    """The same images with the categories renamed and folded onto ``len(names)`` classes."""
    ann = json.loads((source / "annotations.json").read_text())
    ann["categories"] = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    for a in ann["annotations"]:
        a["category_id"] = (a["category_id"] - 1) % len(names) + 1
    folder.mkdir()
    (folder / "annotations.json").write_text(json.dumps(ann))
    shutil.copytree(source / "images", folder / "images")
    return folder


@pytest.mark.parametrize("names", [("ball", "box", "arrow"), ("a", "b", "c", "d", "e")])
def test_fine_tune_from_a_saved_folder_onto_other_classes(tmp_path, four_images, names):
    _run(four_images, tmp_path / "src", "rtdetr-tiny", max_steps=1)
    source = load_file(tmp_path / "src" / "last" / "model.safetensors")
    data = _relabelled(four_images, tmp_path / "data", names)
    trainer = _trainer(data, tmp_path / "run", str(tmp_path / "src" / "last"), max_steps=1)
    model = trainer.model
    assert model.config.num_labels == len(names) and tuple(model.config.id2label.values()) == names
    heads = ("model.denoising_class_embed.weight", "model.enc_score_head.weight", "model.enc_score_head.bias",
             "model.decoder.class_embed.0.weight", "model.decoder.class_embed.0.bias",
             "model.decoder.class_embed.1.weight", "model.decoder.class_embed.1.bias")
    for key, value in model.state_dict().items():
        if key in heads:  # new heads, also when only the names changed (five classes, as the source)
            assert value.shape != source[key].shape or not torch.equal(value, source[key]), key
        elif key in source:
            assert torch.equal(value, source[key]), key
    trainer.fit()
    fm = detr_core.open_any(tmp_path / "run" / "last")
    assert fm.class_names == list(names)


def test_a_source_knowing_every_category_keeps_its_heads(tmp_path, four_images):
    _run(four_images, tmp_path / "src", "deformable-tiny", max_steps=1)
    source = load_file(tmp_path / "src" / "last" / "model.safetensors")
    trainer = _trainer(four_images, tmp_path / "run", str(tmp_path / "src" / "last"))
    for key, value in trainer.model.state_dict().items():
        if key in source:
            assert torch.equal(value, source[key]), key


def test_command_line_trains_resumes_and_refuses_detr_only_flags(tmp_path, four_images, capsys):
    out = tmp_path / "run"
    common = ["--data", str(four_images), "--output", str(out), "--no-progress"]
    assert main(["--model", "rtdetr-tiny", "--max-steps", "1", "--lr", "5e-4", *common]) == 0
    assert main(["--resume", str(out / "last"), "--max-steps", "2", *common]) == 0
    state = torch.load(out / "last" / "training_state.pth", weights_only=True)
    assert state["progress"]["step"] == 2 and state["recipe"]["optim"]["lr"] == 5e-4
    assert main(["--model", "rtdetr-tiny", "--query-groups", "2", *common]) == 2
    assert "--query-groups: not for a DETR-family run" in capsys.readouterr().err
    assert main(["--model", "no-such-model", *common]) == 2
    assert "neither a named configuration, a folder nor a Hub id" in capsys.readouterr().err


def test_two_process_torchrun_run(tmp_path, four_images):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "train",
           "--model", "rtdetr-tiny", "--data", str(four_images), "--val-data", str(four_images), "--output", str(out),
           "--batch-size", "1", "--epochs", "2", "--max-steps", "3", "--no-progress"]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 4 images over 2 processes at batch 1: 2 steps per epoch; step 3 stops inside epoch 1
    lines = [e for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "kind" not in e]
    assert [(e["epoch"], e["partial"], e["step"]) for e in lines] == [(0, False, 2), (1, True, 3)]
    assert all(0.0 <= e["val"]["AP"] <= 1.0 and "loss_vfl" in e["train"] for e in lines)
    assert proc.stdout.count("done: epoch") == 1  # rank 1 prints nothing
    weights = load_file(out / "last" / "model.safetensors")
    assert not any(k.startswith("module.") for k in weights)  # saved unwrapped from DDP
    assert torch.load(out / "last" / "training_state.pth", weights_only=True)["progress"]["step"] == 3


def test_evaluate_command_opens_a_family_folder(tmp_path, four_images):
    from train.evaluate import main as evaluate_main

    _run(four_images, tmp_path / "run", "deformable-tiny", max_steps=1)
    out = tmp_path / "ap.json"
    code = evaluate_main(["--model", str(tmp_path / "run" / "last"), "--data", str(four_images), "--json-out", str(out),
                          "--attention", "--score-threshold", "0", "--negatives", str(four_images / "images")])
    assert code == 0
    result = json.loads(out.read_text())
    assert 0.0 <= result["AP"] <= 1.0 and result["objects"] == 6  # the boxes of the four generated images
    # at threshold 0 every query of every image is a detection: 10 queries x 4 images
    assert result["sampling_detections"] == 40 and result["negative_detections"] == 40
    assert 0.0 <= result["sampling_in_box"] <= 1.0 and len(result["sampling_in_box_per_head"]) == 4
