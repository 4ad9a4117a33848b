"""What inspecting a DETR-family model costs over the plain transformers forward (random weights).

    python -m benchmarks.family_capture [--runs 5] [--threads N] [--device cpu|cuda] [--only rt_detr|deformable_detr]
                                        [--input 640x640]

Models of the official R50 sizes: RT-DETR-R50 (RTDetrConfig(): ResNet-50-vd, hybrid encoder, 6 decoder
layers, 300 queries) and Deformable DETR-R50 (DeformableDetrConfig(): timm ResNet-50, 6+6 layers, 4 levels,
300 queries), each at 640x640 and 800x1066 inputs (the image processor resizes a 480x640 image to them).
RT-DETR runs 800x1056 instead: its FPN needs sides divisible by 32 (transformers fails at 1066: 67 vs 68 cells).

Paths, interleaved run by run so that load from other processes hits them alike:
- plain: the image processor + `model(**inputs)` as transformers runs it by default (sdpa attention where
  the model supports it), under inference_mode;
- captured forward: `run_captured` (the same processor; eager attention, capture hooks and taps,
  output_attentions, every layer's predictions), the first half of `inspect_family`;
- inspect: `inspect_family`, i.e. the captured forward plus `assemble` (packing into numpy).
Read the ratios of medians of wall-clock time and of this process's CPU time (all threads; less sensitive to
other processes on a shared machine), and the ratio of the fastest runs. `assemble` alone is also timed on
one captured forward (deterministic work, no model): the part of the overhead that is pure packaging.
Target: inspect at most 1.10x plain.
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import numpy as np
import torch
import transformers
from PIL import Image

from detr_core.family import FamilyModel, inspect_family
from detr_core.family.inspect import assemble, run_captured

SIZES = {"rt_detr": ((640, 640), (800, 1056)), "deformable_detr": ((640, 640), (800, 1066))}


def build(name: str) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if name == "rt_detr":
            return transformers.RTDetrForObjectDetection(transformers.RTDetrConfig()).eval()
        return transformers.DeformableDetrForObjectDetection(transformers.DeformableDetrConfig()).eval()


def processor(name: str, size: tuple[int, int]):
    h, w = size
    if name == "rt_detr":
        return transformers.RTDetrImageProcessor(size={"height": h, "width": w})
    return transformers.DeformableDetrImageProcessor(size={"shortest_edge": min(h, w), "longest_edge": max(h, w)}
                                                     if h != w else {"height": h, "width": w})


def timed(fn, device: str) -> tuple[float, float]:
    """(wall-clock s, process CPU s) of one call."""  # CPU time counts every thread of this process
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def kept_bytes(ins) -> int:
    """Bytes of the arrays an inspection keeps (sampling points, attention maps, predictions)."""
    arrays = [ins.layer_logits, ins.layer_boxes, ins.decoder.locations, ins.decoder.weights, ins.decoder.references,
              ins.decoder_self_attention]
    if ins.encoder_sampling is not None:
        arrays += [ins.encoder_sampling.locations, ins.encoder_sampling.weights]
    total = sum(a.nbytes for a in arrays if a is not None)
    return total + (ins.encoder_attention.nbytes if ins.encoder_attention is not None else 0)


def bench(name: str, size: tuple[int, int], runs: int, device: str) -> dict:
    default = build(name).to(device)  # transformers' default attention implementation
    eager = copy.deepcopy(default)
    eager.set_attn_implementation("eager")
    proc = processor(name, size)
    fm = FamilyModel.from_transformers(eager, proc)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    assert tuple(proc(images=image, return_tensors="pt")["pixel_values"].shape[-2:]) == size

    def plain():
        inputs = {k: v.to(device) for k, v in proc(images=image, return_tensors="pt").items()}
        with torch.inference_mode():
            default(**inputs)

    paths = {"plain": plain, "captured forward": lambda: run_captured(fm, image),
             "inspect": lambda: inspect_family(fm, image)}
    for fn in paths.values():  # warm-up: allocator, kernel selection
        fn()
    times: dict[str, list[tuple[float, float]]] = {p: [] for p in paths}
    for _ in range(runs):
        for path, fn in paths.items():
            times[path].append(timed(fn, device))
    captured = run_captured(fm, image)
    packing = min(timed(lambda: assemble(fm, captured), "cpu")[0] for _ in range(5))
    return {"times": times, "assemble": packing, "kept": kept_bytes(assemble(fm, captured))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("rt_detr", "deformable_detr"), default=None)
    parser.add_argument("--input", default=None, help="one input size, e.g. 640x640 (default: both of each model)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [args.only] if args.only else ["rt_detr", "deformable_detr"]
    print(f"random weights, torch {torch.__version__}, transformers {transformers.__version__}, {args.device},"
          f" {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {args.runs} runs")
    print("wall-clock s (process CPU s), medians over runs")
    print("| model | input | plain | captured forward | inspect | inspect / plain: median wall (CPU) |"
          " inspect / plain: fastest runs | assemble alone | kept by the result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        for size in SIZES[name]:
            if args.input and f"{size[0]}x{size[1]}" != args.input:
                continue
            result = bench(name, size, args.runs, args.device)
            times = result["times"]
            wall = {p: statistics.median(t[0] for t in ts) for p, ts in times.items()}
            cpu = {p: statistics.median(t[1] for t in ts) for p, ts in times.items()}
            fastest = min(t[0] for t in times["inspect"]) / min(t[0] for t in times["plain"])
            cells = [f"{wall[p]:.2f} ({cpu[p]:.2f})" for p in times]
            print(f"| {name} | {size[0]}x{size[1]} | " + " | ".join(cells) +
                  f" | {wall['inspect'] / wall['plain']:.3f} ({cpu['inspect'] / cpu['plain']:.3f}) | {fastest:.3f} |"
                  f" {1000 * result['assemble']:.0f} ms | {result['kept'] / 1e6:.0f} MB |", flush=True)

if __name__ == "__main__":
    main()
