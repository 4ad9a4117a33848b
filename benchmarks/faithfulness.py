"""What a faithfulness test costs per detection: forwards and seconds, for the bundled model and a DETR-R50.

    python -m benchmarks.faithfulness [--models shapes,r50] [--batch-sizes 1,4,8,16] [--steps 8] [--full-r50]

For each model: the seconds per perturbed image of one batched forward at each batch size (the median of
`--runs` batches, run through detr_core.faithfulness.Detector exactly as the tests run them), the fastest batch
size, and then, at that batch size, one whole comparison of every explanation of one detection as the app's
panel runs it (steps 6, random over 2 seeds; compare_explanations) with its forwards and seconds; for the bundled
model also the app's panel itself, through its handler (the 10 s target). The cost of a
D-RISE mask is one perturbed forward, i.e. the seconds per image at the fastest batch size.

The R50 is DETR-R50-sized with random weights (no download here) on an 800x1066 image; its whole comparison
takes minutes on a 2-core CPU, so without --full-r50 it is estimated as forwards x seconds per image.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import detr_core
from detr_core.faithfulness import Detector, compare_explanations

EXAMPLE = Path(__file__).resolve().parent.parent / "webapp" / "examples" / "shapes.jpg"
PANEL_STEPS, PANEL_SEEDS = 6, 2  # the app panel's defaults (webapp/faithfulness_panel.py)


def _model_and_image(name: str):
    if name == "shapes":
        return detr_core.load_model("shapes"), str(EXAMPLE)
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.DETRConfig()).eval()
    image = np.random.default_rng(0).integers(0, 255, (800, 1066, 3), dtype=np.uint8)
    return model, image


def seconds_per_image(detector: Detector, pixels: torch.Tensor, batch: int, runs: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per image, medians over `runs` batches. On a shared machine
    the CPU seconds say more: wall time there includes waiting for the cores."""
    x = pixels[None].expand(batch, *pixels.shape).contiguous()  # [B, 3, h, w]
    detector(x[:1])  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        detector(x)
        wall.append((time.perf_counter() - start) / batch)
        cpu.append((time.process_time() - start_cpu) / batch)
    return statistics.median(wall), statistics.median(cpu)


def bench(name: str, batch_sizes: list[int], runs: int, full: bool) -> None:
    model, image = _model_and_image(name)
    detector = Detector(model)
    prepared = detector.prepare(image)
    print(f"\n{name}: input {prepared.input_size[0]}x{prepared.input_size[1]}")
    timed = {b: seconds_per_image(detector, prepared.pixels, b, runs) for b in batch_sizes}
    for b, (wall, cpu) in timed.items():
        print(f"  batch {b:3d}: {wall * 1000:8.1f} ms per perturbed image ({cpu * 1000:.1f} CPU-ms)")
    per_image = {b: wall for b, (wall, _) in timed.items()}
    best = min(per_image, key=per_image.get)
    print(f"  fastest batch size: {best}; one D-RISE mask costs {per_image[best] * 1000:.1f} ms")
    ins = detr_core.inspect_image(model, image)
    query = int(np.argmax(1 - ins.probabilities[:, -1]))
    if name == "shapes" or full:
        cpu = time.process_time()
        c = compare_explanations(model, ins, query, steps=PANEL_STEPS, batch_size=best, random_seeds=PANEL_SEEDS)
        print(f"  one detection, every map ({len(c.results)} methods, steps {PANEL_STEPS}): {c.forwards} forwards,"
              f" {c.seconds:.1f} s, {time.process_time() - cpu:.1f} CPU-s (measured, relevance's forward+backward"
              " included)")
    else:
        maps = 3 + ins.layer_logits.shape[0] + 2 + PANEL_SEEDS  # attention, rollout, relevance, layers, box,
        # centre, one random map per seed
        forwards = 2 + 2 * (PANEL_STEPS - 1) * maps
        print(f"  one detection, every map: {forwards} forwards, about {forwards * per_image[best]:.0f} s "
              "(estimated: forwards x seconds per image; --full-r50 measures it)")


def panel_seconds(runs: int) -> None:
    """The app's panel for the bundled model, end to end: its handler on an analysed page (query 0 of the shapes
    example, the panel's default steps, no D-RISE), curves drawn; the 10 s target of issue 20 is about this."""
    from webapp.analysis import analyze_handler
    from webapp.faithfulness_panel import DEFAULT_STEPS, faithfulness_handler
    from webapp.models import ModelCache
    from webapp.store import InspectionStore

    models, store = ModelCache(compile_backbone=False), InspectionStore()
    session = analyze_handler(models, store)(str(EXAMPLE), "shapes")[0]
    run = faithfulness_handler(models, store, with_drise=False)
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        run(session, 0, DEFAULT_STEPS, 0, progress=_NoProgress())
        print(f"  the app's panel (handler, query 0, steps {DEFAULT_STEPS}): {time.perf_counter() - start:.2f} s,"
              f" {time.process_time() - cpu:.2f} CPU-s")


class _NoProgress:
    """Stands in for gr.Progress outside a served page."""

    def __call__(self, *args, **kwargs) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="shapes,r50")
    p.add_argument("--batch-sizes", default="1,4,8,16")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--full-r50", action="store_true")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    for name in args.models.split(","):
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        if name == "r50":
            sizes = [b for b in sizes if b <= 4] or [1]  # 800x1066 batches of 8+ take gigabytes
        bench(name, sizes, args.runs, args.full_r50)
        if name == "shapes":
            panel_seconds(args.runs)


if __name__ == "__main__":
    main()
