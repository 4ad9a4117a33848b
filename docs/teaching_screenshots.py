"""The README's screenshots (the app's decoder tab and every teaching tab): the real app in headless chromium.

    python docs/teaching_screenshots.py [--model untrained] [--image webapp/examples/shapes.jpg] [--threshold 0.7]

Starts `python app.py` on a free loopback port, uploads the image, opens each teaching tab, presses its button
when it has one, and saves the visible tab as docs/teaching-<tab>.png (downscaled and quantised, < 200 KB); the
page with the decoder tab open becomes docs/app.png.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the repo's packages come first

from webapp.served import app_process  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# (file stem, tab id under "Teach", button to press or None, element that holds the result)
VIEWS = (
    ("pipeline", "teach-pipeline", None, "#pipeline-image-6 img"),
    ("layers", "teach-layers", None, "#layers-strip img"),
    ("queries", "teach-queries", None, "#queries-bars img"),
    ("matching", "teach-matching", "#matching-run", "#matching-costs img"),
    ("slots", "teach-slots", None, "#slots-image img"),
    ("explain", "teach-explain", "#explain-run", "#explain-maps img"),
    ("ablation", "teach-ablation", "#ablation-run", "#ablation-image img"),
)
MAX_BYTES = 200_000


@contextmanager
def served_page(model: str, height: int, timeout_ms: int, app_args: tuple[str, ...] = ()) -> Iterator:
    """`python app.py --model MODEL [app_args]` on a free loopback port and a 1400-px-wide chromium page open on
    it; the server is stopped on the way out, also after an error."""
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    with app_process(["--model", model, *app_args], env=env) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.set_default_timeout(timeout_ms)
        page.goto(app.url)
        yield page
        browser.close()


def save_small(png: bytes, path: Path, width: int = 1000) -> None:
    """Downscale to `width` and quantise to 128 colours until the file is under MAX_BYTES."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        image.quantize(128, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() < MAX_BYTES or width < 400:
            path.write_bytes(buffer.getvalue())
            return
        width = int(width * 0.85)


def save_inspect_panel(page, out: Path) -> None:
    """Once nothing is processing any more, save the visible Inspect view (the app and compare screenshots)."""
    page.wait_for_function("() => !document.body.innerText.includes('processing |')")
    page.wait_for_timeout(2000)
    panel = page.locator("#inspect-views [role=tabpanel]:visible").first
    save_small(panel.screenshot(), out, width=1000)
    print(f"wrote {out}", flush=True)


def _open_tab(page, group: str, tab_id: str) -> None:
    """Two levels of tabs: the group ("inspect" or "teach"), then the view in it."""
    page.locator(f"#view-groups [role=tablist] button[data-tab-id={group}]").click()
    page.locator(f"#{group}-views [role=tablist] button[data-tab-id={tab_id}]").click()


def shoot(page, image: Path, threshold: float, out_dir: Path) -> None:
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    page.locator("#detections img").wait_for()
    threshold_box = page.locator("#threshold input[type=number]")
    threshold_box.fill(str(threshold))
    threshold_box.press("Enter")
    page.wait_for_timeout(1500)
    _open_tab(page, "inspect", "decoder")
    page.locator("#query-gallery img").first.wait_for()
    page.wait_for_timeout(1500)
    save_small(page.screenshot(), out_dir / "app.png", width=1300)
    print("wrote docs/app.png", flush=True)
    for stem, tab_id, button, result in VIEWS:
        _open_tab(page, "teach", tab_id)
        if stem == "ablation":
            for head in ("1", "2", "3", "4"):
                page.locator("#ablation-heads").get_by_label(head, exact=True).check()
        if button:
            page.locator(button).click()
        page.locator(result).first.wait_for(timeout=180_000)
        page.wait_for_timeout(1500)
        panel = page.locator("[role=tabpanel]:visible").last
        save_small(panel.screenshot(), out_dir / f"teaching-{stem}.png")
        print(f"wrote docs/teaching-{stem}.png", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="untrained")
    parser.add_argument("--image", type=Path, default=REPO / "webapp" / "examples" / "shapes.jpg")
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    with served_page(args.model, height=1000, timeout_ms=120_000) as page:
        shoot(page, args.image.resolve(), args.threshold, REPO / "docs")


if __name__ == "__main__":
    main()
