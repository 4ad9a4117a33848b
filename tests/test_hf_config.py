"""The Hugging Face loader's pure parts, checked against expectations written out by hand: what a config.json and a
preprocessor_config.json become (defaults, both transformers generations, each refusal's words), the class names,
every parameter name both ways (q, k and v stacked in that order), and the files a folder or a weights file names.
(tests/test_hf_parity.py compares whole models with transformers' own outputs.)"""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from detr_core.model.config import DETRConfig, PreprocessConfig
from detr_core.weights.hf_config import class_names, read_config, read_preprocessor
from detr_core.weights.hf_export import hf_config, hf_preprocessor
from detr_core.weights.hf_keys import detr_lens_to_hf, hf_to_detr_lens, normalise_hf_names
from detr_core.weights.hf_model import HFOrigin, hf_files, read_hf_model, read_json, read_weights

W = "cfg.json"  # where: the file name each message starts with


def _error(call, *args) -> str:
    with pytest.raises(ValueError) as err:
        call(*args)
    return str(err.value)


# --- config.json --------------------------------------------------------------------------------------------

def test_a_bare_detr_config_gets_transformers_defaults():
    arch = read_config({"model_type": "detr"}, W)
    assert arch.config == DETRConfig(backbone="resnet50", dilation=False, backbone_stages=4, frozen_bn=True,
                                     hidden_dim=256, nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=2048,
                                     dropout=0.1, num_queries=100, num_classes=2, pre_norm=False,
                                     position_embedding="sine", decoder_renorm=False)
    assert (arch.class_names, arch.architecture, arch.backbone_layout) == (
        ("LABEL_0", "LABEL_1"), "DetrForObjectDetection", "timm")


def test_every_field_is_read_and_nulls_take_the_default():
    cfg = {"model_type": "table-transformer", "d_model": 64, "encoder_layers": 3, "decoder_layers": 5,
           "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 96, "decoder_ffn_dim": 96,
           "num_queries": 7, "dropout": 0, "position_embedding_type": "learned", "auxiliary_loss": True,
           "backbone": "resnet34", "num_labels": 3, "activation_function": None, "num_channels": None}
    arch = read_config(cfg, W)
    assert arch.config == DETRConfig(backbone="resnet34", hidden_dim=64, nheads=4, enc_layers=3, dec_layers=5,
                                     dim_feedforward=96, dropout=0.0, num_queries=7, num_classes=3, pre_norm=True,
                                     position_embedding="learned", decoder_renorm=True)
    assert arch.architecture == "TableTransformerForObjectDetection"
    assert isinstance(arch.config.dropout, float)
    seg = read_config({"model_type": "detr", "architectures": ["DetrForSegmentation", "x"], "d_model": None}, W)
    assert seg.architecture == "DetrForSegmentation" and seg.config.hidden_dim == 256


@pytest.mark.parametrize("cfg,message", [
    ({"model_type": "rt_detr"}, "cfg.json: model_type 'rt_detr' is not a DETR; this reader opens model_type"
     " ['detr', 'table-transformer'] (DetrForObjectDetection, DetrForSegmentation, TableTransformerForObjectDetection),"
     " and detr_core.load_model also opens the DETR family (detr_core.FAMILY: RT-DETR, Deformable DETR, D-FINE, ...)"),
    ({}, "cfg.json: model_type None is not a DETR; this reader opens model_type ['detr', 'table-transformer']"
     " (DetrForObjectDetection, DetrForSegmentation, TableTransformerForObjectDetection), and detr_core.load_model"
     " also opens the DETR family (detr_core.FAMILY: RT-DETR, Deformable DETR, D-FINE, ...)"),
    ({"model_type": "detr", "architectures": ["DetrModel"]}, "cfg.json: architectures 'DetrModel' has no detection"
     " head; DETR Lens opens ['DetrForObjectDetection', 'DetrForSegmentation', 'TableTransformerForObjectDetection']"),
    ({"model_type": "detr", "encoder_ffn_dim": 64}, "cfg.json: encoder_ffn_dim=64 and decoder_ffn_dim=2048 differ;"
     " DETR Lens builds one size for both"),
    ({"model_type": "detr", "activation_function": "gelu"},
     "cfg.json: activation_function='gelu'; DETR Lens supports ['relu']"),
    ({"model_type": "detr", "position_embedding_type": "rope"},
     "cfg.json: position_embedding_type='rope'; DETR Lens supports ['sine', 'learned']"),
    ({"model_type": "detr", "num_channels": 1}, "cfg.json: num_channels=1; DETR Lens supports [3]"),
    ({"model_type": "detr", "d_model": 30}, "cfg.json: hidden_dim=30 must be even and divisible by nheads=8"),
    ({"model_type": "detr", "backbone_config": "resnet"},
     "cfg.json: backbone_config must be an object or null, found str"),
    ({"model_type": "detr", "backbone_config": {"model_type": "swin"}}, "cfg.json: backbone_config.model_type"
     " 'swin'; DETR Lens builds ResNet backbones only (timm_backbone or resnet)"),
    ({"model_type": "detr", "use_timm_backbone": False, "backbone": "resnet101"}, "cfg.json: backbone 'resnet101'"
     " with use_timm_backbone false names a Hub backbone; DETR Lens reads a transformers backbone only from"
     " backbone_config"),
])
def test_configs_that_cannot_be_represented_say_which_field(cfg, message):
    assert _error(read_config, cfg, W) == message


@pytest.mark.parametrize("cfg,backbone,dilation,stages", [
    ({"backbone": "resnet18"}, "resnet18", False, 4),
    ({"backbone": "timm/resnet50.a1_in1k", "dilation": True}, "resnet50", True, 4),  # 4.x: DC5 from `dilation`
    ({"backbone": "resnet101", "backbone_kwargs": {"out_indices": [1, 2, 3]}}, "resnet101", False, 3),
    ({"backbone": "resnet50", "dilation": True, "backbone_kwargs": {"out_indices": [1, 2, 3]}}, "resnet50", False, 3),
    ({"backbone": "resnet50", "backbone_kwargs": {"output_stride": 16, "out_indices": [1, 2, 3, 4]}},
     "resnet50", True, 4),
    ({"backbone_config": {"model_type": "timm_backbone", "backbone": "resnet34"}}, "resnet34", False, 4),
    ({"backbone_config": {"model_type": "timm_backbone", "backbone": "resnet101", "output_stride": 16,
                          "out_indices": [4, 2]}}, "resnet101", True, 4),
    ({"backbone_config": {"model_type": "timm_backbone", "backbone": "resnet50", "output_stride": 16,
                          "out_indices": [1, 2, 3]}}, "resnet50", False, 3),
])
def test_timm_backbones_of_both_generations(cfg, backbone, dilation, stages):
    arch = read_config({"model_type": "detr", **cfg}, W)
    assert (arch.config.backbone, arch.config.dilation, arch.config.backbone_stages) == (backbone, dilation, stages)
    assert arch.backbone_layout == "timm"


@pytest.mark.parametrize("cfg,message", [
    ({"backbone": "convnext_tiny"}, "backbone 'convnext_tiny'; DETR Lens builds the plain ResNets"
     " ['resnet18', 'resnet34', 'resnet50', 'resnet101']"),
    ({"backbone_kwargs": {"out_indices": [1, 2]}}, "backbone_kwargs.out_indices [1, 2]; DETR uses the last ResNet"
     " stage, 3 or 4"),
    ({"backbone_kwargs": {"output_stride": 8}}, "backbone_kwargs.output_stride 8; DETR Lens supports 32 or 16 (DC5)"),
    ({"backbone_kwargs": {"in_chans": 1}}, "backbone_kwargs.in_chans/num_channels 1; DETR Lens reads RGB images (3)"),
    ({"backbone_config": {"model_type": "timm_backbone", "backbone": "resnet50", "num_channels": 4}},
     "backbone_config.in_chans/num_channels 4; DETR Lens reads RGB images (3)"),
    ({"backbone_config": {"model_type": "timm_backbone", "backbone": "resnet50", "out_indices": [5]}},
     "backbone_config.out_indices [5]; DETR uses the last ResNet stage, 3 or 4"),
])
def test_timm_backbones_that_cannot_be_built(cfg, message):
    assert _error(read_config, {"model_type": "detr", **cfg}, W) == f"{W}: {message}"


_RESNET = {"model_type": "resnet", "layer_type": "basic", "depths": [2, 2, 2, 2]}


@pytest.mark.parametrize("sub,name", [
    ({"model_type": "resnet"}, "resnet50"), (_RESNET, "resnet18"),
    ({"model_type": "resnet", "layer_type": "basic", "depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 256, 512],
      "out_features": ["stage2", "stage4"]}, "resnet34"),
    ({"model_type": "resnet", "depths": [3, 4, 23, 3], "embedding_size": 64, "hidden_act": "relu"}, "resnet101"),
])
def test_transformers_resnets(sub, name):
    arch = read_config({"model_type": "detr", "backbone_config": sub}, W)
    assert (arch.config.backbone, arch.config.dilation, arch.config.backbone_stages) == (name, False, 4)
    assert arch.backbone_layout == "transformers"
    legacy = read_config({"model_type": "detr", "use_timm_backbone": False}, W)  # 4.x: transformers' ResNet-50
    assert (legacy.config.backbone, legacy.backbone_layout) == ("resnet50", "transformers")


@pytest.mark.parametrize("change,message", [
    ({"depths": [2, 2, 2, 3]}, "backbone_config layer_type='basic', depths=[2, 2, 2, 3] is not ResNet-18/34/50/101;"
     " DETR Lens builds only those"),
    ({"hidden_sizes": [64, 128, 256, 256]}, "backbone_config.hidden_sizes=[64, 128, 256, 256]; a standard ResNet has"
     " [64, 128, 256, 512]"),
    ({"embedding_size": 32}, "backbone_config.embedding_size=32; DETR Lens builds the standard ResNet"
     " (embedding_size=64)"),
    ({"hidden_act": "gelu"}, "backbone_config.hidden_act='gelu'; DETR Lens builds the standard ResNet"
     " (hidden_act='relu')"),
    ({"downsample_in_first_stage": True}, "backbone_config.downsample_in_first_stage=True; DETR Lens builds the"
     " standard ResNet (downsample_in_first_stage=False)"),
    ({"num_channels": 1}, "backbone_config.num_channels=1; DETR Lens builds the standard ResNet (num_channels=3)"),
    ({"out_features": ["stage4", "stage3"]}, "backbone_config.out_features=['stage4', 'stage3']; DETR Lens reads"
     " this backbone up to stage4"),
])
def test_transformers_resnets_that_are_not_standard(change, message):
    assert _error(read_config, {"model_type": "detr", "backbone_config": {**_RESNET, **change}}, W) == f"{W}: {message}"


def test_dilation_on_a_transformers_resnet_is_dropped_with_a_warning():
    with pytest.warns(UserWarning) as record:
        arch = read_config({"model_type": "detr", "backbone_config": _RESNET, "dilation": True}, W)
    assert not arch.config.dilation and arch.config.stride == 32
    assert str(record[0].message) == (f"{W}: dilation=true, but transformers' own ResNet has no dilation, so"
                                      " transformers runs this model at stride 32; loading it the same way")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_config({"model_type": "detr", "backbone_config": _RESNET}, W)  # no dilation: no warning


# --- class names --------------------------------------------------------------------------------------------

def test_class_names_by_id_as_transformers_counts_them():
    assert class_names({"id2label": {"1": "dog", "0": "cat"}}, W) == ["cat", "dog"]
    with pytest.warns(UserWarning, match=r"ids \[2\] are outside the model's 2 classes"):
        assert class_names({"id2label": {0: "cat", 2: 7}}, W) == ["cat", "N/A"]  # 2 ids: 2 classes
    assert class_names({"id2label": {0: "cat", 1: 7}}, W) == ["cat", "7"]  # names as text
    assert class_names({"num_labels": 3}, W) == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert class_names({"id2label": {}, "num_labels": 1}, W) == ["LABEL_0"]
    assert class_names({}, W) == ["LABEL_0", "LABEL_1"]
    with pytest.warns(UserWarning) as record:
        assert class_names({"id2label": {"0": "a", "4": "e", "9": "j"}}, W) == ["a", "N/A", "N/A"]
    assert str(record[0].message) == (f"{W}: id2label ids [4, 9] are outside the model's 3 classes (transformers"
                                      " gives it len(id2label) classes); those labels can never be predicted")
    assert _error(class_names, {"id2label": ["cat"]}, W) == f"{W}: id2label must map integer ids to names, found ['cat']"


# --- preprocessor_config.json -------------------------------------------------------------------------------

@pytest.mark.parametrize("pp,expected", [
    (None, PreprocessConfig()),
    ({}, PreprocessConfig(800, 1333)),
    ({"size": {"shortest_edge": 320, "longest_edge": 512}, "image_mean": [0.5, 0.4, 0.3], "image_std": 0.25},
     PreprocessConfig(320, 512, (0.5, 0.4, 0.3), (0.25, 0.25, 0.25))),
    ({"size": 600, "max_size": 1000}, PreprocessConfig(600, 1000)),
    ({"size": 600}, PreprocessConfig(600, 1333)),
    ({"size": {"max_height": 480, "max_width": 480}, "do_normalize": False},
     PreprocessConfig(480, 480, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))),
    ({"do_rescale": True, "rescale_factor": 0.00392156862745098, "image_mean": [1, 0, 0]},
     PreprocessConfig(800, 1333, (1.0, 0.0, 0.0))),
])
def test_preprocessing_read_by_hand(pp, expected):
    assert read_preprocessor(pp, W) == expected


def test_preprocessing_without_resizing_falls_back_with_a_warning():
    with pytest.warns(UserWarning) as record:
        assert read_preprocessor({"do_resize": False, "size": 300}, W) == PreprocessConfig(800, 1333)
    assert str(record[0].message) == (f"{W}: do_resize=false cannot be represented; images are resized to shortest"
                                      " edge 800, longest 1333 instead")


@pytest.mark.parametrize("pp,message", [
    ({"do_rescale": False}, "do_rescale=False, rescale_factor=None; DETR Lens feeds pixels scaled to [0, 1]"
     " (rescale_factor 1/255)"),
    ({"rescale_factor": 1 / 256}, "do_rescale=None, rescale_factor=0.00390625; DETR Lens feeds pixels scaled to"
     " [0, 1] (rescale_factor 1/255)"),
    ({"size": {"height": 512, "width": 640}}, "size={'height': 512, 'width': 640}; DETR Lens resizes by"
     " shortest_edge and longest_edge (or a square max_height = max_width)"),
    ({"size": {"max_height": 480, "max_width": 640}}, "size={'max_height': 480, 'max_width': 640}; DETR Lens"
     " resizes by shortest_edge and longest_edge (or a square max_height = max_width)"),
    ({"size": {"shortest_edge": 320}}, "size={'shortest_edge': 320}; DETR Lens resizes by shortest_edge and"
     " longest_edge (or a square max_height = max_width)"),
    ({"image_mean": [0.5, 0.5]}, "image_mean=[0.5, 0.5]; expected one number per RGB channel (3)"),
    ({"image_std": [0.2, 0.2, 0.2, 0.2]}, "image_std=[0.2, 0.2, 0.2, 0.2]; expected one number per RGB channel (3)"),
])
def test_preprocessing_that_cannot_be_represented(pp, message):
    assert _error(read_preprocessor, pp, W) == f"{W}: {message}"


def test_export_writes_what_the_reader_reads_back():
    """hf_config / hf_preprocessor by hand for one non-default model, and read back to the same config."""
    config = DETRConfig(backbone="resnet101", dilation=True, hidden_dim=64, nheads=4, enc_layers=2, dec_layers=3,
                        dim_feedforward=96, dropout=0.05, num_queries=12, num_classes=2, pre_norm=False,
                        position_embedding="learned", decoder_renorm=True)
    written = hf_config(config, ["cat", "dog"])
    assert written == {
        "architectures": ["DetrForObjectDetection"], "model_type": "detr", "d_model": 64, "encoder_layers": 2,
        "decoder_layers": 3, "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 96,
        "decoder_ffn_dim": 96, "num_queries": 12, "activation_function": "relu", "dropout": 0.05,
        "attention_dropout": 0.05, "activation_dropout": 0.05, "position_embedding_type": "learned",
        "auxiliary_loss": True, "num_channels": 3, "use_pretrained_backbone": False,
        "id2label": {"0": "cat", "1": "dog"}, "label2id": {"cat": 0, "dog": 1},
        "use_timm_backbone": True, "backbone": "resnet101", "dilation": True, "backbone_config": None}
    assert read_config(json.loads(json.dumps(written)), W).config == config
    three = hf_config(DETRConfig(backbone="resnet18", backbone_stages=3, pre_norm=True, num_classes=1), ["x"])
    assert (three["architectures"], three["model_type"], three["dilation"]) == (
        ["TableTransformerForObjectDetection"], "table-transformer", False)
    assert three["backbone_config"] == {"model_type": "timm_backbone", "backbone": "resnet18", "out_indices": [1, 2, 3],
                                        "features_only": True, "use_pretrained_backbone": False, "num_channels": 3}
    assert read_config(three, W).config == DETRConfig(backbone="resnet18", backbone_stages=3, pre_norm=True,
                                                      num_classes=1)
    pre = PreprocessConfig(320, 512, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    assert hf_preprocessor(pre) == {
        "image_processor_type": "DetrImageProcessor", "format": "coco_detection", "do_resize": True,
        "size": {"shortest_edge": 320, "longest_edge": 512}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3],
        "do_pad": True, "do_convert_annotations": True}
    assert read_preprocessor(hf_preprocessor(pre), W) == pre


# --- parameter names ----------------------------------------------------------------------------------------

# (save_pretrained's name, this project's name), written out by hand: every rename rule once
NAMES = [
    ("class_labels_classifier.weight", "class_embed.weight"),
    ("bbox_predictor.layers.2.bias", "bbox_embed.layers.2.bias"),
    ("model.query_position_embeddings.weight", "query_embed.weight"),
    ("model.input_projection.bias", "input_proj.bias"),
    ("model.backbone.position_embedding.row_embeddings.weight", "backbone.1.row_embed.weight"),
    ("model.backbone.position_embedding.column_embeddings.weight", "backbone.1.col_embed.weight"),
    ("model.encoder.layernorm.weight", "transformer.encoder.norm.weight"),
    ("model.decoder.layernorm.bias", "transformer.decoder.norm.bias"),
    ("model.encoder.layers.3.self_attn.out_proj.weight", "transformer.encoder.layers.3.self_attn.out_proj.weight"),
    ("model.encoder.layers.0.self_attn_layer_norm.bias", "transformer.encoder.layers.0.norm1.bias"),
    ("model.encoder.layers.1.final_layer_norm.weight", "transformer.encoder.layers.1.norm2.weight"),
    ("model.encoder.layers.2.fc1.weight", "transformer.encoder.layers.2.linear1.weight"),
    ("model.encoder.layers.12.fc2.bias", "transformer.encoder.layers.12.linear2.bias"),
    ("model.decoder.layers.4.self_attn.out_proj.bias", "transformer.decoder.layers.4.self_attn.out_proj.bias"),
    ("model.decoder.layers.5.encoder_attn.out_proj.weight",
     "transformer.decoder.layers.5.multihead_attn.out_proj.weight"),
    ("model.decoder.layers.0.self_attn_layer_norm.weight", "transformer.decoder.layers.0.norm1.weight"),
    ("model.decoder.layers.1.encoder_attn_layer_norm.bias", "transformer.decoder.layers.1.norm2.bias"),
    ("model.decoder.layers.2.final_layer_norm.weight", "transformer.decoder.layers.2.norm3.weight"),
    ("model.decoder.layers.3.fc1.bias", "transformer.decoder.layers.3.linear1.bias"),
    ("model.decoder.layers.3.fc2.weight", "transformer.decoder.layers.3.linear2.weight"),
    ("model.backbone.conv_encoder.model.layer3.1.conv2.weight", "backbone.0.body.layer3.1.conv2.weight"),
]


def _tagged(names) -> dict:
    """name -> a distinct one-element tensor, so that a value that lands under another name shows."""
    return {name: torch.tensor([float(i)]) for i, name in enumerate(names)}


def test_every_name_both_ways():
    state = _tagged(hf for hf, _ in NAMES)
    ours = hf_to_detr_lens(state, "timm", W)
    assert ours == {mine: state[hf] for hf, mine in NAMES}
    back = detr_lens_to_hf(ours)
    expected = {hf.replace("model.backbone.position_embedding.", "model.position_embedding."): state[hf]
                for hf, _ in NAMES}  # transformers 5.x reads the learned position embedding there
    assert back == expected


def test_q_k_v_are_stacked_in_that_order_and_split_back():
    d = 2
    state = {}
    for attn in ("model.encoder.layers.1.self_attn", "model.decoder.layers.0.encoder_attn"):
        for offset, part in enumerate("qkv"):
            state[f"{attn}.{part}_proj.weight"] = torch.full((d, d), 10.0 * offset + 1)
            state[f"{attn}.{part}_proj.bias"] = torch.full((d,), 10.0 * offset + 2)
    ours = hf_to_detr_lens(state, "timm", W)
    assert sorted(ours) == ["transformer.decoder.layers.0.multihead_attn.in_proj_bias",
                            "transformer.decoder.layers.0.multihead_attn.in_proj_weight",
                            "transformer.encoder.layers.1.self_attn.in_proj_bias",
                            "transformer.encoder.layers.1.self_attn.in_proj_weight"]
    weight = ours["transformer.encoder.layers.1.self_attn.in_proj_weight"]  # [3d, d]: rows q, then k, then v
    assert weight[:, 0].tolist() == [1.0, 1.0, 11.0, 11.0, 21.0, 21.0] and weight.shape == (3 * d, d)
    assert ours["transformer.decoder.layers.0.multihead_attn.in_proj_bias"].tolist() == [2, 2, 12, 12, 22, 22]
    back = detr_lens_to_hf(ours)
    assert sorted(back) == sorted(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_the_transformers_resnet_layout_to_torchvision_names():
    prefix = "model.backbone.conv_encoder.model."
    names = {
        "embedder.embedder.convolution.weight": "conv1.weight",
        "embedder.embedder.normalization.running_mean": "bn1.running_mean",
        "encoder.stages.0.layers.0.layer.0.convolution.weight": "layer1.0.conv1.weight",
        "encoder.stages.3.layers.2.layer.2.convolution.weight": "layer4.2.conv3.weight",
        "encoder.stages.2.layers.1.layer.1.normalization.bias": "layer3.1.bn2.bias",
        "encoder.stages.1.layers.0.shortcut.convolution.weight": "layer2.0.downsample.0.weight",
        "encoder.stages.1.layers.0.shortcut.normalization.running_var": "layer2.0.downsample.1.running_var",
    }
    state = _tagged(prefix + name for name in names)
    state[prefix + "encoder.stages.0.layers.0.layer.0.normalization.num_batches_tracked"] = torch.tensor(3)
    ours = hf_to_detr_lens(state, "transformers", W)
    assert ours == {"backbone.0.body." + mine: state[prefix + hf] for hf, mine in names.items()}
    timm = hf_to_detr_lens({prefix + "layer1.0.conv1.weight": torch.zeros(1)}, "timm", W)
    assert list(timm) == ["backbone.0.body.layer1.0.conv1.weight"]


def test_names_with_no_place_are_listed_ten_at_most():
    unknown = [f"model.extra.{i}" for i in range(12)]
    message = _error(hf_to_detr_lens, _tagged(unknown), "timm", W)
    assert message == f"{W}: tensors with no place in a DETR: {unknown[:10]} (+2 more)"
    assert _error(hf_to_detr_lens, _tagged(["x.y"]), "timm", W) == f"{W}: tensors with no place in a DETR: ['x.y']"
    resnet = "model.backbone.conv_encoder.model.pooler.weight"  # no torchvision name in the transformers layout
    assert _error(hf_to_detr_lens, _tagged([resnet]), "transformers", W) == (
        f"{W}: tensors with no place in a DETR: ['{resnet}']")
    q_and_k = _tagged(["model.encoder.layers.0.self_attn.k_proj.weight", "model.encoder.layers.0.self_attn.q_proj.weight"])
    assert _error(hf_to_detr_lens, q_and_k, "timm", W) == (
        f"{W}: transformer.encoder.layers.0.self_attn has only the ['k', 'q'] projections of q, k, v")
    with pytest.raises(ValueError) as err:
        detr_lens_to_hf({"transformer.extra.weight": torch.zeros(1)})
    assert str(err.value) == "transformer.extra.weight: this parameter has no place in a transformers DETR"
    assert detr_lens_to_hf({"backbone.0.body.bn1.num_batches_tracked": torch.tensor(1)}) == {}


@pytest.mark.parametrize("name", [
    "model.encoder.layers.x.fc1.weight",  # a layer number is digits
    "model.encoder.layers..fc1.weight",
    "modelXencoder.layers.0.fc1.weight",  # a dot is a dot, not any character
    "model.encoder.layers.0.fc1Xweight",
    "model.encoder.layers.0.fc1.weight.extra",  # whole names only
    "prefix.model.encoder.layers.0.fc1.weight",
    "model.encoder.layers.0.fc1.",  # a parameter has a name
    "model.encoder.layers.0.fc1.we-ight",
    "model.encoder.layers.0.self_attn.x_proj.weight",  # only q, k and v projections
    "model.encoder.layers.0.self_attn.qk_proj.weight",
    "model.encoder.layers.0.self_attn.q_proj.weight.extra",
    "xmodel.encoder.layers.0.self_attn.q_proj.weight",
])
def test_a_name_close_to_a_known_one_has_no_place(name):
    assert _error(hf_to_detr_lens, _tagged([name]), "timm", W) == f"{W}: tensors with no place in a DETR: [{name!r}]"


@pytest.mark.parametrize("name", [
    "transformer.encoder.layers.x.linear1.weight",
    "transformerXencoder.layers.0.linear1.weight",
    "transformer.encoder.layers.0.linear1.weight.extra",
    "transformer.encoder.layers.0.self_attn.in_proj_",
    "transformer.encoder.layers.0.self_attn.in_proj_weight.extra",
    "transformer.encoder.layers.0.self_attnXin_proj_weight",
])
def test_a_name_close_to_one_of_ours_has_no_transformers_name(name):
    with pytest.raises(ValueError) as err:
        detr_lens_to_hf({name: torch.zeros(3)})
    assert str(err.value) == f"{name}: this parameter has no place in a transformers DETR"


def test_generation_5_names_and_segmentation_checkpoints_are_normalised():
    names = {
        "detr.model.backbone.model.layer1.0.conv1.weight": "model.backbone.conv_encoder.model.layer1.0.conv1.weight",
        "model.position_embedding.row_embeddings.weight": "model.backbone.position_embedding.row_embeddings.weight",
        "model.encoder.layers.0.self_attn.o_proj.weight": "model.encoder.layers.0.self_attn.out_proj.weight",
        "model.decoder.layers.1.mlp.fc2.bias": "model.decoder.layers.1.fc2.bias",
        "detr.class_labels_classifier.bias": "class_labels_classifier.bias",
        "model.decoder.layers.1.fc1.bias": "model.decoder.layers.1.fc1.bias",  # save_pretrained's: unchanged
    }
    state = _tagged([*names, "mask_head.lay1.weight", "bbox_attention.q_linear.bias"])
    out, mask_head = normalise_hf_names(state)
    assert out == {new: state[old] for old, new in names.items()}
    assert mask_head == ["mask_head.lay1.weight", "bbox_attention.q_linear.bias"]


# --- files --------------------------------------------------------------------------------------------------

def test_which_files_a_path_names(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    files = hf_files(tmp_path)
    assert (files.config, files.weights, files.preprocessor, files.location) == (
        tmp_path / "config.json", tmp_path / "pytorch_model.bin", None, str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")  # transformers prefers safetensors
    (tmp_path / "preprocessor_config.json").write_text("{}")
    files = hf_files(tmp_path, "owner/name@main")
    assert (files.weights, files.preprocessor, files.location) == (
        tmp_path / "model.safetensors", tmp_path / "preprocessor_config.json", "owner/name@main")
    single = hf_files(tmp_path / "pytorch_model.bin")
    assert (single.config, single.weights, single.location) == (
        tmp_path / "config.json", tmp_path / "pytorch_model.bin", str(tmp_path / "pytorch_model.bin"))
    assert hf_files(tmp_path / "checkpoint.pth") is None
    (tmp_path / "config.json").unlink()
    assert hf_files(tmp_path / "pytorch_model.bin") is None  # a .bin without config: a plain checkpoint
    assert _error(hf_files, tmp_path / "model.safetensors").startswith(
        f"{str(tmp_path / 'model.safetensors')!r} has no config.json beside it")
    assert _error(hf_files, tmp_path) == (f"folder {str(tmp_path)!r} has no config.json: expected a folder written by"
                                          " save_pretrained (config.json + model.safetensors or pytorch_model.bin) or"
                                          " a checkpoint file")


def test_folders_without_usable_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert _error(hf_files, tmp_path) == (f"folder {str(tmp_path)!r} has config.json but no weights: expected"
                                          " model.safetensors or pytorch_model.bin")
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    assert _error(hf_files, tmp_path) == (f"folder {str(tmp_path)!r} holds a sharded checkpoint"
                                          " (model.safetensors.index.json); DETR Lens reads one model.safetensors"
                                          " (DETRs are far below the sharding size)")


def test_json_and_weights_that_are_not_what_they_should_be(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    assert _error(read_json, path) == f"{str(path)!r} holds a JSON list, expected an object"
    path.write_text('{"a": 1}')
    assert read_json(path) == {"a": 1}
    assert _error(read_json, tmp_path / "missing.json").startswith(f"{str(tmp_path / 'missing.json')!r} is not a"
                                                                   " readable JSON file (")
    weights = tmp_path / "pytorch_model.bin"
    torch.save({"a": torch.ones(2), "b": 3}, weights)
    assert _error(read_weights, weights) == f"{str(weights)!r} is not a state dict of tensors, as save_pretrained writes"
    torch.save({"a": torch.ones(2)}, weights)
    assert list(read_weights(weights)) == ["a"] and torch.equal(read_weights(weights)["a"], torch.ones(2))


def test_read_hf_model_by_hand(tmp_path):
    """A whole (tiny, made-up) checkpoint: names mapped, overrides applied, the mask head noted."""
    from safetensors.torch import save_file

    cfg = {"model_type": "detr", "architectures": ["DetrForSegmentation"], "id2label": {"0": "cat"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    save_file({"detr.class_labels_classifier.weight": torch.ones(2, 3), "bbox_attention.q_linear.weight": torch.ones(1)},
              tmp_path / "model.safetensors")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 200,
                                                                            "longest_edge": 300}}))
    state, config, pre, names, origin = read_hf_model(hf_files(tmp_path, "here"), {"dropout": 0.0})
    assert list(state) == ["class_embed.weight"] and torch.equal(state["class_embed.weight"], torch.ones(2, 3))
    assert config == DETRConfig(num_classes=1, dropout=0.0) and pre == PreprocessConfig(200, 300)
    assert names == ["cat"] and origin == HFOrigin("here", "DetrForSegmentation", "timm", ("mask head",))
    assert origin.mask_head_omitted and not HFOrigin("x", "DetrForObjectDetection", "timm").mask_head_omitted
    cfg["architectures"] = ["DetrForObjectDetection"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    *_, origin = read_hf_model(hf_files(tmp_path))
    assert origin.set_aside == ("mask head",)  # the mask head's tensors alone say so
    save_file({"class_labels_classifier.weight": torch.ones(2, 3)}, tmp_path / "model.safetensors")
    *_, origin = read_hf_model(hf_files(tmp_path))
    assert origin.set_aside == () and origin.architecture == "DetrForObjectDetection"
    message = _error(read_hf_model, hf_files(tmp_path, "here"), {"dropout": 2.0})
    assert message == "overrides {'dropout': 2.0} for here: dropout=2.0: expected a rate in [0, 1)"


def test_save_hf_writes_three_files_that_read_back_to_the_same_model(tmp_path):
    """save_hf by hand on a tiny model of this project (no transformers needed): the JSON files are hf_config's and
    hf_preprocessor's, the tensors carry save_pretrained's names, and reading the folder gives every tensor back."""
    import detr_core
    from safetensors.torch import load_file

    from detr_core.weights.hf_export import save_hf

    torch.manual_seed(0)
    config = detr_core.tiny_config(num_classes=3, position_embedding="learned")
    model = detr_core.build_model(config, PreprocessConfig(96, 160), ["a", "b", "c"])
    folder = save_hf(model, tmp_path / "new" / "hf")  # parents created
    assert folder == tmp_path / "new" / "hf"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert json.loads((folder / "config.json").read_text()) == hf_config(config, ["a", "b", "c"])
    assert (folder / "config.json").read_text().endswith("}\n")
    assert json.loads((folder / "preprocessor_config.json").read_text()) == hf_preprocessor(PreprocessConfig(96, 160))
    written = load_file(folder / "model.safetensors")
    assert "model.position_embedding.row_embeddings.weight" in written
    assert "model.encoder.layers.1.self_attn.v_proj.weight" in written
    state, read_config_back, pre, names, origin = read_hf_model(hf_files(folder))
    assert read_config_back == config and pre == PreprocessConfig(96, 160) and names == ["a", "b", "c"]
    assert origin.set_aside == () and origin.backbone_layout == "timm"
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sorted(state) == sorted(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_save_hf_refuses_an_optimised_copy_and_leaves_no_temporary_files(tmp_path):
    import detr_core

    from detr_core.weights.hf_export import _atomic, save_hf

    model = detr_core.build_model(detr_core.tiny_config())
    model.inference_only = True
    with pytest.raises(ValueError) as err:
        save_hf(model, tmp_path / "x")
    assert str(err.value) == ("this model was rewritten by optimize_for_inference (batch norms folded) and cannot be"
                              " exported; export the model you optimised instead")
    assert not (tmp_path / "x").exists()

    def fail(tmp):
        with open(tmp, "w") as handle:
            handle.write("half")
        raise OSError("disk full")
    (tmp_path / "kept.json").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        _atomic(tmp_path / "kept.json", fail)
    assert (tmp_path / "kept.json").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]
    _atomic(tmp_path / "kept.json", lambda tmp: open(tmp, "w").write("new"))
    assert (tmp_path / "kept.json").read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_a_batch_norm_count_anywhere_is_skipped_and_the_rest_kept():
    """num_batches_tracked has no place (frozen batch norm), wherever it comes in the state dict."""
    names = [("model.backbone.conv_encoder.model.bn1.num_batches_tracked", None), *NAMES[:3]]
    state = _tagged(hf for hf, _ in names)
    assert hf_to_detr_lens(state, "timm", W) == {mine: state[hf] for hf, mine in NAMES[:3]}
    ours = {"backbone.0.body.bn1.num_batches_tracked": torch.tensor(1), **{mine: state[hf] for hf, mine in NAMES[:3]}}
    assert sorted(detr_lens_to_hf(ours)) == sorted(
        hf.replace("model.backbone.position_embedding.", "model.position_embedding.") for hf, _ in NAMES[:3])


@pytest.mark.parametrize("count, more", [(10, ""), (11, " (+1 more)")])
def test_ten_unknown_names_are_all_listed_and_the_eleventh_is_counted(count, more):
    unknown = [f"model.extra.{i}" for i in range(count)]
    assert _error(hf_to_detr_lens, _tagged(unknown), "timm", W) == (
        f"{W}: tensors with no place in a DETR: {unknown[:10]}{more}")


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_a_weights_file_with_its_config_beside_it(tmp_path, weights):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / weights).write_bytes(b"")
    files = hf_files(tmp_path / weights)
    assert (files.config, files.weights, files.preprocessor) == (tmp_path / "config.json", tmp_path / weights, None)
    (tmp_path / "preprocessor_config.json").write_text("{}")
    assert hf_files(tmp_path / weights).preprocessor == tmp_path / "preprocessor_config.json"


def test_an_export_writes_what_save_pretrained_writes_and_can_write_again(tmp_path, module_tiny_model):
    """safetensors metadata {"format": "pt"} (transformers reads it to know the framework), JSON indented by 2 as
    save_pretrained's; a second export into the same folder replaces the files."""
    from safetensors import safe_open

    from detr_core.weights.hf_export import save_hf

    folder = save_hf(module_tiny_model, tmp_path / "out")
    with safe_open(folder / "model.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
    for name in ("config.json", "preprocessor_config.json"):
        text = (folder / name).read_text()
        assert text == json.dumps(json.loads(text), indent=2) + "\n"
    before = (folder / "config.json").read_text()
    assert save_hf(module_tiny_model, folder) == folder and (folder / "config.json").read_text() == before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
