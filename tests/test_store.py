"""The store of inspections: budget, least recently used out first, idle time-out, honest sizes; and sessions whose
inspection was evicted, analysed again on their own (downscaled) image with their own model."""
from __future__ import annotations

import dataclasses
import pickle
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import gradio as gr

import detr_core
from conftest import TINY_PREPROCESS
from webapp import detections_tab, page
from webapp.models import TINY, ModelCache
from webapp.session import analyze, encode_png, prepare_image
from webapp.store import MB, InspectionStore, PageLimitError, measure


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _array(mb: int) -> np.ndarray:
    return np.zeros(mb * MB, dtype=np.uint8)


def test_measure_counts_every_array_and_image_once(tiny_model, rgb_image):
    ins = detr_core.inspect_image(tiny_model, rgb_image)
    float32 = [ins.layer_logits, ins.layer_boxes, ins.decoder_cross_attention, ins.decoder_self_attention]
    expected = 4 * sum(int(np.prod(a.shape)) for a in float32) + 2 * int(np.prod(ins.encoder_attention.shape))
    pixels = 120 * 180 * 4  # Pillow keeps RGB in 4 bytes a pixel
    assert measure(ins) == expected + pixels
    assert measure(ins, exclude=frozenset({id(ins.image)})) == expected
    ins.probabilities  # computed on first use, then kept: it counts from then on
    assert measure(ins) == expected + pixels + 4 * ins.num_queries * ins.logits.shape[1]
    assert measure([ins.image, ins.image, {"again": ins.image}]) == pixels  # one object, counted once
    assert measure(torch.zeros(3, 5, dtype=torch.float64)) == 3 * 5 * 8
    assert measure(Image.new("L", (10, 7))) == 70


def test_least_recently_used_goes_first_when_over_budget():
    store = InspectionStore(budget_bytes=100 * MB, idle_seconds=60, clock=Clock())
    for key in "abc":
        store.put(key, _array(40))
    assert store.keys() == ["b", "c"] and store.used_bytes == 80 * MB and store.evictions == 1
    assert store.get("b") is not None  # b is now the most recently used
    store.put("d", _array(40))
    assert store.keys() == ["b", "d"] and store.get("a") is None and store.get("c") is None
    store.put("huge", _array(150))  # larger than the whole budget: kept, alone
    assert store.keys() == ["huge"] and store.used_bytes == 150 * MB


def test_entries_unused_for_the_idle_time_leave_on_the_next_call():
    clock = Clock()
    store = InspectionStore(budget_bytes=1000 * MB, idle_seconds=60, clock=clock)
    store.put("old", _array(1))
    clock.now = 30
    store.put("recent", _array(1))
    clock.now = 61  # "old" idle for 61 s, "recent" for 31 s
    assert store.get("recent") is not None
    assert store.keys() == ["recent"] and store.used_bytes == 1 * MB
    clock.now = 200  # any call sweeps: here one for another key
    assert store.get("elsewhere") is None and len(store) == 0 and store.used_bytes == 0


def test_release_by_session_and_by_page():
    store = InspectionStore(budget_bytes=1000 * MB, idle_seconds=60, clock=Clock())
    store.put("s1", _array(1), group="s1", owner="page")
    store.put(("s1", "thumbnail"), _array(1), group="s1", owner="page")
    store.put("s2", _array(1), group="s2", owner="page")
    store.put("shared", _array(1))
    assert store.release_owner("page", keep_group="s2") == 2 and store.keys() == ["s2", "shared"]
    assert store.release_group("s2") == 1 and store.keys() == ["shared"] and store.used_bytes == 1 * MB


def test_a_heavy_make_runs_once_for_every_thread_that_wanted_it():
    store, calls, results = InspectionStore(), [], []

    def make():
        calls.append(1)
        time.sleep(0.2)
        return _array(1)

    threads = [threading.Thread(target=lambda: results.append(store.get_or_make("k", make))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sum(made for _, made in results) == 1
    assert all(value is results[0][0] for value, _ in results)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny model, and a checkpoint of another tiny model (other weights) under its path."""
    cache = ModelCache(optimize=False)
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("other") / "other.pth"
    detr_core.save_model(detr_core.build_model(detr_core.tiny_config(), TINY_PREPROCESS), path)
    cache.get(TINY)
    cache.get(str(path))
    return cache, str(path)


def _image(seed: int, size=(400, 600)) -> Image.Image:
    """Random pixels; at least VIEW_MIN_SIDE long, so that views draw on the image itself (no enlarged copy)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def _stored_size(cache: ModelCache) -> int:
    """Bytes one tiny session of a 400x600 image takes in the store: the inspection with its image, and the
    image's PNG."""
    ins = detr_core.inspect_image(cache.get(TINY).model, _image(0))
    return measure(ins) + _png_size()


def _png_size() -> int:
    """Bytes of one 400x600 random image as a PNG (random pixels hardly compress: about 0.7 MB)."""
    return len(encode_png(_image(0)))


def _rows(model: torch.nn.Module, image: Image.Image) -> list:
    """The detections table of a direct inspection, as the app shows it (every query, threshold 0)."""
    ins = detr_core.inspect_image(model, image)
    return [[d.query, d.name, round(d.score, 3), *(round(v) for v in d.box)] for d in ins.detections(0.0)]


def _shown_rows(session) -> list:
    return [row[1:] for row in detections_tab.render_detections(session, 0.0)[1]]


def test_an_evicted_session_is_analysed_again_with_its_own_model_and_says_so(models, capsys):
    cache, other = models
    one = _stored_size(cache)
    store = InspectionStore(budget_bytes=int(1.5 * one))  # room for one inspection (thumbnails aside)
    a = analyze(cache, store, cache.get(other), _image(1), owner="page-a")
    b = analyze(cache, store, cache.get(TINY), _image(2), owner="page-b")
    assert a.key not in store and b.key in store
    capsys.readouterr()
    assert _shown_rows(a) == _rows(detr_core.load_model(other), _image(1))  # its own model, not tiny
    assert _shown_rows(a) != _rows(cache.get(TINY).model, _image(1))
    assert "set aside to save the server's memory; it was run again" in capsys.readouterr().out
    assert a.key in store and b.key not in store
    assert _shown_rows(b) == _rows(cache.get(TINY).model, _image(2))


def test_sessions_evicting_each_other_while_their_users_change_controls_get_their_own_answers(models):
    cache, other = models
    one = _stored_size(cache)
    store = InspectionStore(budget_bytes=int(1.5 * one) + 2 * _png_size())  # the three images and one analysis
    sessions = [analyze(cache, store, cache.get(name), _image(10 + i), owner=f"page-{i}")
                for i, name in enumerate([TINY, other, TINY])]
    expected = [_rows(cache.get(s.model_source).model, s.image) for s in sessions]
    seen = [[] for _ in sessions]

    def use(i: int) -> None:
        for _ in range(4):
            seen[i].append(_shown_rows(sessions[i]))

    threads = [threading.Thread(target=use, args=(i,)) for i in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rows, want in zip(seen, expected):
        assert rows == [want] * 4
    assert store.evictions >= 2  # they did evict each other


def test_the_downscaled_image_is_what_is_analysed_again(models):
    cache, _ = models
    big = _image(5, size=(1000, 2000))
    shown, _ = prepare_image(big)
    store = InspectionStore(budget_bytes=len(encode_png(shown)))  # the image's PNG; all else but the newest leaves
    session = analyze(cache, store, cache.get(TINY), big)
    session.thumbnail(64)  # the newest entry now: the inspection is evicted
    assert session.key not in store
    assert session.inspection.image_size == (666, 1333) and session.original_size == (1000, 2000)
    ins = detr_core.inspect_image(cache.get(TINY).model, shown)
    assert np.array_equal(session.inspection.layer_logits, ins.layer_logits)
    assert np.array_equal(np.asarray(session.inspection.encoder_attention), np.asarray(ins.encoder_attention))


def test_a_page_keeps_one_session_in_the_store_and_closing_or_forgetting_it_frees_it(models):
    cache, _ = models
    store = InspectionStore()
    first = analyze(cache, store, cache.get(TINY), _image(3), owner="page")
    first.thumbnail(64)
    second = analyze(cache, store, cache.get(TINY), _image(4), owner="page")
    # the first analysis, its image and its thumbnail left with it
    assert store.keys() == [(second.key, "source"), second.key]
    other = analyze(cache, store, cache.get(TINY), _image(4), owner="other page")
    forget, closed = page._session_lifetime(store)

    class Request:
        session_hash = "page"
    closed(Request())
    assert store.keys() == [(other.key, "source"), other.key]
    forget(other)
    forget(None)
    assert len(store) == 0 and store.used_bytes == 0


def test_a_page_state_holds_keys_only_and_its_image_counts_in_the_budget(models):
    """gr.State keeps the Session: a few hundred bytes; the image lives in the store, as a PNG and decoded in
    the inspection, and both count in its budget."""
    cache, _ = models
    store = InspectionStore()
    image = _image(6, size=(500, 700))
    session = analyze(cache, store, cache.get(TINY), image, owner="page")
    small = dataclasses.replace(session, store=None, models=None)
    assert len(pickle.dumps(small)) < 1000
    png = len(encode_png(image))
    assert store.used_bytes >= 500 * 700 * 4 + png  # Pillow keeps RGB in 4 bytes a pixel
    assert store.used_bytes == measure(session.inspection) + png
    assert session.image.tobytes() == image.tobytes()


def test_bytes_count_by_their_length():
    assert measure(b"x" * 1000) == 1000 and measure([bytearray(10), b"ab"]) == 12


def test_images_leave_last_and_a_page_whose_image_left_is_asked_for_it_again(models):
    cache, _ = models
    one = _stored_size(cache)
    store = InspectionStore(budget_bytes=one + 2 * _png_size())  # three images, one analysis
    sessions = [analyze(cache, store, cache.get(TINY), _image(20 + i), owner=f"page-{i}") for i in range(3)]
    assert [key for key in store.keys() if key[1:] == ("source",)] == [(s.key, "source") for s in sessions]
    assert [s.key in store for s in sessions] == [False, False, True]
    # another page's image, so large that the images alone are over the budget until the oldest one leaves
    store.put("big", bytes(store.budget_bytes - sum(len(encode_png(_image(20 + i))) for i in (1, 2))), source=True)
    assert (sessions[0].key, "source") not in store and (sessions[1].key, "source") in store
    with pytest.raises(gr.Error) as refused:
        detections_tab.render_detections(sessions[0], 0.0)
    assert refused.value.message == ("This page's image was set aside to keep the server within its memory (or"
                                     " after an hour unused); upload it again, or pick an example.")
    assert _shown_rows(sessions[1]) == _rows(cache.get(TINY).model, _image(21))  # analysed again from its PNG


def test_idle_analyses_leave_after_the_idle_time_and_images_after_an_hour():
    clock = Clock()
    store = InspectionStore(budget_bytes=1000 * MB, idle_seconds=60, clock=clock)
    store.put("image", b"png", group="s", owner="page", source=True)
    store.put("analysis", _array(1), group="s", owner="page")
    clock.now = 61
    assert store.get("other") is None and store.keys() == ["image"]
    clock.now = 3600
    assert store.get("other") is None and store.keys() == ["image"]
    clock.now = 3601
    assert store.get("other") is None and len(store) == 0 and store.used_bytes == 0


def test_pages_past_the_cap_are_refused_until_one_closes_or_goes_idle():
    clock = Clock()
    store = InspectionStore(budget_bytes=1000 * MB, idle_seconds=60, clock=clock, max_pages=2)
    for page_id in ("a", "b"):
        store.admit(page_id)
        store.put((page_id, "source"), b"png", group=page_id, owner=page_id, source=True)
    store.admit("a")  # a page already counted may analyse again
    store.admit(None)  # code with no page (scripts, tests) is not counted
    store.put(("script", "source"), b"png", group="script", source=True)  # nor are its images
    with pytest.raises(PageLimitError, match=r"^this server is already showing analyses to 2 pages, the most it"
                                             r" takes at once \(set by whoever runs it with --max-sessions 2\)"):
        store.admit("c")
    store.release_owner("b")  # b's tab closed
    store.admit("c")
    store.put(("c", "source"), b"png", group="c", owner="c", source=True)
    clock.now = 30
    assert store.get(("a", "source")) == b"png"  # a is in use; c is not
    clock.now = 61
    assert store.active_pages() == {"a"}
    store.admit("d")  # c's slot is free: unused for longer than the idle time (its image is still kept)
    assert ("c", "source") in store


# --- sizes, boundaries and bookkeeping, worked out by hand -----------------------------------------------------

@pytest.mark.parametrize("mode,per_pixel", [("RGB", 4), ("RGBA", 4), ("LA", 4), ("I", 4), ("F", 4), ("I;16", 2),
                                            ("L", 1), ("P", 1), ("1", 1)])
def test_image_bytes_per_mode_on_a_non_square_image(mode, per_pixel):
    assert measure(Image.new(mode, (7, 3))) == 7 * 3 * per_pixel


def test_measure_walks_dataclasses_dicts_lists_and_tuples_and_ignores_the_rest():
    import dataclasses

    @dataclasses.dataclass
    class Pair:
        first: object
        second: object

    class Sized:
        nbytes = 5.0  # anything with an nbytes counts as that many bytes

    a, b = np.zeros((2, 3), np.float32), np.zeros(7, np.uint8)  # 24 and 7 bytes
    assert measure(Pair(a, {"x": [b, (torch.zeros(2, 2, dtype=torch.int16),)]})) == 24 + 7 + 8
    assert measure({"k": Sized()}) == 5 and isinstance(measure(Sized()), int)
    assert measure([None, "text", 3, 2.5, True, object()]) == 0 and measure([b"bytes", None]) == 5
    assert measure((a, a, [a])) == 24 and measure([a, b], exclude=frozenset({id(a)})) == 7
    assert measure(Pair(a, b), exclude=frozenset({id(b)})) == 24


@pytest.mark.parametrize("budget,idle", [(0, 60), (-1, 60), (MB, 0), (MB, -5)])
def test_a_store_needs_a_positive_budget_and_idle_time(budget, idle):
    with pytest.raises(ValueError) as err:
        InspectionStore(budget_bytes=budget, idle_seconds=idle)
    assert str(err.value) == f"budget_bytes={budget}, idle_seconds={idle} and max_pages=100 must be positive"
    tiny = InspectionStore(budget_bytes=1, idle_seconds=0.5)  # small but positive: accepted
    assert (tiny.budget_bytes, tiny.idle_seconds) == (1, 0.5)


def test_defaults_summary_length_and_membership():
    store = InspectionStore()
    assert (store.budget_bytes, store.idle_seconds) == (1536 * MB, 20 * 60)
    store.put("a", _array(3))
    store.put("b", _array(2))
    assert len(store) == 2 and "a" in store and "c" not in store
    assert store.summary() == "2 entries, 5 of 1536 MB"
    assert store.get("a") is not None and store.keys() == ["b", "a"]  # a get makes it the most recent


def test_an_entry_exactly_at_the_idle_time_stays_and_a_get_restarts_its_time():
    clock = Clock()
    store = InspectionStore(budget_bytes=1000 * MB, idle_seconds=60, clock=clock)
    store.put("a", _array(1))
    clock.now = 60  # idle for exactly 60 s: not yet over
    assert store.get("other") is None and store.keys() == ["a"]
    assert store.get("a") is not None  # used at 60: idle from now on
    clock.now = 120
    assert store.get("other") is None and store.keys() == ["a"]
    clock.now = 120.5
    assert store.get("other") is None and store.keys() == [] and store.evictions == 1


def test_a_full_budget_is_not_over_it_and_replacing_a_key_counts_its_new_size():
    store = InspectionStore(budget_bytes=100 * MB, idle_seconds=60, clock=Clock())
    store.put("a", _array(50))
    store.put("b", _array(50))  # exactly the budget: both stay
    assert store.keys() == ["a", "b"] and store.used_bytes == 100 * MB and store.evictions == 0
    store.put("a", _array(10))  # a replaced: 10 + 50, and now the most recent
    assert store.keys() == ["b", "a"] and store.used_bytes == 60 * MB
    store.put("c", _array(45))  # 105 MB: the least recent (b) leaves, the newest stays
    assert store.keys() == ["a", "c"] and store.used_bytes == 55 * MB and store.evictions == 1


def test_a_fresh_entry_pushing_out_an_idle_one_keeps_the_others(caplog):
    clock = Clock()
    store = InspectionStore(budget_bytes=100 * MB, idle_seconds=60, clock=clock)
    store.put("old", _array(10))
    clock.now = 50
    store.put("mid", _array(10))
    clock.now = 70  # old idle for 70 s, mid for 20 s; nothing over budget
    store.put("new", _array(10))
    assert store.keys() == ["mid", "new"] and store.used_bytes == 20 * MB and store.evictions == 1


def test_only_an_entry_larger_than_the_whole_budget_is_warned_about(caplog):
    store = InspectionStore(budget_bytes=10 * MB, idle_seconds=60, clock=Clock())
    with caplog.at_level("WARNING", logger="webapp.store"):
        store.put("fits", _array(10))
        assert caplog.records == []
        store.put("huge", _array(11))
    assert [r.getMessage() for r in caplog.records] == [
        "one entry (11 MB) is larger than the whole budget (10 MB); raise --memory-budget-mb"]
    assert store.keys() == ["huge"]


def test_get_or_make_stores_what_it_makes_under_its_session_and_page():
    for heavy in (True, False):
        store, calls = InspectionStore(), []
        shared = _array(2)

        def make():
            calls.append(1)
            return (shared, _array(1))

        value, made = store.get_or_make("k", make, group="s", owner="page", heavy=heavy,
                                        exclude=frozenset({id(shared)}))
        assert made and store.used_bytes == 1 * MB  # the excluded array is not counted
        again, made_again = store.get_or_make("k", make, group="s", owner="page", heavy=heavy)
        assert again is value and not made_again and len(calls) == 1
        assert store.release_owner("page", keep_group="other") == 1 and len(store) == 0
        store.get_or_make("k", make, group="s", owner="page", heavy=heavy)
        assert store.release_group("s") == 1 and store.used_bytes == 0


def test_releasing_counts_what_it_drops_and_is_no_eviction():
    store = InspectionStore(budget_bytes=1000 * MB, idle_seconds=60, clock=Clock())
    store.put("a", _array(2), group="s1", owner="p")
    store.put("b", _array(3), group="s2", owner="p")
    store.put("c", _array(4), group="s1", owner="q")
    assert store.release_owner("p") == 2 and store.keys() == ["c"] and store.used_bytes == 4 * MB
    assert store.release_group("nothing") == 0 and store.release_owner("nobody") == 0
    assert store.release_group("s1") == 1 and store.evictions == 0


def test_memory_is_given_back_after_evictions_and_forward_passes_only(monkeypatch):
    import webapp.store as store_module

    trims = []
    monkeypatch.setattr(store_module, "_TRIM", lambda pad: trims.append(pad))
    store = InspectionStore(budget_bytes=10 * MB, idle_seconds=60, clock=Clock())
    store.put("a", _array(6))
    store.get("a")
    assert trims == []  # nothing dropped: no trim
    store.put("b", _array(6))  # a is evicted
    assert trims == [0]
    with store.forward_pass():
        pass
    assert trims == [0, 0]
    store.release_group(None)
    assert trims == [0, 0, 0] and len(store) == 0
    clock = Clock()
    store = InspectionStore(budget_bytes=10 * MB, idle_seconds=60, clock=clock)
    store.put("old", _array(1))
    clock.now = 61
    assert store.get("other") is None and len(store) == 0  # a get that sweeps an idle entry trims too
    assert trims == [0, 0, 0, 0]


def test_an_entry_larger_than_the_budget_stays_while_it_is_read():
    store = InspectionStore(budget_bytes=10 * MB, idle_seconds=60, clock=Clock())
    store.put("huge", _array(15))
    assert store.get("huge") is not None and store.keys() == ["huge"] and store.used_bytes == 15 * MB
    assert store.get_or_make("huge", lambda: 1 / 0) == (store.get("huge"), False)


def test_glibc_trim_is_found_on_linux():
    import sys

    import webapp.store as store_module

    if not sys.platform.startswith("linux"):
        pytest.skip("malloc_trim is glibc's")
    trim = store_module._malloc_trim()
    assert trim is not None and trim(0) in (0, 1)
