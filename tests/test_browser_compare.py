"""The Compare view in a real browser (Debian's chromium, Playwright) against `python app.py --model tiny` on
loopback at 1280x800: its tab sits in the Inspect bar, a second model runs on the uploaded image, the table lists
pairs and unpaired detections, and choosing a row shows both maps and the line under them. Screenshots go to
test-artifacts/. The server and browser fixtures are tests/test_browser.py's (same server for both files' tests
when run together is not assumed: each module starts its own)."""
from __future__ import annotations

import pytest

from test_browser import ARTIFACTS, CHROMIUM, EXAMPLE, _open, _serve, _toast_texts, _upload  # noqa: F401
from test_browser import browser  # noqa: F401  (the fixture, on this module's server)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app as a user starts it, its log in test-artifacts/browser-compare.log."""
    yield from _serve(tmp_path_factory, [], "browser-compare.log")


def _open_compare(page) -> None:
    page.locator("#view-groups [role=tablist] button[data-tab-id=inspect]").click()
    tab = page.locator("#inspect-views [role=tablist] button[data-tab-id=compare]")
    assert tab.is_visible(), "the Compare tab is not in the Inspect tab bar at 1280 px"
    box = tab.bounding_box()
    assert box["x"] + box["width"] <= 1280
    assert page.locator("#inspect-views .overflow-menu").first.is_hidden()
    tab.click()


def _pair_info(page, needle: str) -> str:
    """The line under the maps once it describes a pair and contains `needle`, read in the same check that
    matched it. While a request runs, Gradio's status text ("processing | 0.1s", or a queue position) comes first
    in the element's text, so a line that starts with "Pair (" is a finished one; reading it separately after a
    looser wait could catch the next request's status instead (CI did)."""
    handle = page.wait_for_function(
        "(needle) => { const el = document.querySelector('#compare-info');"
        " const text = el ? el.innerText.trim() : '';"
        " return text.startsWith('Pair (') && text.includes(needle) ? text : false; }", arg=needle)
    return handle.json_value()


def test_compare_two_models_and_choose_rows(browser, app_url):  # noqa: F811
    page = _open(browser, app_url)
    try:
        _open_compare(page)
        page.locator("#compare-hint").get_by_text("Upload an image").wait_for()  # before any image: the hint
        _upload(page, EXAMPLE)
        page.locator("#model-status").get_by_text("the model saw it").wait_for()  # analysed
        # the views' refresh after the analysis has landed (a control moved before it lands sends the page's
        # initial layer 6, read as the last layer: tests/test_app_one_value_ranges.py)
        page.locator("#compare-summary").get_by_text("Choose a second model").wait_for()
        box = page.locator("#threshold input[type=number]")
        box.fill("0")
        box.press("Enter")
        page.locator("#compare-summary").get_by_text("Choose a second model").wait_for()
        model = page.locator("#compare-model input").first
        model.fill("tiny")  # the same tiny model as B: every query pairs with itself
        model.press("Enter")
        page.locator("#compare-run").click()
        page.locator("#compare-summary").get_by_text("10 pairs").wait_for()
        rows = page.locator("#compare-table [role=row]:has([role=gridcell])")  # the header row has none
        assert rows.count() == 10
        first = _pair_info(page, "")
        assert first.startswith("Pair (IoU 1.00, the same class)"), first
        for side in ("a", "b"):
            page.locator(f"#compare-map-{side} img").wait_for()
        page.locator("#compare-difference img").wait_for()  # the same architecture and grid: A - B shown
        query = page.locator("[data-testid=cell-3-2]").inner_text().strip()  # row 4, column "A query"
        page.locator("#compare-table [data-testid=cell-3-1]").click()
        assert f"A = tiny query {query}," not in first, (query, first)  # row 4 is not row 1's pair
        chosen = _pair_info(page, f"A = tiny query {query},")  # times out if the view never shows row 4's pair
        assert f"B = tiny query {query}," in chosen, (query, chosen)
        page.screenshot(path=ARTIFACTS / "browser-compare-1-pair.png", full_page=True)

        box.fill("0.3")  # fewer detections: the table follows the threshold
        box.press("Enter")
        page.locator("#compare-summary").get_by_text("above score 0.30").wait_for()
        assert not any("rror" in t for t in _toast_texts(page)), _toast_texts(page)
    finally:
        page.close()
    log = (ARTIFACTS / "browser-compare.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
