"""Checkpoints of a DETR-family run: ``last/`` and ``best/`` folders that transformers and detr_core open.

Each folder is what ``save_pretrained`` writes (config.json with id2label, model.safetensors) plus the image
processor's preprocessor_config.json, so ``detr_core.open_any(folder)``, the app and
``AutoModelForObjectDetection.from_pretrained(folder)`` open it; ``training_state.pth`` beside them holds what
``--resume`` restores (optimiser, schedule, progress, RNG, recipe, label map, frozen parameters), plain data and
tensors for ``torch.load(weights_only=True)``. A folder is written under a temporary name and then swapped in,
so a crash mid-write leaves the previous one whole.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .checkpoints import Progress, capture_rng

LAST, BEST = "last", "best"
STATE_FILE = "training_state.pth"
STATE_KEYS = ("optimizer", "lr_scheduler", "progress", "rng", "recipe", "label_map", "frozen")


def training_state(optimizer, scheduler, progress: Progress, recipe: dict, label_map: dict,
                   init_from: str | None, frozen: list[str]) -> dict:
    return {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(),
            "progress": progress.to_dict(), "rng": capture_rng(), "recipe": recipe,
            "label_map": {int(k): int(v) for k, v in label_map.items()},  # category id -> label
            "init_from": None if init_from is None else str(init_from), "frozen": list(frozen)}


def save_folder(model, processor, state: dict | None, folder: Path) -> None:
    """Write ``folder`` (save_pretrained + processor [+ training state]) atomically."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if state is not None:
        torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def copy_folder(source: Path, folder: Path) -> None:
    """``folder`` becomes a copy of the checkpoint folder ``source`` (best = last), atomically."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def is_family_checkpoint(path) -> bool:
    return path is not None and Path(path).is_dir() and (Path(path) / STATE_FILE).is_file()


def load_state(folder: str | Path) -> dict:
    """A run folder's training state, checked to hold everything ``--resume`` restores."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise ValueError(f"--resume {folder}: no {STATE_FILE} in it (a model folder, not a run's last/?); use "
                         "--model FOLDER to fine-tune from it instead")
    state = torch.load(path, weights_only=True, map_location="cpu")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path} lacks {missing}: not written by python -m train --model")
    return state
