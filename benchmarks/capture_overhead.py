"""What full attention capture costs: DETR-R50 (random weights) forward on an 800x1066 input, CPU.

    python -m benchmarks.capture_overhead [--runs 7] [--threads N]

Plain and captured runs are interleaved so that load from other processes hits both alike; the ratio of the
medians is the number to read (target: capture at most 1.05x the plain forward).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import detr_core


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.DETRConfig()).eval()
    x = torch.randn(1, 3, 800, 1066)

    def plain():
        with torch.inference_mode():
            model(x)

    def captured():
        with torch.inference_mode(), detr_core.capture_attention(model) as maps:
            model(x)
        return maps

    plain(), captured()  # warm-up: allocator and kernel selection
    times = {"plain forward": [], "forward + full capture": []}
    for _ in range(args.runs):
        times["plain forward"].append(timed(plain))
        times["forward + full capture"].append(timed(captured))
    maps = captured()
    nbytes = sum(t.numel() * t.element_size() for t in maps.encoder + maps.decoder_self + maps.decoder_cross)
    print(f"DETR-R50, random weights, input 800x1066, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {args.runs} runs")
    print(f"| {'path':<24} | median s | min s |")
    print(f"|{'-' * 26}|----------|-------|")
    for name, ts in times.items():
        print(f"| {name:<24} | {statistics.median(ts):8.3f} | {min(ts):5.3f} |")
    ratio = statistics.median(times["forward + full capture"]) / statistics.median(times["plain forward"])
    print(f"capture / plain (medians): {ratio:.3f}   captured attention: {nbytes / 1e6:.0f} MB float32")


if __name__ == "__main__":
    main()
