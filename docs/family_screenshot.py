"""docs/app-family.png: the app's decoder tab showing a Deformable DETR query's sampling points, in headless chromium.

    python docs/family_screenshot.py [--image webapp/examples/grace_hopper.jpg]

As docs/family_figure.py, the model is an UNTRAINED Deformable DETR of the official R50 size (no family weights
can be downloaded where this project is built), saved to a temporary folder and opened by `python app.py --model
FOLDER`; its image processor resizes to a shorter side of 480 px (not 800) so that the forward pass takes seconds
on a CPU. What the dots show is transformers' initial sampling pattern, not a learned one.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))  # the screenshot helpers of teaching_screenshots.py

from teaching_screenshots import _open_tab, save_inspect_panel, served_page  # noqa: E402


def untrained_deformable_detr(folder: Path) -> None:
    """A seeded, randomly initialised R50-sized Deformable DETR (COCO's 91 label ids) and a 480-px processor."""
    import transformers

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.DeformableDetrForObjectDetection(transformers.DeformableDetrConfig(num_labels=91))
    model.save_pretrained(folder)
    transformers.DeformableDetrImageProcessor(size={"shortest_edge": 480, "longest_edge": 800}).save_pretrained(folder)


def shoot(page, image: Path, out: Path) -> None:
    """Upload, open the decoder tab (the queries above the threshold, the best one large), save that tab."""
    page.locator("#input-image input[type=file]").set_input_files(str(image))
    page.locator("#detections img").wait_for()
    _open_tab(page, "inspect", "decoder")
    page.locator("#query-gallery .thumbnail-item").first.wait_for()
    page.locator("#query-info").get_by_text("Sampling points of").wait_for()
    page.locator("#query-view img").wait_for()
    save_inspect_panel(page, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=REPO / "webapp" / "examples" / "grace_hopper.jpg")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "app-family.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(Path(tmp) / "untrained-deformable-detr-r50")  # the name the page's status line shows
        untrained_deformable_detr(Path(folder))
        with served_page(folder, height=1100, timeout_ms=300_000) as page:
            shoot(page, args.image.resolve(), args.out.resolve())


if __name__ == "__main__":
    main()
