"""load_model: official layouts from the reference key lists, our own format, errors that say what is wrong."""
import argparse
import hashlib
import http.server
import threading
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
    assert raw["config"] == tiny_model.config.to_dict()
    loaded = detr_core.load_model(tmp_path / "m.pth")
    assert loaded.config == tiny_model.config and loaded.preprocess == tiny_model.preprocess
    assert loaded.class_names == tiny_model.class_names
    a = detr_core.inspect_image(tiny_model, rgb_image)
    b = detr_core.inspect_image(loaded, rgb_image)
    assert (a.logits == b.logits).all() and (np.asarray(a.encoder_attention) == np.asarray(b.encoder_attention)).all()


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
    with pytest.raises(ValueError, match="pickled Python objects"):
        detr_core.load_model(tmp_path / "evil.pth")


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
