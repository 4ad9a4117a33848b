"""The model box: which sources a page may open (local paths under the allowed folders only; no Hub downloads on a
page served beyond loopback unless allowed), tested as rules and through the Gradio API against a 127.0.0.1
server; Hugging Face models open from the page, and a panoptic checkpoint says its mask head is not shown."""
from __future__ import annotations

import socket

import pytest

from fake_hub import folder_files, write_cache
from hf_models import build
from webapp import cli, page
from webapp.bundled import EXAMPLES_DIR
from webapp.model_sources import HUB_FLAG, SourcePolicy, menu_choices, served_beyond_loopback, switch_handler
from webapp.models import TINY, ModelCache

pytest.importorskip("transformers")
pytest.importorskip("timm")
gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """(allowed root holding a DETR and a panoptic checkpoint, a folder outside it holding a DETR)."""
    root, outside = tmp_path_factory.mktemp("allowed"), tmp_path_factory.mktemp("outside")
    detr = build("detr", backbone="resnet18", id2label={0: "cat", 1: "dog"})
    detr.save_pretrained(root / "detr-hf")
    detr.save_pretrained(outside / "detr-hf")
    build("segmentation", backbone="resnet18", encoder_attention_heads=8,
          decoder_attention_heads=8).save_pretrained(root / "panoptic-hf")
    return root, outside


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "hub-cache"


@pytest.mark.parametrize("host,share,beyond", [("127.0.0.1", False, False), ("localhost", False, False),
                                               ("0.0.0.0", False, True), ("192.168.1.5", False, True),
                                               ("127.0.0.1", True, True)])
def test_served_beyond_loopback(host, share, beyond):
    assert served_beyond_loopback(host, share) is beyond


def test_policy_local_paths(roots, tmp_path):
    root, outside = roots
    policy = SourcePolicy((root,), hub_downloads=True)
    assert policy.check(f" {root / 'detr-hf'} ") == str(root / "detr-hf")
    for name in ("auto", "detr-r50", "shapes", "untrained", TINY):
        assert policy.check(name) == name
    with pytest.raises(ValueError, match="outside the folders this app may read models from.*--data-root"):
        policy.check(str(outside / "detr-hf"))
    (root / "link").symlink_to(outside / "detr-hf")  # inside by name, outside in fact
    with pytest.raises(ValueError, match="outside the folders"):
        policy.check(str(root / "link"))
    with pytest.raises(ValueError, match="does not exist"):
        policy.check(str(root / "missing.pth"))
    assert SourcePolicy((root,), preapproved=frozenset({str(outside)})).check(str(outside)) == str(outside)


def test_policy_hub_ids(roots, empty_hub_cache):
    closed = SourcePolicy((roots[0],), hub_downloads=False)
    with pytest.raises(ValueError, match=f"not in this server's Hugging Face cache.*{HUB_FLAG}"):
        closed.check("someone/detr-finetuned")
    write_cache(empty_hub_cache, "someone/detr-finetuned", folder_files(roots[0] / "detr-hf"))
    assert closed.check("someone/detr-finetuned") == "someone/detr-finetuned"  # cached: no download needed
    assert SourcePolicy((roots[0],), hub_downloads=True).check("someone/other") == "someone/other"


def test_menu_lists_official_names_and_hugging_face_ids():
    menu = menu_choices("auto")
    assert {"auto", "detr-r50", "shapes", "facebook/detr-resnet-50", "facebook/detr-resnet-101-dc5",
            "microsoft/table-transformer-detection"} <= set(menu)
    assert menu_choices("/models/mine")[-1] == "/models/mine"


def test_app_flag_parses():
    assert cli.parse_args([HUB_FLAG]).allow_hub_download and not cli.parse_args([]).allow_hub_download


@pytest.fixture(scope="module")
def client(roots):
    """The page as served beyond loopback without the flag (hub_downloads=False), listening on 127.0.0.1."""
    models = ModelCache(optimize=False)
    models.get(TINY)
    demo = page.build_demo(models, TINY, data_roots=(roots[0],), hub_downloads=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False)
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False), models
    finally:
        demo.close()


def _run(api, *args, api_name):
    """(outputs, toast messages) of one call: a refusal is a toast and the page stays as it was."""
    job = api.submit(*args, api_name=api_name)
    outputs = job.result()
    logs, updates = [], job.communicator.updates
    while not updates.empty():
        update = updates.get_nowait()
        if getattr(update, "log", None):
            logs.append(update.log[0])
    return outputs, " ".join(logs)


def test_api_refuses_a_path_outside_the_allowed_folders(client, roots):
    api, models = client
    outputs, told = _run(api, str(roots[1] / "detr-hf"), api_name="/set_model")
    assert "--data-root" in told and "outside the folders" in told
    assert TINY in str(outputs)  # the menu is put back on the model in use
    outputs, told = _run(api, gradio_client.handle_file(str(EXAMPLES_DIR / "grace_hopper.jpg")),
                         str(roots[1] / "detr-hf"), api_name="/analyze")
    assert "--data-root" in told
    assert str(roots[1] / "detr-hf") not in models._loaded  # nothing was loaded


def test_api_refuses_a_hub_download_and_names_the_flag(client, empty_hub_cache):
    api, models = client
    outputs, told = _run(api, "facebook/detr-resnet-50", api_name="/set_model")
    assert HUB_FLAG in told and "facebook/detr-resnet-50" in told
    assert TINY in models._loaded and "facebook/detr-resnet-50" not in models._loaded


def test_api_opens_hugging_face_folders_and_says_when_the_mask_head_is_not_shown(client, roots):
    api, _ = client
    status = api.predict(str(roots[0] / "detr-hf"), api_name="/set_model")
    assert "detr-hf" in str(status) and "mask head" not in str(status)
    status = api.predict(str(roots[0] / "panoptic-hf"), api_name="/set_model")
    assert "DetrForSegmentation" in str(status) and "mask head is not shown" in str(status)
    result = api.predict(gradio_client.handle_file(str(EXAMPLES_DIR / "grace_hopper.jpg")),
                         str(roots[0] / "detr-hf"), api_name="/analyze")
    assert "detr-hf" in str(result[-1])


def test_a_refused_switch_puts_the_menu_back_on_the_model_in_use(roots, monkeypatch):
    told = []
    monkeypatch.setattr("webapp.analysis.tell", lambda title, message: told.append(message))
    switch = switch_handler(ModelCache(optimize=False), SourcePolicy((roots[0],), hub_downloads=False))
    session, status, menu, in_use = switch(str(roots[1] / "detr-hf"), "shapes", None)
    assert menu == "shapes" and "outside the folders" in told[0]
