"""A faster CPU copy of a DETR for inspection, with the same outputs up to float rounding.

Exact rewrites, measured in benchmarks/inference.py (the reasoning is in benchmarks/NOTES.md):
- every batch norm (frozen, or BatchNorm2d in eval) is folded into the convolution before it, so 53 passes
  over large activation maps disappear (y = (W x) * s + t  ==  (W * s) x + t);
- the backbone runs channels-last (NHWC), the layout oneDNN's convolutions use natively, which removes a
  layout conversion around every convolution;
- optionally (`compile_backbone`, or later with `compile_backbone_now`), the backbone is compiled by
  torch.compile/inductor with frozen weights, which fuses each convolution with the ReLU and residual add
  after it. The compiled graph takes any image size (dynamic shapes) and serves inference-mode calls only:
  calls that need gradients (the relevance views) run the eager backbone with the same weights;
- a key-padding mask with nothing padded (one image) is dropped, which skips building a [B*heads, L, S]
  additive mask of zeros in every attention layer.
Not exact, and therefore opt-in (`precision="bfloat16"`): the backbone's weights and activations in bfloat16,
which CPUs with AMX or AVX512-BF16 run several times faster; the transformer, and so every attention map, stays
float32 on the slightly different features. Callers that show results must say so (`fast.approximate`).
The transformer is untouched, so attention capture hooks the same modules. The copy is for inference only:
its state dict no longer has the official layout, and save_model refuses it.
"""
from __future__ import annotations

import copy
import logging
import time

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .detr import DETR

_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)
_CUDA_HOME_NOTICE = "No CUDA runtime is found"


class _NoCudaHomeNotice(logging.Filter):
    """Drops the one line torch.utils.cpp_extension logs when it is first imported on a machine with a CUDA
    toolkit (nvcc on the PATH) but no GPU: "No CUDA runtime is found, using CUDA_HOME=...". torch.compile
    imports that module; this file compiles for the CPU only, where CUDA_HOME is never used, so the line
    only tells the user about a problem they do not have."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_CUDA_HOME_NOTICE)


def _quiet_cuda_home_notice() -> None:
    """Install the filter once, and only where there is no GPU (with one the notice is never logged)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not torch.cuda.is_available() and not any(isinstance(f, _NoCudaHomeNotice) for f in logger.filters):
        logger.addFilter(_NoCudaHomeNotice())


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Absorb `norm` (per output channel: (x - mean) / sqrt(var + eps) * weight + bias) into `conv`."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # [C_out]
    shift = norm.bias - norm.running_mean * scale
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = shift if conv.bias is None else conv.bias.data * scale + shift
    conv.bias = nn.Parameter(bias.detach().clone())


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every (conv, norm) pair that follows each other in `module`'s children, recursively.

    Pairs are found by name, as torchvision's ResNet names them (convN/bnN, downsample.0/1). -> pairs folded.
    """
    folded = 0
    children = dict(module.named_children())
    for name, child in children.items():
        partner = None
        if isinstance(child, _NORMS):
            partner = children.get(name.replace("bn", "conv")) if name.startswith("bn") else \
                children.get(str(int(name) - 1)) if name.isdigit() else None
        if isinstance(partner, nn.Conv2d):
            _fold(partner, child)
            setattr(module, name, nn.Identity())
            folded += 1
        elif not isinstance(child, _NORMS):
            folded += fold_batch_norms(child)
    return folded


class _ChannelsLast(nn.Module):
    """Wraps the backbone body so its input is NHWC; outputs stay valid tensors in any layout.

    Once `compile_now` has run, inference-mode calls go through the compiled graph; other calls
    (gradients, no_grad) stay eager, so the compiled graph never meets a grad mode it was not built for.
    """

    def __init__(self, body: nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.body = body.to(dtype=dtype, memory_format=torch.channels_last)
        self.dtype = dtype
        self.compiled = None

    def forward(self, x):
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        if self.compiled is not None and torch.is_inference_mode_enabled():
            return self.compiled(x).float()
        return self.body(x).float()

    def compile_now(self, example: torch.Tensor) -> float:
        """Compile for inference and run `example` [1, 3, H, W] once through it; -> seconds it took."""
        start = time.perf_counter()
        _quiet_cuda_home_notice()  # before torch.compile first imports torch.utils.cpp_extension
        compiled = torch.compile(self.body, dynamic=True, options={"freezing": True})
        with torch.inference_mode():
            compiled(example.to(self.dtype).contiguous(memory_format=torch.channels_last))
        self.compiled = compiled  # published only once it works: other threads keep running eager
        return time.perf_counter() - start


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def optimize_for_inference(model: DETR, compile_backbone: bool = False, precision: str = "float32", *,
                           share_parameters: bool = False) -> DETR:
    """A copy of `model` in eval mode with batch norms folded and a channels-last backbone
    (compiled too with `compile_backbone`, which takes seconds; see `compile_backbone_now`).

    precision="bfloat16" is the approximate mode (see the module docstring); ValueError where the CPU
    has no native bfloat16, since there it would be slower, not faster.
    share_parameters=True: only the ResNet (whose folded weights are new) is copied; the copy's input
    projection, positions, transformer and heads use `model`'s own parameter tensors, which saves their
    memory and means an update of them shows in both (what the cached inference twin wants, model/twin.py).
    """
    dtype = _backbone_dtype(precision)
    fast = copy.deepcopy(model, _shared_tensors(model) if share_parameters else {}).eval()
    body = fast.backbone[0]
    count = fold_batch_norms(body.body)
    expected = sum(isinstance(m, _NORMS) for m in model.backbone[0].body.modules())
    assert count == expected, f"folded {count} of {expected} batch norms"
    body.body = _ChannelsLast(body.body, dtype)
    fast.transformer.drop_empty_padding_mask = True
    fast.inference_only = True  # parameters keep requires_grad: relevance views differentiate through them
    fast.approximate = dtype != torch.float32
    if compile_backbone:
        compile_backbone_now(fast)
    return fast


def _shared_tensors(model: DETR) -> dict:
    """A deepcopy memo that maps every tensor outside the ResNet to itself, so that deepcopy keeps it shared."""
    resnet = model.backbone[0]
    own = {id(t) for t in (*resnet.parameters(), *resnet.buffers())}
    return {id(t): t for t in (*model.parameters(), *model.buffers()) if id(t) not in own}


def bfloat16_is_fast() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16), as oneDNN reports it."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


def _backbone_dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {sorted(PRECISIONS)}")
    if precision == "bfloat16" and not bfloat16_is_fast():
        raise ValueError("precision='bfloat16' needs a CPU with native bfloat16 (AMX or AVX512-BF16); "
                         "this one would run it slower than float32. Use precision='float32'.")
    return PRECISIONS[precision]


def compile_backbone_now(fast: DETR, size: tuple[int, int] | None = None) -> float:
    """Compile the backbone of an `optimize_for_inference` copy (inductor, cached on disk by torch) and
    warm it up on a [1, 3, H, W] input of `size` (default: the model's usual input). -> seconds taken.

    Safe to call from a background thread while other threads run the model: they stay on the eager
    backbone until the compiled one has run once. RuntimeError if `fast` is not an optimised copy.
    """
    wrapper = fast.backbone[0].body
    if not isinstance(wrapper, _ChannelsLast):
        raise RuntimeError("compile_backbone_now needs a model from optimize_for_inference")
    if size is None:
        size = (fast.preprocess.min_size, fast.preprocess.min_size * 4 // 3)
    device = next(fast.parameters()).device
    return wrapper.compile_now(torch.zeros(1, 3, *size, device=device))
