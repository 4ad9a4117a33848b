"""Server-side time of each app interaction at DETR-R50 size (850 cells, 100 queries, 6+6 layers, 8 heads).

    python -m benchmarks.interaction [--repeats 20] [--image webapp/examples/grace_hopper.jpg]

Runs a randomly initialised DETR-R50 once on an 800x1066 input (the attention has the official model's
shapes; its values do not change drawing cost), then times the app's handlers, which only read that result.
"handler" is the handler call; "+encode" adds the JPEG encoding Gradio does before sending the image.
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path


import gradio as gr  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import detr_core  # noqa: E402
from webapp import decoder_tab, detections_tab, encoder_tab  # noqa: E402
from webapp.controls import LOOKED_AT, LOOKS_FROM  # noqa: E402
from webapp.models import ModelCache  # noqa: E402
from webapp.session import Session, prepare_image  # noqa: E402
from webapp.store import InspectionStore  # noqa: E402

TARGET_MS = 50.0


def _r50_session(image_path: str) -> Session:
    image, _ = prepare_image(image_path)
    image = image.resize((1066, 800)) if image.size != (1066, 800) else image  # R50's usual 800x1066 input
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.DETRConfig()).eval()  # official R50 layout, random weights
    start = time.perf_counter()
    ins = detr_core.inspect_image(model, image)
    print(f"one R50 forward with full capture: {time.perf_counter() - start:.1f} s, grid {ins.feature_size},"
          f" encoder attention {ins.encoder_attention.nbytes / 1e6:.0f} MB")
    # as the app keeps it: in the store (its budget holds one R50 inspection many times over)
    session = Session.start(InspectionStore(), ModelCache(), ins, "detr-r50 (random weights)", key="r50")
    return session


def _encode(result) -> None:
    """What Gradio does to each image it sends: save it (JPEG here) to its cache."""
    items = result if isinstance(result, (list, tuple)) else [result]
    for item in items:
        if isinstance(item, tuple) and item and isinstance(item[0], Image.Image):
            item = item[0]
        if isinstance(item, list):
            _encode(item)
        elif isinstance(item, Image.Image):
            item.save(io.BytesIO(), format="JPEG")


def _time(fn, repeats: int) -> tuple[float, float]:
    """-> (median ms of the handler, median ms of handler + encoding)."""
    fn()  # warm caches (thumbnails, colour tables)
    plain, encoded = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        mid = time.perf_counter()
        _encode(result)
        plain.append((mid - start) * 1e3)
        encoded.append((time.perf_counter() - start) * 1e3)
    return statistics.median(plain), statistics.median(encoded)


def interactions(s: Session) -> dict:
    ins = s.inspection
    scores = sorted(ins.probabilities[:, :-1].max(-1), reverse=True)
    ten = float(scores[10])  # a threshold that lets 10 queries through, like a busy photo
    w, h = ins.image.size
    click = lambda x, y: gr.SelectData(None, {"index": [x, y], "value": None, "selected": True})  # noqa: E731
    disp = (0.6, "inferno")
    return {
        "click -> encoder map (mean of heads)": lambda: encoder_tab.click(s, 6, "mean", LOOKS_FROM, *disp,
                                                                          click(w // 3, h // 2)),
        "encoder: one head, incoming": lambda: encoder_tab.render_encoder(s, w // 3, h // 2, 3, "5", LOOKED_AT, *disp),
        "encoder: max over heads": lambda: encoder_tab.render_encoder(s, w // 3, h // 2, 6, "max", LOOKS_FROM, *disp),
        "encoder: all 8 heads (grid)": lambda: encoder_tab.render_encoder(s, w // 3, h // 2, 6, "grid", LOOKS_FROM,
                                                                          *disp),
        "threshold -> detections + table": lambda: detections_tab.render_detections(s, ten),
        "threshold/layer/head -> gallery, 10 queries": lambda: decoder_tab.render_gallery(s, ten, False, 4, "2",
                                                                                          *disp),
        "show all -> gallery, 100 queries": lambda: decoder_tab.render_gallery(s, 0.0, True, 6, "mean", *disp),
        "choose a tile -> query view": lambda: decoder_tab.select_tile(s, ten, False, 6, "mean", *disp,
                                                                       gr.SelectData(None, {"index": 3, "value": None,
                                                                                            "selected": True})),
        "query view: one head": lambda: decoder_tab.render_query(s, 7, 2, "3", *disp),
        "query view: all 8 heads (grid)": lambda: decoder_tab.render_query(s, 7, 6, "grid", *disp),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--image", default=str(Path(__file__).resolve().parents[1] / "webapp" / "examples"
                                               / "grace_hopper.jpg"))
    args = parser.parse_args(argv)
    session = _r50_session(args.image)
    print(f"\n{'interaction':46s} {'handler ms':>10s} {'+encode ms':>10s}")
    worst = 0.0
    for name, fn in interactions(session).items():
        plain, encoded = _time(fn, args.repeats)
        worst = max(worst, plain)
        print(f"{name:46s} {plain:10.1f} {encoded:10.1f}")
    print(f"\nmedian of {args.repeats} runs each, torch threads {torch.get_num_threads()};"
          f" slowest handler {worst:.1f} ms (target {TARGET_MS:.0f} ms): {'OK' if worst <= TARGET_MS else 'OVER'}")


if __name__ == "__main__":
    main()
