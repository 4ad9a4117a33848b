"""Checkpoints written by transformers 4.x: their config.json (use_timm_backbone, backbone, backbone_kwargs at the
top level) and tensor names, recorded from transformers 4.57.6 in tests/fixtures/hf_transformers4 (see its
generate.py), filled with random values here, open with load_model and give the numbers of transformers 5.x
loading the same tensors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import detr_core
from hf_models import TINY, random_value
from test_hf_parity import assert_same_outputs

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf_transformers4"
# the same architecture as a transformers 5.x config: (config class, model class, arguments)
EQUIVALENT_5 = {
    "timm_resnet18": ("DetrConfig", "DetrForObjectDetection", dict(backbone="resnet18")),
    "timm_resnet50_dc5": ("DetrConfig", "DetrForObjectDetection", dict(backbone="resnet50", dilation=True)),
    "transformers_resnet50": ("DetrConfig", "DetrForObjectDetection", dict(use_timm_backbone=False)),
    "timm_resnet18_learned": ("DetrConfig", "DetrForObjectDetection",
                              dict(backbone="resnet18", position_embedding_type="learned")),
    "table_resnet18": ("TableTransformerConfig", "TableTransformerForObjectDetection", dict(backbone="resnet18")),
    "segmentation_resnet18": ("DetrConfig", "DetrForSegmentation",
                              dict(backbone="resnet18", encoder_attention_heads=8, decoder_attention_heads=8,
                                   id2label={0: "N/A", 1: "person", 2: "bicycle"})),
}


def fill(name: str, folder: Path, seed: int = 0) -> dict:
    """A model folder with the fixture's config.json and random tensors under its recorded names and shapes."""
    shutil.copy(FIXTURES / name / "config.json", folder / "config.json")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for line in (FIXTURES / name / "keys.tsv").read_text().splitlines()[1:]:
        key, shape = line.split("\t")
        state[key] = random_value(key, torch.Size(int(d) for d in shape.split("x")), gen)
    save_file(state, folder / "model.safetensors")
    return state


def reference(name: str, folder: Path, state: dict):
    """transformers 5.x's model of the same architecture, holding the same tensors."""
    config_class, model_class, args = EQUIVALENT_5[name]
    config = getattr(transformers, config_class)(**{**TINY, **args})
    config._attn_implementation = "eager"
    model = getattr(transformers, model_class).from_pretrained(folder, config=config).eval()
    # transformers 5.x keeps the learned position embedding at model.position_embedding (4.x: under backbone)
    # and does not rename the 4.x key on load, so the reference gets those two tensors by hand
    prefix = "model.backbone.position_embedding."
    moved = {"model.position_embedding." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if moved:
        model.load_state_dict(moved, strict=False)
    return model


@pytest.mark.parametrize("name", list(EQUIVALENT_5))
def test_transformers_4_checkpoint_matches_transformers(name, tmp_path):
    state = fill(name, tmp_path)
    ours = detr_core.load_model(tmp_path)
    assert_same_outputs(ours, reference(name, tmp_path, state), name)


def test_transformers_4_config_fields(tmp_path):
    """4.x's top-level backbone fields: dilation through backbone_kwargs.output_stride, the default transformers
    ResNet-50 when use_timm_backbone is false, id2label for the class names."""
    fill("timm_resnet50_dc5", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["backbone_kwargs"]["output_stride"] == 16 and config["use_timm_backbone"]
    model = detr_core.load_model(tmp_path)
    assert (model.config.backbone, model.config.dilation) == ("resnet50", True)
    fill("transformers_resnet50", tmp_path)
    model = detr_core.load_model(tmp_path)
    assert (model.config.backbone, model.hf_origin.backbone_layout) == ("resnet50", "transformers")
    fill("segmentation_resnet18", tmp_path)
    model = detr_core.load_model(tmp_path)
    assert model.class_names == ["N/A", "person", "bicycle"] and model.hf_origin.mask_head_omitted


def test_learned_position_embedding_lands_in_the_model(tmp_path):
    state = fill("timm_resnet18_learned", tmp_path)
    ours = detr_core.load_model(tmp_path)
    assert torch.equal(ours.backbone[1].row_embed.weight,
                       state["model.backbone.position_embedding.row_embeddings.weight"])
    assert torch.equal(ours.backbone[1].col_embed.weight,
                       state["model.backbone.position_embedding.column_embeddings.weight"])
