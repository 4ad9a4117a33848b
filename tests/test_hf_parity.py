"""Hugging Face DETRs opened with load_model give transformers' own numbers: logits and boxes within 1e-4, every
encoder self-attention and decoder cross-attention map, per head, within 1e-5 (transformers' eager attention
with output_attentions=True). Tiny random models, built once per module; a padded batch exercises the masks."""
from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

import detr_core
from hf_models import HF_RESNET18, build, detection_part, padded_batch, reference_outputs

pytest.importorskip("transformers")
pytest.importorskip("timm")
from safetensors.torch import load_file, save_file  # noqa: E402

LOGIT_TOL, ATTENTION_TOL = 1e-4, 1e-5
CASES = {
    "timm-resnet18": ("detr", dict(use_timm_backbone=True, backbone="resnet18")),
    "timm-resnet50-dc5": ("detr", dict(use_timm_backbone=True, backbone="resnet50", dilation=True)),
    "transformers-resnet18": ("detr", dict(backbone_config=HF_RESNET18)),
    "transformers-resnet50": ("detr", dict(use_timm_backbone=False)),
    "learned-position": ("detr", dict(backbone="resnet18", position_embedding_type="learned")),
    "auxiliary-loss": ("detr", dict(backbone="resnet18", auxiliary_loss=True)),
    "fine-tuned-classes": ("detr", dict(backbone="resnet18", id2label={0: "cat", 1: "dog", 2: "bird"})),
    "table-transformer": ("table", dict(backbone="resnet18")),
    "segmentation": ("segmentation", dict(backbone="resnet18", encoder_attention_heads=8,
                                          decoder_attention_heads=8)),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """case name -> (transformers model, its save_pretrained folder), built on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            kind, config = CASES[name]
            model = build(kind, seed=len(cache), **config)
            folder = tmp_path_factory.mktemp(name)
            model.save_pretrained(folder)
            cache[name] = (model, folder)
        return cache[name]
    return get


def assert_same_outputs(ours, hf_model, where: str = ""):
    pixel_values, mask = padded_batch()
    ref = reference_outputs(hf_model, pixel_values, mask)
    with torch.no_grad(), detr_core.capture_attention(ours) as maps:
        out = ours(pixel_values, mask)
    logits, boxes = detection_part(ref)
    assert (out["pred_logits"] - logits).abs().max() < LOGIT_TOL, where
    assert (out["pred_boxes"] - boxes).abs().max() < LOGIT_TOL, where
    assert len(maps.encoder) == len(ref.encoder_attentions) and len(maps.decoder_cross) == len(ref.cross_attentions)
    for kind, mine, theirs in (("encoder", maps.encoder, ref.encoder_attentions),
                               ("cross", maps.decoder_cross, ref.cross_attentions)):
        for layer, (a, b) in enumerate(zip(mine, theirs)):
            assert a.shape == b.shape, (where, kind, layer)  # [B, heads, L, S]
            assert (a - b).abs().max() < ATTENTION_TOL, (where, kind, layer)
    # the heads' maps differ by far more than the tolerance, so the comparison can tell heads apart
    for kind_maps in (maps.encoder, maps.decoder_cross):
        assert (kind_maps[0][:, 0] - kind_maps[0][:, 1]).abs().max() > 1000 * ATTENTION_TOL


@pytest.mark.parametrize("name", list(CASES))
def test_save_pretrained_folder_matches_transformers(saved, name):
    hf_model, folder = saved(name)
    ours = detr_core.load_model(folder)
    assert_same_outputs(ours, hf_model, name)
    assert not ours.training and ours.config.frozen_bn


def test_architecture_read_from_config(saved):
    model = detr_core.load_model(saved("timm-resnet50-dc5")[1])
    c = model.config
    assert (c.backbone, c.dilation, c.stride, c.hidden_dim, c.nheads) == ("resnet50", True, 16, 32, 4)
    assert (c.enc_layers, c.dec_layers, c.dim_feedforward, c.num_queries, c.pre_norm) == (2, 2, 64, 10, False)
    assert detr_core.load_model(saved("table-transformer")[1]).config.pre_norm
    assert detr_core.load_model(saved("learned-position")[1]).config.position_embedding == "learned"
    assert detr_core.load_model(saved("auxiliary-loss")[1]).config.decoder_renorm
    layout = detr_core.load_model(saved("transformers-resnet50")[1]).hf_origin.backbone_layout
    assert layout == "transformers"


def test_class_names_from_id2label(saved):
    model = detr_core.load_model(saved("fine-tuned-classes")[1])
    assert model.class_names == ["cat", "dog", "bird"] and model.config.num_classes == 3
    default = detr_core.load_model(saved("timm-resnet18")[1])  # no id2label: transformers' 2 LABEL_i classes
    assert default.class_names == ["LABEL_0", "LABEL_1"]


def test_segmentation_checkpoint_loads_detection_part_and_says_mask_head_is_set_aside(saved):
    model = detr_core.load_model(saved("segmentation")[1])
    assert model.hf_origin.architecture == "DetrForSegmentation" and model.hf_origin.mask_head_omitted
    assert detr_core.load_model(saved("timm-resnet18")[1]).hf_origin.mask_head_omitted is False


def test_single_safetensors_file_with_config_beside_it(saved):
    hf_model, folder = saved("timm-resnet18")
    assert_same_outputs(detr_core.load_model(folder / "model.safetensors"), hf_model)


def test_pytorch_model_bin_folder(saved, tmp_path):
    hf_model, folder = saved("transformers-resnet18")
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    torch.save(load_file(folder / "model.safetensors"), tmp_path / "pytorch_model.bin")
    assert_same_outputs(detr_core.load_model(tmp_path), hf_model)
    assert_same_outputs(detr_core.load_model(tmp_path / "pytorch_model.bin"), hf_model)


@pytest.mark.parametrize("name", ["timm-resnet18", "transformers-resnet18", "learned-position", "segmentation"])
def test_transformers_5_in_memory_names(saved, tmp_path, name):
    """A state_dict() saved by hand carries 5.x module names (o_proj, mlp.fc1, backbone.model, position_embedding)."""
    hf_model, folder = saved(name)
    state = hf_model.state_dict()
    assert any(".o_proj." in k for k in state) and any(".mlp.fc1." in k for k in state)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    assert_same_outputs(detr_core.load_model(tmp_path), hf_model, name)


def test_preprocessing_from_preprocessor_config(saved, tmp_path):
    from transformers import DetrImageProcessor

    _, folder = saved("timm-resnet18")
    shutil.copytree(folder, tmp_path / "m")
    DetrImageProcessor(size={"shortest_edge": 320, "longest_edge": 480}, image_mean=[0.5, 0.4, 0.3],
                       image_std=[0.2, 0.25, 0.3]).save_pretrained(tmp_path / "m")
    pre = detr_core.load_model(tmp_path / "m").preprocess
    assert (pre.min_size, pre.max_size, pre.mean, pre.std) == (320, 480, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    # the old feature-extractor layout of the facebook/* repos: size and max_size as numbers
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "DetrFeatureExtractor", "size": 600, "max_size": 1000, "do_normalize": False}))
    pre = detr_core.load_model(tmp_path / "m").preprocess
    assert (pre.min_size, pre.max_size, pre.mean, pre.std) == (600, 1000, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert detr_core.load_model(folder).preprocess == detr_core.PreprocessConfig()  # none: DETR's defaults


@pytest.mark.parametrize("size", [{"shortest_edge": 320, "longest_edge": 480},
                                  {"max_height": 480, "max_width": 480}])  # transformers' fine-tuning guide's
def test_images_are_resized_as_transformers_resizes_them(saved, tmp_path, size):
    """The model's input size is DetrImageProcessor's for its own preprocessor_config.json: equal for
    shortest/longest edge; within a pixel for max_height/max_width, where transformers truncates (1333x777 into
    480: it gives 479x279, float error in 1333 * 480 / 1333, and this project rounds to 480x280)."""
    from PIL import Image
    from transformers import DetrImageProcessor

    _, folder = saved("timm-resnet18")
    shutil.copytree(folder, tmp_path / "m")
    processor = DetrImageProcessor(size=size, do_pad=False)
    processor.save_pretrained(tmp_path / "m")
    pre = detr_core.load_model(tmp_path / "m").preprocess
    for w, h in ((640, 480), (300, 900), (1000, 1000), (200, 120), (1333, 777)):
        image = Image.new("RGB", (w, h))
        expected = processor(image, return_tensors="pt")["pixel_values"].shape[-2:]
        got = detr_core.image_to_tensor(image, pre).shape[-2:]
        slack = 0 if "shortest_edge" in size else 1
        assert all(abs(a - b) <= slack for a, b in zip(got, expected)), (w, h, got, expected)


def test_inspect_image_on_a_hugging_face_model(saved, rgb_image):
    """The views read an Inspection; a converted model yields one with its own class names."""
    model = detr_core.load_model(saved("fine-tuned-classes")[1], min_size=96, max_size=160)
    ins = detr_core.inspect_image(model, rgb_image)
    detections = ins.detections(threshold=0.0)
    assert len(detections) == 10 and {d.name for d in detections} <= {"cat", "dog", "bird"}
    assert ins.decoder_map(0, layer=0, head=3).shape == ins.encoder_map(5.0, 5.0, layer=1, head=3).shape


def test_gappy_id2label_names_missing_ids_na_and_warns_about_unreachable_ids(saved, tmp_path):
    _, folder = saved("fine-tuned-classes")
    shutil.copytree(folder, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["id2label"] = {"0": "cat", "2": "dog", "5": "owl"}  # transformers: len(id2label) = 3 classes
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match=r"\[5\].*never be predicted"):
        model = detr_core.load_model(tmp_path / "m")
    assert model.class_names == ["cat", "N/A", "dog"]


def test_official_checkpoints_still_load_strict(tmp_path):
    """An official-layout state dict next to nothing else is not mistaken for a Hugging Face model."""
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.tiny_config())
    torch.save({"model": model.state_dict()}, tmp_path / "detr.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the DC5 note
        loaded = detr_core.load_model(tmp_path / "detr.pth", backbone="resnet18", nheads=4)
    assert loaded.hf_origin is None
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_dilation_on_transformers_resnet_is_ignored_as_transformers_ignores_it(saved, tmp_path):
    hf_model, folder = saved("transformers-resnet18")
    shutil.copytree(folder, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "dilation": True}))
    with pytest.warns(UserWarning, match="transformers' own ResNet has no dilation"):
        model = detr_core.load_model(tmp_path / "m")
    assert not model.config.dilation and model.config.stride == 32
    assert_same_outputs(model, hf_model)


def _transformers_layers(hf_model, pixel_values, mask):
    """Every decoder layer's (logits, boxes) by transformers' own modules: its decoder's final layer norm and its
    heads applied to each layer's output as output_hidden_states returns it (the last is the model's own output)."""
    with torch.no_grad():
        out = hf_model(pixel_values=pixel_values, pixel_mask=(~mask).long(), output_hidden_states=True)
        detr = getattr(hf_model, "detr", hf_model)  # DetrForSegmentation nests the detector
        hidden = out.decoder_hidden_states[1:]  # [0] is the decoder's input (zeros)
        normed = [detr.model.decoder.layernorm(h) for h in hidden[:-1]]
        logits = [detr.class_labels_classifier(h) for h in normed] + [out.logits]
        boxes = [detr.bbox_predictor(h).sigmoid() for h in normed] + [out.pred_boxes]
    return torch.stack(logits), torch.stack(boxes)  # [L, B, Q, C+1], [L, B, Q, 4]


@pytest.mark.parametrize("name", ["timm-resnet18", "transformers-resnet18", "table-transformer", "segmentation"])
def test_every_decoder_layer_matches_transformers_heads_on_its_hidden_states(saved, name):
    """Not only the last layer: the per-layer predictions the layer views show, value by value."""
    hf_model, folder = saved(name)
    ours = detr_core.load_model(folder)
    pixel_values, mask = padded_batch()
    logits, boxes = _transformers_layers(hf_model, pixel_values, mask)
    with torch.no_grad():
        out = ours(pixel_values, mask)
    mine_logits = torch.stack([a["pred_logits"] for a in out["aux_outputs"]] + [out["pred_logits"]])
    mine_boxes = torch.stack([a["pred_boxes"] for a in out["aux_outputs"]] + [out["pred_boxes"]])
    assert mine_logits.shape == logits.shape and logits.shape[0] == 2
    for layer in range(logits.shape[0]):
        assert (mine_logits[layer] - logits[layer]).abs().max() < LOGIT_TOL, (name, layer)
        assert (mine_boxes[layer] - boxes[layer]).abs().max() < LOGIT_TOL, (name, layer)
    assert (logits[0] - logits[1]).abs().max() > 100 * LOGIT_TOL  # the layers differ: a mix-up would show


def test_detections_of_a_non_square_image_are_transformers_post_processed_ones(saved, tmp_path):
    """An image of another size and shape than the model input: boxes in its own pixels and class names from
    id2label, as transformers' DetrImageProcessor.post_process_object_detection gives them for the same input."""
    from PIL import Image
    from transformers import DetrImageProcessor

    hf_model, folder = saved("fine-tuned-classes")
    shutil.copytree(folder, tmp_path / "m")
    processor = DetrImageProcessor(size={"shortest_edge": 96, "longest_edge": 160}, do_pad=False)
    processor.save_pretrained(tmp_path / "m")
    rng = torch.Generator().manual_seed(3)
    pixels = (torch.rand(150, 250, 3, generator=rng) * 255).to(torch.uint8).numpy()  # H 150, W 250 -> 96 x 160
    image = Image.fromarray(pixels)
    model = detr_core.load_model(tmp_path / "m")
    ins = detr_core.inspect_image(model, image, fast=False)
    assert ins.image_size == (150, 250) and ins.input_size == (96, 160)
    inputs = processor(image, return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape[-2:]) == (96, 160)
    with torch.no_grad():
        out = hf_model(pixel_values=inputs["pixel_values"])
    theirs = processor.post_process_object_detection(out, threshold=0.0, target_sizes=[(150, 250)])[0]
    order = torch.argsort(theirs["scores"], descending=True, stable=True)
    found = ins.detections(threshold=0.0)
    assert len(found) == len(order) == 10
    for detection, i in zip(found, order.tolist()):
        assert detection.score == pytest.approx(float(theirs["scores"][i]), abs=2e-3)
        assert detection.name == hf_model.config.id2label[int(theirs["labels"][i])]
        # resampling differs slightly between PIL here and the processor: a fraction of a pixel
        assert detection.box == pytest.approx(theirs["boxes"][i].tolist(), abs=0.75)
