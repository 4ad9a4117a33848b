"""Fine-tuning from a Hugging Face DETR (python -m train --init-from FOLDER) and writing the result back in the
Hugging Face format (--export-hf) for transformers to open with the same outputs."""
from __future__ import annotations

import pytest
import torch
from train_helpers import shapes_set

import detr_core
from hf_models import build
from test_hf_parity import assert_same_outputs
from train.__main__ import main

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")


def test_fine_tune_from_a_hugging_face_folder_and_export_back(tmp_path):
    data = shapes_set(tmp_path / "data", images=4, seed=2)
    source = build("detr", backbone="resnet18", id2label={0: "cat", 1: "dog"})
    source.save_pretrained(tmp_path / "hf-source")
    code = main(["--data", str(data), "--output", str(tmp_path / "run"), "--config", "tiny",
                 "--init-from", str(tmp_path / "hf-source"), "--max-steps", "1", "--batch-size", "2",
                 "--no-progress", "--export-hf", str(tmp_path / "hf-out")])
    assert code == 0
    tuned = detr_core.load_model(tmp_path / "run" / "last.pth")
    assert tuned.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert tuned.config.hidden_dim == 32 and tuned.config.backbone == "resnet18"
    # the pre-trained stem stays fixed while fine-tuning: it is still the Hugging Face model's conv1
    hf_conv1 = source.state_dict()["model.backbone.model.conv1.weight"]
    assert torch.equal(tuned.backbone[0].body.conv1.weight, hf_conv1)
    exported = transformers.DetrForObjectDetection.from_pretrained(tmp_path / "hf-out",
                                                                  attn_implementation="eager").eval()
    assert exported.config.id2label[4] == "cross"
    assert_same_outputs(tuned, exported)  # without --val-data the export is the last checkpoint


def test_export_follows_the_best_checkpoint_with_validation(tmp_path):
    data = shapes_set(tmp_path / "data", images=4, seed=2)
    code = main(["--data", str(data), "--val-data", str(data), "--output", str(tmp_path / "run"),
                 "--config", "tiny", "--max-steps", "1", "--batch-size", "2", "--no-progress",
                 "--export-hf", str(tmp_path / "hf-out")])
    assert code == 0 and (tmp_path / "run" / "best.pth").is_file()
    best = detr_core.load_model(tmp_path / "run" / "best.pth")
    exported = transformers.DetrForObjectDetection.from_pretrained(tmp_path / "hf-out",
                                                                  attn_implementation="eager").eval()
    assert_same_outputs(best, exported)


def test_a_hugging_face_weights_file_holds_no_group_queries(tmp_path):
    """--init-from FILE with --query-groups asks the file for Group DETR queries; a safetensors file has none."""
    from train.checkpoints import group_queries_of

    build("detr", backbone="resnet18").save_pretrained(tmp_path)
    assert group_queries_of(str(tmp_path / "model.safetensors")) is None
    assert group_queries_of(str(tmp_path)) is None
