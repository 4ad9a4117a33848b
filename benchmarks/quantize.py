"""What exact row sums cost: storing DETR-R50's encoder attention (6 layers of [8, 850, 850]) as uint16 codes.

    python -m benchmarks.quantize [--runs 7]

Three ways of rounding, interleaved so that load from other processes hits them alike:
- each value on its own (round(p * 65535); what was stored before): rows miss 1 by up to ~1e-3;
- cumulative rounding per row (detr_core/inspection/compact.py, what is stored now): rows sum to exactly 1;
- largest-remainder rounding per row (floor, then one more unit to the largest remainders), the textbook
  alternative with the same guarantees, vectorised with a sort of every row; here only to compare.
Prints the median time for the 6 layers, the ratio to rounding alone, and each one's worst row-sum and value error.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from detr_core.inspection.compact import SCALE, quantize


def rounded_alone(p: torch.Tensor) -> np.ndarray:
    return p.mul(SCALE).add_(0.5).to(torch.uint16).numpy()


def largest_remainder(p: torch.Tensor) -> np.ndarray:
    scaled = p * SCALE  # [..., S]
    floor = scaled.floor()
    remainder = (scaled - floor).masked_fill_(p == 0, -1.0)  # zeros are never raised
    missing = SCALE - floor.sum(-1, dtype=torch.float64).round().long()  # [...]: units each row still needs
    order = remainder.argsort(-1, descending=True)  # [..., S]
    raise_ = (torch.arange(p.shape[-1]) < missing[..., None]).to(torch.int32)  # the first `missing` in that order
    return floor.to(torch.int32).scatter_add_(-1, order, raise_).to(torch.uint16).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    # softmax rows from flat to peaky, as the encoder's heads give them
    layers = [torch.softmax(torch.randn(8, 850, 850, generator=gen) * torch.linspace(0.1, 12, 850)[:, None], -1)
              for _ in range(6)]
    methods = {"each value alone": rounded_alone, "cumulative (stored)": quantize,
               "largest remainder (sort)": largest_remainder}
    times = {name: [] for name in methods}
    for _ in range(args.runs):
        for name, fn in methods.items():
            start = time.perf_counter()
            for p in layers:
                fn(p)
            times[name].append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"6 x [8, 850, 850], median of {args.runs} interleaved runs")
    print("| rounding | ms for 6 layers | ratio to rounding alone | max abs(row sum - 1) | max abs(value - p) |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["each value alone"])
    for name, fn in methods.items():
        decoded = fn(layers[0]).astype(np.float64) / SCALE
        exact = layers[0].double().numpy()
        median = statistics.median(times[name])
        print(f"| {name} | {median * 1e3:.0f} | {median / base:.2f} | {np.abs(decoded.sum(-1) - 1).max():.1e} | "
              f"{np.abs(decoded - exact).max():.1e} |")


if __name__ == "__main__":
    main()
