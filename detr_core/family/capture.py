"""Record what a DETR-family model hands to its multi-scale deformable attention, layer by layer.

Every `*MultiscaleDeformableAttention` module of an encoder or decoder layer computes sampling locations and
attention weights and passes them to a kernel: the `MultiScaleDeformableAttention` submodule (`.attn`;
Deformable DETR, RT-DETR, LW-DETR, RF-DETR) or the function `multi_scale_deformable_attention_v2`
(RT-DETRv2 at module level; D-FINE and DEIMv2 through their `ms_deformable_attn_core` attribute). A forward
pre-hook on the module, or a `function_tap` on the function, sees exactly the tensors the kernel uses; a
pre-hook on the calling module sees the reference points. Nothing is recomputed, nothing is changed.

Dense attention (Conditional/DAB-DETR, RT-DETR's AIFI encoder, every decoder's self-attention) comes from
the model itself (`output_attentions=True` with eager attention). A forward hook on the base model keeps
its output, which carries what the detection head does not return (DAB-DETR's per-layer hidden states and
anchor boxes, Conditional DETR's reference points).

Hooks and taps live only inside `capture_family` and record only forward passes of the thread that opened
it; they are removed on exit, also when the body raises.
"""
from __future__ import annotations

import inspect
import re
import sys
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from .function_tap import tap

KERNEL_FUNCTION = "multi_scale_deformable_attention_v2"
KERNEL_ATTRIBUTE = "ms_deformable_attn_core"
_LAYER_NAME = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.[^.]+$")


@dataclass
class DeformableCall:
    """One multi-scale deformable attention call as the model made it (tensors keep the batch dimension).

    sampling_locations [B, N, heads, T, 2]: (x, y) normalised to the grid of each point's level (0 and 1 are
    the grid's outer edges). attention_weights [B, N, heads, T]: softmax over the T points of a query and head.
    points_per_level: T = sum(points_per_level), points ordered level by level. level_sizes: (h_l, w_l) of
    each value map. reference_points [B, N, R, 2 | 4]: as handed to the attention (R = 1 or one per level).
    """

    reference_points: torch.Tensor
    sampling_locations: torch.Tensor | None = None
    attention_weights: torch.Tensor | None = None
    points_per_level: tuple[int, ...] = ()
    level_sizes: tuple[tuple[int, int], ...] = ()


@dataclass
class FamilyCapture:
    """What one forward pass handed to its deformable attention: encoder and decoder calls in layer order,
    and the base model's output."""

    encoder: list[DeformableCall] = field(default_factory=list)
    decoder: list[DeformableCall] = field(default_factory=list)
    base_output: Any = None


def deformable_attention_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """{"encoder": [...], "decoder": [...]}: the modules computing sampling locations and weights, in layer order."""
    found: dict[str, dict[int, nn.Module]] = {"encoder": {}, "decoder": {}}
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("MultiscaleDeformableAttention"):
            continue
        match = _LAYER_NAME.search(name)
        if match is None:
            raise RuntimeError(f"deformable attention at {name!r} is in neither an encoder nor a decoder layer")
        found[match.group(1)][int(match.group(2))] = module
    return {kind: [layers[i] for i in sorted(layers)] for kind, layers in found.items()}


def kernel_of(attention: nn.Module) -> nn.Module | tuple[Any, str]:
    """Where `attention` hands over locations and weights: a submodule, or (owner, attribute) of a function."""
    if isinstance(getattr(attention, "attn", None), nn.Module):
        return attention.attn
    if KERNEL_ATTRIBUTE in vars(attention):
        return attention, KERNEL_ATTRIBUTE
    module = sys.modules[type(attention).__module__]
    if callable(getattr(module, KERNEL_FUNCTION, None)):
        return module, KERNEL_FUNCTION
    raise RuntimeError(f"{type(attention).__name__} calls no deformable attention kernel DETR Lens knows;"
                       " this transformers version is not supported")


def _arguments(kernel: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The kernel module's forward arguments by parameter name."""
    return dict(inspect.signature(kernel.forward).bind(*args, **kwargs).arguments)


def _fill(call: DeformableCall, arguments: dict[str, Any]) -> None:
    """Take locations, weights and level layout from a kernel's arguments (v1 or v2 layout)."""
    locations, weights = arguments["sampling_locations"], arguments["attention_weights"]
    shapes = arguments.get("value_spatial_shapes_list", arguments.get("value_spatial_shapes"))
    call.level_sizes = tuple((int(h), int(w)) for h, w in shapes)
    if locations.dim() == 6:  # v1: [B, N, heads, levels, points, 2] -> [B, N, heads, levels*points, 2]
        levels, points = locations.shape[3], locations.shape[4]
        call.points_per_level = (points,) * levels
        locations, weights = locations.flatten(3, 4), weights.flatten(3, 4)
    else:  # v2: [B, N, heads, T, 2], points per level in num_points_list
        call.points_per_level = tuple(int(p) for p in arguments["num_points_list"])
    call.sampling_locations, call.attention_weights = locations.detach(), weights.detach()


@contextmanager
def capture_family(model: nn.Module) -> Iterator[FamilyCapture]:
    """Within the context, forward passes of `model` in this thread record every deformable attention call."""
    capture, owner = FamilyCapture(), threading.get_ident()
    open_call: list[DeformableCall] = []  # the call in progress (one at a time: layers run in sequence)

    def opener(module, args, kwargs):
        if threading.get_ident() == owner:
            references = kwargs.get("reference_points")
            if references is None:
                raise RuntimeError(f"{type(module).__name__} was called without reference_points as a keyword;"
                                   " this transformers version is not supported")
            open_call.append(DeformableCall(references.detach()))

    def closer(store: list):
        def close(module, args, output):
            if threading.get_ident() == owner:
                call = open_call.pop()
                if call.sampling_locations is None:
                    raise RuntimeError(f"{type(module).__name__} did not call its kernel where DETR Lens looks;"
                                       " this transformers version is not supported")
                store.append(call)
        return close

    def record(arguments: dict[str, Any]) -> None:  # runs in the owner thread only (hook check or tap)
        if open_call:
            _fill(open_call[-1], arguments)

    def kernel_hook(module, args, kwargs):
        if threading.get_ident() == owner:
            record(_arguments(module, args, kwargs))

    def keep_base_output(module, args, output):
        if threading.get_ident() == owner:
            capture.base_output = output

    with ExitStack() as stack:
        handles: list = []
        stack.callback(lambda: [handle.remove() for handle in handles])
        for kind, attentions in deformable_attention_modules(model).items():
            for attention in attentions:
                handles.append(attention.register_forward_pre_hook(opener, with_kwargs=True))
                handles.append(attention.register_forward_hook(closer(getattr(capture, kind))))
                kernel = kernel_of(attention)
                if isinstance(kernel, nn.Module):
                    handles.append(kernel.register_forward_pre_hook(kernel_hook, with_kwargs=True))
                else:
                    stack.enter_context(tap(*kernel, record))
        base = getattr(model, "model", None)
        if isinstance(base, nn.Module):
            handles.append(base.register_forward_hook(keep_base_output))
        yield capture


def hook_count(model: nn.Module) -> int:
    """Forward hooks and pre-hooks on all of `model`'s modules (for tests: zero outside a capture)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
