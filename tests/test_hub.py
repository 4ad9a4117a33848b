"""Hub ids: a cached model opens with no network at all, a download lands in huggingface_hub's cache once, and a
dead or switched-off Hub gives within seconds an error naming the repo, the cache and how to fill it.
The Hub is a stand-in on 127.0.0.1 (tests/fake_hub.py); caches are written by hand in the real layout."""
from __future__ import annotations

import socket
import time

import pytest
import torch

from huggingface_hub import constants

import detr_core
from detr_core.weights.hub import HubRef, fetch_model, parse_hub_ref
from fake_hub import COMMIT, FakeHub, folder_files, write_cache
from hf_models import build

pytest.importorskip("transformers")
pytest.importorskip("timm")

REPO = "someone/detr-finetuned"


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    build("detr", backbone="resnet18", id2label={0: "cat", 1: "dog"}).save_pretrained(folder)
    return folder


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """A fresh Hub cache and a Hub endpoint on a closed loopback port, set the way users set them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as read when huggingface_hub was imported
    return cache


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("text,expected", [
    ("facebook/detr-resnet-50", HubRef("facebook/detr-resnet-50", "main")),
    ("facebook/detr-resnet-50@no_timm", HubRef("facebook/detr-resnet-50", "no_timm")),
    ("me/my.model-v2@refs/pr/3", HubRef("me/my.model-v2", "refs/pr/3")),
    ("detr-r50", None), ("/abs/folder", None), ("a/b/c", None), ("a/", None),
])
def test_parse_hub_ref(text, expected):
    assert parse_hub_ref(text) == expected


def test_cached_model_opens_with_no_network_access(hf_folder, hub_env, monkeypatch):
    write_cache(hub_env, REPO, folder_files(hf_folder))
    write_cache(hub_env, REPO, folder_files(hf_folder), revision="no_timm", commit="f" * 40)

    def refuse(sock, address):
        raise AssertionError(f"a cached model must open without connecting anywhere, tried {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    direct = detr_core.load_model(hf_folder)
    for source in (REPO, f"{REPO}@no_timm", f"{REPO}@{COMMIT}"):
        model = detr_core.load_model(source)
        assert same_weights(model, direct) and model.class_names == ["cat", "dog"]
        assert model.hf_origin.location == source.removesuffix("@main")


def test_offline_mode_uses_the_cache_and_says_how_to_fill_it(hf_folder, hub_env, monkeypatch):
    write_cache(hub_env, REPO, folder_files(hf_folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert detr_core.load_model(REPO).class_names == ["cat", "dog"]
    with pytest.raises(RuntimeError) as err:
        detr_core.load_model("someone/not-cached@v2")
    message = str(err.value)
    for part in ("'someone/not-cached@v2'", str(hub_env), "HF_HUB_OFFLINE",
                 "hf download someone/not-cached --revision v2", "models--someone--not-cached"):
        assert part in message, part


def test_unreachable_hub_fails_within_seconds(hub_env):
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"'someone/absent' is not in the Hub cache .* did not answer"):
        detr_core.load_model("someone/absent")
    assert time.monotonic() - start < 5.0  # huggingface_hub alone retries a refused connection for ~25 s


def test_silent_hub_fails_after_the_probe_timeout(tmp_path):
    """A server that accepts connections and never answers: the case of a network that drops packets."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="did not answer within 1 s"):
            fetch_model(HubRef(REPO), cache_dir=tmp_path, endpoint=url, probe_timeout=1.0)
        assert time.monotonic() - start < 3.0


def test_download_once_into_the_cache_then_open_offline(hf_folder, hub_env, monkeypatch):
    files = folder_files(hf_folder)
    with FakeHub({REPO: files}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        model = detr_core.load_model(REPO)
        asked = len(hub.requests)
    assert same_weights(model, detr_core.load_model(hf_folder))
    snapshot = hub_env / "models--someone--detr-finetuned" / "snapshots" / COMMIT
    assert (snapshot / "config.json").read_bytes() == files["config.json"]
    assert (snapshot / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert asked >= 2  # config and weights came from the server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server is gone too
    assert same_weights(detr_core.load_model(REPO), model)


def test_pytorch_model_bin_repo_and_missing_preprocessor(hf_folder, hub_env, monkeypatch, tmp_path):
    from safetensors.torch import load_file

    torch.save(load_file(hf_folder / "model.safetensors"), tmp_path / "pytorch_model.bin")
    files = {"config.json": (hf_folder / "config.json").read_bytes(),
             "pytorch_model.bin": (tmp_path / "pytorch_model.bin").read_bytes()}
    with FakeHub({REPO: files}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        model = detr_core.load_model(REPO)
    assert same_weights(model, detr_core.load_model(hf_folder))
    assert model.preprocess == detr_core.PreprocessConfig()


@pytest.mark.parametrize("repos,source,message", [
    ({}, "someone/typo", "'someone/typo' does not exist"),
    ({REPO: {"README.md": b"# notes"}}, REPO, "has no config.json"),
])
def test_hub_answers_that_nothing_is_there(hub_env, monkeypatch, repos, source, message):
    with FakeHub(repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(ValueError, match=message):
            detr_core.load_model(source)
