"""The inference twin of a model: what every inspection entry point runs, so that each one gets the fast path
without changing the model a user trains or saves.

    twin = detr_core.inference_twin(model)   # inspect_image(model, ...) and the teaching views do this themselves

The twin is `optimize_for_inference(model, share_parameters=True)`: its own ResNet with the batch norms folded
into the convolutions, channels-last (new, derived weights), and `model`'s own tensors for everything after it
(input projection, positions, transformer, heads), so those cost no memory and can never be stale. The same
numbers as `model` in eval mode up to float rounding; float32 only (bfloat16 stays opt-in through
optimize_for_inference). It is built on first use (about 0.1 s for R50), kept per model (weakly: it goes with the
model) and built again as soon as the model's tensors change, which is checked on every call in well under a
millisecond from what PyTorch tracks about each parameter and buffer:
- its version counter, which every in-place write bumps: optimizer steps, load_state_dict, writes under
  torch.no_grad(), batch-norm running statistics updated by a forward pass in training mode;
- its identity and storage: parameters or modules replaced, the model moved or cast.
Writes through `tensor.data` bypass the version counter (as they bypass autograd): after one, call
`forget_inference_twin(model)`. Compiling the twin's backbone (torch.compile, 5-13 s for R50, then ~20% faster)
is opt-in: `inference_twin(model, compile_backbone=True)` compiles the cached twin once.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from .detr import DETR
from .optimize import compile_backbone_now, optimize_for_inference


@dataclass
class _Twin:
    fingerprint: tuple
    model: DETR


_TWINS: "weakref.WeakKeyDictionary[nn.Module, _Twin]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()  # one build per model, even when several threads inspect it at once


def inference_twin(model: nn.Module, compile_backbone: bool = False) -> nn.Module:
    """The model to run for inspecting `model`: its cached inference twin, or `model` itself where none applies:
    a model already from optimize_for_inference, one with `use_inference_twin = False`, one that is not a
    float32 detr_core DETR, and one with forward hooks registered on it (they must see the pass).

    compile_backbone=True compiles the twin's backbone (once; seconds) before returning it.
    """
    if not _applies(model):
        return model
    fingerprint = _fingerprint(model)
    with _LOCK:
        cached = _TWINS.get(model)
        if cached is None or cached.fingerprint != fingerprint:
            cached = _Twin(fingerprint, _without_hooks(optimize_for_inference(model, share_parameters=True)))
            _TWINS[model] = cached
    twin = cached.model
    if compile_backbone and twin.backbone[0].body.compiled is None:
        compile_backbone_now(twin)
    return twin


def forget_inference_twin(model: nn.Module) -> None:
    """Drop `model`'s cached twin (e.g. after writing its weights through `.data`); the next use builds a new one."""
    with _LOCK:
        _TWINS.pop(model, None)


def _applies(model: nn.Module) -> bool:
    return (isinstance(model, DETR) and not getattr(model, "inference_only", False)
            and model.use_inference_twin
            and all(p.dtype == torch.float32 for p in model.parameters())
            and not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()))


def _without_hooks(twin: nn.Module) -> nn.Module:
    """Hooks another thread registered on the model while it was copied (capture_attention's, say) would stay
    on the twin for good; the twin's modules are its own, so clearing them leaves the model's hooks alone."""
    for module in twin.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    return twin


def _fingerprint(model: nn.Module) -> tuple:
    """What PyTorch tracks about every tensor and module of `model`: changes whenever any of them is replaced,
    moved, or written in place (version counters count in-place writes, also under no_grad)."""
    tensors = (*model.parameters(), *model.buffers())
    return (tuple((id(t), t.data_ptr(), t._version) for t in tensors), tuple(map(id, model.modules())))
