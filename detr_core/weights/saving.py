"""`save_model`: one entry point for both formats this project writes. Its own module so that the reading side
(checkpoint_io, hf_model) and the Hugging Face export (hf_export, which needs hf_model's file names) import in one
direction only: saving -> checkpoint_io, hf_export -> hf_model -> checkpoint_io."""
from __future__ import annotations

import os

import torch

from .checkpoint_io import atomic_save, model_checkpoint
from .hf_export import save_hf

SAVE_FORMATS = ("detr-lens", "hf")


def save_model(model: torch.nn.Module, path: str | os.PathLike, format: str = "detr-lens") -> None:
    """Write `model`; `detr_core.load_model(path)` reads either format back.

    format "detr-lens": one .pth file in the project's format. "hf": a folder in the Hugging Face format
    (config.json, model.safetensors, preprocessor_config.json) that transformers' `from_pretrained` opens
    with the same outputs, e.g. to share a fine-tuned model on the Hub."""
    if format == "hf":
        save_hf(model, path)
    elif format == "detr-lens":
        atomic_save(model_checkpoint(model), path)
    else:
        raise ValueError(f"format={format!r}: expected one of {SAVE_FORMATS}")
