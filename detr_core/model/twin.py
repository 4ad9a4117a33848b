"""The inference twin of a model: what every inspection entry point runs, so that each one gets the fast path
without changing the model a user trains or saves.

    twin = detr_core.inference_twin(model)   # inspect_image(model, ...) and the teaching views do this themselves

The twin is `optimize_for_inference(model, share_parameters=True)`: its own ResNet with the batch norms folded
into the convolutions, channels-last (new, derived weights: 94 MB for R50), and `model`'s own tensors for
everything after it (input projection, positions, transformer, heads), so those cost no memory and can never be
stale. The same numbers as `model` in eval mode up to float rounding; float32 only (bfloat16 stays opt-in
through optimize_for_inference). It is built on first use (0.3-0.6 s of CPU for R50), kept per model (weakly:
it goes with the model) and built again as soon as the model's tensors change, which is checked on every call
(1-2 ms for R50) from what PyTorch tracks about each parameter and buffer:
- its version counter, which every in-place write bumps: optimizer steps, load_state_dict, writes under
  torch.no_grad(), batch-norm running statistics updated by a forward pass in training mode;
- its identity and storage: parameters or modules replaced, the model moved or cast.
Writes through `tensor.data` bypass the version counter (as they bypass autograd): after one, call
`forget_inference_twin(model)`.

A library call never starts work that outlives it: the twin's backbone is compiled only when asked,
synchronously: `inference_twin(model, compile_backbone=True)` (a notebook or a long script that inspects many
images; 5-13 s for R50 on a quiet machine, then the backbone goes from 0.62-0.64 to 0.46-0.50 s,
benchmarks/NOTES.md, with bit-identical numbers), or DETR_LENS_COMPILE=1 for every new twin of the process. By
default (`compile_backbone=None`) nothing is compiled: a short script that inspects one image exits as soon as
it is done (a compile still running in a background thread when the interpreter exits aborts the process:
'terminate called without an active exception'). The app, a long-lived server, compiles its own copies in the
background and waits for them at shutdown (webapp/models.py). Where compiling fails (no C++ compiler, say) the
eager twin simply stays.
"""
from __future__ import annotations

import logging
import os
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
    # the submodules and tensors fingerprinted, kept alive so that no new object can reuse their ids or memory
    # (not the model itself: the cache must not keep it alive)
    seen: list


log = logging.getLogger(__name__)
# opt-in: compile every new twin (synchronously, in the calling thread); never in a background thread
COMPILE_BY_DEFAULT = os.environ.get("DETR_LENS_COMPILE", "0") == "1"
_TWINS: "weakref.WeakKeyDictionary[nn.Module, _Twin]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()  # one build per model, even when several threads inspect it at once


def inference_twin(model: nn.Module, compile_backbone: bool | None = None) -> nn.Module:
    """The model to run for inspecting `model`: its cached inference twin, or `model` itself where none applies:
    a model already from optimize_for_inference, one with `use_inference_twin = False`, one that is not a
    float32 detr_core DETR, and one with forward hooks registered on it (they must see the pass).

    compile_backbone: True compiles the twin's backbone (once; seconds) before returning; False never compiles;
    None (default) compiles only where DETR_LENS_COMPILE=1 asks for it. Never in the background: nothing this
    call starts outlives it.
    """
    if not isinstance(model, DETR) or getattr(model, "inference_only", False) or not model.use_inference_twin:
        return model
    parts = _parts(model)
    if parts is None:
        return model
    modules, tensors = parts
    fingerprint = _fingerprint(modules, tensors)
    with _LOCK:
        cached = _TWINS.get(model)
        built = cached is None or cached.fingerprint != fingerprint
        if built:
            twin = _without_hooks(optimize_for_inference(model, share_parameters=True))
            cached = _Twin(fingerprint, twin, modules[1:] + tensors)
            _TWINS[model] = cached
    twin = cached.model
    wanted = COMPILE_BY_DEFAULT if compile_backbone is None else compile_backbone
    if wanted and twin.backbone[0].body.compiled is None:
        if compile_backbone:
            compile_backbone_now(twin)  # asked for by name: a failure is the caller's to see
        else:
            _compile_quietly(twin)
    return twin


def _compile_quietly(twin: nn.Module) -> None:
    """Compile for DETR_LENS_COMPILE=1; on failure the eager twin keeps serving: nothing is lost."""
    try:
        log.info("compiled an inference twin's backbone in %.1f s", compile_backbone_now(twin))
    except Exception as err:  # any compiler failure only means staying eager
        log.warning("could not compile an inference twin's backbone (%s); staying on the eager backbone", err)


def forget_inference_twin(model: nn.Module) -> None:
    """Drop `model`'s cached twin (e.g. after writing its weights through `.data`); the next use builds a new one."""
    with _LOCK:
        _TWINS.pop(model, None)


def _without_hooks(twin: nn.Module) -> nn.Module:
    """Hooks another thread registered on the model while it was copied (capture_attention's, say) would stay
    on the twin for good; the twin's modules are its own, so clearing them leaves the model's hooks alone."""
    for module in twin.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    return twin


def _parts(model: nn.Module) -> tuple[list, list] | None:
    """Every module of `model` (itself first) and every tensor they own, in one pass over the modules' own dicts
    (the generators behind model.parameters() and friends cost several times more, on every inspection).
    None where no twin applies: forward hooks on a module, or a parameter that is not float32."""
    modules, tensors = [], []
    for module in model.modules():
        if module._forward_hooks or module._forward_pre_hooks:
            return None
        modules.append(module)
        for param in module._parameters.values():
            if param is not None:
                if param.dtype != torch.float32:
                    return None
                tensors.append(param)
        tensors += (buffer for buffer in module._buffers.values() if buffer is not None)
    return modules, tensors


def _fingerprint(modules: list, tensors: list) -> tuple:
    """What PyTorch tracks about each module and tensor: its identity, and for a tensor its storage and version
    counter (which every in-place write bumps, also under no_grad)."""
    return (*map(id, modules), *(x for t in tensors for x in (id(t), t.data_ptr(), t._version)))
