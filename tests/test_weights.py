"""load_model: official layouts from the reference key lists, our own format, errors that say what is wrong."""
import argparse
import hashlib
import http.server
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import detr_core
from detr_core.weights import loading as weights, zoo as download

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_state_dict(name: str) -> dict:
    """Random tensors with exactly the keys, shapes and dtypes of an official checkpoint's `model` dict."""
    path = REFERENCE / f"{name}.state_dict_keys.tsv"
    if not path.is_file():
        pytest.skip(f"reference key list {path} not available")
    gen = torch.Generator().manual_seed(0)
    state = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.split("x")]
        state[key] = torch.rand(dims, generator=gen, dtype=getattr(torch, dtype)) + 0.5
    return state


@pytest.mark.parametrize("name,backbone,layer3_blocks", [("detr-r50", "resnet50", 6), ("detr-r101", "resnet101", 23)])
def test_official_key_lists_load_strict(tmp_path, name, backbone, layer3_blocks):
    state = reference_state_dict(name)
    torch.save({"model": state}, tmp_path / "official.pth")
    with pytest.warns(UserWarning, match="dilation=True"):
        model = detr_core.load_model(tmp_path / "official.pth")
    assert model.config.backbone == backbone and not model.config.dilation
    assert len(model.backbone[0].body.layer3) == layer3_blocks
    assert (model.config.num_queries, model.config.num_classes, model.config.hidden_dim) == (100, 91, 256)
    assert model.class_names == list(detr_core.COCO_CLASS_NAMES)
    assert not model.training
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key in ("transformer.decoder.norm.weight", "backbone.0.body.layer3.5.bn2.running_var", "class_embed.bias"):
        assert torch.equal(loaded[key], state[key])


def _official_training_file(tmp_path, state, **args):
    namespace = argparse.Namespace(lr=1e-4, dataset_file="coco", masks=False, **args)
    ckpt = {"model": state, "args": namespace, "epoch": 3,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
            "lr_scheduler": {"step_size": 200, "last_epoch": 3}}
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    return tmp_path / "checkpoint.pth"


def test_official_training_file_with_args_gives_dc5(tmp_path):
    path = _official_training_file(tmp_path, reference_state_dict("detr-r50"), backbone="resnet50", dilation=True,
                                   hidden_dim=256, nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=2048,
                                   num_queries=100, pre_norm=False, position_embedding="sine")
    model = detr_core.load_model(path)
    assert model.config.dilation and model.stride == 16


def test_args_nheads_is_used(tmp_path):
    tiny = detr_core.build_model(detr_core.tiny_config(nheads=2))
    path = _official_training_file(tmp_path, tiny.state_dict(), nheads=2, dilation=False, position_embedding="v2")
    model = detr_core.load_model(path)
    assert model.config.nheads == 2 and model.config.position_embedding == "sine"


def test_dilation_override_for_a_bare_state_dict(tmp_path):
    torch.save(reference_state_dict("detr-r50"), tmp_path / "bare.pth")
    model = detr_core.load_model(tmp_path / "bare.pth", dilation=True)
    assert model.config.dilation


def test_round_trip_own_format(tmp_path, tiny_model, rgb_image):
    detr_core.save_model(tiny_model, tmp_path / "m.pth")
    raw = torch.load(tmp_path / "m.pth", weights_only=True)
    assert raw["config"] == tiny_model.config.to_dict() and raw["format"] == "detr-lens/1"
    assert raw["preprocess"] == tiny_model.preprocess.to_dict() and raw["class_names"] == tiny_model.class_names
    loaded = detr_core.load_model(tmp_path / "m.pth")
    assert loaded.config == tiny_model.config and loaded.preprocess == tiny_model.preprocess
    assert loaded.class_names == tiny_model.class_names
    a = detr_core.inspect_image(tiny_model, rgb_image)
    b = detr_core.inspect_image(loaded, rgb_image)
    assert (a.logits == b.logits).all() and (np.asarray(a.encoder_attention) == np.asarray(b.encoder_attention)).all()


@pytest.mark.parametrize("layout", ["own", "official", "bare"])
def test_multi_process_training_checkpoint_with_module_prefix_loads(tmp_path, tiny_model, layout):
    """DistributedDataParallel saves every key as "module.<key>"; the loader strips it in every layout."""
    expected = tiny_model.state_dict()
    state = {f"module.{k}": v for k, v in expected.items()}
    ckpt = {"own": {**detr_core.model_checkpoint(tiny_model), "model": state},
            "official": {"model": state}, "bare": state}[layout]
    torch.save(ckpt, tmp_path / "ddp.pth")
    loaded = detr_core.load_model(tmp_path / "ddp.pth", dilation=False, nheads=4).state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_a_prefix_on_only_some_keys_is_not_stripped(tmp_path, tiny_model):
    state = dict(tiny_model.state_dict())
    state["module.class_embed.bias"] = state.pop("class_embed.bias")
    torch.save(state, tmp_path / "mixed.pth")
    with pytest.raises(ValueError) as err:
        detr_core.load_model(tmp_path / "mixed.pth", dilation=False, nheads=4)
    assert "missing keys (1): class_embed.bias" in str(err.value)
    assert "unexpected keys (1): module.class_embed.bias" in str(err.value)


@pytest.mark.parametrize("changes", [
    dict(backbone="resnet34", num_queries=7, num_classes=3),
    dict(backbone_stages=3, frozen_bn=False, pre_norm=True, enc_layers=1, dec_layers=3, dim_feedforward=48),
    dict(position_embedding="learned", hidden_dim=16, nheads=2),
])
def test_the_architecture_is_read_from_the_weights(changes):
    """A bare state dict of a model built with these choices reads back as exactly these choices."""
    config = detr_core.tiny_config(**changes)
    state = detr_core.build_model(config).state_dict()
    expected = {field: getattr(config, field) for field in (
        "backbone", "backbone_stages", "frozen_bn", "hidden_dim", "enc_layers", "dec_layers", "dim_feedforward",
        "num_queries", "num_classes", "pre_norm", "position_embedding")}
    assert detr_core.infer_config(state) == expected


def test_min_and_max_size_overrides_change_preprocessing_only(tmp_path, tiny_model):
    detr_core.save_model(tiny_model, tmp_path / "m.pth")
    model = detr_core.load_model(tmp_path / "m.pth", min_size=96, max_size=150)
    assert (model.preprocess.min_size, model.preprocess.max_size) == (96, 150)
    assert model.preprocess.mean == tiny_model.preprocess.mean and model.config == tiny_model.config


def test_wrong_shape_names_key_and_shapes(tmp_path, tiny_model):
    state = tiny_model.state_dict()
    state["input_proj.weight"] = torch.zeros(32, 7, 1, 1)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"input_proj.weight: expected \[32, 512, 1, 1\], found \[32, 7, 1, 1\]"):
        detr_core.load_model(tmp_path / "bad.pth", dilation=False, nheads=4)


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny_model):
    state = tiny_model.state_dict()
    del state["transformer.decoder.norm.weight"]
    state["extra.head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        detr_core.load_model(tmp_path / "bad.pth", dilation=False, nheads=4)
    assert "missing keys (1): transformer.decoder.norm.weight" in str(err.value)
    assert "unexpected keys (1): extra.head.weight" in str(err.value)


class Sneaky:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Sneaky()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError) as err:
        detr_core.load_model(tmp_path / "evil.pth")
    message = str(err.value)
    assert message.startswith(f"checkpoint '{tmp_path / 'evil.pth'}' holds pickled Python objects that are not "
                              "tensors, and loading them could run arbitrary code (")
    assert message.endswith("). Re-save only the weights: torch.save({'model': model.state_dict()}, path)")
    # the one line of torch's error that names the refused global, without torch's longer advice
    reason = message.split("arbitrary code (", 1)[1].rsplit("). Re-save", 1)[0]
    assert "Unsupported global: GLOBAL print" in reason and "\n" not in reason
    assert "Please use" not in reason


def test_non_tensor_values_and_non_checkpoints(tmp_path):
    torch.save({"model": {"query_embed.weight": 3}}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="non-tensor"):
        detr_core.load_model(tmp_path / "odd.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="PyTorch checkpoint"):
        detr_core.load_model(tmp_path / "text.pth")
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not look like a DETR"):
        detr_core.load_model(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="neither a file, a Hugging Face folder or Hub id .*nor one of"):
        detr_core.load_model("detr-r18-does-not-exist")


def test_bundled_model_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(weights.BUNDLED, "shapes", tmp_path / "nothing.pth")
    with pytest.raises(RuntimeError, match="not bundled yet"):
        detr_core.load_model("shapes")


# --- downloads, always from 127.0.0.1 ---------------------------------------------------------------

@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _served_checkpoint(root, payload: bytes, good_hash=True):
    prefix = hashlib.sha256(payload).hexdigest()[:8] if good_hash else "00000000"
    entry = download.ZooEntry(f"detr-test-{prefix}.pth", False, "resnet18", 0.0)
    (root / entry.filename).write_bytes(payload)
    return entry


def test_download_checks_hash_and_caches(hub_dir, file_server, tmp_path, tiny_model):
    root, url = file_server
    detr_core.save_model(tiny_model, tmp_path / "m.pth")
    entry = _served_checkpoint(root, (tmp_path / "m.pth").read_bytes())
    path = download.fetch_checkpoint(entry, base_url=url, progress=False)
    assert path == hub_dir / entry.filename and path.read_bytes() == (tmp_path / "m.pth").read_bytes()
    (root / entry.filename).unlink()  # the server no longer has it: the cache must answer
    assert download.fetch_checkpoint(entry, base_url=url, progress=False) == path


def test_download_with_bad_hash_saves_nothing(hub_dir, file_server):
    root, url = file_server
    entry = _served_checkpoint(root, b"corrupted bytes", good_hash=False)
    with pytest.raises(RuntimeError, match="SHA-256"):
        download.fetch_checkpoint(entry, base_url=url, progress=False)
    assert not any(hub_dir.iterdir())


def test_no_network_error_names_url_and_cache_path(hub_dir):
    entry = detr_core.MODEL_ZOO["detr-r50"]
    with pytest.raises(RuntimeError) as err:
        download.fetch_checkpoint(entry, base_url="http://127.0.0.1:9/detr/", timeout=2, progress=False)
    assert "http://127.0.0.1:9/detr/detr-r50-e632da11.pth" in str(err.value)
    assert str(hub_dir / "detr-r50-e632da11.pth") in str(err.value)


def test_official_name_uses_cached_file_without_network(hub_dir):
    hub_dir.mkdir(parents=True)
    torch.save({"model": reference_state_dict("detr-r50")}, hub_dir / "detr-r50-e632da11.pth")
    model = detr_core.load_model("detr-r50")  # the conftest guard fails any real connection
    assert model.config.backbone == "resnet50" and model.class_names[1] == "person"


def test_official_urls():
    assert download.OFFICIAL_BASE_URL == "https://dl.fbaipublicfiles.com/detr/"
    assert {n: e.sha256_prefix for n, e in detr_core.MODEL_ZOO.items()} == {
        "detr-r50": "e632da11", "detr-r50-dc5": "f0fb7ef5", "detr-r101": "2c7b67e5", "detr-r101-dc5": "a2e86def"}


def test_bundled_shapes_model_finds_the_shapes_of_a_bundled_example():
    """The offline model loads by name with its class names and image size, and detects real shapes."""
    import json

    model = detr_core.load_model("shapes")
    assert model.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert model.preprocess.min_size == 256 and not model.training
    examples = Path(__file__).resolve().parents[1] / "webapp" / "examples" / "shapes_val"
    coco = json.loads((examples / "annotations.json").read_text())
    first = coco["images"][0]
    truth = {c["name"] for a in coco["annotations"] if a["image_id"] == first["id"]
             for c in coco["categories"] if c["id"] == a["category_id"]}
    found = {d.name for d in detr_core.inspect_image(model, examples / "images" / first["file_name"]).detections(0.5)}
    assert truth <= found


# --- the untrained fallback, limits of the error messages, reading and writing files -------------------

def test_untrained_models_are_seeded_and_say_so():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    with pytest.warns(UserWarning, match="^using an UNTRAINED model: detections and attention are random$"):
        tiny = detr_core.untrained_model(tiny=True)
    assert torch.rand(1) == before  # the caller's random stream is left alone
    assert tiny.config == detr_core.tiny_config() and not tiny.training
    assert (tiny.preprocess.min_size, tiny.preprocess.max_size) == (128, 213)
    with pytest.warns(UserWarning):
        again, other = detr_core.untrained_model(tiny=True), detr_core.untrained_model(seed=1, tiny=True)
    assert torch.equal(again.class_embed.weight, tiny.class_embed.weight)
    assert not torch.equal(other.class_embed.weight, tiny.class_embed.weight)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        full = detr_core.load_model("untrained")
    assert full.config == detr_core.DETRConfig(backbone="resnet18", hidden_dim=64, nheads=8, enc_layers=6,
                                               dec_layers=6, dim_feedforward=256, dropout=0.0)
    assert (full.preprocess.min_size, full.preprocess.max_size) == (512, 853) and not full.training
    assert full.class_names == list(detr_core.COCO_CLASS_NAMES)


def test_many_missing_keys_are_counted_and_the_first_ten_named(tmp_path, tiny_model):
    state = tiny_model.state_dict()
    gone = [k for k in state if k.startswith("transformer.encoder.layers.0.")][:12]
    assert len(gone) == 12
    for key in gone:
        del state[key]
    torch.save({**detr_core.model_checkpoint(tiny_model), "model": state}, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        detr_core.load_model(tmp_path / "bad.pth")
    assert str(err.value) == (f"checkpoint {tmp_path / 'bad.pth'} does not fit {tiny_model.config}: "
                              "missing keys (12): " + "; ".join(gone[:10]) + " (+2 more)")  # one line


def test_an_unknown_official_position_embedding_is_named(tmp_path):
    tiny = detr_core.build_model(detr_core.tiny_config())
    path = _official_training_file(tmp_path, tiny.state_dict(), nheads=4, position_embedding="v9")
    with pytest.raises(ValueError, match="position_embedding='v9'"):
        detr_core.load_model(path)


def test_official_args_of_the_wrong_type_are_refused(tmp_path, tiny_model):
    torch.save({"model": tiny_model.state_dict(), "args": {"nheads": 4}}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="^checkpoint 'args' is a dict, expected argparse.Namespace$"):
        detr_core.load_model(tmp_path / "odd.pth")


def test_a_bare_state_dict_without_dilation_warns_and_says_how(tmp_path, tiny_model):
    torch.save(tiny_model.state_dict(), tmp_path / "bare.pth")
    message = (f"{tmp_path / 'bare.pth'}: DC5 (dilation) cannot be seen in the weights alone; assuming "
               "dilation=False. Pass dilation=True for a DC5 checkpoint.")
    with pytest.warns(UserWarning) as caught:
        detr_core.load_model(tmp_path / "bare.pth", nheads=4)
    assert [str(w.message) for w in caught] == [message]


def test_legacy_torch_files_load_and_folders_do_not(tmp_path, tiny_model):
    torch.save(detr_core.model_checkpoint(tiny_model), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert detr_core.load_model(tmp_path / "legacy.pth").config == tiny_model.config
    with pytest.raises(ValueError, match=r"^checkpoint '.*' does not exist \(or is not a file\)$"):
        detr_core.read_checkpoint(tmp_path)
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "legacy.pth").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"^could not read '.*truncated.pth' as a PyTorch checkpoint \(.*\); is it a"):
        detr_core.read_checkpoint(tmp_path / "truncated.pth")


def test_an_optimised_model_cannot_be_saved(tiny_model):
    fast = detr_core.optimize_for_inference(tiny_model)
    with pytest.raises(ValueError, match=r"^this model was rewritten by optimize_for_inference \(batch norms folded\) "
                                         "and cannot be saved in the official layout; save the model you optimised "
                                         "instead$"):
        detr_core.model_checkpoint(fast)


def test_saving_writes_a_temporary_beside_the_file_then_renames_it(tmp_path, monkeypatch):
    """Beside it, so the rename stays on one file system and is atomic; missing folders are made."""
    renames, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace",
                        lambda src, dst: (renames.append((Path(src), Path(dst))), real_replace(src, dst)))
    path = tmp_path / "a" / "b" / "m.pth"
    detr_core.atomic_save({"w": torch.ones(2)}, path)
    (tmp_file, target), = renames
    assert target == path and tmp_file.parent == path.parent
    assert tmp_file.name.startswith("m.pth.") and tmp_file.name.endswith(".tmp")
    assert [p.name for p in path.parent.iterdir()] == ["m.pth"]


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "m.pth"
    detr_core.atomic_save({"w": torch.ones(2)}, path)
    with pytest.raises(Exception):
        detr_core.atomic_save({"w": lambda: 0}, path)  # a lambda cannot be pickled
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["m.pth"]


def test_the_untrained_warning_points_at_the_callers_line():
    """stacklevel=2: the warning names the user's code that asked for random weights, not detr_core."""
    with pytest.warns(UserWarning, match="UNTRAINED") as caught:
        detr_core.untrained_model(tiny=True)
    assert [Path(w.filename) for w in caught] == [Path(__file__)]


def test_hf_format_writes_a_folder_that_loads_back_with_the_same_outputs(tmp_path, tiny_model):
    detr_core.save_model(tiny_model, tmp_path / "hf", format="hf")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    again = detr_core.load_model(tmp_path / "hf")
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        a, b = tiny_model(x), again(x)
    assert (a["pred_logits"] - b["pred_logits"]).abs().max() < 1e-5  # the same weights, reshaped and back
    assert (a["pred_boxes"] - b["pred_boxes"]).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["HF", "onnx"])
def test_an_unknown_save_format_is_named_with_the_choices(tmp_path, tiny_model, name):
    with pytest.raises(ValueError) as err:
        detr_core.save_model(tiny_model, tmp_path / "m", format=name)
    assert str(err.value) == f"format='{name}': expected one of ('detr-lens', 'hf')"
    assert not (tmp_path / "m").exists()


def test_a_checkpoint_that_is_not_a_dict_is_named_with_its_type(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")  # a plain list of tensors: safe to read, not a model
    with pytest.raises(ValueError) as err:
        detr_core.load_model(tmp_path / "list.pth")
    assert str(err.value) == f"{tmp_path / 'list.pth'}: expected a dict of tensors or {{'model': state_dict}}, found list"


@pytest.mark.parametrize("layout", ["own", "official", "bare"])
def test_non_tensor_values_are_named_five_at_most_with_the_file(tmp_path, tiny_model, layout):
    state = {**tiny_model.state_dict(), **{f"note{i}": i for i in range(7)}}  # 7 plain ints among the tensors
    ckpt = {"own": {**detr_core.model_checkpoint(tiny_model), "model": state},
            "official": {"model": state}, "bare": state}[layout]
    path = tmp_path / f"{layout}.pth"
    torch.save(ckpt, path)
    with pytest.raises(ValueError) as err:
        detr_core.load_model(path, dilation=False)
    assert str(err.value) == (f"{path}: the state dict holds non-tensor values under "
                              "['note0', 'note1', 'note2', 'note3', 'note4']; expected tensors only")


def test_an_own_checkpoint_without_preprocessing_gets_the_default(tmp_path, tiny_model):
    ckpt = detr_core.model_checkpoint(tiny_model)
    del ckpt["preprocess"]
    torch.save(ckpt, tmp_path / "m.pth")
    assert detr_core.load_model(tmp_path / "m.pth").preprocess == detr_core.PreprocessConfig()


def test_no_dc5_warning_when_the_args_or_the_caller_say_which(tmp_path, tiny_model):
    official = _official_training_file(tmp_path, tiny_model.state_dict(), nheads=4, dilation=False)
    torch.save(tiny_model.state_dict(), tmp_path / "bare.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        detr_core.load_model(official)  # args present, no override
        detr_core.load_model(tmp_path / "bare.pth", dilation=False, nheads=4)  # no args, the caller says


def test_the_dc5_warning_points_at_the_callers_line(tmp_path, tiny_model):
    torch.save(tiny_model.state_dict(), tmp_path / "bare.pth")
    with pytest.warns(UserWarning, match="DC5") as caught:
        detr_core.load_model(tmp_path / "bare.pth", nheads=4)
    assert [Path(w.filename) for w in caught] == [Path(__file__)]


def test_unreadable_sources_are_named_in_the_message(tmp_path):
    from detr_core.weights.checkpoint_io import read_checkpoint

    with pytest.raises(ValueError) as err:
        read_checkpoint(tmp_path / "nope.pth")
    assert str(err.value) == f"checkpoint '{tmp_path / 'nope.pth'}' does not exist (or is not a file)"
    (tmp_path / "notes.pth").write_text("hello")
    with pytest.raises(ValueError) as err:
        detr_core.load_model(tmp_path / "notes.pth")
    assert str(err.value) == (f"'{tmp_path / 'notes.pth'}' is not a PyTorch checkpoint "
                              "(neither a torch.save zip archive nor a legacy pickle)")
    with pytest.raises(ValueError) as err:
        detr_core.load_model("no-such-model.pth")
    assert str(err.value) == (
        "model source 'no-such-model.pth' is neither a file, a Hugging Face folder or Hub id (owner/name), nor one "
        "of ['detr-r101', 'detr-r101-dc5', 'detr-r50', 'detr-r50-dc5', 'shapes', 'untrained']")


def test_bundled_shapes_model_invents_nothing_on_the_portrait_example():
    """The first example on the page is a photo with no shape in it: the offline model must answer "no object"."""
    model = detr_core.load_model("shapes")
    portrait = Path(__file__).resolve().parents[1] / "webapp" / "examples" / "grace_hopper.jpg"
    ins = detr_core.inspect_image(model, portrait)
    assert ins.detections(0.7) == []  # the app's default threshold
