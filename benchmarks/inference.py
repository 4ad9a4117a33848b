"""Inspection speed through every door: the plain forward vs inspect_image's default path vs the app's path.

    python -m benchmarks.inference [--runs 5] [--models r50,shapes] [--precisions float32,bfloat16] [--no-compile]

This machine's float32 peak: the best `torch.mm` of two 4096x4096 matrices, with the threads in use, of 3 at start
and one more in every round of runs.
Each model's FLOPs are counted by torch.utils.flop_counter over one plain forward (convolutions, linear layers,
attention matmuls), so every path's achieved GFLOP/s and the float32 floor (FLOPs / peak) show on any CPU.

Paths, on the same image in the same process, runs interleaved so that load from other processes hits all
alike (the ratio of medians is the number to read):
- plain forward: `model(x)` in inference mode, nothing captured; the reference;
- inspect_image(model): the public API's default on a freshly loaded model: its cached inference twin
  (built once, at the first call, its backbone then compiled in the background; both times printed apart,
  and timed once compiling is done: the steady state of a notebook or an evaluation);
- inspect_image(model, fast=False): the model itself with full capture (the default before issue 14);
- app: what webapp/models.py serves, optimize_for_inference(model, precision=...) with its backbone compiled
  (compile time printed apart); `inference_twin(model, compile_backbone=True)` is the same for the Python API.
  bfloat16 is the opt-in approximate mode; float32 is the exact one.
Each inspect path's max |difference| of logits, boxes and encoder attention against the plain model is printed
too, and at the end the shapes model's detections at 0.5, plain vs each faster path, on every bundled example.
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import detr_core

EXAMPLES = Path(__file__).resolve().parent.parent / "webapp" / "examples"


def _r50():
    torch.manual_seed(0)
    return detr_core.build_model(detr_core.DETRConfig()).eval(), Image.new("RGB", (1066, 800), (120, 90, 60))


def _shapes():
    return detr_core.load_model("shapes"), Image.open(EXAMPLES / "shapes.jpg")


MODELS = {"r50": _r50, "shapes": _shapes}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class MatmulPeak:
    """This machine's float32 GFLOP/s: the best [4096, 4096] @ [4096, 4096] product seen, measured at start and
    once more in every round of runs (on a shared machine the best moment is the closest to the real peak)."""

    SIZE = 4096

    def __init__(self, repeats: int = 3):
        self._a, self._b = torch.randn(self.SIZE, self.SIZE), torch.randn(self.SIZE, self.SIZE)
        torch.mm(self._a, self._b)  # warm-up
        self.best_s = min(timed(self.run) for _ in range(repeats))

    def run(self) -> None:
        torch.mm(self._a, self._b)

    def measure_once(self) -> None:
        self.best_s = min(self.best_s, timed(self.run))

    @property
    def gflops(self) -> float:
        return 2 * self.SIZE ** 3 / self.best_s / 1e9


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one plain forward on x [1, 3, H, W], as torch.utils.flop_counter counts them."""
    counted = copy.deepcopy(model).requires_grad_(False)  # its module tracker fails on parameters needing grad
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        counted(x)
    return counter.get_total_flops()


def _plain_forward(model, x):
    with torch.inference_mode():
        return model(x)


def _paths(model, fresh, precisions: list[str], compile_backbone: bool) -> tuple[dict, dict]:
    """`fresh`: a second, freshly loaded copy of `model`, so that the default path starts from nothing cached.
    -> ({path name: (model to inspect, fast)}, {what was built: seconds})."""
    seconds = {"twin built": timed(lambda: detr_core.inference_twin(fresh, compile_backbone=False))}
    if compile_backbone:  # what the default does in a background thread after the first call: wait for it here
        seconds["twin compiled"] = timed(lambda: detr_core.inference_twin(fresh, compile_backbone=True))
    paths = {"inspect_image(model)": (fresh, True), "inspect_image(model, fast=False)": (model, False)}
    for precision in precisions:
        app = detr_core.optimize_for_inference(model, precision=precision)
        if compile_backbone:
            seconds[f"app {precision} compiled"] = detr_core.compile_backbone_now(app)
        paths[f"app ({'compiled' if compile_backbone else 'eager'}), {precision}"] = (app, True)
    return paths, seconds


def measure(name: str, runs: int, precisions: list[str], compile_backbone: bool, mm: MatmulPeak) -> None:
    (model, image), (fresh, _) = MODELS[name](), MODELS[name]()
    x = detr_core.image_to_tensor(detr_core.load_image(image), model.preprocess)[None]  # [1, 3, h, w]
    flops = count_flops(model, x)
    paths, seconds = _paths(model, fresh, precisions, compile_backbone)
    calls = {"plain forward": lambda: _plain_forward(model, x)}
    calls.update({path: (lambda m=m, f=f: detr_core.inspect_image(m, image, fast=f)) for path, (m, f) in paths.items()})
    for call in calls.values():
        call()  # warm-up
    times = {path: [] for path in calls}
    for _ in range(runs):
        mm.measure_once()
        for path, call in calls.items():
            times[path].append(timed(call))
    plain, peak = statistics.median(times["plain forward"]), mm.gflops
    built = ", ".join(f"{what} in {s:.2f} s" for what, s in seconds.items())
    print(f"\n{name}, input {x.shape[-2]}x{x.shape[-1]}: {flops / 1e9:.1f} GFLOP per image; float32 peak "
          f"{peak:.0f} GFLOP/s (best torch.mm 4096x4096 at start and between runs), so the floor is "
          f"{flops / peak / 1e9:.3f} s = {flops / peak / 1e9 / plain:.2f}x the plain forward; {built}")
    print("| path | median s | x plain forward | GFLOP/s | % of mm peak | max Δ logits | max Δ boxes "
          "| max Δ attention |")
    print("|---|---|---|---|---|---|---|---|")
    reference = _reference(model, x)
    for path, t in times.items():
        median = statistics.median(t)
        error = "| — | — | — |" if path == "plain forward" else _errors(paths[path], image, reference)
        print(f"| {path} | {median:.3f} | {median / plain:.2f} | {flops / median / 1e9:.0f} | "
              f"{100 * flops / median / 1e9 / peak:.0f} {error}")


def _reference(model, x) -> dict:
    out = _plain_forward(model, x)
    with torch.inference_mode(), detr_core.capture_attention(model) as maps:
        model(x)
    return {"logits": out["pred_logits"][0].numpy(), "boxes": out["pred_boxes"][0].numpy(),
            "encoder": torch.stack(maps.encoder)[:, 0].numpy()}


def _errors(path: tuple, image, reference: dict) -> str:
    model, fast = path
    ins = detr_core.inspect_image(model, image, fast=fast)
    logits, boxes = np.abs(ins.logits - reference["logits"]).max(), np.abs(ins.boxes - reference["boxes"]).max()
    attention = np.abs(np.asarray(ins.encoder_attention) - reference["encoder"]).max()
    return f"| {logits:.1e} | {boxes:.1e} | {attention:.1e} |"


def _compare_detections(precisions: list[str], compile_backbone: bool, threshold: float = 0.5) -> None:
    """Same (query, label) set above `threshold`, plain vs each faster path, on every bundled example image."""
    model = detr_core.load_model("shapes")
    images = sorted(EXAMPLES.glob("*.jpg")) + sorted(EXAMPLES.glob("shapes_val/images/*"))
    faster = {"inspect_image(model)": (detr_core.load_model("shapes"), True)}
    for precision in precisions:
        faster[f"app, {precision}"] = (detr_core.optimize_for_inference(model, compile_backbone, precision), True)
    for path, (fast_model, fast) in faster.items():
        differ = [p.name for p in images if _kept(model, p, threshold, False) != _kept(fast_model, p, threshold, fast)]
        print(f"shapes, {path}: detections at threshold {threshold} differ from the plain model's on {len(differ)} "
              f"of {len(images)} bundled example images" + (f": {differ}" if differ else ""))


def _kept(model, path, threshold: float, fast: bool) -> set:
    return {(d.query, d.label) for d in detr_core.inspect_image(model, path, fast=fast).detections(threshold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", default="r50,shapes")
    parser.add_argument("--precisions", default="float32,bfloat16" if detr_core.bfloat16_is_fast() else "float32")
    parser.add_argument("--no-compile", action="store_true", help="keep the app's backbone eager")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    mm = MatmulPeak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, median of "
          f"{args.runs} interleaved runs; float32 peak at start {mm.gflops:.0f} GFLOP/s (best of 3 torch.mm, "
          f"4096x4096)")
    for name in args.models.split(","):
        try:
            measure(name, args.runs, precisions, not args.no_compile, mm)
        except RuntimeError as err:
            print(f"{name}: skipped: {err}")
    if "shapes" in args.models:
        _compare_detections(precisions, not args.no_compile)


if __name__ == "__main__":
    main()
