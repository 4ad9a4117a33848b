"""How a training step runs on its device: numeric precision, memory layout, compilation.

Chosen by measurement (docs/train-speed.md, ``python -m benchmarks.train_throughput``):

- precision: ``torch.autocast`` in bfloat16 on CUDA cards that have it and on CPUs with native
  bfloat16 (AVX512-BF16 or AMX), where it made the shapes step 1.6-1.8x faster here; float32 on
  other CPUs, where bfloat16 is emulated and slower. float16 (CUDA only) runs with a gradient
  scaler. The losses, the matcher and the optimiser stay float32 whatever the precision; only
  the model's forward (and so its backward) runs in the lower precision.
- channels-last input: the convolutions then run in oneDNN's/cuDNN's preferred layout; only the
  input is converted (the weights keep their layout, so checkpoints do not change).
- ``torch.compile`` of the model: off by default (compiling a training graph takes minutes on a
  small CPU, and multi-scale training changes the input size every step); ``--compile`` asks for it.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from torch import nn

from detr_core import bfloat16_is_fast

log = logging.getLogger(__name__)
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class StepSettings:
    """Precision, layout and compilation of the training step (see the module docstring)."""

    precision: str = "float32"
    compile: bool = False
    channels_last: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: choose one of {sorted(PRECISIONS)}")

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]


def default_precision(device: torch.device) -> str:
    """bfloat16 where the hardware computes it natively, float32 elsewhere (float16 on old CUDA cards)."""
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if bfloat16_is_fast() else "float32"


def step_settings(device: torch.device, precision: str | None = None,
                  compile: bool | None = None) -> StepSettings:
    """The per-device defaults with the user's choices applied; ValueError for float16 off CUDA."""
    precision = precision or default_precision(device)
    if precision == "float16" and device.type != "cuda":
        raise ValueError(f"--precision float16 needs a CUDA device (got {device}); on a CPU use bfloat16 "
                         "(fast where the CPU has AVX512-BF16 or AMX) or float32")
    if precision == "bfloat16" and device.type == "cpu" and not bfloat16_is_fast():
        log.warning("this CPU has no native bfloat16 (AVX512-BF16/AMX): --precision bfloat16 is emulated "
                    "and likely slower than float32")
    return StepSettings(precision, bool(compile), channels_last=True)


def autocast(settings: StepSettings, device: torch.device):
    """The forward's precision context (a no-op for float32)."""
    if settings.precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=settings.dtype)


def grad_scaler(settings: StepSettings, device: torch.device) -> torch.amp.GradScaler | None:
    """float16's loss scaler (its gradients would underflow without one); None otherwise."""
    if settings.precision != "float16":
        return None
    return torch.amp.GradScaler(device.type)


def model_input(pixels: torch.Tensor, settings: StepSettings) -> torch.Tensor:
    """[B, 3, H, W] pixels in the layout the step runs in (same values, other strides)."""
    return pixels.contiguous(memory_format=torch.channels_last) if settings.channels_last else pixels


def compiled(module: nn.Module, settings: StepSettings) -> nn.Module:
    """``module`` compiled for training (dynamic shapes: multi-scale sizes must not recompile every
    step), or ``module`` itself. Parameters stay shared, so the optimiser and checkpoints see the same ones."""
    if not settings.compile:
        return module
    return torch.compile(module, dynamic=True)
