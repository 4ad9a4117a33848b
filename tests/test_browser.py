"""End to end in a real browser: Debian's chromium, driven by Playwright, against `python app.py` on loopback.

Never downloads a browser: it uses /usr/bin/chromium or skips (fails under CI=true). Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
EXAMPLE = REPO / "examples" / "grace_hopper.jpg"  # 512x600
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with code {server.returncode}; see test-artifacts/browser-server.log")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"app.py did not answer at {url} within {timeout} s")


@pytest.fixture(scope="module")
def app_url():
    """`python app.py` with the tiny random model on a free loopback port; always stopped afterwards."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    log = open(ARTIFACTS / "browser-server.log", "wb")
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--model", "tiny"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_up(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url)
            yield page
        finally:
            browser.close()


def _value(page, selector: str) -> str:
    return page.locator(f"{selector} input").first.input_value()


def _image_bytes(page, selector: str) -> bytes:
    src = page.locator(f"{selector} img").first.get_attribute("src")
    return page.request.get(src).body()


def test_upload_click_and_choose_a_query(page):
    page.locator("#model-status").get_by_text("tiny").wait_for()
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#detections img").wait_for()
    page.locator("#detections-summary").get_by_text("out of 10 queries").wait_for()
    page.screenshot(path=ARTIFACTS / "browser-1-detections.png", full_page=True)

    # Two clicks on the input image; each must move the point and change the encoder map.
    shown = page.locator("#input-image img").first
    # the <img> exists before its pixels are decoded (naturalWidth 0 on a busy machine): wait for them
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=shown.element_handle())
    natural_w, natural_h = shown.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert (natural_w, natural_h) == (512, 600)
    maps = []
    for fx, fy in [(0.2, 0.25), (0.8, 0.8)]:
        box = shown.bounding_box()
        # The image is shown scaled to fit its box ("contain"): find where its pixels really are.
        scale = min(box["width"] / natural_w, box["height"] / natural_h, 1.0)
        left = box["x"] + (box["width"] - natural_w * scale) / 2
        top = box["y"] + (box["height"] - natural_h * scale) / 2
        expect_x, expect_y = fx * natural_w, fy * natural_h
        page.mouse.click(left + expect_x * scale, top + expect_y * scale)
        page.wait_for_function(
            "([x]) => { const el = document.querySelector('#point-x input');"
            " return el !== null && Math.abs(Number(el.value) - x) <= 2; }", arg=[expect_x])
        assert abs(float(_value(page, "#point-y")) - expect_y) <= 2  # display scaling mapped back to pixels
        page.locator("#encoder-info").get_by_text(re.compile(rf"pixel \({round(expect_x)}|pixel \(")).wait_for()
        page.locator("#encoder-map img").wait_for()
        page.wait_for_timeout(300)  # let the new image element load
        maps.append(_image_bytes(page, "#encoder-map"))
    assert maps[0] != maps[1]
    page.screenshot(path=ARTIFACTS / "browser-2-encoder.png", full_page=True)

    # The decoder tab: show all queries, choose the third tile, the large view follows it.
    page.get_by_role("tab", name=re.compile("Decoder")).click()
    page.locator("#show-all-queries input[type=checkbox]").check()
    tiles = page.locator("#query-gallery .thumbnail-item")
    page.wait_for_function("() => document.querySelectorAll('#query-gallery .thumbnail-item').length === 10")
    # The caption as the page shows it under the tile (aria-label only says "Thumbnail 3 of 10"), else the alt text.
    item = page.locator("#query-gallery .gallery-item").nth(2)
    caption = item.inner_text() or item.locator("img").first.get_attribute("alt") or ""
    found = re.search(r"query (\d+)", caption)
    assert found, f"the third tile shows no query number: caption {caption!r}"
    query = found.group(1)
    tiles.nth(2).click()
    page.locator("#query-info").get_by_text(f"Query {query} ").wait_for()
    assert _value(page, "#query-number") == query
    page.locator("#query-view img").wait_for()
    page.screenshot(path=ARTIFACTS / "browser-3-decoder.png", full_page=True)


def test_corrupt_upload_shows_a_plain_error_and_the_app_keeps_serving(page, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    page.locator("#input-image input[type=file]").set_input_files(str(bad))
    page.get_by_text("could not be read as an image").first.wait_for()
    page.screenshot(path=ARTIFACTS / "browser-4-error.png", full_page=True)
    # The app still serves: a good upload (the hidden file input stays usable) is analysed again.
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#model-status").get_by_text("tiny").wait_for()
    page.locator("#input-image img").first.wait_for()
    page.get_by_role("tab", name=re.compile("Detections")).click()
    page.locator("#detections-summary").get_by_text("out of 10 queries").wait_for()


def test_clearing_the_image_empties_the_views(page):
    page.get_by_role("tab", name=re.compile("Detections")).click()
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#detections img").wait_for()
    page.locator("#detections-summary").get_by_text("out of 10 queries").wait_for()
    page.locator("#input-image").get_by_role("button", name="Remove Image").click()
    page.wait_for_function("() => document.querySelectorAll('#detections img').length === 0")
    page.wait_for_function("() => !document.querySelector('#detections-summary').innerText.includes('queries')")
    page.screenshot(path=ARTIFACTS / "browser-5-cleared.png", full_page=True)
    # and the app still works afterwards
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#detections-summary").get_by_text("out of 10 queries").wait_for()
