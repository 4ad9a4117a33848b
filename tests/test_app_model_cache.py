"""The app's model cache: a model being loaded holds up nobody who uses another, already loaded model; a source
is loaded once however many pages ask for it at the same time; a load past the time limit is a clear error for the
pages waiting (and kept if it finishes); a failed load is reported and tried again on the next request."""
from __future__ import annotations

import threading
import time

import pytest

import detr_core
from webapp.models import TINY, ModelCache


def slow_cache(monkeypatch, timeout: float = 30.0):
    """A cache whose source "slow" loads only when `release` is set; `calls` lists every load started."""
    models = ModelCache(optimize=False, load_timeout=timeout)
    release, calls = threading.Event(), []
    real_load = models._load

    def load(source):
        calls.append(source)
        if source == "slow":
            assert release.wait(30)
            return real_load(TINY)
        if source == "broken":
            raise ValueError("this one cannot load")
        return real_load(source)

    monkeypatch.setattr(models, "_load", load)
    return models, release, calls


def wait_for(condition, seconds: float = 10.0):
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_a_load_in_progress_does_not_hold_up_a_loaded_model(monkeypatch):
    models, release, calls = slow_cache(monkeypatch)
    tiny = models.get(TINY)
    pages = [threading.Thread(target=models.get, args=("slow",)) for _ in range(3)]
    for page in pages:
        page.start()
    wait_for(lambda: "slow" in calls)
    start = time.perf_counter()
    assert models.get(TINY) is tiny
    assert time.perf_counter() - start < 1.0  # not behind the load of "slow"
    release.set()
    for page in pages:
        page.join(10)
    assert calls.count("slow") == 1  # three pages, one load
    assert models.get("slow").source == "slow"


def test_a_load_past_the_time_limit_is_a_clear_error_and_kept_when_it_finishes(monkeypatch):
    models, release, calls = slow_cache(monkeypatch, timeout=0.3)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"loading slow took longer than 0.3 s, this app's limit for a load"):
        models.get("slow")
    assert time.perf_counter() - start < 5.0
    release.set()
    wait_for(lambda: "slow" in models._loaded)
    assert isinstance(models.get("slow").model, detr_core.DETR) and calls.count("slow") == 1


def test_a_failed_load_is_reported_and_tried_again(monkeypatch):
    models, _, calls = slow_cache(monkeypatch)
    for _ in range(2):
        with pytest.raises(ValueError, match="this one cannot load"):
            models.get("broken")
    assert calls.count("broken") == 2 and "broken" not in models._loaded


def test_on_the_page_a_load_runs_outside_the_forward_group(monkeypatch):
    """Through the running app (127.0.0.1): while one page's model loads (the step before its analysis), another
    page's analysis with the loaded model goes through at once instead of queueing behind the load."""
    gradio_client = pytest.importorskip("gradio_client")
    import socket

    from webapp import page
    from webapp.bundled import EXAMPLES_DIR
    from webapp.model_sources import SourcePolicy

    models, release, calls = slow_cache(monkeypatch)
    models.get(TINY)
    monkeypatch.setattr(SourcePolicy, "check", lambda self, name: name.strip())  # "slow" is no real source
    demo = page.build_demo(models, TINY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False)
    try:
        first = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        second = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        loading = first.submit("slow", api_name="/preload")
        wait_for(lambda: "slow" in calls)
        start = time.perf_counter()
        result = second.predict(gradio_client.handle_file(str(EXAMPLES_DIR / "grace_hopper.jpg")), TINY,
                                api_name="/analyze")
        took = time.perf_counter() - start
        assert TINY in str(result[-1]) and not loading.done()
        assert took < 20  # the tiny model's analysis; behind the load it would wait for release (30 s)
        release.set()
        loading.result(timeout=30)
    finally:
        release.set()
        demo.close()
