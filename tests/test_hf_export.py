"""detr_core.save_model(model, folder, format="hf") writes a folder that transformers' from_pretrained opens with
the same outputs and attention maps (tiny models; the bundled shapes model as the real case)."""
from __future__ import annotations

import json

import pytest
import torch

import detr_core
from hf_models import randomise
from test_hf_parity import assert_same_outputs

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")


def ours(seed: int = 0, **config) -> detr_core.DETR:
    """A tiny model of this project with every tensor random (biases and norms too)."""
    torch.manual_seed(seed)
    model = detr_core.build_model(detr_core.tiny_config(**config), detr_core.PreprocessConfig(96, 160),
                                  [f"thing {i}" for i in range(config.get("num_classes", 5))])
    return randomise(model, seed)


def open_in_transformers(folder):
    model = transformers.AutoModelForObjectDetection.from_pretrained(folder, attn_implementation="eager")
    return model.eval()


@pytest.mark.parametrize("config", [
    dict(), dict(backbone="resnet50", dilation=True), dict(position_embedding="learned"),
    dict(decoder_renorm=True), dict(backbone_stages=3, frozen_bn=False),
], ids=["resnet18", "resnet50-dc5", "learned-position", "decoder-renorm", "3-stages-batchnorm"])
def test_export_opens_in_transformers_with_the_same_outputs(tmp_path, config):
    model = ours(**config).eval()
    detr_core.save_model(model, tmp_path / "hf", format="hf")
    hf_model = open_in_transformers(tmp_path / "hf")
    assert type(hf_model).__name__ == "DetrForObjectDetection"
    assert hf_model.config.id2label[4] == "thing 4"
    assert_same_outputs(model, hf_model)


def test_pre_norm_exports_as_table_transformer(tmp_path):
    model = ours(pre_norm=True).eval()
    detr_core.save_model(model, tmp_path / "hf", format="hf")
    hf_model = open_in_transformers(tmp_path / "hf")
    assert type(hf_model).__name__ == "TableTransformerForObjectDetection"
    assert_same_outputs(model, hf_model)


def test_bundled_shapes_model_goes_to_the_hugging_face_format_and_back(tmp_path):
    model = detr_core.load_model("shapes")
    detr_core.save_model(model, tmp_path / "shapes-hf", format="hf")
    assert_same_outputs(model, open_in_transformers(tmp_path / "shapes-hf"))
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "shapes-hf")
    assert processor.size["shortest_edge"] == model.preprocess.min_size == 256
    back = detr_core.load_model(tmp_path / "shapes-hf")
    assert back.class_names == model.class_names and back.preprocess == model.preprocess
    assert back.config == detr_core.DETRConfig(**{**model.config.to_dict(), "frozen_bn": True})
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):  # frozen batch norm keeps no count
            assert torch.equal(back.state_dict()[key], value), key


def test_export_refuses_an_optimised_copy_and_unknown_formats(tmp_path):
    fast = detr_core.optimize_for_inference(ours())
    with pytest.raises(ValueError, match="optimize_for_inference"):
        detr_core.save_model(fast, tmp_path / "x", format="hf")
    with pytest.raises(ValueError, match="format='onnx'"):
        detr_core.save_model(ours(), tmp_path / "x", format="onnx")


def test_exported_config_is_plain_json_transformers_4_reads_too(tmp_path):
    """Top-level use_timm_backbone/backbone/dilation: the fields transformers 4.x reads (5.x reads them too)."""
    detr_core.save_model(ours(backbone="resnet50", dilation=True), tmp_path / "hf", format="hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["use_timm_backbone"], config["backbone"], config["dilation"]) == (True, "resnet50", True)
    assert config["backbone_config"] is None and config["model_type"] == "detr"
