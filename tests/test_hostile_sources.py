"""Hostile model sources are refused before anything is built, with a ValueError naming the field: sizes beyond
any real model in a Hugging Face DETR or DETR-family config, configs the weights file does not fit (read from its
header), JSON that is not an object, preprocessing no model uses, names no path can have, Hub revisions that are
not git revisions, and COCO sets whose images lie outside their folder. The folders are written by the tests from
tiny models. (Memory and time of the refusals: test_hostile_memory.py; downloads: test_no_download.py.)"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import detr_core
from detr_core.family import load_family_model
from detr_core.teaching.ground_truth import CocoSet
from detr_core.weights.hub import HubRef, parse_hub_ref
from fake_hub import FakeHub
from hf_models import build

pytest.importorskip("transformers")
pytest.importorskip("timm")


@pytest.fixture(scope="module")
def detr_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detr")
    build("detr", backbone="resnet18").save_pretrained(folder)  # d_model 32, 10 queries, 2+2 layers
    return folder


@pytest.fixture(scope="module")
def rt_folder(tmp_path_factory):
    from family_models import build_tiny

    folder = tmp_path_factory.mktemp("rt")
    fm = build_tiny("rt_detr")
    fm.model.save_pretrained(folder)
    fm.processor.save_pretrained(folder)
    return folder


def edited(folder, tmp_path, name="config.json", **changes):
    """A copy of `folder` whose JSON file `name` has `changes` (nested keys as "a.b") applied."""
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    data = json.loads((copy / name).read_text())
    for key, value in changes.items():
        *parents, last = key.split(".")
        target = data
        for parent in parents:
            target = target[parent]
        target[last] = value
    (copy / name).write_text(json.dumps(data))
    return copy


def refused(load, source, match: str):
    with pytest.raises(ValueError, match=match) as err:
        load(source)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("field,value,shown", [
    ("d_model", 16384, "d_model=16384"), ("num_queries", 30_000_000, "num_queries=30000000"),
    ("decoder_layers", 100_000, "decoder_layers=100000"), ("encoder_ffn_dim", 10**7, "encoder_ffn_dim=10000000"),
    ("num_labels", 10**8, "num_labels=100000000"), ("encoder_layers", -3, "encoder_layers=-3"),
])
def test_detr_sizes_beyond_any_real_model_are_refused_by_name(detr_folder, tmp_path, field, value, shown):
    folder = edited(detr_folder, tmp_path, **{field: value})
    message = refused(detr_core.load_model, folder, f"{shown} is beyond any real model")
    assert str(folder / "config.json") in message


def test_detr_config_within_bounds_that_the_weights_do_not_fit_is_refused_before_building(
        detr_folder, tmp_path, monkeypatch):
    """5,000 queries and 1,024 channels are sizes a model may have, but not these weights: the header says so
    before a single parameter is allocated (the real build_model is never called)."""
    from detr_core.weights import loading

    real_build = loading.build_model
    built_on = []

    def spy(*args, **kwargs):
        built_on.append(torch.empty(0).device.type)  # the default device the model would be built on
        return real_build(*args, **kwargs)

    monkeypatch.setattr(loading, "build_model", spy)
    folder = edited(detr_folder, tmp_path, num_queries=5000, d_model=1024)
    message = refused(detr_core.load_model, folder, "does not fit")
    assert "shape mismatches" in message and "expected [1024], found [32]" in message
    assert built_on == ["meta"]


def test_detr_lens_checkpoint_with_a_hostile_config_is_refused_before_building(tmp_path, module_tiny_model):
    ckpt = detr_core.model_checkpoint(module_tiny_model)
    ckpt["config"]["dec_layers"] = 100_000
    torch.save(ckpt, tmp_path / "hostile.pth")
    refused(detr_core.load_model, tmp_path / "hostile.pth", "dec_layers=100000 is beyond any real model")


def test_pytorch_model_bin_shapes_are_checked_from_the_mapped_file(detr_folder, tmp_path):
    from safetensors.torch import load_file

    folder = edited(detr_folder, tmp_path, num_queries=300)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    refused(detr_core.load_model, folder, r"pytorch_model.bin .*expected \[300, 32\], found \[10, 32\]")


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_json_that_is_not_an_object_is_a_clear_error(detr_folder, rt_folder, tmp_path, name):
    for folder, kind in ((detr_folder, "detr"), (rt_folder, "rt")):
        copy = tmp_path / kind
        shutil.copytree(folder, copy)
        if not (copy / name).exists() and name == "preprocessor_config.json":
            continue  # the tiny DETR folder has none
        (copy / name).write_text("[1, 2, 3]")
        refused(detr_core.open_any, copy, f"{name}' holds a JSON list, expected an object")


def test_detr_preprocessing_no_model_uses_is_refused(detr_folder, tmp_path):
    def with_preprocessor(pp):
        folder = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
        shutil.copytree(detr_folder, folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(pp))
        return folder

    refused(detr_core.load_model, with_preprocessor({"size": {"shortest_edge": 10**6, "longest_edge": 10**6}}),
            r"size.shortest_edge=1000000: expected a size in pixels from 1 to 4096")
    refused(detr_core.load_model, with_preprocessor({"size": {"max_height": 0, "max_width": 0}}),
            r"size.max_height=0")
    refused(detr_core.load_model, with_preprocessor({"image_std": [0.2, 0.0, 0.2]}),
            r"image_std=\[0.2, 0.0, 0.2\]; every channel's std must be positive")
    refused(detr_core.load_model, with_preprocessor({"image_std": -1}), "image_std=-1")
    refused(detr_core.load_model, with_preprocessor({"image_mean": [0.5, 0.5]}),
            r"image_mean=\[0.5, 0.5\]; expected one number per RGB channel")
    with pytest.raises(ValueError, match="std=.*must be positive"):
        detr_core.PreprocessConfig(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="max_size=5000 px is beyond"):
        detr_core.PreprocessConfig(800, 5000)


@pytest.mark.parametrize("changes,shown", [
    ({"num_queries": 100_000_000}, "num_queries=100000000 is beyond any real model"),
    ({"decoder_layers": 100_000}, "decoder_layers=100000 is beyond"),
    ({"backbone_config.hidden_sizes": [8, 16, 32, 10**6]}, "backbone_config.hidden_sizes=1000000 is beyond"),
    ({"decoder_n_points": 5000}, "decoder_n_points=5000 is beyond"),
    ({"id2label": {str(i): "x" for i in range(30_000)}}, "id2label holds 30000 labels"),
])
def test_family_sizes_beyond_any_real_model_are_refused_at_load(rt_folder, tmp_path, changes, shown):
    folder = edited(rt_folder, tmp_path, **changes)
    refused(load_family_model, folder, shown)


def test_family_config_larger_than_its_weights_is_refused_before_building(rt_folder, tmp_path):
    """6 decoder layers of d_model 32 fit every bound, but the file holds the weights of 2: the parameter count
    of the meta-device model says so (transformers would otherwise initialise the rest at random)."""
    from safetensors.torch import load_file

    folder = edited(rt_folder, tmp_path, decoder_layers=6, decoder_ffn_dim=8192)
    message = refused(load_family_model, folder, "the config describes .* parameters but the weights file holds")
    values = sum(t.numel() for t in load_file(folder / "model.safetensors").values())
    assert f"holds only {values:,} values" in message


def test_family_preprocessing_no_model_uses_is_refused(rt_folder, tmp_path):
    folder = edited(rt_folder, tmp_path, "preprocessor_config.json", size={"height": 10**6, "width": 640})
    refused(load_family_model, folder, r"preprocessor_config.json: size.height=1000000")
    shutil.rmtree(folder)
    folder = edited(rt_folder, tmp_path, "preprocessor_config.json", do_normalize=True, image_std=[0, 0, 0])
    refused(load_family_model, folder, "every channel's std must be positive")


@pytest.mark.parametrize("source,match", [
    ("~nosuchuser/x", "there is no user 'nosuchuser' on this machine"),
    ("x" * 5000, "model source of 5,000 characters"),
    ("./" + "b" * 300, "model source .* cannot be a path here \\(File name too long\\)"),
    ("bad\0name", "holds a NUL character"),
])
def test_names_no_path_can_have_are_clear_errors(source, match):
    from webapp.model_sources import SourcePolicy
    from webapp.models import check_source

    for load in (detr_core.load_model, detr_core.open_any, SourcePolicy(()).check, check_source):
        refused(load, source, match)


@pytest.mark.parametrize("source,match", [
    ("owner/name@../../../etc", r"revision '../../../etc' of owner/name is not a valid git revision"),
    ("owner/name@refs/../../x", "not a valid git revision"),
    ("owner/name@.hidden", "not a valid git revision"),
    ("owner/name@main.lock", "not a valid git revision"),
    ("owner--x/name", "is not a valid Hugging Face repo id"),
])
def test_invalid_revisions_and_repo_ids_are_refused_before_any_request(source, match, tmp_path, monkeypatch):
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
        refused(detr_core.open_any, source, match)
        refused(parse_hub_ref, source, match)
    assert hub.requests == []


def test_valid_revisions_still_parse():
    assert parse_hub_ref("me/m@refs/pr/3") == HubRef("me/m", "refs/pr/3")
    assert parse_hub_ref("me/m@v1.0") == HubRef("me/m", "v1.0")
    assert parse_hub_ref("me/m@" + "0123456789abcdef" * 2 + "01234567").revision.startswith("0123")


def test_coco_set_images_outside_the_set_folder_are_refused(tmp_path):
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"not for the page")
    (tmp_path / "set" / "images" / "link.png").symlink_to(tmp_path / "secret.png")

    def coco_with(file_name):
        data = {"images": [{"id": 1, "file_name": file_name}], "annotations": [], "categories": []}
        (tmp_path / "set" / "annotations.json").write_text(json.dumps(data))
        return tmp_path / "set"

    for name in ("../../secret.png", str(tmp_path / "secret.png"), "link.png", "a/../../x.png"):
        with pytest.raises(ValueError, match="leads outside the set's image folder"):
            CocoSet(coco_with(name))
    with pytest.raises(ValueError, match="needs a file_name"):
        CocoSet(coco_with(None))
    assert CocoSet(coco_with("sub/ok.png")).files() == [tmp_path / "set" / "images" / "sub" / "ok.png"]


def test_matching_view_refuses_such_a_set_with_a_message(tmp_path):
    import gradio as gr

    from webapp import teach_matching

    (tmp_path / "images").mkdir()
    data = {"images": [{"id": 1, "file_name": "../../../etc/hostname"}], "annotations": [], "categories": []}
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(gr.Error, match="leads outside the set's image folder"):
        teach_matching.list_images_handler((tmp_path,))(str(tmp_path))
