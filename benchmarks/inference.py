"""Inspection speed: the plain eager forward vs inspect_image with full capture on the optimised copy.

    python -m benchmarks.inference [--runs 5] [--models r50,shapes] [--precisions float32,bfloat16] [--no-compile]

For each model, on the same input in the same process, runs are interleaved (plain, optimised inspect, ...) so
that load from other processes hits both alike; the ratio of medians is the number to read. Also reports the
max |difference| of logits, boxes and attention between the two paths, and the bytes of captured attention.
The optimised copy's backbone is compiled first (not timed in the ratio; its compile time is printed).
bfloat16 is the opt-in approximate mode; float32 is the exact one the speed target is about. Last, the
detections at threshold 0.5 of the plain and optimised shapes model are compared on every bundled example.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import detr_core

EXAMPLES = Path(__file__).resolve().parent.parent / "webapp" / "examples"


def _r50():
    torch.manual_seed(0)
    return detr_core.build_model(detr_core.DETRConfig()).eval(), Image.new("RGB", (1066, 800), (120, 90, 60))


def _shapes():
    model = detr_core.load_model("shapes")
    return model, Image.open(EXAMPLES / "shapes.jpg")


MODELS = {"r50": _r50, "shapes": _shapes}


def _plain_forward(model, x):
    with torch.inference_mode():
        return model(x)


def measure(model, image, runs: int, compile_backbone: bool, precision: str) -> dict:
    fast = detr_core.optimize_for_inference(model, precision=precision)
    x = detr_core.image_to_tensor(detr_core.load_image(image), model.preprocess)[None]
    compile_s = detr_core.compile_backbone_now(fast, tuple(x.shape[-2:])) if compile_backbone else 0.0
    _plain_forward(model, x), detr_core.inspect_image(fast, image)  # warm-up
    plain_t, fast_t = [], []
    for _ in range(runs):
        start = time.perf_counter()
        _plain_forward(model, x)
        plain_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        detr_core.inspect_image(fast, image)
        fast_t.append(time.perf_counter() - start)
    out = _plain_forward(model, x)
    with torch.inference_mode(), detr_core.capture_attention(model) as maps:
        model(x)
    ins = detr_core.inspect_image(fast, image)
    ref_enc = torch.stack(maps.encoder)[:, 0].numpy()
    return {
        "input": f"{x.shape[-2]}x{x.shape[-1]}", "compile": compile_s,
        "plain": statistics.median(plain_t), "inspect": statistics.median(fast_t),
        "d_logits": float(np.abs(ins.logits - out["pred_logits"][0].numpy()).max()),
        "d_boxes": float(np.abs(ins.boxes - out["pred_boxes"][0].numpy()).max()),
        "d_attention": float(np.abs(np.asarray(ins.encoder_attention) - ref_enc).max()),
        "attention_mb": sum(a.nbytes for a in (ins.encoder_attention, ins.decoder_cross_attention,
                                                ins.decoder_self_attention)) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", default="r50,shapes")
    parser.add_argument("--precisions", default="float32,bfloat16" if detr_core.bfloat16_is_fast() else "float32")
    parser.add_argument("--no-compile", action="store_true", help="keep the optimised backbone eager")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"median of {args.runs} interleaved runs, backbone {'eager' if args.no_compile else 'compiled'}")
    print("| model | precision | input | plain forward s | inspect (optimised, full capture) s | ratio | "
          "max Δ logits | max Δ boxes | max Δ attention | attention MB | compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        try:
            model, image = MODELS[name]()
        except RuntimeError as err:
            print(f"| {name} | skipped: {err} |")
            continue
        for precision in args.precisions.split(","):
            _row(name, precision, measure(model, image, args.runs, not args.no_compile, precision))
    if "shapes" in args.models:
        _compare_detections(args.precisions.split(","), not args.no_compile)


def _row(name: str, precision: str, r: dict) -> None:
    print(f"| {name} | {precision} | {r['input']} | {r['plain']:.3f} | {r['inspect']:.3f} | {r['inspect'] / r['plain']:.2f} | "
          f"{r['d_logits']:.1e} | {r['d_boxes']:.1e} | {r['d_attention']:.1e} | {r['attention_mb']:.0f} | {r['compile']:.1f} |")


def _compare_detections(precisions: list[str], compile_backbone: bool, threshold: float = 0.5) -> None:
    """Same (query, label) set above `threshold`, plain vs optimised, on every bundled example image."""
    model = detr_core.load_model("shapes")
    images = sorted(EXAMPLES.glob("*.jpg")) + sorted(EXAMPLES.glob("shapes_val/images/*"))
    for precision in precisions:
        fast = detr_core.optimize_for_inference(model, compile_backbone, precision)
        differ = [p.name for p in images if _kept(model, p, threshold) != _kept(fast, p, threshold)]
        print(f"shapes, {precision}: detections at threshold {threshold} differ on {len(differ)} of "
              f"{len(images)} bundled example images {differ if differ else ''}")


def _kept(model, path, threshold: float) -> set:
    return {(d.query, d.label) for d in detr_core.inspect_image(model, path).detections(threshold)}


if __name__ == "__main__":
    main()
