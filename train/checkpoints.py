"""Training checkpoints: the model in detr_core's format plus what ``--resume`` needs.

A training checkpoint is a superset of ``detr_core.model_checkpoint``: the extra
keys (optimizer, lr_scheduler, progress, rng, train_config, label_map) are
ignored by ``detr_core.load_model``, so ``last.pth`` and ``best.pth`` are also
ordinary model files. Everything is plain data and tensors, loadable with
``torch.load(..., weights_only=True)``; files are written atomically.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from detr_core import atomic_save, model_checkpoint, read_checkpoint

LAST, BEST = "last.pth", "best.pth"
RESUME_KEYS = ("optimizer", "lr_scheduler", "progress", "rng")


@dataclass(frozen=True)
class Progress:
    """Where training stands: ``epoch`` is the epoch in progress (or next to start),
    ``epoch_step`` how many of its batches are done, ``step`` the optimiser steps so far."""

    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    best_ap: float = -1.0

    def to_dict(self) -> dict:
        return asdict(self)


def capture_rng() -> dict:
    """Every random generator that training draws from, as tensors and plain data."""
    np_state = np.random.get_state()
    rng = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def training_checkpoint(model, optimizer, scheduler, progress: Progress, train_config: dict,
                        label_map: dict, init_from: str | None, extra_state: dict | None = None) -> dict:
    """The dict written to last.pth / best.pth (``model`` must be unwrapped from DDP).

    ``extra_state``: training-only tensors outside the model (Group DETR's extra queries)."""
    ckpt = model_checkpoint(model)
    ckpt.update({
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "progress": progress.to_dict(),
        "rng": capture_rng(),
        "train_config": train_config,
        "label_map": {int(k): int(v) for k, v in label_map.items()},  # category id -> label
        "init_from": None if init_from is None else str(init_from),
        "extra_state": dict(extra_state or {}),
    })
    return ckpt


def save(ckpt: dict, path: Path) -> None:
    """Write then rename: a crash mid-write leaves the previous file intact."""
    atomic_save(ckpt, path)


def load_for_resume(path: str | Path) -> dict:
    """A training checkpoint, checked to hold everything ``--resume`` restores."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a DETR Lens checkpoint (no 'config'/'model'); "
                         "to start from plain weights use --init-from instead of --resume")
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"{path} has no training state {missing} (a model-only file?); "
                         "use --init-from to fine-tune from it instead of --resume")
    return ckpt


def group_queries_of(source: str) -> torch.Tensor | None:
    """The extra Group DETR queries [G-1, Q, d] a training checkpoint file holds, or None
    (a model name such as "shapes", a Hugging Face model, a model-only file, or a run without groups)."""
    if not Path(source).is_file() or Path(source).suffix == ".safetensors":
        return None
    ckpt = read_checkpoint(source)
    extra = ckpt.get("extra_state") if isinstance(ckpt, dict) else None
    return extra.get("group_queries") if isinstance(extra, dict) else None


def progress_of(ckpt: dict) -> Progress:
    return Progress(**ckpt["progress"])
