"""docs/app-compare.png: the app's Compare view, the bundled shapes DETR (dense attention) beside a Deformable DETR
(sampling points), in headless chromium: the "dense vs deformable" lesson.

    python docs/compare_screenshot.py [--image webapp/examples/shapes.jpg]

No Deformable DETR is bundled and none can be downloaded where this project is built, so model B is the
UNTRAINED Deformable DETR-R50 of docs/family_screenshot.py (transformers' initial sampling pattern, 480-px
processor), saved to a temporary folder that the app may read (--data-root). Its random boxes overlap none of
the shapes, so every shapes detection is unpaired and B shows its query whose box is closest.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))

from family_screenshot import untrained_deformable_detr  # noqa: E402
from teaching_screenshots import _open_tab, save_inspect_panel, served_page  # noqa: E402


def shoot(page, image: Path, folder: str, out: Path) -> None:
    """Upload, open Compare, run B with its sampling points shown, save the view."""
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    page.locator("#model-status").get_by_text("the model saw it").wait_for()
    threshold = page.locator("#threshold input[type=number]")
    threshold.fill("0.9")  # the shapes model's detections on this image score 0.96 to 0.99
    threshold.press("Enter")
    _open_tab(page, "inspect", "compare")
    model = page.locator("#compare-model input").first
    model.fill(folder)
    model.press("Enter")
    page.locator("#compare-display").get_by_text("sampling points").click()
    page.locator("#compare-run").click()
    page.locator("#compare-summary").get_by_text("pairs above score").wait_for()
    page.locator("#compare-info").get_by_text("Shown for B").or_(page.locator("#compare-info").get_by_text("Pair")) \
        .first.wait_for()
    page.locator("#compare-map-b img").wait_for()
    save_inspect_panel(page, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=REPO / "webapp" / "examples" / "shapes.jpg")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "app-compare.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(Path(tmp) / "untrained-deformable-detr-r50")
        untrained_deformable_detr(Path(folder))
        with served_page("shapes", height=1700, timeout_ms=300_000, app_args=("--data-root", tmp)) as page:
            shoot(page, args.image.resolve(), folder, args.out.resolve())


if __name__ == "__main__":
    main()
