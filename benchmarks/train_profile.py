"""Where a training step's time goes: ``python -m benchmarks.train_throughput --profile``.

``torch.profiler`` records the named ranges of ``train.loop.Trainer.train_step`` (to_device, forward,
loss, matcher, sync, backward, optimizer), the data loader's ``next`` (with the dataset's
augmentation as its own range) and the ops inside them. Shares are of the wall time of the profiled
steps, taken from the ranges' host (CPU) time. On CUDA the host runs ahead of the device, so device
work shows up where the host waits for it: in "sync" (the step's one read-back of the losses) and
in the matcher's one copy of the costs; a large "sync" there means the step is bound by the GPU.

Achieved FLOP/s: ``torch.utils.flop_counter`` counts one forward and backward on the first profiled
batch (float32, whatever the step's precision), scaled to every batch by its padded pixel count,
against a ``torch.mm`` peak measured in the step's precision at the start.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

PHASES = ("data", "augmentation", "to_device", "forward", "loss", "matcher", "sync", "backward", "optimizer")


class Labelled:
    """A dataset transform that shows up as its own profiler range."""

    def __init__(self, transforms, name: str):
        self.transforms, self.name = transforms, name

    def __call__(self, image, target):
        with record_function(self.name):
            return self.transforms(image, target)


@dataclass(frozen=True)
class StepProfile:
    steps: int
    images: int
    seconds: float
    phase_ms: dict  # phase -> host milliseconds over all steps, nested ranges subtracted
    top_ops: list  # (op name, self milliseconds, calls), slowest first
    flops: float  # forward + backward FLOP over all steps
    peak_flops: float  # measured torch.mm FLOP/s

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best FLOP/s of a square ``torch.mm`` in ``dtype`` (2048 on a CPU, 8192 on a GPU)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def step_flops(trainer, batch) -> float:
    """FLOP of one float32 forward + backward of ``trainer``'s network on ``batch`` (gradients dropped)."""
    dev = trainer.info.device
    with FlopCounterMode(display=False) as counter:
        out = trainer.net(batch.pixel_values.to(dev), batch.pixel_mask.to(dev))
        (out["pred_logits"].float().sum() + out["pred_boxes"].float().sum()).backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _phase_ms(prof) -> dict:
    """Host time of each named range, minus the ranges nested in it (augmentation in data, matcher in loss)."""
    totals = {p: 0.0 for p in PHASES}
    for event in prof.key_averages():
        if event.key in totals:
            totals[event.key] += event.cpu_time_total / 1000
    totals["data"] -= totals["augmentation"]
    totals["loss"] -= totals["matcher"]
    return totals


def _top_ops(prof, device: torch.device, n: int = 12) -> list:
    events = [e for e in prof.key_averages() if e.key not in PHASES and not e.key.startswith("ProfilerStep")]
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events.sort(key=lambda e: getattr(e, key, 0.0), reverse=True)
    return [(e.key, getattr(e, key, 0.0) / 1000, e.count) for e in events[:n]]


def profile_steps(trainer, batches, steps: int, peak_dtype: torch.dtype) -> StepProfile:
    """Profile ``steps`` training steps fed from the iterator ``batches`` (already warmed up)."""
    dev = trainer.info.device
    peak = matmul_peak(dev, peak_dtype)
    first = next(batches)
    flops_first = step_flops(trainer, first)
    pixels_first = first.pixel_values[0].numel()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    images, flops = 0, 0.0
    synchronize(dev)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            with record_function("data"):
                batch = next(batches)
            trainer.train_step(batch)
            images += len(batch.targets)
            flops += flops_first * batch.pixel_values[0].numel() / pixels_first * len(batch.targets) / len(first.targets)
        synchronize(dev)
    seconds = time.perf_counter() - start
    return StepProfile(steps, images, seconds, _phase_ms(prof), _top_ops(prof, dev), flops, peak)


def format_profile(p: StepProfile, title: str) -> str:
    """The profile as Markdown tables (phases, then the slowest ops)."""
    wall_ms = p.seconds * 1000
    lines = [f"### {title}", "", f"{p.steps} steps, {p.images} images in {p.seconds:.2f} s: "
             f"**{p.images_per_s:.2f} images/s**; achieved {p.flops / p.seconds / 1e9:.1f} GFLOP/s "
             f"= {100 * p.flops / p.seconds / p.peak_flops:.1f}% of the measured torch.mm peak "
             f"({p.peak_flops / 1e9:.0f} GFLOP/s); {p.flops / p.images / 1e9:.2f} GFLOP per image "
             "(forward + backward)", "", "| phase | ms per step | share of the step |", "|---|---|---|"]
    for phase in PHASES:
        ms = p.phase_ms[phase]
        lines.append(f"| {phase} | {ms / p.steps:.1f} | {100 * ms / wall_ms:.1f}% |")
    other = wall_ms - sum(p.phase_ms.values())
    lines.append(f"| other (Python between ranges, profiler) | {other / p.steps:.1f} | {100 * other / wall_ms:.1f}% |")
    lines += ["", "| op (self time) | ms per step | calls per step |", "|---|---|---|"]
    lines += [f"| `{name}` | {ms / p.steps:.1f} | {calls / p.steps:.0f} |" for name, ms, calls in p.top_ops]
    return "\n".join(lines)
