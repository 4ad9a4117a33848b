"""Bad Hugging Face input: each case is a one-line ValueError naming the file and what is wrong, and nothing
half-loaded comes back. (A Hub id that does not exist: tests/test_hub.py.)"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import detr_core
from hf_models import build

pytest.importorskip("transformers")
pytest.importorskip("timm")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    build("detr", backbone="resnet18").save_pretrained(folder)
    return folder


@pytest.fixture
def copy(good, tmp_path):
    shutil.copytree(good, tmp_path / "m")
    return tmp_path / "m"


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def one_line_error(source, match: str, kind=ValueError) -> str:
    with pytest.raises(kind, match=match) as err:
        detr_core.load_model(source)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_folder_without_config_json(copy):
    (copy / "config.json").unlink()
    one_line_error(copy, f"folder '{copy}' has no config.json")


def test_safetensors_file_without_config_beside_it(copy, tmp_path):
    shutil.move(copy / "model.safetensors", tmp_path / "lonely.safetensors")
    one_line_error(tmp_path / "lonely.safetensors", "no config.json beside it")


def test_folder_without_weights(copy):
    (copy / "model.safetensors").unlink()
    one_line_error(copy, "has config.json but no weights")


@pytest.mark.parametrize("changes,match", [
    (dict(model_type="yolos"), "config.json: model_type 'yolos' is not a DETR"),
    (dict(architectures=["DetrModel"]), "architectures 'DetrModel' has no detection head"),
    (dict(backbone_config={"model_type": "swin"}), "backbone_config.model_type 'swin'"),
    (dict(backbone_config={"model_type": "timm_backbone", "backbone": "convnext_tiny"}),
     "backbone 'convnext_tiny'"),
    (dict(backbone_config={"model_type": "timm_backbone", "backbone": "resnet50d"}), "backbone 'resnet50d'"),
    (dict(backbone_config={"model_type": "resnet", "depths": [3, 4, 6, 3], "layer_type": "bottleneck",
                           "downsample_in_bottleneck": True}), "downsample_in_bottleneck=True"),
    (dict(activation_function="gelu"), "activation_function='gelu'"),
    (dict(decoder_attention_heads=8), "encoder_attention_heads=4 and decoder_attention_heads=8 differ"),
    (dict(position_embedding_type="rope"), "position_embedding_type='rope'"),
    (dict(id2label={"zero": "cat"}), "id2label must map integer ids"),
])
def test_config_this_project_cannot_represent(copy, changes, match):
    edit_config(copy, **changes)
    message = one_line_error(copy, match)
    assert str(copy / "config.json") in message


def test_detr_weights_under_a_family_config_are_named_not_a_transformers_report(copy):
    edit_config(copy, model_type="deformable_detr")  # the front door opens it as the family model it claims
    with pytest.raises(ValueError) as err:
        detr_core.load_model(copy)
    assert str(err.value).startswith(f"{copy}: its weights do not fit the ") and "deformable_detr" in str(err.value)


def test_tensors_that_do_not_fit_the_config(copy):
    edit_config(copy, id2label={"0": "a", "1": "b", "2": "c"})  # 3 classes; the weights have 2
    message = one_line_error(copy, "does not fit")
    assert str(copy / "model.safetensors") in message and str(copy / "config.json") in message
    assert "shape mismatches (2): class_embed.weight: expected [4, 32], found [3, 32]" in message
    edit_config(copy, d_model=64, id2label=None)
    assert "input_proj.weight: expected [64, 512, 1, 1], found [32, 512, 1, 1]" in one_line_error(copy, "fit")


def test_tensors_with_no_place_in_a_detr(copy):
    from safetensors.torch import load_file, save_file

    state = load_file(copy / "model.safetensors")
    state["model.extra_head.weight"] = torch.zeros(2)
    save_file(state, copy / "model.safetensors")
    one_line_error(copy, r"model.safetensors'?: tensors with no place in a DETR: \['model.extra_head.weight'\]")


def test_truncated_safetensors(copy):
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[: len(data) // 2])
    one_line_error(copy, "model.safetensors' is not a complete safetensors file .*truncated download")


class Sneaky:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_pickle_with_code_in_pytorch_model_bin(copy):
    (copy / "model.safetensors").unlink()
    torch.save({"model.query_position_embeddings.weight": torch.zeros(10, 32), "x": Sneaky()},
               copy / "pytorch_model.bin")
    one_line_error(copy, "pytorch_model.bin' holds pickled Python objects")


def test_invalid_json(copy):
    (copy / "config.json").write_text("{not json")
    one_line_error(copy, "config.json' is not a readable JSON file")


def test_preprocessor_config_this_project_cannot_represent(copy):
    (copy / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 512, "width": 512}}))
    one_line_error(copy, r"preprocessor_config.json: size=\{'height': 512, 'width': 512\}")
    (copy / "preprocessor_config.json").write_text(json.dumps({"do_rescale": False}))
    one_line_error(copy, "do_rescale=False")


# --- reading only the shapes, and folders of checkpoints ----------------------------------------------------------

def test_shapes_only_gives_meta_tensors_of_the_files_shapes_for_both_formats(good, tmp_path):
    from detr_core.weights.hf_model import hf_files, read_hf_model, read_weights

    full = read_weights(good / "model.safetensors")
    torch.save(full, tmp_path / "pytorch_model.bin")
    for path in (good / "model.safetensors", tmp_path / "pytorch_model.bin"):
        shapes = read_weights(path, shapes_only=True)
        assert sorted(shapes) == sorted(full)
        assert all(t.device.type == "meta" and t.shape == full[k].shape for k, t in shapes.items()), path
        values = read_weights(path)
        assert all(v.device.type == "cpu" and torch.equal(v, full[k]) for k, v in values.items()), path
    state = read_hf_model(hf_files(good), shapes_only=True)[0]
    assert state and all(t.device.type == "meta" for t in state.values())
    assert all(t.device.type == "cpu" for t in read_hf_model(hf_files(good))[0].values())


def test_a_truncated_safetensors_file_says_to_fetch_it_again(copy):
    from detr_core.weights.hf_model import read_weights

    path = copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    for shapes_only in (False, True):
        with pytest.raises(ValueError) as err:
            read_weights(path, shapes_only=shapes_only)
        message = str(err.value)
        assert message.startswith(f"{str(path)!r} is not a complete safetensors file (")
        assert message.endswith("); a truncated download? Fetch it again")


def test_a_segmentation_architecture_is_said_to_set_its_mask_head_aside(copy):
    """DetrForSegmentation says so in config.json even when its weights were saved without the mask head."""
    from detr_core.weights.hf_model import hf_files, read_hf_model

    assert read_hf_model(hf_files(copy))[4].set_aside == ()
    edit_config(copy, architectures=["DetrForSegmentation"])
    origin = read_hf_model(hf_files(copy))[4]
    assert origin.set_aside == ("mask head",) and origin.mask_head_omitted


@pytest.mark.parametrize("names, first, listed", [
    (["a.pth"], "a.pth", "checkpoint file a.pth"),  # one file: "file"
    (["z.pth", "last.pth", "a.pth"], "last.pth", "checkpoint files a.pth, last.pth, z.pth"),
    (["last.pth", "best.pth"], "best.pth", "checkpoint files best.pth, last.pth"),
    (["b.pth", "a.ckpt", "c.pt", "d.safetensors"], "a.ckpt", "checkpoint files a.ckpt, b.pth, c.pt"),  # sorted
    ([f"e{i}.pth" for i in range(7)], "e0.pth", "checkpoint files e0.pth, e1.pth, e2.pth, e3.pth, e4.pth and 2 more"),
    ([f"e{i}.pth" for i in range(5)], "e0.pth", "checkpoint files e0.pth, e1.pth, e2.pth, e3.pth, e4.pth"),
])
def test_a_folder_of_checkpoints_names_them_and_the_one_to_open(tmp_path, names, first, listed):
    from detr_core.weights.hf_model import _checkpoints_found

    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "log.jsonl").write_text("{}")  # not a checkpoint
    (tmp_path / "sub.pth").mkdir()  # a folder, whatever its name
    assert _checkpoints_found(tmp_path) == (f"; it holds the {listed}: open one of them, e.g."
                                            f" load_model({str(tmp_path / first)!r})")


def test_a_folder_without_checkpoints_adds_nothing(tmp_path):
    from detr_core.weights.hf_model import _checkpoints_found

    (tmp_path / "notes.txt").write_text("")
    assert _checkpoints_found(tmp_path) == ""
