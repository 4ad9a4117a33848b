"""The parts of family training worked by hand: box conventions both ways on non-square padded batches, the
processor-sized transforms, scores, the ResNet transplant, the sampling figure, and the bundled-model hook."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers as T
from PIL import Image

import detr_core
from detr_core.family import loading
from train.backbone_transfer import hf_resnet_name
from train.dataset import Batch, LabelMap
from train.family_configs import default_recipe, named_family
from train.family_data import (FixedResize, ProcessorInput, boxes_to_pixels, family_train_transforms, labels_for,
                               processor_geometry)
from train.family_eval import family_predict, query_scores
from train.family_model import scratch_model
from train.family_step import main_terms
from train.sampling_metric import grown_box, share_inside

RT = SimpleNamespace(config=SimpleNamespace(model_type="rt_detr", use_focal_loss=True))
DEFORMABLE = SimpleNamespace(config=SimpleNamespace(model_type="deformable_detr", use_focal_loss=True))


def _batch() -> Batch:
    """Two images, 40x60 and 50x30 (h x w) after the transforms, padded to 50x60."""
    targets = [{"boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]]), "labels": torch.tensor([2]), "image_id": 7,
                "size": torch.tensor([40, 60]), "orig_size": torch.tensor([80, 120])},
               {"boxes": torch.tensor([[0.5, 0.5, 1.0, 1.0]]), "labels": torch.tensor([0]), "image_id": 8,
                "size": torch.tensor([50, 30]), "orig_size": torch.tensor([100, 60])}]
    return Batch(torch.zeros(2, 3, 50, 60), torch.zeros(2, 50, 60, dtype=torch.bool), targets)


def test_labels_are_normalised_to_the_canvas_only_for_models_without_a_mask():
    rt = labels_for(RT, _batch(), "cpu")
    # 60 px of 60 wide, 40 of 50 high; then 30 of 60 wide, 50 of 50 high
    assert torch.allclose(rt[0]["boxes"], torch.tensor([[0.5, 0.4, 0.5, 0.4]]))
    assert torch.allclose(rt[1]["boxes"], torch.tensor([[0.25, 0.5, 0.5, 1.0]]))
    assert rt[0]["class_labels"].tolist() == [2] and rt[1]["class_labels"].tolist() == [0]
    deformable = labels_for(DEFORMABLE, _batch(), "cpu")  # DETR's convention: the unpadded image
    assert torch.equal(deformable[1]["boxes"], torch.tensor([[0.5, 0.5, 1.0, 1.0]]))


def test_predicted_boxes_go_back_to_original_pixels():
    target = _batch().targets[0]  # 40x60 input of an 80x120 original
    canvas = boxes_to_pixels(RT, torch.tensor([[0.5, 0.4, 0.5, 0.4]]), target, (50, 60))
    assert torch.allclose(canvas, torch.tensor([[30.0, 20.0, 90.0, 60.0]]))
    image = boxes_to_pixels(DEFORMABLE, torch.tensor([[0.25, 0.5, 0.5, 0.25]]), target, (50, 60))
    assert torch.allclose(image, torch.tensor([[0.0, 30.0, 60.0, 50.0]]))


def test_family_predict_writes_coco_entries_in_original_pixels():
    class Stub(torch.nn.Module):
        config = RT.config

        def forward(self, pixel_values):
            logits = torch.full((2, 1, 3), -5.0)
            logits[0, 0, 1], logits[1, 0, 2] = 0.0, 2.0  # query 0: class 1 at 0.5; class 2 at sigmoid(2)
            return SimpleNamespace(logits=logits, pred_boxes=torch.tensor([[[0.5, 0.4, 0.5, 0.4]],
                                                                            [[0.25, 0.5, 0.5, 1.0]]]))

    label_map = LabelMap(("a", "b", "c"), {10: 0, 11: 1, 12: 2})
    found = family_predict(Stub(), [_batch()], label_map, "cpu")
    assert found[7] == [{"image_id": 7, "category_id": 11, "bbox": [30.0, 20.0, 60.0, 40.0], "score": 0.5}]
    assert found[8][0]["category_id"] == 12 and found[8][0]["bbox"] == [0.0, 0.0, 60.0, 100.0]
    assert found[8][0]["score"] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_scores_sigmoid_or_softmax_without_no_object():
    logits = torch.tensor([[0.0, np.log(3.0)]])  # sigmoid 0.5, 0.75; softmax over [1, 3] then drop the last
    score, label = query_scores(RT, logits)
    assert score.item() == pytest.approx(0.75) and label.item() == 1
    softmax = SimpleNamespace(config=SimpleNamespace(use_focal_loss=False))
    score, label = query_scores(softmax, logits)
    assert score.item() == pytest.approx(0.25) and label.item() == 0


def test_processor_geometry_and_the_fixed_size_pipeline():
    rt = T.RTDetrImageProcessor(size={"height": 64, "width": 80})
    assert processor_geometry(rt) == ("fixed", 64, 80, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    edges = T.DeformableDetrImageProcessor(size={"shortest_edge": 96, "longest_edge": 160})
    kind, short, long, mean, _ = processor_geometry(edges)
    assert (kind, short, long, mean) == ("edges", 96, 160, (0.485, 0.456, 0.406))
    image = Image.new("RGB", (100, 50))
    _, target = FixedResize(64, 80)(image, {"boxes": torch.tensor([[10.0, 10.0, 50.0, 30.0]])})
    assert torch.allclose(target["boxes"], torch.tensor([[8.0, 12.8, 40.0, 38.4]]))  # x * 0.8, y * 1.28
    torch.manual_seed(0)
    pipeline = family_train_transforms(rt, default_recipe())
    for _ in range(4):  # crops or not, the tensor has the processor's size
        tensor, out = pipeline(Image.new("RGB", (120, 90)), {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]),
                                                             "labels": torch.tensor([1])})
        assert tensor.shape == (3, 64, 80) and out["size"].tolist() == [64, 80]


def test_evaluation_input_is_the_processors_own_tensor():
    processor = T.DeformableDetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 200})
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (30, 90, 3), dtype=np.uint8))
    tensor, target = ProcessorInput(processor)(image, {"boxes": torch.tensor([[9.0, 3.0, 27.0, 15.0]])})
    assert torch.equal(tensor, processor(images=image, return_tensors="pt")["pixel_values"][0])
    assert target["size"].tolist() == [64, 192]
    assert torch.allclose(target["boxes"], torch.tensor([[0.2, 0.3, 0.2, 0.4]]))  # cx 18/90, cy 9/30, w, h


def test_log_terms_are_the_last_layers():
    terms = {"loss_vfl": torch.tensor(1.0), "loss_bbox": torch.tensor(2.0), "loss_vfl_aux_0": torch.tensor(3.0),
             "loss_bbox_dn_1": torch.tensor(4.0), "loss_giou_enc_0": torch.tensor(5.0), "loss_ce_2": torch.tensor(6.0)}
    assert main_terms(terms) == {"loss_vfl": 1.0, "loss_bbox": 2.0}


def test_resnet_names_map_from_torchvision_to_transformers():
    assert hf_resnet_name("conv1.weight") == "embedder.embedder.convolution.weight"
    assert hf_resnet_name("bn1.running_mean") == "embedder.embedder.normalization.running_mean"
    assert hf_resnet_name("layer2.0.downsample.1.running_var") == \
        "encoder.stages.1.layers.0.shortcut.normalization.running_var"
    assert hf_resnet_name("layer3.1.conv2.weight") == "encoder.stages.2.layers.1.layer.1.convolution.weight"
    assert hf_resnet_name("layer1.0.bn1.num_batches_tracked") is None
    with pytest.raises(ValueError, match="layer1.0.conv3.weight"):
        hf_resnet_name("layer1.0.conv3.weight")


def test_shapes_deformable_starts_from_the_shapes_detrs_resnet():
    categories = [{"id": k, "name": n} for k, n in enumerate(["circle", "square", "triangle", "star", "cross"], 1)]
    setup = scratch_model("shapes-deformable", named_family("shapes-deformable"), categories, seed=0)
    body = detr_core.load_model("shapes").backbone[0].body
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        theirs = setup.model.model.backbone.model(x).feature_maps[-1]  # stage 3, stride 16
        assert torch.allclose(theirs, body(x), atol=1e-4)


def test_sampling_share_inside_the_grown_box():
    assert grown_box((10.0, 20.0, 50.0, 40.0)) == (5.0, 17.5, 55.0, 42.5)
    xy = np.array([[6.0, 18.0], [54.0, 42.0], [4.0, 30.0], [30.0, 43.0]])
    weight = np.array([0.1, 0.2, 0.3, 0.4])
    assert share_inside(xy, weight, grown_box((10.0, 20.0, 50.0, 40.0))) == pytest.approx(0.3)


def test_bundled_name_says_how_to_get_it_then_opens_the_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(loading.BUNDLED_FAMILY, "shapes-deformable", tmp_path / "missing")
    with pytest.raises(RuntimeError, match="'shapes-deformable' model is not bundled yet.*python -m train --model"):
        detr_core.open_any("shapes-deformable")
    assert "shapes-deformable" not in loading.bundled_family_names()
    named = named_family("deformable-tiny")
    model = T.DeformableDetrForObjectDetection._from_config(named.config())
    model.save_pretrained(tmp_path / "bundled")
    named.processor().save_pretrained(tmp_path / "bundled")
    monkeypatch.setitem(loading.BUNDLED_FAMILY, "shapes-deformable", tmp_path / "bundled")
    fm = detr_core.open_any("shapes-deformable")
    assert fm.source == "shapes-deformable" and fm.spec.model_type == "deformable_detr"
    assert "shapes-deformable" in loading.bundled_family_names()
