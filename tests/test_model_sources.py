"""The model box's rules and handlers, without a server: which hosts count as loopback, what a page may open and
the exact words of each refusal (written out here, not produced by the code under test), the menu's order, and
what the handlers pass on (the name stripped, the page's session, the progress line) or put back when they refuse.
(tests/test_app_model_sources.py drives the same rules through a served page.)"""
from __future__ import annotations

import gradio as gr
import pytest

from fake_hub import folder_files, write_cache
from webapp import model_sources
from webapp.model_sources import SourcePolicy, analyze_handler, menu_choices, served_beyond_loopback, switch_handler

HINT = "a Hugging Face Hub id (owner/name, owner/name@revision) or a model folder or file"


@pytest.mark.parametrize("host,share,beyond", [
    ("127.0.0.1", False, False), ("127.8.9.10", False, False),  # all of 127.0.0.0/8 is loopback
    ("localhost", False, False), ("::1", False, False),
    ("0.0.0.0", False, True), ("::", False, True), ("10.0.0.127", False, True), ("my-laptop", False, True),
    ("localhost", True, True), ("::1", True, True),  # --share serves beyond the machine whatever the host
])
def test_which_hosts_serve_beyond_this_machine(host, share, beyond):
    assert served_beyond_loopback(host, share) is beyond


@pytest.fixture
def told(monkeypatch):
    """The toasts the handlers raise, as (title, message)."""
    seen = []
    monkeypatch.setattr("webapp.analysis.tell", lambda title, message: seen.append((title, message)))
    return seen


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_an_empty_source_asks_for_a_choice(tmp_path, empty):
    with pytest.raises(ValueError) as err:
        SourcePolicy((tmp_path,)).check(empty)
    assert str(err.value) == f"choose a model from the menu, or type {HINT}"


def test_names_and_preapproved_sources_pass_stripped_whatever_the_roots(tmp_path):
    policy = SourcePolicy((tmp_path / "nowhere",), hub_downloads=True, preapproved=frozenset({"/srv/mine.pth"}))
    for name in ("auto", "detr-r101-dc5", "shapes", "untrained", "tiny", "/srv/mine.pth"):
        assert policy.check(f"  {name}\t") == name
    # without downloads an official zoo name is a download too (issue 25): refused unless its file is cached
    offline = SourcePolicy((tmp_path / "nowhere",), hub_downloads=False, preapproved=frozenset({"/srv/mine.pth"}))
    for name in ("auto", "shapes", "untrained", "tiny", "/srv/mine.pth"):
        assert offline.check(f"  {name}\t") == name


def test_a_missing_path_inside_the_roots_is_named_with_what_to_give_instead(tmp_path):
    with pytest.raises(ValueError) as err:
        SourcePolicy((tmp_path,)).check(f" {tmp_path}/missing.pth ")
    assert str(err.value) == f"{tmp_path}/missing.pth does not exist; give a menu name, type {HINT}"


def test_a_path_outside_every_root_names_all_the_roots_and_the_flag(tmp_path):
    a, b, outside = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (a, b, outside):
        folder.mkdir()
    (outside / "m.pth").write_bytes(b"")
    (b / "m.pth").write_bytes(b"")
    policy = SourcePolicy((a, b))
    assert policy.check(str(b / "m.pth")) == str(b / "m.pth")  # the second root counts too
    for source in (outside / "m.pth", outside / "missing.pth"):  # outside: refused before asking if it exists
        with pytest.raises(ValueError) as err:
            policy.check(str(source))
        assert str(err.value) == (f"{source} is outside the folders this app may read models from ({a}, {b}); start"
                                  " the app from the folder that holds it, or add that folder with --data-root")


def test_a_home_relative_path_is_checked_where_it_leads(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.pth").write_bytes(b"")
    assert SourcePolicy((tmp_path,)).check("~/m.pth") == "~/m.pth"
    with pytest.raises(ValueError, match="outside the folders"):
        SourcePolicy((tmp_path / "elsewhere",)).check("~/m.pth")


def test_an_existing_folder_named_like_a_hub_id_is_a_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert SourcePolicy((tmp_path,), hub_downloads=False).check("owner/name") == "owner/name"
    with pytest.raises(ValueError, match="outside the folders"):  # a path, so the roots apply, not the Hub rules
        SourcePolicy((tmp_path / "owner" / "other",), hub_downloads=True).check("owner/name")


def test_hub_ids_without_downloads_open_only_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    closed = SourcePolicy((tmp_path,), hub_downloads=False)
    with pytest.raises(ValueError) as err:
        closed.check(" someone/detr@v2 ")
    assert str(err.value) == (
        "someone/detr@v2 is not in this server's Hugging Face cache, and fetching models from the Hub is off on a page"
        " served beyond the server's own machine. Whoever runs the app can allow it by starting it with"
        " --allow-hub-download, or fill the cache on the server first (`hf download someone/detr`)")
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "detr"}')
    (folder / "model.safetensors").write_bytes(b"")
    write_cache(tmp_path / "cache", "someone/detr", folder_files(folder), revision="v2")
    assert closed.check(" someone/detr@v2 ") == "someone/detr@v2"
    opened = SourcePolicy((tmp_path,), hub_downloads=True)
    assert opened.check("someone/not-cached") == "someone/not-cached"  # fetched later, by the loader


def test_the_menu_lists_the_apps_names_the_zoo_then_the_hugging_face_ids_in_order():
    expected = ["auto", "detr-r50", "detr-r50-dc5", "detr-r101", "detr-r101-dc5", "shapes", "untrained",
                "facebook/detr-resnet-50", "facebook/detr-resnet-50-dc5", "facebook/detr-resnet-101",
                "facebook/detr-resnet-101-dc5", "microsoft/table-transformer-detection",
                "microsoft/table-transformer-structure-recognition", "SenseTime/deformable-detr",
                "PekingU/rtdetr_r50vd", "microsoft/conditional-detr-resnet-50"]
    assert menu_choices("auto") == expected
    assert menu_choices("PekingU/rtdetr_r50vd") == expected  # already listed: not added twice
    assert menu_choices("runs/mine") == [*expected, "runs/mine"]


class Recorder:
    """Stands in for analysis' inner handlers: records the calls, answers a fixed tuple."""

    def __init__(self, answer):
        self.calls, self.answer = [], answer

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.answer


class Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, fraction, desc=None):
        self.calls.append((fraction, desc))


class Request:
    session_hash = "page-7"


@pytest.fixture
def inner(monkeypatch):
    """The inner handlers analysis makes, replaced by recorders; and what they were built with."""
    made = {}

    def factory(kind, answer):
        def make(*args):
            made[kind] = args
            made[kind + " handler"] = Recorder(answer)
            return made[kind + " handler"]
        return make
    monkeypatch.setattr("webapp.analysis.analyze_handler", factory("analyze", ("session", "image", "status")))
    monkeypatch.setattr("webapp.analysis.switch_handler", factory("switch", ("s", "status", "menu", "in use")))
    return made


def test_analyze_passes_the_stripped_name_and_the_pages_session_on(tmp_path, inner, told):
    policy = SourcePolicy((tmp_path,))
    handler = analyze_handler("models", policy, "store")
    assert inner["analyze"] == ("models", "store")
    progress = Progress()
    assert handler("img.png", " shapes ", Request(), progress) == ("session", "image", "status")
    assert inner["analyze handler"].calls == [(("img.png", "shapes"), {"owner": "page-7"})]
    assert progress.calls == [(0, "Loading shapes")] and told == []
    handler("img.png", "shapes", None, Progress())  # no request (a direct call): no owner
    assert inner["analyze handler"].calls[-1] == (("img.png", "shapes"), {"owner": None})


def test_analyze_refuses_with_one_toast_and_leaves_the_page_as_it_was(tmp_path, inner, told):
    handler = analyze_handler("models", SourcePolicy((tmp_path / "root",)))
    progress = Progress()
    outside = tmp_path / "other.pth"
    outside.write_bytes(b"")
    assert handler("img.png", str(outside), Request(), progress) == (None, None, gr.skip())
    assert inner["analyze handler"].calls == [] and progress.calls == []
    assert told == [("Could not load the model",
                     f"Cannot open the model {str(outside)!r}: {outside} is outside the folders this app may read"
                     f" models from ({tmp_path / 'root'}); start the app from the folder that holds it, or add that"
                     " folder with --data-root")]


def test_switch_passes_the_stripped_name_on_and_does_nothing_for_the_model_in_use(tmp_path, inner, told):
    handler = switch_handler("models", SourcePolicy((tmp_path,)))
    assert inner["switch"] == ("models",)
    progress = Progress()
    assert handler("shapes", "shapes", "session", progress) == (gr.skip(),) * 4
    assert inner["switch handler"].calls == [] and progress.calls == []
    assert handler(" untrained ", "shapes", "session", progress) == ("s", "status", "menu", "in use")
    assert inner["switch handler"].calls == [(("untrained", "shapes", "session"), {})]
    assert progress.calls == [(0, "Loading untrained")] and told == []


def test_a_refused_switch_puts_the_menu_back_and_says_why(tmp_path, inner, told):
    handler = switch_handler("models", SourcePolicy((tmp_path,)))
    progress = Progress()
    assert handler("", "shapes", "session", progress) == (gr.skip(), gr.skip(), "shapes", gr.skip())
    assert inner["switch handler"].calls == [] and progress.calls == []
    assert told == [("Could not load the model", f"Cannot open the model '': choose a model from the menu, or type {HINT}")]


def test_the_family_ids_in_the_menu_are_hub_ids_the_policy_reads_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    for repo in model_sources.FAMILY_HUB_MODELS:
        with pytest.raises(ValueError, match=f"{repo} is not in this server's Hugging Face cache"):
            SourcePolicy((tmp_path,), hub_downloads=False).check(repo)
