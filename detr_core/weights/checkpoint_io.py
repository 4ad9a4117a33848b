"""Reading checkpoint files safely (weights_only, always) and writing this project's own format."""
from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "detr-lens/1"


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> Any:
    """torch.load with weights_only=True; argparse.Namespace is the one extra type allowed, because the
    official training script stores its `args` that way.

    mmap=True (zip archives, i.e. every torch.save since 1.6): tensors stay in the file until read, so their shapes
    can be checked against the model before the process holds the file's contents."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    if not _looks_like_torch_file(path):
        raise ValueError(
            f"{str(path)!r} is not a PyTorch checkpoint (neither a torch.save zip archive nor a legacy pickle)"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if "global" in ln.lower()]
        first = (lines[0] if lines else str(err).strip().splitlines()[0]).split(" Please use")[0]
        raise ValueError(
            f"checkpoint {str(path)!r} holds pickled Python objects that are not tensors, and loading them"
            f" could run arbitrary code ({first}). Re-save only the weights:"
            " torch.save({'model': model.state_dict()}, path)"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"could not read {str(path)!r} as a PyTorch checkpoint ({err}); is it a .pth file written by torch.save?"
        ) from None


def _looks_like_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"  # pickle protocol 2+ opcode (legacy format)


def model_checkpoint(model: torch.nn.Module) -> dict:
    """The project's checkpoint: weights plus everything needed to rebuild the model, all plain data."""
    if getattr(model, "inference_only", False):
        raise ValueError("this model was rewritten by optimize_for_inference (batch norms folded) and cannot be"
                         " saved in the official layout; save the model you optimised instead")
    return {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "preprocess": model.preprocess.to_dict(),
        "class_names": list(model.class_names),
        "model": model.state_dict(),
    }


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside path, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
