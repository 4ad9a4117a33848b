"""The tensors between DETR's stages (input, backbone, positions, encoder, queries, decoder), from the same
single forward pass that inspect_image runs.

    ins, stages = detr_core.teaching.pipeline.inspect_with_stages(model, image)

Hooks on the model's own modules record each stage's output while inspect_image runs; like capture.py they act
only on the calling thread's forward passes and are removed on exit.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..inspection.inspection import Inspection, inspect_image
from ..model.preprocess import ImageSource
from ..model.twin import inference_twin


@dataclass
class PipelineStages:
    """One image's intermediate tensors, batch of one dropped, numpy float32.

    input [3, h, w] normalised pixels; backbone [C, fh, fw]; position [d, fh, fw]; projected [d, fh, fw]
    (backbone after the 1x1 input projection); memory [d, fh, fw] (encoder output); query_embed [Q, d]
    (learned, the same for every image); decoder [L_dec, Q, d] (each layer's output after the final norm).
    mean, std: the normalisation, to show the input as pixels again.
    """

    input: np.ndarray = None
    backbone: np.ndarray = None
    position: np.ndarray = None
    projected: np.ndarray = None
    memory: np.ndarray = None
    query_embed: np.ndarray = None
    decoder: np.ndarray = None
    mean: tuple = field(default=(0.0, 0.0, 0.0))
    std: tuple = field(default=(1.0, 1.0, 1.0))

    def input_pixels(self) -> np.ndarray:
        """[h, w, 3] uint8: the resized input the model saw, normalisation undone."""
        x = self.input * np.asarray(self.std)[:, None, None] + np.asarray(self.mean)[:, None, None]  # [3, h, w]
        return (np.clip(x, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach()[0].float().cpu().numpy()


@contextmanager
def capture_stages(model: nn.Module) -> Iterator[PipelineStages]:
    """Within the context, this thread's forward passes of `model` record every stage (the last pass wins)."""
    stages = PipelineStages(mean=model.preprocess.mean, std=model.preprocess.std)
    owner = threading.get_ident()
    t = model.transformer

    def record(fn):
        def hook(module, args, output):
            if threading.get_ident() == owner:
                fn(args, output)
        return hook

    def on_input(args, output):
        stages.input = _numpy(args[0])  # [3, h, w]

    def on_backbone(args, output):
        features, _, pos = output
        stages.backbone, stages.position = _numpy(features), _numpy(pos)  # [C, fh, fw], [d, fh, fw]

    def on_projected(args, output):
        stages.projected = _numpy(output)  # [d, fh, fw]

    def on_memory(args, output):
        fh, fw = stages.projected.shape[-2:]
        stages.memory = _numpy(output).T.reshape(-1, fh, fw)  # [HW, d] -> [d, fh, fw]

    def on_decoder(args, output):
        stages.decoder = output.detach()[:, 0].float().cpu().numpy()  # [L, B, Q, d] -> [L, Q, d]

    hooks = [(model, on_input), (model.backbone, on_backbone), (model.input_proj, on_projected),
             (t.encoder, on_memory), (t.decoder, on_decoder)]
    handles = [module.register_forward_hook(record(fn)) for module, fn in hooks]
    try:
        yield stages
    finally:
        for handle in handles:
            handle.remove()
    stages.query_embed = model.query_embed.weight.detach().float().cpu().numpy()  # [Q, d]


def inspect_with_stages(model: nn.Module, image: ImageSource) -> tuple[Inspection, PipelineStages]:
    """inspect_image plus every stage's tensors, still one forward pass (of the model's inference twin)."""
    runner = inference_twin(model)  # the hooks go on what actually runs
    with capture_stages(runner) as stages:
        ins = inspect_image(runner, image)
    return ins, stages


def principal_components(features: np.ndarray, k: int = 3, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """features [C, h, w] -> (first k principal components [k, h, w], their share of the variance [k]).

    Cells are the samples and channels the variables, so the components show which cells look alike.
    Subspace iteration instead of a full SVD: only k directions are needed, and a [HW, 2048] SVD of a
    ResNet-50 map takes seconds on a busy CPU, while this takes milliseconds.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be [C, h, w], got shape {features.shape}")
    c, h, w = features.shape
    cells = features.reshape(c, h * w).T.astype(np.float64)  # [HW, C]
    cells = cells - cells.mean(0)
    width = min(k + 5, c, h * w)  # a few extra directions make the iteration converge fast
    basis = np.random.default_rng(0).standard_normal((c, width))  # [C, width]
    for _ in range(iterations):
        basis, _ = np.linalg.qr(cells.T @ (cells @ basis))  # [C, width], orthonormal
    _, s, vt = np.linalg.svd(cells @ basis, full_matrices=False)  # [HW, width]: small
    k = min(k, width)
    comps = (cells @ (basis @ vt.T[:, :k])).T.reshape(k, h, w)  # [HW, k] -> [k, h, w]
    share = s[:k] ** 2 / max(float((cells ** 2).sum()), 1e-12)
    return comps.astype(np.float32), share.astype(np.float32)
